"""Dask stage: image bytes -> ``W/features/pixels/`` and ``W/features/exif/``.

Reads ``W/catalog/`` lazily, maps :func:`imagerank.features.images.image_features` over its partitions
on the workers (each worker streams one image at a time from the image source), and writes the two
families. When both are asked for, every image is fetched and decoded once: the two Parquet writes are
computed together from the same partition results, each into a temporary sibling renamed into place
only when both have finished (``imagerank.io.atomic_path``, the same mechanism as ``write_ddf``).
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

from imagerank.features.images import (EXIF_COLUMNS, FAMILIES, IMAGE_FEATURES_META, PIXELS_COLUMNS,
                                       ImageLimits, ImageSource, image_features)
from imagerank.features.exif import EXIF_SCHEMA
from imagerank.features.pixels import PIXELS_SCHEMA
from imagerank.io import atomic_path, write_ddf

log = logging.getLogger(__name__)

SCHEMAS = {"pixels": PIXELS_SCHEMA, "exif": EXIF_SCHEMA}
COLUMNS = {"pixels": PIXELS_COLUMNS, "exif": EXIF_COLUMNS}


def run_image_features(client, workdir: str | Path, images: str, families: Iterable[str] = FAMILIES, *,
                       rows_per_partition: int | None = 2_000, progress: bool = True,
                       storage_options: dict | None = None, **limits: Any) -> dict[str, Any]:
    """Compute the pixel and/or EXIF features of every ``W/catalog/`` row; return counts.

    ``images`` is a folder or a template (see :class:`~imagerank.features.images.ImageSource`);
    ``limits`` are :class:`~imagerank.features.images.ImageLimits` fields (``max_bytes``,
    ``max_pixels``, ``timeout_s``, ``allow_remote``). ``rows_per_partition`` splits the catalog into
    tasks of about that many images (load balancing and progress granularity; None keeps the
    catalog's partitions). ``client`` is a ``distributed.Client`` (None: the current default
    scheduler).
    """
    workdir = Path(workdir)
    families = tuple(f for f in FAMILIES if f in set(families))
    if not families:
        raise ValueError(f"families must be some of {FAMILIES}")
    limit = ImageLimits.from_kwargs(**limits)
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
    if rows_per_partition:
        n_rows = int(catalog.map_partitions(len).sum().compute())
        npartitions = max(1, math.ceil(n_rows / rows_per_partition))
        if npartitions != catalog.npartitions:
            catalog = catalog.repartition(npartitions=npartitions)

    features = catalog.map_partitions(image_features, source, families, limit,
                                      meta=IMAGE_FEATURES_META, align_dataframes=False)
    targets = {family: workdir / "features" / family for family in families}
    if len(families) == 1:
        family = families[0]
        part = features[COLUMNS[family]]
        if progress and client is not None:
            _write_with_progress(client, {family: part}, targets)
        else:
            write_ddf(part, targets[family], schema=SCHEMAS[family])
    else:
        _write_with_progress(client, {f: features[COLUMNS[f]] for f in families}, targets,
                             show=progress)
    return _counts(targets)


def _write_with_progress(client, frames: dict[str, dd.DataFrame], targets: dict[str, Path],
                         show: bool = True) -> None:
    """Write several frames that share one graph in a single compute, each atomically."""
    with ExitStack() as stack:
        tmp = {f: stack.enter_context(atomic_path(targets[f])) for f in frames}
        writes = [frames[f].to_parquet(str(tmp[f]), write_index=False, schema=SCHEMAS[f], compute=False)
                  for f in frames]
        if client is None:
            dask.compute(*writes)
            return
        futures = client.compute(writes)
        if show:
            from distributed import progress

            progress(futures)
        client.gather(futures)


def _counts(targets: dict[str, Path]) -> dict[str, Any]:
    """Rows and error codes per family, read back from the written datasets (error column only)."""
    counts: dict[str, Any] = {}
    for family, path in targets.items():
        errors = dd.read_parquet(str(path), columns=[f"{family}_error"])[f"{family}_error"]
        by_code = errors.fillna("ok").value_counts().compute()
        total = int(by_code.sum())
        counts[family] = {"rows": total, "ok": int(by_code.get("ok", 0)),
                          "errors": {str(k): int(v) for k, v in by_code.items() if k != "ok"},
                          "path": str(path)}
    return counts


def template_fields(template: str) -> list[str]:
    """Catalog columns a template refers to (for CLI validation)."""
    return sorted({f.split(".")[0].split("[")[0] for _, f, _, _ in string.Formatter().parse(template) if f})
