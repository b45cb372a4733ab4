"""Datasets of the work directory, published by commit records so a killed run never leaves half a dataset.

Nothing is renamed into place (object stores cannot rename a prefix atomically). A Parquet dataset whose
logical location is ``<parent>/<name>`` is written as a new *version* under ``<parent>/.<name>.v/<id>/``
(``<id>``: run id if one is set, time, random suffix) and becomes visible only through its commit record,
written last and in one atomic step:

- local disk: ``<parent>/<name>`` is a symbolic link to ``.<name>.v/<id>``, swapped with ``os.replace``
  (plain tools and older readers keep reading ``<parent>/<name>`` as a directory);
- object storage: ``<parent>/.<name>.v/_current.json`` (``{"version": "<id>"}``), one object PUT.

Readers resolve the record once (:func:`current`) and read that version to the end: a commit during the
read does not move them. A killed writer leaves only an unreferenced version, which nobody reads.
Superseded versions are removed after each commit, except the version the commit replaced (a reader that
resolved the record just before the commit may still be reading it); that one goes at the next commit.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from imagerank import storage


RUN_ID_ENV = "IMAGERANK_RUN_ID"  # set by a recalculation: version prefixes carry the run they belong to
VERSIONS_SUFFIX = ".v"
RECORD = "_current.json"
#: Rows per Parquet row group written by the stages: a reader can take any dataset in pieces of at most this
#: many rows (``split_row_groups=True``), whatever rows each file holds.
ROW_GROUP_ROWS = 250_000


def versions_dir(target: str | os.PathLike) -> str:
    """``<parent>/.<name>.v``: where the versions of the dataset at ``target`` live."""
    parent, name = _split(target)
    return storage.join(parent, f".{name}{VERSIONS_SUFFIX}")


def _split(target: str | os.PathLike) -> tuple[str, str]:
    text = storage.absolute(target)
    if storage.is_url(text):
        parent, _, name = text.rstrip("/").rpartition("/")
        return parent, name
    return os.path.dirname(text), os.path.basename(text)


def new_version_id() -> str:
    """Sortable by time; run-scoped when the run id is known; unique."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    run = os.environ.get(RUN_ID_ENV)
    return f"{stamp}-{run + '-' if run else ''}{uuid.uuid4().hex[:8]}"


def current(target: str | os.PathLike) -> str | None:
    """The committed version of the dataset at ``target`` (the location to read), or None if never published.

    A plain directory without a record (written before commit records existed, or by hand) is its own version.
    """
    target = storage.absolute(target)
    if storage.is_url(target):
        record = storage.join(versions_dir(target), RECORD)
        fs, path = storage.filesystem(record)
        try:
            with fs.open(path, "rb") as handle:
                version = json.loads(handle.read())["version"]
        except FileNotFoundError:
            return target if storage.isdir(target) else None
        return storage.join(versions_dir(target), version)
    if os.path.islink(target):
        resolved = os.path.realpath(target)
        return resolved if os.path.exists(resolved) else None
    return target if os.path.exists(target) else None


def committed_version(target: str | os.PathLike) -> str | None:
    """The id of the committed version (None for a plain directory or nothing)."""
    found = current(target)
    if found is None:
        return None
    base = versions_dir(target)
    inside = found.startswith(storage.join(base, "")) if storage.is_url(found) else \
        os.path.dirname(found) == os.path.realpath(base)
    return found.rstrip("/").rsplit("/", 1)[-1] if inside else None


@contextmanager
def publishing(target: str | os.PathLike) -> Iterator[str]:
    """Yield a fresh version location for ``target``; on success commit it (then clean up), on error remove it."""
    version_id = new_version_id()
    version = storage.join(versions_dir(target), version_id)
    fs, path = storage.filesystem(version)
    fs.makedirs(path, exist_ok=True)
    try:
        yield version
    except BaseException:
        _remove(version)
        raise
    commit(target, version_id)


def commit(target: str | os.PathLike, version_id: str) -> None:
    """Make ``version_id`` the dataset's visible version in one atomic step, then remove old versions."""
    target = storage.absolute(target)
    previous = committed_version(target)
    if storage.is_url(target):
        with storage.open_file(storage.join(versions_dir(target), RECORD), "wb") as handle:  # one PUT
            handle.write(json.dumps({"version": version_id, "committed_at": _now()}).encode())
    else:
        parent, name = _split(target)
        if os.path.isdir(target) and not os.path.islink(target):  # a plain directory from before: keep it as a version
            os.rename(target, os.path.join(versions_dir(target), f"00000000T000000000000-plain-{uuid.uuid4().hex[:8]}"))
        link = os.path.join(parent, f".{name}.link-{uuid.uuid4().hex[:8]}")
        os.symlink(os.path.join(f".{name}{VERSIONS_SUFFIX}", version_id), link)
        os.replace(link, target)
    cleanup(target, keep=(version_id, previous))


