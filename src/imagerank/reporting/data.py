"""Reading what a run left in the work directory, defensively: every dataset beyond scores is optional."""

from __future__ import annotations

import base64
import io
import json
import math
import re
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


def runs(workdir: str | Path) -> list[Path]:
    return sorted(p for p in (Path(workdir) / "runs").glob("*.json") if RUN_FILE.match(p.name))


def latest_run(workdir: str | Path) -> dict:
    found = runs(workdir)
    if not found:
        raise FileNotFoundError(f"no runs in {workdir}/runs: run `imagerank recalculate` first")
    return json.loads(found[-1].read_text())


def dataset_dir(workdir: Path, family: str) -> Path | None:
    path = Path(workdir) / FAMILIES.get(family, f"features/{family}")
    return path if path.is_dir() and any(path.rglob("*.parquet")) else None


def read_columns(path: Path | None, columns: Iterable[str], filters=None) -> pd.DataFrame:
    """The requested columns that exist in the dataset at ``path`` (an empty frame when it is absent)."""
    columns = list(dict.fromkeys(columns))
    if path is None or not Path(path).is_dir():
        return pd.DataFrame(columns=columns)
    dataset = ds.dataset(str(path), format="parquet")
    present = [c for c in columns if c in dataset.schema.names]
    expression = None
    if filters is not None:
        name, values = filters
        expression = ds.field(name).isin(list(values))
    return dataset.to_table(columns=present, filter=expression).to_pandas()


def model_version(workdir: Path, run: dict) -> str | None:
    """The model version the run scored with (its run id), else the newest one with a metrics.json."""
    models = run.get("models") or {}
    for candidate in (models.get("model_version"), run.get("run_id")):
        if candidate and (Path(workdir) / "models" / str(candidate) / "metrics.json").is_file():
            return str(candidate)
    versions = sorted(p.parent.name for p in (Path(workdir) / "models").glob("*/metrics.json"))
    return versions[-1] if versions else None


