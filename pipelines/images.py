"""Dask stage: image bytes -> ``W/features/pixels/`` and ``W/features/exif/``.

Reads ``W/catalog/`` lazily, maps :func:`imagerank.features.images.image_features` over its partitions
on the workers (each worker streams one image at a time from the image source), and writes the two
families. When both are asked for, every image is fetched and decoded once: the two Parquet writes are
computed together from the same partition results, each into a temporary sibling renamed into place
only when both have finished (``imagerank.io.atomic_path``, the same mechanism as ``write_ddf``).

Incremental: the previous run's rows of each family are joined onto the catalog by ``image_id``, and a
row whose image bytes (and, for EXIF, ``meta_data``) hash the same as before is copied, not decoded
(see *Reuse* in :mod:`imagerank.features.images`). An unchanged catalog costs one read and one hash
per image.
"""

from __future__ import annotations

import logging
import math
import string
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Iterable

import dask
import dask.dataframe as dd
import pandas as pd

from imagerank.features.images import (EXIF_COLUMNS, FAMILIES, IMAGE_FEATURES_META, PIXELS_COLUMNS, PREVIOUS,
                                       ImageLimits, ImageSource, family_frame, image_features)
from imagerank.features.exif import EXIF_SCHEMA
from imagerank.features.pixels import PIXELS_SCHEMA
from imagerank.io import atomic_path

log = logging.getLogger(__name__)

SCHEMAS = {"pixels": PIXELS_SCHEMA, "exif": EXIF_SCHEMA}
COLUMNS = {"pixels": PIXELS_COLUMNS, "exif": EXIF_COLUMNS}


