"""Dask stage: image bytes -> ``W/features/pixels/`` and ``W/features/exif/``.

Planned for a catalog of hundreds of millions of rows whose images sit in an object store:

1. **List** the image store once (the template's root prefix, streamed page by page into a temporary
   Parquet listing under the work directory): existence, size and version (ETag) of every image.
2. **Size tasks by work**: ``ceil(listed images / images_per_task)`` tasks (at least ``rows / max_rows_per_task``
   so that no task holds too many catalog rows), each reading its own contiguous slice of ``W/catalog/``
   row groups (no shuffle, no task depending on another's read).
3. **Join** the listing (by path) and the previous run's rows (by ``image_id``; the pixels and EXIF rows
   read side by side, one join for both: :func:`previous_rows`) onto each slice: a listing or previous
   dataset of one file is broadcast to every task; larger ones are hash-joined.
4. **Fetch and decode** in :func:`imagerank.features.images.image_features`: rows the listing settles
   (not listed, too large, unchanged since the last run) cost no request; the rest are fetched many per call,
   bounded by the ``fetch_bytes`` limit per task.
5. **Write** both families from the same partition results into a few large files (adjacent tasks'
   results concatenated, ``rows_per_file`` rows each), each dataset into a new version published by its
   commit record only when both have finished (``imagerank.io.publishing``; local disks and URLs alike).

Incremental: a row whose image is listed with the same path, size and version as before (and, for EXIF,
the same ``meta_data``) is copied without reading the image (see *Reuse* in :mod:`imagerank.features.images`).
"""

from __future__ import annotations

import logging
import math
import string
import uuid
from contextlib import ExitStack, contextmanager
from typing import Any, Iterable, Iterator

import dask
import dask.dataframe as dd
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from imagerank import datasets, io, storage
from imagerank.features.exif import EXIF_SCHEMA
from imagerank.features.image_source import LISTING_SCHEMA
from imagerank.features.images import (EXIF_COLUMNS, FAMILIES, IMAGE_FEATURES_META, LISTED_PATH, PIXELS_COLUMNS,
                                       PREVIOUS, ImageError, ImageLimits, ImageSource, family_frame, image_features)
from imagerank.features.pixels import PIXELS_SCHEMA

log = logging.getLogger(__name__)

SCHEMAS = {"pixels": PIXELS_SCHEMA, "exif": EXIF_SCHEMA}
COLUMNS = {"pixels": PIXELS_COLUMNS, "exif": EXIF_COLUMNS}
#: listing entries per Parquet file of the temporary listing (one file is broadcast to every task)
LISTING_ROWS_PER_FILE = 1_000_000
#: the type of text columns here, as ``dd.read_parquet`` gives them (join keys of one type on both sides)
KEY_DTYPE = pd.StringDtype("pyarrow")


def run_image_features(client, workdir: str, images: str, families: Iterable[str] = FAMILIES, *,
                       images_per_task: int | None = 5_000, max_rows_per_task: int = 250_000,
                       rows_per_file: int = 250_000, progress: bool = True, storage_options: dict | None = None,
                       event_timestamp: Any = None, reuse: bool = True, **limits: Any) -> dict[str, Any]:
    """Compute the pixel and/or EXIF features of every ``W/catalog/`` row; return counts per family.

    ``images`` is a folder or a template (see :class:`~imagerank.features.image_source.ImageSource`);
    ``limits`` are :class:`~imagerank.settings.ImageLimits` fields (``max_bytes``,
    ``max_pixels``, ``timeout_s``, ``allow_remote``, ``fetch_bytes``). ``images_per_task`` is the
    number of listed images one task fetches and decodes (None: one task per catalog file);
    ``max_rows_per_task`` bounds the catalog rows of a task; ``rows_per_file`` sizes the output files.
    ``client`` is a ``distributed.Client`` (None: the current default scheduler). ``event_timestamp``
    (the run's time) is written on every computed row; default: now. ``reuse=False`` recomputes every row
    instead of reusing unchanged ones. Unknown ``limits`` keys are an error.

    Each family's counts: ``rows``, ``ok``, ``errors`` (rows per error code), ``reused``, ``fetched``
    (images requested from the store), ``listed`` (images in the listing), ``tasks``, ``files``, ``path``.
    """
    workdir = storage.absolute(workdir)
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

    catalog_path = datasets.current(workdir, "catalog")  # the committed version: its files do not change under us
    if catalog_path is None:
        raise FileNotFoundError(f"{datasets.location(workdir, 'catalog')} does not exist: run `imagerank ingest` first")
    pieces = catalog_pieces(catalog_path)
    names = _catalog_columns(catalog_path, pieces[0][0]) if pieces else {"image_id", "meta_data"}
    missing = set(source.fields) - names
    if missing:
        raise ValueError(f"the image template uses {sorted(missing)}, not catalog columns")
    columns = sorted({"image_id", "meta_data", *source.fields} & names)
    targets = {family: datasets.location(workdir, family) for family in families}

    with _listing(source, storage.join(workdir, "features", f".image-listing-{uuid.uuid4().hex[:8]}")) as listed:
        location, n_listed = listed
        n_rows = sum(rows for _, _, rows in pieces)
        if images_per_task:
            n_tasks = max(1, math.ceil(n_listed / images_per_task), math.ceil(n_rows / max_rows_per_task))
        else:
            n_tasks = max(1, len({f for f, _, _ in pieces}))
        slices = plan_slices(pieces, n_tasks)
        catalog = joined_catalog(catalog_path, slices, columns, source, location, targets if reuse else {})
        features = catalog.map_partitions(image_features, source, families, limit, event_timestamp,
                                          meta=IMAGE_FEATURES_META, align_dataframes=False)
        n_files = max(1, math.ceil(n_rows / rows_per_file))
        if features.npartitions > n_files:  # adjacent tasks' results into one file: no shuffle
            features = features.repartition(npartitions=n_files)
        outcomes = features[[c for f in families for c in (f"{f}_error", f"{f}_reused")] + ["image_fetched"]
                            ].map_partitions(_outcome_counts, families, meta=ERROR_COUNTS_META)
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
                          "fetched": int(of_family["fetched"].sum()), "listed": n_listed,
                          "tasks": len(slices), "files": features.npartitions, "path": str(targets[family])}
    return counts