def cleanup(target: str | os.PathLike, keep: tuple[str | None, ...]) -> list[str]:
    """Remove versions of ``target`` older than every kept one (the committed version and the one it replaced).

    Versions newer than the oldest kept one are left: they may belong to a writer still running.
    """
    kept = [k for k in keep if k]
    if not kept:
        return []
    base = versions_dir(target)
    fs, path = storage.filesystem(base)
    try:
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
    except FileNotFoundError:
        return []
    oldest = min(kept)
    removed = [n for n in names if n != RECORD and n not in kept and n < oldest]
    for name in removed:
        _remove(storage.join(base, name))
    return removed


def _remove(location: str) -> None:
    fs, path = storage.filesystem(location)
    try:
        fs.rm(path, recursive=True)
    except FileNotFoundError:
        pass


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Local only: yield a temporary sibling of ``target`` to fill; on success a directory is published as a
    new version (:func:`commit`), a single file replaces ``target`` with ``os.replace``."""
    target = storage.local_path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if tmp.is_dir():
            version_id = new_version_id()
            Path(versions_dir(target)).mkdir(parents=True, exist_ok=True)
            os.rename(tmp, os.path.join(versions_dir(target), version_id))  # not yet visible: no reader sees it
            commit(target, version_id)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()


def write_frame(df: pd.DataFrame, target: str | os.PathLike, *, schema: pa.Schema | None = None) -> str:
    """Write one pandas frame as a single-file Parquet dataset and publish it."""
    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    with publishing(target) as version:
        fs, path = storage.filesystem(version)
        pq.write_table(table, f"{path}/part.0.parquet", filesystem=fs)
    return current(target)


def write_ddf(ddf, target: str | os.PathLike, *, schema=None, metadata: dict[str, str] | None = None) -> str:
    """Write a Dask DataFrame as a Parquet dataset (one file per partition, each worker its own) and publish it.

    ``metadata``: key/value pairs for every file's footer (committed with the rows they describe)."""
    with publishing(target) as version:
        ddf.to_parquet(version, write_index=False, schema=schema if schema is not None else "infer",
                       row_group_size=ROW_GROUP_ROWS,
                       custom_metadata=metadata, storage_options=storage.storage_options(version) or None)
    return current(target)


def read_ddf(location: str | os.PathLike, columns: list[str] | None = None, **kwargs):
    """A Dask DataFrame over a Parquet location (a resolved version, or a dataset whose record is followed)."""
    import dask.dataframe as dd

    found = current(location) or storage.absolute(location)
    return dd.read_parquet(found, columns=columns, storage_options=storage.storage_options(found) or None, **kwargs)


def with_timestamp(frame: pd.DataFrame, event_timestamp: pd.Timestamp) -> pd.DataFrame:
    """Feast reads every dataset by event time: stamp a partition with the run's timestamp."""
    return frame.assign(event_timestamp=pd.Series([event_timestamp] * len(frame), index=frame.index,
                                                  dtype="datetime64[us, UTC]"))


def stamped_meta(meta: pd.DataFrame) -> pd.DataFrame:
    return meta.assign(event_timestamp=pd.Series(dtype="datetime64[us, UTC]"))


def stamped(ddf, event_timestamp: pd.Timestamp | None):
    """A Dask frame with the ``event_timestamp`` column Feast needs (unchanged when no timestamp is given)."""
    if event_timestamp is None:
        return ddf
    return ddf.map_partitions(with_timestamp, event_timestamp, meta=stamped_meta(ddf._meta))


