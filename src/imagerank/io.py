"""Parquet datasets under the work directory, written so that a killed run never leaves half a dataset.

Every stage writes to ``<name>.tmp-<random>`` next to its target and renames it into place only when
the write has finished; the previous version stays readable until that rename.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``target``; on success it replaces ``target`` in one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        _replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()


def _replace(src: Path, target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(target, old)
        os.rename(src, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, target)


def write_frame(df: pd.DataFrame, target: str | os.PathLike, *, schema: pa.Schema | None = None) -> Path:
    """Write one pandas frame as a single-file Parquet dataset directory, atomically."""
    target = Path(target)
    with atomic_path(target) as tmp:
        tmp.mkdir(parents=True)
        table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
        pq.write_table(table, tmp / "part.0.parquet")
    return target


def write_ddf(ddf, target: str | os.PathLike, *, schema=None) -> Path:
    """Write a Dask DataFrame as a Parquet dataset directory (one file per partition), atomically."""
    target = Path(target)
    with atomic_path(target) as tmp:
        ddf.to_parquet(str(tmp), write_index=False, schema=schema if schema is not None else "infer")
    return target


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
    previous_path = Path(previous_path)
    if not previous_path.is_dir():
        return new
    import dask.dataframe as dd

    previous = dd.read_parquet(previous_path)
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
    """Read a whole dataset into pandas (for small datasets: models, reports, tests)."""
    return pd.read_parquet(path, columns=columns)


def write_json(obj, target: str | os.PathLike) -> Path:
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    os.replace(tmp, target)
    return target