def run_image_features(client, workdir: str | Path, images: str, families: Iterable[str] = FAMILIES, *,
                       rows_per_partition: int | None = 2_000, progress: bool = True,
                       storage_options: dict | None = None, event_timestamp: Any = None,
                       reuse: bool = True, **limits: Any) -> dict[str, Any]:
    """Compute the pixel and/or EXIF features of every ``W/catalog/`` row; return counts.

    ``images`` is a folder or a template (see :class:`~imagerank.features.images.ImageSource`);
    ``limits`` are :class:`~imagerank.features.images.ImageLimits` fields (``max_bytes``,
    ``max_pixels``, ``timeout_s``, ``allow_remote``). ``rows_per_partition`` splits the catalog into
    tasks of about that many images (load balancing and progress granularity; None keeps the
    catalog's partitions). ``client`` is a ``distributed.Client`` (None: the current default
    scheduler). ``event_timestamp`` (the run's time) is written on every computed row; default: now.
    ``reuse=False`` recomputes every row instead of reusing unchanged ones. Unknown ``limits`` keys are
    an error.
    """
    workdir = Path(workdir)
    families = tuple(f for f in FAMILIES if f in set(families))
    if not families:
        raise ValueError(f"families must be some of {FAMILIES}")
    unknown = set(limits) - set(ImageLimits.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown image limits {sorted(unknown)}; known: {sorted(ImageLimits.__dataclass_fields__)}")
    limit = ImageLimits.from_kwargs(**limits)
    if event_timestamp is None:
        event_timestamp = pd.Timestamp.now(tz="UTC")  # one time for the whole run, not per partition
    source = ImageSource(images, allow_remote=limit.allow_remote, storage_options=storage_options or {})

    catalog_path = workdir / "catalog"
    if not catalog_path.exists():
        raise FileNotFoundError(f"{catalog_path} does not exist: run `imagerank ingest` first")
    needed = {"image_id", "meta_data", *source.fields}
    catalog = dd.read_parquet(str(catalog_path))
    missing = needed - set(catalog.columns) - {"meta_data"}
    if missing:
        raise ValueError(f"the image template uses {sorted(missing)}, not catalog columns")
    catalog = catalog[[c for c in catalog.columns if c in needed]]
    if "meta_data" not in catalog.columns:
        catalog = catalog.assign(meta_data=None)
    targets = {family: workdir / "features" / family for family in families}
    npartitions = (max(1, math.ceil(_row_count(catalog_path) / rows_per_partition)) if rows_per_partition
                   else catalog.npartitions)
    if reuse:
        catalog = _with_previous(catalog, targets, npartitions)
    if npartitions > catalog.npartitions:
        # hash-spread, not split: the pieces of one split read all stay on the worker that read it
        catalog = catalog.shuffle(on="image_id", npartitions=npartitions)
    elif npartitions < catalog.npartitions:
        catalog = catalog.repartition(npartitions=npartitions)

    features = catalog.map_partitions(image_features, source, families, limit, event_timestamp,
                                      meta=IMAGE_FEATURES_META, align_dataframes=False)
    outcomes = features[[c for f in families for c in (f"{f}_error", f"{f}_reused")]].map_partitions(
        _outcome_counts, families, meta=ERROR_COUNTS_META)
    frames = {f: features.map_partitions(family_frame, f, meta=family_frame(IMAGE_FEATURES_META, f))
              for f in families}
    totals = _write_together(client, frames, targets, outcomes, show=progress)
    counts: dict[str, Any] = {}
    for family in families:
        of_family = totals[totals["family"] == family]
        by_code = of_family.groupby("code")["n"].sum()
        counts[family] = {"rows": int(by_code.sum()), "ok": int(by_code.get("ok", 0)),
                          "errors": {str(k): int(v) for k, v in by_code.items() if k != "ok"},
                          "reused": int(of_family.loc[of_family["reused"], "n"].sum()),
                          "path": str(targets[family])}
    return counts


def _with_previous(catalog: dd.DataFrame, targets: dict[str, Path], npartitions: int) -> dd.DataFrame:
    """The catalog with each family's previous rows joined on as ``previous.<family>.<column>``
    (families without a previous dataset, or one written before digests existed, are left out), in
    ``npartitions`` hash partitions when there is something to join."""
    for family, path in targets.items():
        if not path.exists():
            continue
        previous = dd.read_parquet(str(path))
        if "input_digest" not in previous.columns:
            continue
        columns = [c for c in COLUMNS[family] if c != "image_id"]
        previous = previous[["image_id", *columns]].rename(columns={c: f"{PREVIOUS}{family}.{c}" for c in columns})
        catalog = catalog.merge(previous, on="image_id", how="left", npartitions=npartitions)
    return catalog


ERROR_COUNTS_META = pd.DataFrame({"family": pd.Series(dtype="string"), "code": pd.Series(dtype="string"),
                                  "reused": pd.Series(dtype="bool"), "n": pd.Series(dtype="int64")})


def _outcome_counts(outcomes: pd.DataFrame, families: tuple[str, ...]) -> pd.DataFrame:
    """Rows per (family, error code, reused) of one partition; ``ok`` for rows without an error."""
    parts = []
    for family in families:
        keys = pd.DataFrame({"code": outcomes[f"{family}_error"].astype("string").fillna("ok"),
                             "reused": outcomes[f"{family}_reused"].fillna(False).astype(bool)})
        counted = keys.groupby(["code", "reused"], observed=True).size().rename("n").reset_index()
        parts.append(counted.assign(family=family)[list(ERROR_COUNTS_META.columns)])
    return pd.concat(parts, ignore_index=True).astype(ERROR_COUNTS_META.dtypes.to_dict())


def _row_count(path: Path) -> int:
    """Rows of a Parquet dataset from its footers (no data read)."""
    import pyarrow.dataset as ds

    return int(ds.dataset(str(path), format="parquet").count_rows())


def _write_together(client, frames: dict[str, dd.DataFrame], targets: dict[str, Path],
                    errors: dd.DataFrame, show: bool = True) -> pd.DataFrame:
    """Write frames that share one graph and compute their error counts in a single pass over the
    images; each dataset goes to a temporary sibling renamed into place only when all succeeded."""
    with ExitStack() as stack:
        tmp = {f: stack.enter_context(atomic_path(targets[f])) for f in frames}
        writes = [frames[f].to_parquet(str(tmp[f]), write_index=False, schema=SCHEMAS[f], compute=False)
                  for f in frames]
        if client is None:
            *_, totals = dask.compute(*writes, errors)
            return totals
        futures = client.compute([*writes, errors])
        if show:
            from imagerank.cluster import progress_bar

            progress_bar(futures, "features: images")
        return client.gather(futures)[-1]


def template_fields(template: str) -> list[str]:
    """Catalog columns a template refers to (for CLI validation)."""
    return sorted({f.split(".")[0].split("[")[0] for _, f, _, _ in string.Formatter().parse(template) if f})
