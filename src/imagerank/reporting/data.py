"""Reading what a run left in the work directory, defensively: every dataset beyond scores is optional.

Whole-catalog datasets are read with Dask and reduced on the cluster (or the local scheduler): what reaches
this process is bounded by the number of providers and the report's limits, never by the catalog size.
Every work-directory path is built by :func:`location`.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from imagerank.features.registry import FAMILIES

#: Labels of the two scores per model name: (label column, dataset holding it, row filter column).
TARGETS = {
    "popularity": ("observed_popularity", "popularity", None),
    "authority": ("link_authority", "links", "has_link_evidence"),
}


#: Finished-run manifests are named by run id (``20260101T000000Z.json``); other files there (a resumable run's
#: ``in-progress.json``) are not runs.
RUN_FILE = re.compile(r"^\d{8}T\d{6}Z.*\.json$")


def location(workdir: str | Path, name: str, *parts: str) -> Path:
    """The one place the report turns a dataset name into a work-directory path.

    ``name`` is a dataset of :mod:`imagerank.datasets` (a feature family, ``runs``, ``models``, ``scores``,
    ``catalog``, ``rejects``, ``report``); ``parts`` go below it. The report reads a local work directory (locally
    each dataset's name is a link to its committed version); a URL is refused with a clear error.
    """
    from imagerank import datasets, storage

    return storage.local_path(datasets.location(workdir, name, *parts))


def runs(workdir: str | Path) -> list[Path]:
    return sorted(p for p in location(workdir, "runs").glob("*.json") if RUN_FILE.match(p.name))


def latest_run(workdir: str | Path) -> dict:
    found = runs(workdir)
    if not found:
        raise FileNotFoundError(f"no runs in {location(workdir, 'runs')}: run `imagerank recalculate` first")
    return json.loads(found[-1].read_text())


def dataset_dir(workdir: Path, family: str) -> Path | None:
    path = location(workdir, family)
    return path if path.is_dir() and any(path.rglob("*.parquet")) else None


def read_columns(path: Path | None, columns: Iterable[str], filters=None) -> pd.DataFrame:
    """The requested columns that exist in the dataset at ``path`` (an empty frame when it is absent).

    ``filters`` (column, values): the rows whose column is in values, found by a Dask read with the filter
    pushed into each file's scan, on the current cluster: only the matching rows reach this process, however
    large the dataset. Without filters everything is read here: only for datasets of a few rows; whole-catalog
    datasets go through :func:`dask_columns`.
    """
    columns = list(dict.fromkeys(columns))
    if path is None or not Path(path).is_dir():
        return pd.DataFrame(columns=columns)
    dataset = ds.dataset(str(path), format="parquet")
    present = [c for c in columns if c in dataset.schema.names]
    if filters is None:
        return dataset.to_table(columns=present).to_pandas()
    import dask.dataframe as dd

    name, values = filters
    values = list(dict.fromkeys(values))
    if not values or not dataset.files:
        return dataset.schema.empty_table().select(present).to_pandas()
    found = dd.read_parquet(str(path), columns=present, filters=[(name, "in", values)])
    return found.compute().reset_index(drop=True)


def dask_columns(path: Path | None, columns: Iterable[str]):
    """The requested columns that exist in the dataset at ``path`` as a lazy Dask frame (None when absent)."""
    import dask.dataframe as dd

    if path is None or not Path(path).is_dir() or not any(Path(path).rglob("*.parquet")):
        return None
    names = ds.dataset(str(path), format="parquet").schema.names
    present = [c for c in dict.fromkeys(columns) if c in names]
    return dd.read_parquet(str(path), columns=present)


def model_version(workdir: Path, run: dict) -> str | None:
    """The model version the run scored with (its run id), else the newest one with a metrics.json."""
    models = run.get("models") or {}
    for candidate in (models.get("model_version"), run.get("run_id")):
        if candidate and location(workdir, "models", str(candidate), "metrics.json").is_file():
            return str(candidate)
    versions = sorted(p.parent.name for p in location(workdir, "models").glob("*/metrics.json"))
    return versions[-1] if versions else None


def model_card(workdir: Path, version: str | None) -> dict:
    if not version:
        return {}
    try:
        return json.loads(location(workdir, "models", version, "metrics.json").read_text())
    except (OSError, ValueError):
        return {}


# --- bounded aggregates of the whole catalog, computed with Dask ----------------------------------------------
#
# Nothing below brings a per-image column of the whole catalog into this process: counts and sums per provider,
# histogram counts, exact medians (a histogram locates each median's bin, a second pass reads only that bin's
# distinct values), and a few rows per provider (top, bottom, a uniform sample) chosen by a tree reduction
# whose every step keeps at most k rows per group.

SCORE_COLUMNS = ["popularity", "authority"]
CATALOG_COLUMNS = ["image_id", "provider", "title", "foreign_landing_url", "url", "creator"]
PLOT_BINS = np.linspace(0, 1, 41)
MEDIAN_BINS = 4096


@dataclass
class ScoreSummary:
    """What the report shows of the scores, every part bounded by the number of providers and the limits."""

    rows: int
    providers: list[str]  # by number of images, largest first
    counts: pd.DataFrame  # provider, popularity_source, authority_source, n
    stats: pd.DataFrame  # index provider; <column>_{count,mean,std,min,median,max} per score column
    histograms: dict  # provider -> column -> (counts over PLOT_BINS, non-null values)
    top: dict  # (column, provider) -> highest top_k rows, highest first (ties: larger image_id first)
    bottom: dict  # (column, provider) -> lowest top_k rows, lowest first (ties: smaller image_id first)
    browse: pd.DataFrame  # the browse_rows most popular rows (ties broken by authority)
    sample: pd.DataFrame  # a uniform sample of at most sample_rows rows (every row when there are fewer)
    sample_rows: int

    @property
    def sampled(self) -> bool:
        return self.rows > len(self.sample)

    def frames(self) -> list[pd.DataFrame]:
        """Every per-row frame held here (for checks that the report's data is bounded)."""
        return [self.counts, self.stats, self.browse, self.sample, *self.top.values(), *self.bottom.values()]


def sample_key(ids: pd.Series, seed: int = 0) -> np.ndarray:
    """A pseudo-random number per image id, the same on every worker and every run: the k smallest keys of a
    dataset are a uniform sample without replacement of k rows, whatever its partitioning."""
    return pd.util.hash_pandas_object(ids.astype(str), index=False, hash_key=f"imagerank{seed:07d}"[:16]).to_numpy()


def _first_per_group(part: pd.DataFrame, by: list[str] | None, order: list[str], ascending, k: int) -> pd.DataFrame:
    ranked = part.sort_values(order, ascending=ascending, kind="stable")
    return ranked.groupby(by, observed=True, sort=False, dropna=False).head(k) if by else ranked.head(k)


def first_rows(frame, order: list[str], ascending, k: int, by: list[str] | None = None, split_every: int = 8):
    """The first ``k`` rows per group of ``by`` (or overall) in the order of ``order``: per partition, then
    a tree reduction (each step concatenates at most ``split_every`` bounded frames), so neither a worker nor
    this process holds more than ``split_every * k`` rows per group at a time."""
    from dask import compute, delayed

    step = delayed(_first_per_group)
    level = [step(part, by, order, ascending, k) for part in frame.to_delayed()]
    while len(level) > 1:
        level = [step(delayed(pd.concat)(level[i:i + split_every]), by, order, ascending, k)
                 for i in range(0, len(level), split_every)]
    (result,) = compute(level[0]) if level else (frame._meta,)
    return result.reset_index(drop=True)


def _with_provider(workdir: Path):
    """scores joined to the catalog's provider (lazy); None when there are no scores. Titles and links are
    looked up afterwards for the few rows the report shows (:func:`_with_catalog_details`)."""
    scores = dask_columns(location(workdir, "scores"), ["image_id", *SCORE_COLUMNS, "popularity_source",
                                                        "authority_source"])
    if scores is None:
        return None
    scores = scores.map_partitions(_numbered, meta=_numbered(scores._meta))
    catalog = dask_columns(location(workdir, "catalog"), ["image_id", "provider"])
    if catalog is None:
        catalog = dask_columns(dataset_dir(workdir, "metadata"), ["image_id", "provider"])
    frame = scores.merge(catalog, on="image_id", how="left") if catalog is not None else scores.assign(provider=None)
    return frame.map_partitions(_provider_filled, meta=_provider_filled(frame._meta))


def _catalog_details(workdir: Path, ids) -> pd.DataFrame:
    """Title, landing page, url and creator of a few images (a filtered read of the catalog)."""
    ids = list(dict.fromkeys(map(str, ids)))
    if not ids:
        return pd.DataFrame(columns=CATALOG_COLUMNS)
    details = read_columns(location(workdir, "catalog"), CATALOG_COLUMNS, filters=("image_id", ids))
    details = details.drop(columns=["provider"], errors="ignore").drop_duplicates("image_id")
    return details.assign(image_id=details["image_id"].astype(str))


def _with_details(rows: pd.DataFrame, details: pd.DataFrame) -> pd.DataFrame:
    merged = rows.drop(columns=["_key"], errors="ignore").merge(details, on="image_id", how="left")
    for column in CATALOG_COLUMNS:
        if column not in merged:
            merged[column] = None
    return merged.reset_index(drop=True)


def _numbered(part: pd.DataFrame, partition_info=None) -> pd.DataFrame:
    """The rows with ``_order``: their position in the dataset (partition number, then row), kept through joins."""
    number = (partition_info or {}).get("number", 0)
    return part.assign(_order=np.arange(len(part), dtype="int64") + (number << 40))


def _provider_filled(part: pd.DataFrame) -> pd.DataFrame:
    part = part.assign(provider=part["provider"].astype("string").fillna("(unknown)").astype(str),
                       popularity_source=part["popularity_source"].astype(str),
                       authority_source=part["authority_source"].astype(str),
                       image_id=part["image_id"].astype(str))
    return part


def _partition_stats(part: pd.DataFrame) -> pd.DataFrame:
    """Per provider and score column: count, sum, sum of squares, min, max and histogram counts."""
    rows = []
    for provider, group in part.groupby("provider", sort=False):
        for column in SCORE_COLUMNS:
            values = group[column].dropna().to_numpy(dtype="float64")
            plot, _ = np.histogram(values, bins=PLOT_BINS)
            fine = np.bincount(_median_bin(values), minlength=MEDIAN_BINS)
            rows.append({"provider": provider, "column": column, "count": len(values), "sum": values.sum(),
                         "sumsq": np.square(values).sum(), "min": values.min() if len(values) else np.nan,
                         "max": values.max() if len(values) else np.nan, "plot": plot, "fine": fine})
    return pd.DataFrame(rows, columns=["provider", "column", "count", "sum", "sumsq", "min", "max", "plot", "fine"])


def _median_bin(values: np.ndarray) -> np.ndarray:
    return np.clip((np.asarray(values, dtype="float64") * MEDIAN_BINS).astype("int64"), 0, MEDIAN_BINS - 1)


def _combine_stats(parts: list[pd.DataFrame]) -> dict:
    """(provider, column) -> summed statistics of partition results."""
    out: dict = {}
    for part in parts:
        for row in part.itertuples(index=False):
            key = (row.provider, row.column)
            if key not in out:
                out[key] = {"count": 0, "sum": 0.0, "sumsq": 0.0, "min": np.nan, "max": np.nan,
                            "plot": np.zeros(len(PLOT_BINS) - 1, dtype="int64"),
                            "fine": np.zeros(MEDIAN_BINS, dtype="int64")}
            acc = out[key]
            acc["count"] += int(row.count)
            acc["sum"] += float(row.sum)
            acc["sumsq"] += float(row.sumsq)
            acc["min"] = np.nanmin([acc["min"], row.min]) if np.isfinite(row.min) else acc["min"]
            acc["max"] = np.nanmax([acc["max"], row.max]) if np.isfinite(row.max) else acc["max"]
            acc["plot"] += row.plot
            acc["fine"] += row.fine
    return out


def _partition_summary(part: pd.DataFrame, limits: dict) -> dict:
    """Everything the report needs from one partition, each part bounded (see :func:`_merge_summaries`)."""
    keyed = part.assign(_key=sample_key(part["image_id"]))
    return {
        "counts": part.groupby(["provider", "popularity_source", "authority_source"]).size().rename("n").reset_index(),
        "stats": _partition_stats(part),
        **_candidates(keyed, limits),
    }


def _candidates(frame: pd.DataFrame, limits: dict) -> dict:
    """The rows of ``frame`` that can still be among the report's top, bottom, browse and sample rows."""
    keys = [f"{kind}:{column}" for column in SCORE_COLUMNS for kind in ("top", "bottom")] if limits["top_k"] else []
    keys += [key for key in ("browse", "sample") if limits[f"{key}_rows"]]
    return {key: _cut(frame, key, limits) for key in keys}


def _merge_summaries(parts: list[dict], limits: dict) -> dict:
    """Partition summaries merged into one of the same bounded size: counts summed, statistics added,
    candidate rows concatenated and cut back to their k per group."""
    counts = pd.concat([p["counts"] for p in parts], ignore_index=True)
    counts = counts.groupby(["provider", "popularity_source", "authority_source"], as_index=False)["n"].sum()
    stats = _stats_frame(_combine_stats([p["stats"] for p in parts]))
    candidates = {key: _cut(pd.concat([p[key] for p in parts], ignore_index=True), key, limits)
                  for key in parts[0] if key not in ("counts", "stats")}
    return {"counts": counts, "stats": stats, **candidates}


def _cut(frame: pd.DataFrame, key: str, limits: dict) -> pd.DataFrame:
    kind, _, column = key.partition(":")
    if kind in ("top", "bottom"):
        return _first_per_group(frame, ["provider"], [column, "image_id"], kind == "bottom", limits["top_k"])
    if kind == "browse":
        return _first_per_group(frame, None, ["popularity", "authority", "image_id"], [False, False, True],
                                limits["browse_rows"])
    return _first_per_group(frame, None, ["_key"], True, limits["sample_rows"])


def _tree_summary(frame, limits: dict, split_every: int = 8) -> dict:
    """One pass over the partitions, merged by a tree reduction: at most ``split_every`` bounded summaries
    meet in one task, and one reaches this process."""
    from dask import compute, delayed

    level = [delayed(_partition_summary)(part, limits) for part in frame.to_delayed()]
    while len(level) > 1:
        level = [delayed(_merge_summaries)(level[i:i + split_every], limits) for i in range(0, len(level), split_every)]
    (result,) = compute(level[0])
    return _merge_summaries([result], limits)


def _stats_frame(combined: dict) -> pd.DataFrame:
    return pd.DataFrame([{"provider": p, "column": c, **acc} for (p, c), acc in combined.items()],
                        columns=["provider", "column", "count", "sum", "sumsq", "min", "max", "plot", "fine"])


def _order_values(part: pd.DataFrame, wanted: dict) -> pd.DataFrame:
    """Distinct values and their counts of the rows whose (provider, column, median bin) is wanted."""
    out = []
    for (provider, column), bins in wanted.items():
        values = part.loc[part["provider"] == provider, column].dropna().to_numpy(dtype="float64")
        values = values[np.isin(_median_bin(values), list(bins))]
        if len(values):
            distinct, n = np.unique(values, return_counts=True)
            out.append(pd.DataFrame({"provider": provider, "column": column, "value": distinct, "n": n}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(
        {"provider": pd.Series(dtype=str), "column": pd.Series(dtype=str), "value": pd.Series(dtype="float64"),
         "n": pd.Series(dtype="int64")})


def _medians(frame, combined: dict) -> dict:
    """Exact medians per (provider, column), as pandas computes them (mean of the two middle values)."""
    import dask

    ranks, wanted = {}, {}
    for key, acc in combined.items():
        n = acc["count"]
        if not n:
            continue
        cumulative = np.cumsum(acc["fine"])
        needed = sorted({(n - 1) // 2, n // 2})
        ranks[key] = [(r, int(np.searchsorted(cumulative, r, side="right"))) for r in needed]
        wanted[key] = {b for _, b in ranks[key]}
    if not wanted:
        return {}
    found = dask.compute(frame.map_partitions(_order_values, wanted, meta=_order_values(frame._meta, {})))[0]
    found = found.groupby(["provider", "column", "value"], as_index=False)["n"].sum()
    medians = {}
    for key, needed in ranks.items():
        values = found[(found["provider"] == key[0]) & (found["column"] == key[1])].sort_values("value")
        fine = combined[key]["fine"]
        picked = []
        for rank, b in needed:
            before = int(fine[:b].sum())
            inside = values[_median_bin(values["value"].to_numpy()) == b]
            position = np.searchsorted(np.cumsum(inside["n"].to_numpy()), rank - before, side="right")
            picked.append(float(inside["value"].to_numpy()[position]))
        medians[key] = float(np.mean(picked))
    return medians


def score_summary(workdir: str | Path, *, top_k: int = 4, browse_rows: int = 200,
                  sample_rows: int = 6000) -> ScoreSummary | None:
    """The bounded summary of ``W/scores`` joined to the catalog the report is drawn from (None: no scores)."""
    workdir = Path(workdir)
    frame = _with_provider(workdir)
    if frame is None:
        return None
    limits = {"top_k": top_k, "browse_rows": browse_rows, "sample_rows": sample_rows}
    summary = _tree_summary(frame, limits)
    counts = summary["counts"]
    rows = int(counts["n"].sum())
    if not rows:
        return None
    providers = counts.groupby("provider")["n"].sum().sort_values(ascending=False, kind="stable").index.tolist()
    combined = _combine_stats([summary["stats"]])
    medians = _medians(frame, combined)
    stats = {}
    for (provider, column), acc in combined.items():
        n = acc["count"]
        mean = acc["sum"] / n if n else np.nan
        variance = (acc["sumsq"] - n * mean * mean) / (n - 1) if n > 1 else np.nan
        stats.setdefault(provider, {}).update({
            f"{column}_count": n, f"{column}_mean": mean, f"{column}_std": math.sqrt(max(variance, 0.0))
            if n > 1 else np.nan, f"{column}_min": acc["min"], f"{column}_median": medians.get((provider, column),
                                                                                              np.nan),
            f"{column}_max": acc["max"]})
    histograms: dict = {}
    for (provider, column), acc in combined.items():
        histograms.setdefault(provider, {})[column] = (acc["plot"], acc["count"])
    shown = [summary.get(f"{kind}:{column}") for kind in ("top", "bottom") for column in SCORE_COLUMNS]
    details = _catalog_details(workdir, pd.concat([f for f in [*shown, summary.get("browse")] if f is not None],
                                                  ignore_index=True)["image_id"] if top_k or browse_rows else [])
    top, bottom = {}, {}
    for column in SCORE_COLUMNS if top_k else ():
        for provider in providers:
            for kind, target in (("top", top), ("bottom", bottom)):
                rows_of = summary[f"{kind}:{column}"]
                target[column, provider] = _with_details(rows_of[rows_of["provider"] == provider], details)
    browse = _with_details(summary["browse"], details) if browse_rows else frame._meta
    # in the dataset's order: a sample of every row is the scores dataset as it reads
    sample = summary["sample"].sort_values("_order").drop(columns="_key") if sample_rows else frame._meta
    return ScoreSummary(rows=rows, providers=providers, counts=counts,
                        stats=pd.DataFrame.from_dict(stats, orient="index"), histograms=histograms, top=top,
                        bottom=bottom, browse=browse, sample=sample, sample_rows=sample_rows)


def feature_rows(workdir: Path, ids: Iterable[str] | None = None) -> pd.DataFrame:
    """Every available feature family joined on image_id onto the metadata features, for ``ids`` (or all:
    small work directories only). Each family is a filtered read on the cluster (:func:`read_columns`)."""
    workdir = Path(workdir)
    filters = ("image_id", [str(i) for i in ids]) if ids is not None else None
    base = dataset_dir(workdir, "metadata")
    if base is None:
        return pd.DataFrame(columns=["image_id"])
    frame = read_columns(base, ds.dataset(str(base), format="parquet").schema.names, filters)
    for family in FAMILIES:
        path = dataset_dir(workdir, family)
        if family == "metadata" or path is None:
            continue
        names = ds.dataset(str(path), format="parquet").schema.names
        other = read_columns(path, ["image_id"] + [c for c in names if c not in frame.columns], filters)
        frame = frame.merge(other.drop_duplicates("image_id"), on="image_id", how="left")
    frame["image_id"] = frame["image_id"].astype(str)
    return frame


def describe_scores(summary: ScoreSummary) -> pd.DataFrame:
    """count, mean, std, min, median and max of each score per provider, laid out as pandas' ``describe``."""
    names = {"count": "count", "mean": "mean", "std": "std", "min": "min", "median": "50%", "max": "max"}
    stats = summary.stats.sort_index()
    columns = pd.MultiIndex.from_tuples([(c, label) for c in SCORE_COLUMNS for label in names.values()])
    table = pd.DataFrame({(c, label): stats[f"{c}_{key}"].astype("float64") for c in SCORE_COLUMNS
                          for key, label in names.items()}, columns=columns)
    table.index.name = "provider"
    return table


def labelled_ids(workdir: Path, model_name: str, limit: int | None = None, seed: int = 0) -> pd.DataFrame:
    """(image_id, target) of the rows a model learns from, a uniform sample of at most ``limit``
    (chosen on the cluster: only the sample reaches this process)."""
    label, family, flag = TARGETS.get(model_name, (None, None, None))
    empty = pd.DataFrame(columns=["image_id", "target"])
    if label is None:
        return empty
    frame = dask_columns(dataset_dir(workdir, family), ["image_id", label] + ([flag] if flag else []))
    if frame is None or label not in frame.columns:
        return empty

    def labelled(part: pd.DataFrame) -> pd.DataFrame:
        if flag and flag in part:
            part = part[part[flag].astype("boolean").fillna(False).astype(bool)]
        part = part.dropna(subset=[label]).rename(columns={label: "target"})[["image_id", "target"]]
        return part.assign(image_id=part["image_id"].astype(str), _key=sample_key(part["image_id"], seed))

    rows = frame.map_partitions(labelled, meta=labelled(frame._meta))
    if limit is None:
        chosen = rows.compute()
    else:
        chosen = first_rows(rows, ["_key"], True, limit)
        # a sample of every row keeps the dataset's order, as reading it would
        chosen = chosen if len(chosen) == limit else rows.compute()
    return chosen[["image_id", "target"]].reset_index(drop=True).astype({"image_id": str})


COVERAGE_CHECKS = {
    "pixels": ("pixels", "pixels_error", "decoded"),
    "EXIF": ("exif", None, "exif_present"),
    "link evidence": ("links", "has_link_evidence", "flag"),
    "observed metric": ("popularity", "observed_popularity", "notnull"),
}


def _evidence_flags(part: pd.DataFrame, how: str, column: str | None, name: str) -> pd.DataFrame:
    """(image_id, flag) of one partition of a family: does the row carry that kind of evidence."""
    if how == "decoded":
        cols = [c for c in ("pixels_error", "has_phash", "width_px", "brightness") if c in part]
        ok = (part[cols[0]].isnull() if cols[0] == "pixels_error" else part[cols[0]].notnull()) if cols else \
            pd.Series(True, index=part.index)
    elif how == "exif_present":
        if "has_exif" in part:
            ok = part["has_exif"].astype("boolean").fillna(False).astype(bool)
        elif "exif_tags" in part:
            ok = pd.to_numeric(part["exif_tags"], errors="coerce").fillna(0) > 0
        else:
            value_cols = [c for c in part.columns if c not in ("image_id", "exif_error")]
            ok = part[value_cols].notnull().any(axis=1) if value_cols else pd.Series(False, index=part.index)
            if "exif_error" in part:
                ok &= part["exif_error"].isnull()
    elif how == "flag":
        ok = part[column].astype("boolean").fillna(False).astype(bool) if column in part else \
            pd.Series(False, index=part.index)
    else:
        ok = part[column].notnull() if column in part else pd.Series(False, index=part.index)
    return pd.DataFrame({"image_id": part["image_id"].astype(str).to_numpy(), name: ok.to_numpy(dtype=bool)})


def coverage(workdir: Path, providers=None) -> pd.DataFrame:
    """Share of scored images per provider with pixels / EXIF / link evidence / an observed metric.

    A family whose dataset does not exist is reported as absent (NaN), not as zero coverage. Computed on
    the cluster: each family's flags are joined onto (image_id, provider) and only sums per provider return.
    """
    import dask

    workdir = Path(workdir)
    base = providers if providers is not None else _with_provider(workdir)
    base = base[["image_id", "provider"]]
    sums, absent = [], []
    for name, (family, column, how) in COVERAGE_CHECKS.items():
        path = dataset_dir(workdir, family)
        if path is None:
            absent.append(name)
            continue
        names = ds.dataset(str(path), format="parquet").schema.names
        if how == "decoded":
            wanted = [c for c in ("pixels_error", "has_phash", "width_px", "brightness") if c in names][:1]
        elif how == "exif_present":
            wanted = [c for c in names if c.startswith("exif_") or c in ("has_exif", "exif_tags", "exif_error")]
        else:
            wanted = [column]
        family_frame = dask_columns(path, ["image_id", *wanted])
        flags = family_frame.map_partitions(_evidence_flags, how, column, name,
                                            meta=_evidence_flags(family_frame._meta, how, column, name))
        flags = flags.drop_duplicates(subset=["image_id"], split_out=flags.npartitions)  # see pipelines.visual
        merged = base.merge(flags, on="image_id", how="left")
        merged[name] = merged[name].fillna(False).astype(bool)
        sums.append(merged.groupby("provider")[name].sum())
    images = base.groupby("provider").size()
    images, *sums = dask.compute(images, *sums)
    index = sorted(images.index.astype(str))
    images = images.reindex(index)
    table = {}
    counted = {s.name: s.reindex(index).fillna(0) for s in sums}
    for name in COVERAGE_CHECKS:
        table[name] = (counted[name] / images) if name in counted else pd.Series(np.nan, index=index)
    result = pd.DataFrame(table, index=index)
    total = int(images.sum())
    result.loc["all providers"] = {name: (float(counted[name].sum() / total) if name in counted and total else np.nan)
                                   for name in COVERAGE_CHECKS}
    result.insert(0, "images", [int(v) for v in images] + [total])
    return result


def reject_reason(part: pd.DataFrame) -> pd.DataFrame:
    return part.assign(reason_kind=part["reason"].astype(str).str.split(":").str[0].str.strip())


def rejects_by_reason(workdir: Path, run: dict) -> pd.Series:
    frame = dask_columns(location(workdir, "rejects"), ["reason"])
    if frame is not None and "reason" in frame.columns:
        counts = frame.map_partitions(reject_reason, meta=reject_reason(frame._meta))["reason_kind"]
        counts = counts.value_counts().compute()
        if len(counts):
            return counts.sort_values(ascending=False, kind="stable").rename("count").rename_axis("reason")
    fallback = (run.get("ingest") or {}).get("rejects_by_reason") or {}
    return pd.Series(fallback, dtype="int64").sort_values(ascending=False)


def reject_examples(workdir: Path, per_reason: int = 2) -> pd.DataFrame:
    """The first ``per_reason`` rejected rows of each reason (in dataset order)."""
    frame = dask_columns(location(workdir, "rejects"), ["source", "row", "source_row", "reason", "stage"])
    if frame is None or "reason" not in frame.columns:
        return pd.DataFrame()
    columns = list(frame.columns)

    keyed = frame.map_partitions(lambda part, partition_info=None: reject_reason(_numbered(part, partition_info)),
                                 meta=reject_reason(_numbered(frame._meta)))
    examples = first_rows(keyed, ["_order"], True, per_reason, by=["reason_kind"])
    return examples.sort_values("_order")[columns].reset_index(drop=True)


def observed_metrics(workdir: Path, per_provider: int = 400) -> tuple[pd.DataFrame, dict]:
    """(a uniform sample of at most ``per_provider`` positive raw metric values per provider, and per provider
    the (min, max) of the positive values), for the standardization curves."""
    import dask

    observed = dask_columns(dataset_dir(workdir, "popularity"), ["image_id", "metric_value"])
    metadata = dask_columns(dataset_dir(workdir, "metadata"), ["image_id", "provider"])
    if observed is None or metadata is None or "metric_value" not in observed.columns:
        return pd.DataFrame(columns=["provider", "metric_value"]), {}
    frame = observed.merge(metadata, on="image_id", how="left")

    def positive(part: pd.DataFrame) -> pd.DataFrame:
        part = part[pd.to_numeric(part["metric_value"], errors="coerce") > 0]
        return pd.DataFrame({"provider": part["provider"].astype(str).to_numpy(),
                             "metric_value": part["metric_value"].astype("float64").to_numpy(),
                             "_key": sample_key(part["image_id"])})

    rows = frame.map_partitions(positive, meta=positive(frame._meta))
    ranges = rows.groupby("provider")["metric_value"].agg(["min", "max"])
    (ranges,) = dask.compute(ranges)
    sample = first_rows(rows, ["_key"], True, per_provider, by=["provider"]).drop(columns="_key")
    return sample, {str(p): (float(r["min"]), float(r["max"])) for p, r in ranges.iterrows()}


def image_source(run: dict):
    """An ImageSource for the run's images when they are local files (thumbnails are never fetched remotely)."""
    template = (run.get("inputs") or {}).get("images")
    if not template:
        return None
    from imagerank.features.images import ImageSource

    try:
        source = ImageSource(str(template))
    except (ValueError, OSError):
        return None
    return source if source.protocol == "file" else None


def thumbnail(source, row: dict, size: int = 160) -> str | None:
    """A small base64 JPEG data URI of a row's local image, or None when it cannot be read."""
    if source is None:
        return None
    from PIL import Image

    try:
        data = source.read(row, max_bytes=64 * 1024 * 1024)
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", (size * 2, size * 2))
            im = im.convert("RGB")
            im.thumbnail((size, size))
            out = io.BytesIO()
            im.save(out, "JPEG", quality=72, optimize=True)
    except Exception:  # noqa: BLE001 - a missing or broken image only loses its thumbnail
        return None
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def finite(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(float(value))