# --- the listing ---------------------------------------------------------------------------------------------

@contextmanager
def _listing(source: ImageSource, location: str) -> Iterator[tuple[str | None, int]]:
    """``(location, entries)`` of the image store's listing written as Parquet under ``location`` (removed
    afterwards); ``(None, 0)`` when the template has no listable root (``/`` or a placeholder in the bucket):
    every row's image is then fetched."""
    if source.root in ("", "/"):
        yield None, 0
        return
    fs, path = storage.filesystem(location)
    try:
        n = write_listing(source, fs, path, rows_per_file=LISTING_ROWS_PER_FILE)
        yield location, n
    finally:
        try:
            fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass


def write_listing(source: ImageSource, fs, path: str, rows_per_file: int = LISTING_ROWS_PER_FILE) -> int:
    """Stream ``source.listing()`` into Parquet files of up to ``rows_per_file`` entries under ``path``
    (one empty file when nothing is listed); return the number of entries. Bounded memory: one batch."""
    fs.makedirs(path, exist_ok=True)
    total, in_file, part, writer, handle = 0, 0, 0, None, None
    try:
        for batch in source.listing():
            while batch.num_rows:
                if writer is None or in_file >= rows_per_file:
                    if writer is not None:
                        writer.close()
                        handle.close()
                    handle = fs.open(f"{path}/part.{part}.parquet", "wb")
                    writer, in_file, part = pq.ParquetWriter(handle, LISTING_SCHEMA), 0, part + 1
                piece = batch.slice(0, rows_per_file - in_file)
                writer.write_table(piece)
                in_file += piece.num_rows
                total += piece.num_rows
                batch = batch.slice(piece.num_rows)
        if writer is None:
            handle = fs.open(f"{path}/part.0.parquet", "wb")
            writer = pq.ParquetWriter(handle, LISTING_SCHEMA)
            writer.write_table(LISTING_SCHEMA.empty_table())
    finally:
        if writer is not None:
            writer.close()
            handle.close()
    return total


def with_image_paths(catalog: pd.DataFrame, source: ImageSource) -> pd.DataFrame:
    """The partition with ``image.path``: its image's path in the store (the listing's key), or null when
    the catalog values make no safe path (the partition function reports ``path_escape`` for those)."""
    fields = [c for c in source.fields if c in catalog.columns]
    paths = []
    for row in catalog[fields].to_dict("records") if len(catalog) else []:
        try:
            paths.append(source.path_for(row))
        except ImageError:
            paths.append(None)
    return catalog.assign(**{LISTED_PATH: pd.Series(paths, index=catalog.index, dtype=KEY_DTYPE)})


# --- the catalog in slices -----------------------------------------------------------------------------------

def catalog_pieces(catalog_path: str) -> list[tuple[str, int, int]]:
    """``(file, row group, rows)`` of every row group of a Parquet dataset, from the footers (no data read;
    the footers of all files fetched together: :func:`imagerank.io.parquet_pieces`)."""
    return io.parquet_pieces(catalog_path)