def model_card(workdir: Path, version: str | None) -> dict:
    if not version:
        return {}
    try:
        return json.loads((Path(workdir) / "models" / version / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}


def scores_with_provider(workdir: Path) -> pd.DataFrame:
    """scores joined to the provider (and the catalog's title and landing page, for the top lists)."""
    workdir = Path(workdir)
    scores = read_columns(workdir / "scores", ["image_id", "popularity", "authority", "popularity_source",
                                               "authority_source"])
    catalog = read_columns(workdir / "catalog", ["image_id", "provider", "title", "foreign_landing_url", "url",
                                                 "creator"])
    if catalog.empty:
        catalog = read_columns(dataset_dir(workdir, "metadata"), ["image_id", "provider"])
    frame = scores.merge(catalog, on="image_id", how="left")
    frame["provider"] = frame["provider"].astype("string").fillna("(unknown)")
    for column in ("popularity_source", "authority_source", "provider"):
        frame[column] = frame[column].astype("category")
    return frame


def feature_rows(workdir: Path, ids: Iterable[str] | None = None) -> pd.DataFrame:
    """Every available feature family joined on image_id onto the metadata features, for ``ids`` (or all)."""
    workdir = Path(workdir)
    filters = ("image_id", list(ids)) if ids is not None else None
    base = dataset_dir(workdir, "metadata")
    if base is None:
        return pd.DataFrame(columns=["image_id"])
    frame = ds.dataset(str(base), format="parquet")
    frame = frame.to_table(filter=ds.field("image_id").isin(filters[1]) if filters else None).to_pandas()
    for family in FAMILIES:
        path = dataset_dir(workdir, family)
        if family == "metadata" or path is None:
            continue
        other = ds.dataset(str(path), format="parquet")
        keep = ["image_id"] + [c for c in other.schema.names if c not in frame.columns]
        other = other.to_table(columns=keep, filter=ds.field("image_id").isin(filters[1]) if filters else None)
        frame = frame.merge(other.to_pandas().drop_duplicates("image_id"), on="image_id", how="left")
    frame["image_id"] = frame["image_id"].astype(str)
    return frame


def labelled_ids(workdir: Path, model_name: str, limit: int | None = None, seed: int = 0) -> pd.DataFrame:
    """(image_id, target) of the rows a model learns from, a uniform sample of at most ``limit``."""
    label, family, flag = TARGETS.get(model_name, (None, None, None))
    if label is None:
        return pd.DataFrame(columns=["image_id", "target"])
    frame = read_columns(dataset_dir(workdir, family), ["image_id", label] + ([flag] if flag else []))
    if label not in frame:
        return pd.DataFrame(columns=["image_id", "target"])
    if flag and flag in frame:
        frame = frame[frame[flag].astype("boolean").fillna(False).astype(bool)]
    frame = frame.dropna(subset=[label]).rename(columns={label: "target"})[["image_id", "target"]]
    if limit is not None and len(frame) > limit:
        frame = frame.sample(n=limit, random_state=seed)
    return frame.reset_index(drop=True).astype({"image_id": str})


def coverage(workdir: Path, providers: pd.DataFrame) -> pd.DataFrame:
    """Share of catalog rows per provider with pixels / EXIF / link evidence / an observed metric.

    A family whose dataset does not exist is reported as absent (NaN), not as zero coverage.
    """
    workdir = Path(workdir)
    checks = {
        "pixels": ("pixels", "pixels_error", "decoded"),
        "EXIF": ("exif", None, "exif_present"),
        "link evidence": ("links", "has_link_evidence", "flag"),
        "observed metric": ("popularity", "observed_popularity", "notnull"),
    }
    base = providers[["image_id", "provider"]].copy()
    out = {}
    for name, (family, column, how) in checks.items():
        path = dataset_dir(workdir, family)
        if path is None:
            out[name] = None
            continue
        names = ds.dataset(str(path), format="parquet").schema.names
        if how == "decoded":
            cols = [c for c in ("pixels_error", "has_phash", "width_px", "brightness") if c in names]
            frame = read_columns(path, ["image_id"] + cols[:1])
            ok = frame[cols[0]].isnull() if cols[:1] == ["pixels_error"] else frame[cols[0]].notnull() if cols else \
                pd.Series(True, index=frame.index)
        elif how == "exif_present":
            frame = read_columns(path, ["image_id", *[c for c in names if c.startswith("exif_") or c in (
                "has_exif", "exif_tags", "exif_error")]])
            if "has_exif" in frame:
                ok = frame["has_exif"].astype("boolean").fillna(False).astype(bool)
            elif "exif_tags" in frame:
                ok = pd.to_numeric(frame["exif_tags"], errors="coerce").fillna(0) > 0
            else:
                value_cols = [c for c in frame.columns if c not in ("image_id", "exif_error")]
                ok = frame[value_cols].notnull().any(axis=1) if value_cols else pd.Series(False, index=frame.index)
                if "exif_error" in frame:
                    ok &= frame["exif_error"].isnull()
        elif how == "flag":
            frame = read_columns(path, ["image_id", column])
            ok = frame[column].astype("boolean").fillna(False).astype(bool) if column in frame else \
                pd.Series(False, index=frame.index)
        else:
            frame = read_columns(path, ["image_id", column])
            ok = frame[column].notnull() if column in frame else pd.Series(False, index=frame.index)
        flags = pd.DataFrame({"image_id": frame["image_id"].astype(str), name: ok.to_numpy()}).drop_duplicates("image_id")
        merged = base.merge(flags, on="image_id", how="left")
        out[name] = merged[name].astype("boolean").fillna(False).astype(bool).to_numpy()
    table = {}
    for name, flags in out.items():
        if flags is None:
            table[name] = pd.Series(np.nan, index=sorted(base["provider"].astype(str).unique()))
        else:
            table[name] = pd.Series(flags, index=base.index).groupby(base["provider"].astype(str)).mean()
    result = pd.DataFrame(table)
    overall = {name: (np.nan if flags is None else float(np.mean(flags)) if len(flags) else np.nan)
               for name, flags in out.items()}
    result.loc["all providers"] = overall
    result.insert(0, "images", list(base.groupby(base["provider"].astype(str)).size().reindex(result.index[:-1]))
                  + [len(base)])
    return result


def rejects_by_reason(workdir: Path, run: dict) -> pd.Series:
    frame = read_columns(Path(workdir) / "rejects", ["reason", "stage"])
    if not frame.empty and "reason" in frame:
        reasons = frame["reason"].astype(str).str.split(":").str[0].str.strip()
        return reasons.value_counts()
    fallback = (run.get("ingest") or {}).get("rejects_by_reason") or {}
    return pd.Series(fallback, dtype="int64").sort_values(ascending=False)


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