def row_digest(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """A 64-bit hash of each row's values in ``columns`` (dtype-independent: strings and numbers as values)."""
    values = frame[columns].astype(object).where(frame[columns].notna(), None)
    return pd.util.hash_pandas_object(values, index=False).astype("uint64")


def keep_unchanged_timestamps(new, previous_path: str | os.PathLike, *, key: str = "image_id",
                              carry: tuple[str, ...] = ("event_timestamp",)):
    """Rows whose values equal the previous version's keep its ``carry`` columns (its event_timestamp).

    Feast's ``materialize-incremental`` then writes only what changed since the last run, instead of
    every row of a dataset that was recomputed but came out the same.
    """
    found = current(previous_path)
    if found is None:
        return new
    previous = read_ddf(found)
    values = [c for c in new.columns if c != key and c not in carry and c in previous.columns]
    if not values or not all(c in previous.columns for c in carry):
        return new

    key_dtype = new._meta[key].dtype  # the join key typed as in ``new``: no mixed-dtype merge

    def digest(part: pd.DataFrame, prefix: str) -> pd.DataFrame:
        out = pd.DataFrame({key: part[key].astype(key_dtype), f"{prefix}digest": row_digest(part, values)})
        for column in carry:
            out[f"{prefix}{column}"] = part[column].to_numpy()
        return out

    prev_meta = digest(previous._meta, "previous_")
    old = previous.map_partitions(digest, "previous_", meta=prev_meta)
    merged = new.assign(_digest=new.map_partitions(lambda p: row_digest(p, values), meta=("_digest", "uint64")))
    merged = merged.merge(old, on=key, how="left")

    def choose(part: pd.DataFrame) -> pd.DataFrame:
        same = (part["_digest"] == part["previous_digest"]).fillna(False).to_numpy(dtype=bool)
        for column in carry:
            part[column] = part[column].where(~same, part[f"previous_{column}"].astype(part[column].dtype))
        return part[list(new.columns)]

    return merged.map_partitions(choose, meta=new._meta)


def read_frame(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a whole dataset (its committed version) or Parquet file into pandas (small data: models, reports, tests)."""
    found = current(path) or storage.absolute(path)
    return pd.read_parquet(found, columns=columns, storage_options=storage.storage_options(found) or None)


#: bytes read from the end of each Parquet file in the first request: a footer written by the stages (a few
#: KiB per row group) fits, as in pyarrow's own first read; a larger footer costs that file a second request
FOOTER_TAIL_BYTES = 64 << 10
#: files whose tails are in flight and held at once: bounds the driver's memory (256 x 64 KiB = 16 MiB)
FOOTER_FILES_AT_ONCE = 256
_PARQUET_MAGIC = b"PAR1"


def parquet_row_groups(fs, files: list[str]) -> list[list[int]]:
    """Per file (paths on ``fs``), the row counts of its row groups, read from the footers only.

    At catalog scale a dataset is thousands of objects and a footer request costs tens of milliseconds,
    so the files' tails are fetched together (``fs.cat_ranges``: on object storage one suffix-range GET
    per file, all of a batch in flight at once on fsspec's event loop; on a local disk plain reads), in
    batches of :data:`FOOTER_FILES_AT_ONCE`. Only the counts are kept.
    """
    counts: list[list[int]] = []
    for first in range(0, len(files), FOOTER_FILES_AT_ONCE):
        batch = list(files[first:first + FOOTER_FILES_AT_ONCE])
        tails = _tails(fs, batch, [FOOTER_TAIL_BYTES] * len(batch))
        needed = [_footer_bytes(path, tail) for path, tail in zip(batch, tails)]
        again = [i for i, (tail, n) in enumerate(zip(tails, needed)) if n > len(tail)]  # footer longer than the tail
        for i, tail in zip(again, _tails(fs, [batch[i] for i in again], [needed[i] for i in again])):
            tails[i] = tail
        for path, tail, n in zip(batch, tails, needed):
            if n > len(tail):
                raise ValueError(f"{path}: truncated Parquet file (footer of {n} bytes, file of {len(tail)})")
            meta = pq.read_metadata(pa.BufferReader(tail[-n:]))
            counts.append([meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
    return counts


def _tails(fs, files: list[str], sizes: list[int]) -> list[bytes]:
    if not files:
        return []
    return fs.cat_ranges(files, [-n for n in sizes], [None] * len(files), on_error="raise")


def _footer_bytes(path: str, tail: bytes) -> int:
    """Bytes at the end of a Parquet file that hold its footer (metadata, its length, the magic)."""
    if len(tail) < 12 or tail[-4:] != _PARQUET_MAGIC:
        raise ValueError(f"{path}: not a Parquet file (no {_PARQUET_MAGIC!r} at its end)")
    return int.from_bytes(tail[-8:-4], "little") + 8


def parquet_pieces(location: str | os.PathLike) -> list[tuple[str, int, int]]:
    """``(file relative to location, row group, rows)`` of every row group of the Parquet dataset at a
    resolved location, files in sorted order (see :func:`parquet_row_groups`: footers only, read together)."""
    fs, root = storage.filesystem(location)
    root = root.rstrip("/")
    files = sorted(p for p in fs.find(root) if p.endswith(".parquet"))
    return [(file[len(root) + 1:], group, rows)
            for file, groups in zip(files, parquet_row_groups(fs, files)) for group, rows in enumerate(groups)]


def write_json(obj, target: str | os.PathLike) -> str:
    """Write a small JSON document whole or not at all: ``os.replace`` locally, one PUT on object storage."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str)
    target = storage.absolute(target)
    if storage.is_url(target):
        with storage.open_file(target, "wb") as handle:
            handle.write(text.encode())
        return target
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(target).with_name(f".{Path(target).name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(text)
    os.replace(tmp, target)
    return target


def read_json(location: str | os.PathLike):
    return json.loads(storage.read_text(location))
