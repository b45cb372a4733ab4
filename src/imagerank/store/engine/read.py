"""Reading a FileSource in chunks on the workers: pass 1 (keys and counts, the key ranges of the output
partitions) and the read side of pass 2 (each chunk's latest row per entity, tagged with its key range)."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from feast.value_type import ValueType

from imagerank.store.encoding import encode_entity_keys, to_utc
from imagerank.store.engine.utils import ROW_ORDER, latest_per_entity
from imagerank.store.spec import ENTITY_KEY

PARTITION = "__imagerank_partition"
"""Output partition of a row: the key range its entity key falls in."""


@dataclass(frozen=True)
class ReadSpec:
    """Everything a worker needs to read, filter and deduplicate one chunk of the source."""

    path: str
    row_groups: tuple[int, ...] | None
    chunk: int
    """Position of the chunk in the source (files, then row groups): the source order of its rows."""
    columns: tuple[str, ...]
    rename: tuple[tuple[str, str], ...]
    join_keys: tuple[str, ...]
    ts_col: str
    created_col: str | None
    start: datetime | None
    end: datetime | None
    entity_keys: tuple[tuple[str, int], ...]
    """Join keys after renaming, with their ValueType, for the serialized entity key column."""
    key_version: int
    run_id: str
    """Unique per run: Dask would otherwise hand a re-run the held result (or error) of the same task."""


def plan_reads(uri: str, columns: list[str], partition_rows: int, min_chunks: int = 1):
    """Split a parquet file or dataset directory into (file, row groups) chunks of <= partition_rows,
    and into at least ``min_chunks`` chunks when the row groups allow (every worker reads)."""
    from imagerank import storage

    if storage.is_url(uri):  # object storage through fsspec (endpoint, credentials, --storage-options)
        url_fs, path = storage.filesystem(uri)
        dataset = pads.dataset(path, format="parquet", filesystem=url_fs)
    else:
        dataset = pads.dataset(uri, format="parquet")
    fs = dataset.filesystem
    fragments = [(frag.path, frag.metadata) for frag in dataset.get_fragments()]
    total = sum(md.num_rows for _, md in fragments)
    partition_rows = max(1, min(partition_rows, -(-total // min_chunks)))
    chunks: list[tuple[str, tuple[int, ...] | None]] = []
    for path, md in fragments:
        groups: list[int] = []
        rows = 0
        for i in range(md.num_row_groups):
            n = md.row_group(i).num_rows
            if groups and rows + n > partition_rows:
                chunks.append((path, tuple(groups)))
                groups, rows = [], 0
            groups.append(i)
            rows += n
        if groups or md.num_row_groups == 0:
            chunks.append((path, tuple(groups)))
    missing = [c for c in columns if c not in dataset.schema.names]
    if missing:
        raise ValueError(f"columns {missing} are not in the source {uri} (has {dataset.schema.names})")
    return fs, chunks, dataset.schema


def _in_window(ts: pd.Series, spec: ReadSpec) -> np.ndarray:
    """Rows whose event timestamp lies in [start, end], both ends inclusive as Feast's file store has it."""
    mask = np.ones(len(ts), dtype=bool)
    if spec.start is not None:
        mask &= (ts >= pd.Timestamp(spec.start).tz_convert("UTC")).to_numpy()
    if spec.end is not None:
        mask &= (ts <= pd.Timestamp(spec.end).tz_convert("UTC")).to_numpy()
    return mask


def _read_window(spec: ReadSpec, fs, columns: Sequence[str]) -> tuple[pd.DataFrame, dict[str, int]]:
    """The chunk's rows inside [start, end] with a value in every join key, one per entity (the latest),
    renamed, with their serialized entity key; and the counts of what was read and left out."""
    if spec.row_groups is None:
        table = pq.read_table(spec.path, columns=list(columns), filesystem=fs)
    else:
        frag = pads.ParquetFileFormat().make_fragment(spec.path, filesystem=fs, row_groups=list(spec.row_groups))
        table = frag.to_table(columns=list(columns))
    rows = table.num_rows
    table = table.append_column(ROW_ORDER, pa.array(np.arange(rows, dtype=np.int64) + (spec.chunk << 32)))
    valid = np.ones(rows, dtype=bool)
    for key in spec.join_keys:  # in Arrow: pandas would turn an integer key with nulls into floats
        valid &= table.column(key).is_valid().to_numpy(zero_copy_only=False)
    null_keys = 0
    if not valid.all():
        dropped = to_utc(table.filter(pa.array(~valid)).column(spec.ts_col).to_pandas())
        null_keys = int(_in_window(dropped, spec).sum())
        table = table.filter(pa.array(valid))
    df = table.to_pandas()
    df[spec.ts_col] = to_utc(df[spec.ts_col])
    if spec.created_col:
        df[spec.created_col] = to_utc(df[spec.created_col])
    df = df[_in_window(df[spec.ts_col], spec)]
    in_window = len(df) + null_keys
    df = latest_per_entity(df, spec.join_keys, spec.ts_col, spec.created_col)
    if spec.rename:
        df = df.rename(columns=dict(spec.rename))
    df = df.reset_index(drop=True)
    df[ENTITY_KEY] = encode_entity_keys(df, {k: ValueType(v) for k, v in spec.entity_keys}, spec.key_version)
    return df, {"rows": rows, "in_window": in_window, "null_keys": null_keys, "entities": len(df)}


def summarize_keys(spec: ReadSpec, fs, sample_size: int) -> dict:
    """First pass over a chunk, reading only the key and timestamp columns: its counts, and up to
    ``sample_size`` of its entity keys, evenly spaced in key order, for choosing the key ranges."""
    columns = [c for c in spec.columns if c in {*spec.join_keys, spec.ts_col, spec.created_col}]
    df, counts = _read_window(spec, fs, columns)
    keys = sorted(df[ENTITY_KEY].tolist())
    if len(keys) > sample_size:
        keys = [keys[i] for i in np.linspace(0, len(keys) - 1, sample_size).round().astype(int).tolist()]
    return {**counts, "sample": keys}


def key_boundaries(summaries: Sequence[dict], partitions: int) -> list[bytes]:
    """Entity keys splitting the sampled keys into ``partitions`` ranges of about equal weight (each
    chunk's sample stands for its entities); fewer when there are fewer distinct keys. Partition ``i``
    holds the keys in ``[b[i-1], b[i])``."""
    weighted = sorted((key, s["entities"] / len(s["sample"])) for s in summaries for key in s["sample"])
    if partitions <= 1 or not weighted:
        return []
    cum = np.cumsum([w for _, w in weighted])
    targets = cum[-1] * np.arange(1, partitions) / partitions
    picks = np.minimum(np.searchsorted(cum, targets, side="left") + 1, len(weighted) - 1)
    lowest = weighted[0][0]
    return sorted({weighted[i][0] for i in picks.tolist()} - {lowest})


def read_chunk(spec: ReadSpec, fs, boundaries: Sequence[bytes]) -> pd.DataFrame:
    """Second pass: the chunk's latest row per entity with its output partition (its key range)."""
    df, _ = _read_window(spec, fs, spec.columns)
    bisect = bisect_right
    df[PARTITION] = np.fromiter((bisect(boundaries, k) for k in df[ENTITY_KEY].tolist()),
                                dtype=np.int64, count=len(df))
    return df