def plan_slices(pieces: list[tuple[str, int, int]], n_tasks: int) -> list[list[tuple[str, int, int, int]]]:
    """Contiguous runs of catalog rows, ``n_tasks`` of them as even as the row counts allow: each a list of
    ``(file, row group, start, stop)``. A task reads only its own row groups."""
    total = sum(rows for _, _, rows in pieces)
    n_tasks = max(1, min(n_tasks, total))
    bounds = [round(total * k / n_tasks) for k in range(n_tasks + 1)]
    slices: list[list[tuple[str, int, int, int]]] = [[] for _ in range(n_tasks)]
    offset, task = 0, 0
    for file, group, rows in pieces:
        start = 0
        while start < rows:
            while bounds[task + 1] <= offset + start and task < n_tasks - 1:
                task += 1
            stop = min(rows, bounds[task + 1] - offset) if task < n_tasks - 1 else rows
            slices[task].append((file, group, start, stop))
            start = stop
        offset += rows
    return [s for s in slices if s] or [[]]


def read_catalog_slice(pieces: list[tuple[str, int, int, int]], catalog_path: str, columns: list[str]) -> pd.DataFrame:
    """The catalog rows of one slice (the needed columns only)."""
    fs, root = storage.filesystem(catalog_path)
    tables = []
    for file, group, start, stop in pieces:
        with fs.open(f"{root.rstrip('/')}/{file}", "rb") as handle:
            parquet = pq.ParquetFile(handle)
            present = [c for c in columns if c in parquet.schema_arrow.names]
            table = parquet.read_row_group(group, columns=present).slice(start, stop - start)
        for name in columns:
            if name not in table.column_names:
                table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
        tables.append(table.select(columns))
    if not tables:
        return _catalog_meta(columns)
    return _to_pandas(pa.concat_tables(tables, promote_options="permissive"), columns)


def _catalog_meta(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=KEY_DTYPE) for c in columns})


def _to_pandas(table: pa.Table, columns: list[str]) -> pd.DataFrame:
    frame = table.to_pandas()
    return frame.astype({c: KEY_DTYPE for c in columns})


def _catalog_columns(catalog_path: str, relative: str) -> set[str]:
    fs, root = storage.filesystem(catalog_path)
    with fs.open(f"{root.rstrip('/')}/{relative}", "rb") as handle:
        return set(pq.read_schema(handle).names)


def joined_catalog(catalog_path: str, slices: list[list[tuple[str, int, int, int]]], columns: list[str],
                   source: ImageSource, listing: str | None, targets: dict[str, str]) -> dd.DataFrame:
    """One partition per slice: its catalog rows (``columns``), the listing's entry joined on by the image's
    path (when there is a listing) and the previous run's rows of ``targets``' families joined on by
    ``image_id`` (one join for all families: :func:`previous_rows`).

    At most two hash joins, each shuffling only what the next step needs: the catalog's own columns
    (``meta_data`` and the template's fields are needed by the partition function, so they travel), the
    listing's size and version; the path, the first join's key, is dropped before the second."""
    catalog = dd.from_map(read_catalog_slice, slices, catalog_path=catalog_path, columns=columns,
                          meta=_catalog_meta(columns), divisions=[None] * (len(slices) + 1),
                          label="catalog-slice", enforce_metadata=False)
    if listing is not None:
        catalog = catalog.map_partitions(with_image_paths, source,
                                         meta=with_image_paths(_catalog_meta(columns), source))
        listed = dd.read_parquet(listing, storage_options=storage.storage_options(listing))
        listed = listed.astype({LISTED_PATH: KEY_DTYPE, "image.version": KEY_DTYPE})
        catalog = catalog.merge(listed, on=LISTED_PATH, how="left", npartitions=catalog.npartitions)
        catalog = catalog.drop(columns=LISTED_PATH)  # the partition function derives paths from the template
    previous = previous_rows(targets)
    if previous is not None:
        catalog = catalog.astype({"image_id": KEY_DTYPE}).merge(previous, on="image_id", how="left",
                                                                npartitions=catalog.npartitions)
    return catalog


def previous_rows(targets: dict[str, str]) -> dd.DataFrame | None:
    """The previous run's rows of every family in ``targets`` that has a dataset with digests, as one frame
    of ``image_id`` and ``previous.<family>.<column>`` columns (None when no family has one).

    The image stage writes its families from the same partitions into files of the same names and rows
    (:func:`_write_together`); when the footers confirm that (same files, same row groups and row counts),
    the families are read side by side, file by file, and the catalog needs one join for all of them,
    not one per family. Otherwise (a family written by another run) they are merged on ``image_id``.
    """
    found: dict[str, tuple[str, list[str], list[tuple[str, int, int]]]] = {}
    for family, target in targets.items():
        path = io.current(target)
        if path is None:
            continue
        pieces = io.parquet_pieces(path)
        names = _catalog_columns(path, pieces[0][0]) if pieces else set()
        if "input_digest" not in names:  # written before digests existed: nothing to reuse
            continue
        found[family] = (path, [c for c in COLUMNS[family] if c != "image_id"], pieces)
    if not found:
        return None
    metas = {family: _previous_meta(family, path, columns) for family, (path, columns, _) in found.items()}
    meta = pd.concat([metas[f] if i == 0 else metas[f].drop(columns="image_id") for i, f in enumerate(found)],
                     axis=1)
    layouts = [pieces for _, _, pieces in found.values()]
    if all(layout == layouts[0] for layout in layouts):
        files = list(dict.fromkeys(file for file, _, _ in layouts[0]))
        reads = {family: (path, columns) for family, (path, columns, _) in found.items()}
        return dd.from_map(read_previous_side_by_side, files, reads=reads, metas=metas, meta=meta,
                           divisions=[None] * (len(files) + 1), label="previous-rows", enforce_metadata=False)
    log.info("previous %s datasets were written apart: merging them on image_id", " and ".join(found))
    frames = [io.read_ddf(path, columns=["image_id", *columns]).rename(columns=_prefixer(family))
              .astype(metas[family].dtypes.to_dict()) for family, (path, columns, _) in found.items()]
    previous = frames[0]
    for frame in frames[1:]:
        previous = previous.merge(frame, on="image_id", how="outer")
    return previous[list(meta.columns)]


def read_previous_side_by_side(file: str, reads: dict[str, tuple[str, list[str]]],
                               metas: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One file name's rows of every family, side by side (``previous.<family>.<column>``).

    The files were written from the same partition, so their ``image_id`` columns are equal and the
    columns are simply put together. Should they differ, the first family's rows are kept and the
    others' joined on by ``image_id`` within the file: a row never appears twice, and a family's
    row found elsewhere only goes unreused (recomputed), never wrong.
    """
    frames = []
    for family, (path, columns) in reads.items():
        fs, root = storage.filesystem(path)
        with fs.open(f"{root.rstrip('/')}/{file}", "rb") as handle:
            table = pq.read_table(handle, columns=["image_id", *columns])
        frames.append(table.to_pandas().rename(columns=_prefixer(family)).astype(metas[family].dtypes.to_dict()))
    out = frames[0]
    for frame in frames[1:]:
        if frame["image_id"].reset_index(drop=True).equals(out["image_id"].reset_index(drop=True)):
            out = pd.concat([out, frame.drop(columns="image_id").set_axis(out.index)], axis=1)
        else:
            out = out.merge(frame.drop_duplicates("image_id"), on="image_id", how="left")
    return out


def _previous_meta(family: str, path: str, columns: list[str]) -> pd.DataFrame:
    """The empty frame of a family's previous rows, typed as Dask reads the dataset (join key as in the catalog)."""
    meta = io.read_ddf(path, columns=["image_id", *columns])._meta.astype({"image_id": KEY_DTYPE})
    return meta.rename(columns=_prefixer(family))


def _prefixer(family: str):
    return lambda c: c if c == "image_id" else f"{PREVIOUS}{family}.{c}"


ERROR_COUNTS_META = pd.DataFrame({"family": pd.Series(dtype="string"), "code": pd.Series(dtype="string"),
                                  "reused": pd.Series(dtype="bool"), "n": pd.Series(dtype="int64"),
                                  "fetched": pd.Series(dtype="int64")})


def _outcome_counts(outcomes: pd.DataFrame, families: tuple[str, ...]) -> pd.DataFrame:
    """Rows (``n``) and fetched images per (family, error code, reused) of one partition; ``ok`` for rows
    without an error."""
    parts = []
    for family in families:
        keys = pd.DataFrame({"code": outcomes[f"{family}_error"].astype("string").fillna("ok"),
                             "reused": outcomes[f"{family}_reused"].fillna(False).astype(bool),
                             "fetched": outcomes["image_fetched"].fillna(False).astype("int64")})
        counted = (keys.groupby(["code", "reused"], observed=True)["fetched"].agg(["size", "sum"])
                   .rename(columns={"size": "n", "sum": "fetched"}).reset_index())
        parts.append(counted.assign(family=family)[list(ERROR_COUNTS_META.columns)])
    return pd.concat(parts, ignore_index=True).astype(ERROR_COUNTS_META.dtypes.to_dict())


def _write_together(client, frames: dict[str, dd.DataFrame], targets: dict[str, str],
                    errors: dd.DataFrame, show: bool = True) -> pd.DataFrame:
    """Write frames that share one graph and compute their error counts in a single pass over the
    images; each dataset is written to a new version, published (``imagerank.io.publishing``) only when all
    succeeded."""
    with ExitStack() as stack:
        tmp = {f: stack.enter_context(io.publishing(targets[f])) for f in frames}
        writes = [frames[f].to_parquet(tmp[f], write_index=False, schema=SCHEMAS[f], compute=False,
                                       row_group_size=io.ROW_GROUP_ROWS, storage_options=storage.storage_options(tmp[f]) or None)
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
