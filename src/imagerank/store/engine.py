"""A Feast batch materialization engine that runs on a Dask cluster.

Feast loads it from ``feature_store.yaml``::

    batch_engine:
      type: imagerank.store.engine.DaskEngine
      scheduler_address: null        # or tcp://host:8786; null -> $DASK_SCHEDULER_ADDRESS -> LocalCluster
      partition_rows: 250000         # rows read per task (parquet row groups are grouped up to this)
      write_batch_size: 100000       # entities per online-store transaction / pipeline

so that ``feast materialize`` and ``feast materialize-incremental`` run on Dask:

1. the FileSource's parquet files are split into row-group chunks (at least two per worker thread when
   the row groups allow) read in parallel on the workers, filtered to the materialization window (both
   ends inclusive, as Feast's file offline store does);
2. each chunk keeps its latest row per entity and adds Feast's serialized entity key; a shuffle on that
   key brings every entity's rows into one partition, where the latest row is kept (event timestamp,
   then created timestamp, as Feast's local engine orders them). For SQLite the partitions are key
   ranges (a sort), so that each transaction touches one region of the table's B-trees; otherwise hashes;
3. every partition converts its rows to Feast ``Value`` protobuf bytes column by column (vectorized
   for the scalar types; any other type goes through Feast's own converter) and writes them in batches,
   in the exact key/value layout of Feast's own stores: Redis from the workers, with hand-packed
   non-transactional pipelines; SQLite, which has one writer at a time, by staging every partition in a
   scratch SQLite file on the workers (in parallel, in key order) that the driver publishes into the
   store with one ``INSERT ... SELECT`` transaction per batch; any other online store through its
   ``online_write_batch`` on the workers.

The driver only holds the task graph, one small stats row per partition and (SQLite) a bounded page
cache, so its memory does not grow with the table. Values read back through ``get_online_features`` are identical to what Feast's
local engine writes (the test suite compares both engines byte for byte); the vectorized encoder
checks a sample of every column against Feast's converter and falls back to it on any difference.
Feature views this engine does not handle (non-file sources, transformations, aggregations) are
delegated to Feast's local engine.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sqlite3
import struct
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Optional, Sequence, Union

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from pydantic import StrictInt, StrictStr

from feast import BatchFeatureView, Entity, FeatureView, OnDemandFeatureView, StreamFeatureView
from feast.infra.common.materialization_job import (
    MaterializationJob,
    MaterializationJobStatus,
    MaterializationTask,
)
from feast.infra.compute_engines.base import ComputeEngine
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import FeastConfigBaseModel
from feast.value_type import ValueType

log = logging.getLogger(__name__)

ENGINE_TYPE = "imagerank.store.engine.DaskEngine"
STATS_META = pd.DataFrame({"rows_in": pd.Series(dtype="int64"), "entities": pd.Series(dtype="int64"),
                           "written": pd.Series(dtype="int64"), "seconds": pd.Series(dtype="float64"),
                           "staged": pd.Series(dtype=object)})
"""Schema of the per-partition stats frame the write step returns (``staged``: the SQLite staging file
the driver publishes, None when the worker wrote to the store itself)."""


class DaskEngineConfig(FeastConfigBaseModel):
    """``batch_engine:`` block of feature_store.yaml for :class:`DaskEngine`."""

    type: Literal["imagerank.store.engine.DaskEngine"] = ENGINE_TYPE
    scheduler_address: Optional[StrictStr] = None
    """Dask scheduler to use; None -> $DASK_SCHEDULER_ADDRESS, an active Client, else a LocalCluster."""
    n_workers: Optional[StrictInt] = None
    """Worker processes of the LocalCluster started when no scheduler is given (None: one per core)."""
    partition_rows: StrictInt = 250_000
    """Upper bound of source rows read by one task (whole parquet row groups are grouped up to it)."""
    output_partitions: Optional[StrictInt] = None
    """Partitions after the shuffle on the join keys (None: as many as read tasks, and at least two per
    worker thread, so that one worker encodes a partition while another writes)."""
    write_batch_size: StrictInt = 100_000
    """Entities per online-store write (one SQLite transaction / one Redis round of pipelines). Large
    batches matter for SQLite: each commit writes (through the WAL) every page the batch touched."""
    retries: StrictInt = 2
    """Dask retries of a failed task (on top of the scheduler's retries after a worker death)."""
    direct_write: bool = True
    """Write SQLite and plain Redis stores in Feast's layout directly; False: always online_write_batch."""
    sqlite_wal: bool = True
    """Switch the SQLite online store to WAL journaling (readers are not blocked while writing), with
    ``synchronous=FULL``: every commit is durable, as in Feast's default rollback-journal store. The WAL
    is checkpointed into the database file and truncated at the end of every run."""


@dataclass
class DaskMaterializationJob(MaterializationJob):
    _job_id: str
    _status: MaterializationJobStatus
    _error: Optional[BaseException] = None
    rows_read: int = 0
    entities_written: int = 0
    seconds: float = 0.0

    def status(self) -> MaterializationJobStatus:
        return self._status

    def error(self) -> Optional[BaseException]:
        return self._error

    def should_be_retried(self) -> bool:
        return False

    def job_id(self) -> str:
        return self._job_id

    def url(self) -> Optional[str]:
        return None


# --------------------------------------------------------------------------------------------------
# cluster


_CLUSTER_LOCK = threading.Lock()
_OWN_CLUSTER: dict[str, Any] = {}


def _close_own_cluster() -> None:
    client = _OWN_CLUSTER.pop("client", None)
    cluster = _OWN_CLUSTER.pop("cluster", None)
    for obj in (client, cluster):
        if obj is not None:
            try:
                obj.close()
            except Exception:  # noqa: BLE001
                pass


def import_worker_modules() -> None:
    """Import what the engine's tasks run on a worker (``dask.dataframe`` alone takes ~1 s): done once when
    the engine starts its cluster, instead of inside the first shuffle task of the first run."""
    import dask.dataframe  # noqa: F401
    import feast.feature_view  # noqa: F401

    import imagerank.store.engine  # noqa: F401


def _get_client(config: DaskEngineConfig):
    from distributed import Client, LocalCluster, default_client

    from imagerank.cluster import unlock_dask_cached_properties

    unlock_dask_cached_properties()  # Python 3.11 cached_property locks can deadlock dask (see there)

    address = config.scheduler_address or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        return Client(address, set_as_default=False), True
    try:
        return default_client(), False
    except ValueError:
        pass
    with _CLUSTER_LOCK:
        if "client" not in _OWN_CLUSTER:
            n = config.n_workers or max(1, os.cpu_count() or 1)
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
            _OWN_CLUSTER["cluster"] = cluster
            _OWN_CLUSTER["client"] = Client(cluster, set_as_default=False)
            _OWN_CLUSTER["client"].run(import_worker_modules)
            atexit.register(_close_own_cluster)
        return _OWN_CLUSTER["client"], False


# --------------------------------------------------------------------------------------------------
# planning: what to read


@dataclass(frozen=True)
class ReadSpec:
    """Everything a worker needs to read, filter and deduplicate one chunk of the source."""

    path: str
    row_groups: tuple[int, ...] | None
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


ENTITY_KEY = "__imagerank_entity_key"
"""Column of Feast's serialized entity key, added by the read tasks: the write tasks partition, deduplicate
and write by it."""


def _plan_reads(uri: str, columns: list[str], partition_rows: int, min_chunks: int = 1):
    """Split a parquet file or dataset directory into (file, row groups) chunks of <= partition_rows,
    and into at least ``min_chunks`` chunks when the row groups allow (every worker reads)."""
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


def _utc(ts: pd.Series) -> pd.Series:
    if not pd.api.types.is_datetime64_any_dtype(ts):
        ts = pd.to_datetime(ts, utc=True)
    if ts.dt.tz is None:
        return ts.dt.tz_localize("UTC")
    return ts.dt.tz_convert("UTC")


def _latest_per_entity(df: pd.DataFrame, join_keys: Sequence[str], ts_col: str,
                       created_col: str | None) -> pd.DataFrame:
    """Keep each entity's row with the latest event timestamp (then created timestamp)."""
    if df.empty:
        return df
    sort_cols = [ts_col] + ([created_col] if created_col else [])
    df = df.sort_values(sort_cols, ascending=False, kind="stable")
    return df.drop_duplicates(subset=list(join_keys), keep="first")


def read_chunk(spec: ReadSpec, fs, columns: list[str] | None = None) -> pd.DataFrame:
    """Read one chunk, keep the rows inside [start, end] and the latest row per entity.

    ``columns`` is Dask's column projection: the pass that finds the key ranges only asks for the entity
    key, and then only the join key and timestamp columns are read.
    """
    read = list(spec.columns)
    if columns is not None:
        source_name = {new: old for old, new in spec.rename}
        needed = {*spec.join_keys, spec.ts_col, spec.created_col, *(source_name.get(c, c) for c in columns)}
        read = [c for c in read if c in needed]
    fmt = pads.ParquetFileFormat()
    if spec.row_groups is None:
        table = pq.read_table(spec.path, columns=read, filesystem=fs)
    else:
        frag = fmt.make_fragment(spec.path, filesystem=fs, row_groups=list(spec.row_groups))
        table = frag.to_table(columns=read)
    df = table.to_pandas()
    df[spec.ts_col] = _utc(df[spec.ts_col])
    if spec.created_col:
        df[spec.created_col] = _utc(df[spec.created_col])
    mask = pd.Series(True, index=df.index)
    if spec.start is not None:
        mask &= df[spec.ts_col] >= pd.Timestamp(spec.start).tz_convert("UTC")
    if spec.end is not None:
        mask &= df[spec.ts_col] <= pd.Timestamp(spec.end).tz_convert("UTC")
    df = df[mask.to_numpy()]
    df = _latest_per_entity(df, spec.join_keys, spec.ts_col, spec.created_col)
    if spec.rename:
        df = df.rename(columns=dict(spec.rename))
    df = df.reset_index(drop=True)
    df[ENTITY_KEY] = encode_entity_keys(df, {k: ValueType(v) for k, v in spec.entity_keys}, spec.key_version)
    return df if columns is None else df[list(columns)]


# --------------------------------------------------------------------------------------------------
# encoding: pandas columns -> serialized feast Value protos, the way Feast's converter does it


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


_SMALL_VARINT = [_varint(i) for i in range(1 << 14)]


def _varints(values: np.ndarray, tag: int) -> list[bytes]:
    """``tag + varint(v)`` for an int64 array (two's complement, as protobuf encodes int32/int64)."""
    u = values.astype(np.int64).view(np.uint64)
    n = len(u)
    mat = np.zeros((n, 11), dtype=np.uint8)
    mat[:, 0] = tag
    groups = np.ones(n, dtype=np.int64)
    rest = u.copy()
    for i in range(10):
        byte = (rest & np.uint64(0x7F)).astype(np.uint8)
        rest = rest >> np.uint64(7)
        more = rest != 0
        mat[:, i + 1] = byte | (more.astype(np.uint8) << np.uint8(7))
        groups = np.where(more, i + 2, groups)
        if not more.any():
            break
    buf = mat.tobytes()
    return [buf[i * 11:i * 11 + ln + 1] for i, ln in enumerate(groups.tolist())]


def _fixed(values: np.ndarray, tag: int, dtype: str) -> list[bytes]:
    rec = np.empty(len(values), dtype=[("t", "u1"), ("v", dtype)])
    rec["t"] = tag
    rec["v"] = values
    return _fixed_width(rec)


def _len_delimited(payloads: list, tag: bytes) -> list[bytes]:
    small = _SMALL_VARINT
    out = []
    for p in payloads:
        ln = len(p)
        out.append(tag + (small[ln] if ln < 16384 else _varint(ln)) + p)
    return out


def _feast_arrow_column(series: pd.Series) -> pa.Array:
    """The column as Feast's local engine holds it (pandas frame -> arrow, one chunk)."""
    return pa.Array.from_pandas(series)


def _feast_numpy(series: pd.Series) -> np.ndarray:
    """``table.column(c).to_numpy(zero_copy_only=False)`` in Feast's ``_columns_to_proto_values``."""
    return _feast_arrow_column(series).to_numpy(zero_copy_only=False)


def _reference_values(series: pd.Series, value_type: ValueType) -> list[bytes]:
    from feast.type_map import python_values_to_proto_values

    return [v.SerializeToString() for v in python_values_to_proto_values(_feast_numpy(series), value_type)]


def _fast_values(series: pd.Series, value_type: ValueType, with_text: bool) -> tuple[list[bytes], list | None] | None:
    """Vectorized encoding of one column; (value bytes, SQLite value_text or None) or None if not handled.

    The text (``str`` of every number, as Feast's SQLite store keeps it) costs more than the encoding
    itself, so it is only made when asked for.
    """
    arr = _feast_arrow_column(series)
    t = arr.type
    n = len(arr)
    if value_type in (ValueType.DOUBLE, ValueType.FLOAT):
        if not (pa.types.is_floating(t) or pa.types.is_integer(t)):
            return None
        if value_type == ValueType.DOUBLE and not (t == pa.float64() or t == pa.int64()):
            return None  # Feast asserts on other numeric types: let its converter decide
        vals = arr.to_numpy(zero_copy_only=False).astype(np.float64)
        null = np.isnan(vals)
        if value_type == ValueType.DOUBLE:
            enc = _fixed(vals, 0x29, "<f8")
            shown = vals
        else:
            f32 = vals.astype(np.float32)
            enc = _fixed(f32, 0x35, "<f4")
            shown = f32.astype(np.float64)
        text = list(map(repr, shown.tolist())) if with_text else None
    elif value_type in (ValueType.INT64, ValueType.INT32):
        if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
            return None
        raw = arr.to_numpy(zero_copy_only=False)
        if raw.dtype.kind == "f":
            null = np.isnan(raw)
            vals = np.where(null, 0, raw).astype(np.int64)
        else:
            null = np.zeros(n, dtype=bool)
            if raw.dtype == np.uint64 and (raw > np.iinfo(np.int64).max).any():
                return None
            vals = raw.astype(np.int64)
        if value_type == ValueType.INT32 and ((vals < -(2 ** 31)) | (vals >= 2 ** 31)).any():
            return None
        enc = _varints(vals, 0x20 if value_type == ValueType.INT64 else 0x18)
        text = list(map(str, vals.tolist())) if with_text else None
    elif value_type == ValueType.BOOL:
        if not pa.types.is_boolean(t):
            return None
        null = arr.is_null().to_numpy(zero_copy_only=False)
        vals = arr.fill_null(False).to_numpy(zero_copy_only=False)
        enc = [b"\x38\x01" if v else b"\x38\x00" for v in vals.tolist()]
        text = ["True" if v else "False" for v in vals.tolist()] if with_text else None
    elif value_type == ValueType.STRING:
        if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
            return None
        null = arr.is_null().to_numpy(zero_copy_only=False)
        strs = arr.fill_null("").to_pylist()
        enc = _len_delimited([s.encode("utf-8") for s in strs], b"\x12")
        text = strs if with_text else None
    elif value_type == ValueType.BYTES:
        if not (pa.types.is_binary(t) or pa.types.is_large_binary(t)):
            return None
        null = arr.is_null().to_numpy(zero_copy_only=False)
        enc = _len_delimited(arr.fill_null(b"").to_pylist(), b"\x0a")
        text = [None] * n if with_text else None
    elif value_type == ValueType.UNIX_TIMESTAMP:
        if not pa.types.is_timestamp(t):
            return None
        raw = arr.to_numpy(zero_copy_only=False)
        if raw.dtype.kind != "M":
            return None
        secs = raw.astype("datetime64[s]").astype(np.int64)  # NaT -> INT64_MIN, as Feast does
        if arr.null_count == n:
            null = np.ones(n, dtype=bool)
        else:
            null = np.zeros(n, dtype=bool)
        enc = _varints(secs, 0x40)
        text = [None] * n if with_text else None
    else:
        return None
    if null.any():
        for i in np.flatnonzero(null).tolist():
            enc[i] = b""
            if text is not None:
                text[i] = None
    return enc, text


def _check_sample(series: pd.Series, value_type: ValueType, enc: list[bytes]) -> bool:
    """Compare a sample of the fast encoding (head, tail, nulls) with Feast's own converter."""
    n = len(series)
    if n == 0:
        return True
    idx = set(range(min(n, 32))) | set(range(max(0, n - 8), n))
    nulls = np.flatnonzero(series.isna().to_numpy())[:16].tolist()
    idx |= set(nulls)
    # Feast picks its type-check sample from the first non-null value: keep that row in the sample
    notnull = np.flatnonzero(~series.isna().to_numpy())
    if len(notnull):
        idx.add(int(notnull[0]))
    order = sorted(idx)
    sub = series.iloc[order].reset_index(drop=True)
    try:
        ref = _reference_values(sub, value_type)
    except Exception:  # noqa: BLE001
        return False
    # all-null columns: Feast's converter short-circuits per batch, keep its answer
    return all(ref[j] == enc[i] for j, i in enumerate(order))


def encode_column(series: pd.Series, value_type: ValueType,
                  with_text: bool = True) -> tuple[list[bytes], list | None]:
    """Serialized Value protos of a column, plus the SQLite ``value_text`` of each value when asked for."""
    fast = _fast_values(series, value_type, with_text)
    if fast is not None and _check_sample(series, value_type, fast[0]):
        if value_type == ValueType.UNIX_TIMESTAMP and series.isna().all():
            return [b""] * len(series), ([None] * len(series) if with_text else None)
        return fast
    from feast.infra.online_stores.helpers import extract_text_and_num
    from feast.type_map import python_values_to_proto_values

    protos = python_values_to_proto_values(_feast_numpy(series), value_type)
    text = [extract_text_and_num(p, False)[0] for p in protos] if with_text else None
    return [p.SerializeToString() for p in protos], text


def encode_entity_keys(df: pd.DataFrame, join_keys: dict[str, ValueType], version: int) -> list[bytes]:
    """``serialize_entity_key`` of every row (vectorized for one string or int64 join key)."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
    from feast.type_map import python_values_to_proto_values

    names = list(join_keys)
    n = len(df)
    if version >= 3 and len(names) == 1 and n:
        name = names[0]
        col = df[name]
        kname = name.encode("utf8")
        prefix = struct.pack("<I", 1) + struct.pack("<I", ValueType.STRING.value) + struct.pack("<I", len(kname)) + kname
        out = None
        vt = join_keys[name]
        if vt == ValueType.STRING and not col.isna().any():
            out = _string_keys(prefix + struct.pack("<I", ValueType.STRING.value), col)
        elif vt == ValueType.INT64 and col.dtype.kind == "i":
            p = prefix + struct.pack("<I", ValueType.INT64.value) + struct.pack("<I", 8)
            rec = np.empty(n, dtype=[("p", f"V{len(p)}"), ("v", "<i8")])
            rec["p"] = np.frombuffer(p, dtype=f"V{len(p)}")[0]
            rec["v"] = col.to_numpy()
            out = _fixed_width(rec)
        if out is not None:
            first = python_values_to_proto_values(_feast_numpy(col.iloc[:1]), vt)[0]
            ref = serialize_entity_key(EntityKeyProto(join_keys=names, entity_values=[first]),
                                       entity_key_serialization_version=version)
            if ref == out[0]:
                return out
    values = {k: python_values_to_proto_values(_feast_numpy(df[k]), vt) for k, vt in join_keys.items()}
    return [serialize_entity_key(EntityKeyProto(join_keys=names, entity_values=[values[k][i] for k in names]),
                                 entity_key_serialization_version=version) for i in range(n)]


def _fixed_width(records: np.ndarray) -> list[bytes]:
    """Each record of a structured array as one ``bytes``."""
    width = records.dtype.itemsize
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(records),
                                                [None, pa.py_buffer(records.tobytes())]).to_pylist()


def _string_keys(prefix: bytes, col: pd.Series) -> list[bytes]:
    """``prefix + le32(len) + utf8`` of every value, in Arrow (a Python loop cost half the read task)."""
    try:
        values = pa.array(col.to_numpy(dtype=object), pa.large_string()).cast(pa.large_binary())
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # not all str: as Feast's converter would see them
        return [prefix + struct.pack("<I", len(b)) + b for b in (str(v).encode("utf8") for v in col.tolist())]
    lengths = pc.binary_length(values).to_numpy(zero_copy_only=False).astype("<u4")
    length_bytes = pa.FixedSizeBinaryArray.from_buffers(pa.binary(4), len(values),
                                                        [None, pa.py_buffer(lengths.tobytes())])
    return pc.binary_join_element_wise(pa.scalar(prefix, pa.large_binary()), length_bytes.cast(pa.large_binary()),
                                       values, pa.scalar(b"", pa.large_binary())).to_pylist()


def _py_datetimes(ts: pd.Series) -> list[datetime]:
    """Naive-UTC python datetimes (microseconds), as Feast's ``_coerce_datetime``/``to_naive_utc`` give."""
    us = _utc(ts).dt.tz_localize(None).to_numpy().astype("datetime64[us]")
    return us.tolist()


# --------------------------------------------------------------------------------------------------
# writers (run on the workers)


@dataclass(frozen=True)
class WriteSpec:
    repo_config: Any
    feature_view_proto: bytes
    join_keys: tuple[tuple[str, int], ...]
    features: tuple[tuple[str, int], ...]
    ts_col: str
    created_col: str | None
    batch_size: int
    mode: str  # "sqlite" | "redis" | "generic"
    sqlite_path: str | None
    sqlite_table: str | None
    sqlite_wal: bool
    stage_dir: str | None
    run_id: str
    """Directory of the run's SQLite staging files (beside the store: the workers share its disk)."""


_FV_CACHE: dict[bytes, FeatureView] = {}
_STORE_CACHE: dict[int, Any] = {}


def _feature_view(spec: WriteSpec) -> FeatureView:
    fv = _FV_CACHE.get(spec.feature_view_proto)
    if fv is None:
        from feast.protos.feast.core.FeatureView_pb2 import FeatureView as FeatureViewProto

        fv = FeatureView.from_proto(FeatureViewProto.FromString(spec.feature_view_proto))
        _FV_CACHE[spec.feature_view_proto] = fv
    return fv


def _fault_point(stage: str) -> None:
    """Fault injection for the test suite: die once at ``stage`` when $IMAGERANK_ENGINE_FAULT names a file."""
    marker = os.environ.get("IMAGERANK_ENGINE_FAULT")
    if marker and os.path.exists(marker):
        try:
            if Path(marker).read_text().strip() != stage:
                return
            os.unlink(marker)
        except FileNotFoundError:  # another process took it
            return
        os._exit(17)


def write_partition(df: pd.DataFrame, spec: WriteSpec) -> pd.DataFrame:
    """Keep the latest row per entity, encode it and write it to the online store in batches (SQLite:
    stage it for the driver to publish)."""
    t0 = time.perf_counter()
    rows_in = len(df)
    df = _latest_per_entity(df, [ENTITY_KEY], spec.ts_col, spec.created_col)
    written, staged = 0, None
    _fault_point("write")
    if spec.mode == "sqlite":
        staged = _stage_sqlite(df.sort_values(ENTITY_KEY).reset_index(drop=True), spec)
    else:
        df = df.reset_index(drop=True)
        write = _write_redis if spec.mode == "redis" else _write_generic
        for start in range(0, len(df), spec.batch_size):
            written += write(df.iloc[start:start + spec.batch_size].reset_index(drop=True), spec)
    return pd.DataFrame({"rows_in": [rows_in], "entities": [len(df)], "written": [written],
                         "seconds": [time.perf_counter() - t0], "staged": [staged]}).astype(
        STATS_META.dtypes.to_dict())


def _encode_batch(batch: pd.DataFrame, spec: WriteSpec, with_text: bool):
    """(entity keys, {feature: (values, texts)})."""
    cols = {name: encode_column(batch[name], ValueType(vt), with_text) for name, vt in spec.features}
    return batch[ENTITY_KEY].tolist(), cols


def _sqlite_ts(ts: pd.Series) -> list[int]:
    """What Feast's registered sqlite adapter stores for the naive-UTC datetime: ``int(dt.timestamp())``."""
    return [int(d.timestamp()) for d in _py_datetimes(ts)]


_STAGE_FEATURES = 32
"""Features per staging row: wider views stage groups of features in several tables, so that the CASE
that unpivots a row stays short."""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _pick(prefix: str, n: int) -> str:
    """The staging column ``<prefix><i>`` of the feature being unpivoted (``n.i``)."""
    return "CASE n.i " + " ".join(f"WHEN {j} THEN s.{prefix}{j}" for j in range(n)) + " END"


def _feature_groups(spec: WriteSpec) -> list[list[str]]:
    names = sorted(name for name, _ in spec.features)
    return [names[i:i + _STAGE_FEATURES] for i in range(0, len(names), _STAGE_FEATURES)]


def _stage_sqlite(df: pd.DataFrame, spec: WriteSpec) -> str:
    """Encode a partition into a staging SQLite file in the run's staging directory; return its path.

    One staging row per entity (entity key, timestamps, then value and text of each feature), in
    entity-key order, so that rowid ranges are key ranges. This is the costly part of a SQLite write
    (Feast's protobuf values and texts, and binding them), and it runs on every worker at once; the
    driver's :class:`SqlitePublisher` then moves the rows into Feast's table inside SQLite. Binding a
    wide row costs a fifth of binding one row per feature. Blobs are bound as ``bytearray``, which
    Python 3.11's sqlite3 binds directly (``bytes`` first goes through a failing adapter lookup).
    """
    path = os.path.join(spec.stage_dir, f"{uuid.uuid4().hex}.db")  # a retried task writes a new file
    groups = _feature_groups(spec)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = OFF")  # scratch: the publish reads it only once complete
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN")
        for g, group in enumerate(groups):
            slots = ", ".join(f"v{j}, t{j}" for j in range(len(group)))
            conn.execute(f"CREATE TABLE stage_{g} (entity_key, event_ts, created_ts, {slots})")
            conn.execute(f"CREATE TABLE names_{g} (i INTEGER PRIMARY KEY, name TEXT)")
            conn.executemany(f"INSERT INTO names_{g} VALUES (?, ?)", enumerate(group))
        for start in range(0, len(df), spec.batch_size):
            batch = df.iloc[start:start + spec.batch_size].reset_index(drop=True)
            ek, cols = _encode_batch(batch, spec, with_text=True)
            ts = _sqlite_ts(batch[spec.ts_col])
            created = _sqlite_ts(batch[spec.created_col]) if spec.created_col else None
            for g, group in enumerate(groups):
                columns = [map(bytearray, ek), ts] + ([created] if created else [])
                for name in group:
                    columns += [map(bytearray, cols[name][0]), cols[name][1]]
                marks = "?, ?, " + ("?" if created else "NULL") + ", ?" * (2 * len(group))
                conn.executemany(f"INSERT INTO stage_{g} VALUES ({marks})", zip(*columns))
        conn.execute("COMMIT")
    return path


def _new_stage_dir(db_path: str) -> str:
    """A fresh staging directory beside the store (the workers write there, the driver reads), named by
    this host and process. Ones left by killed runs are removed: those of dead processes on this host,
    and any older than a day."""
    import shutil
    import socket
    import tempfile

    root = Path(db_path).parent / f".{Path(db_path).name}.staging"
    root.mkdir(exist_ok=True)
    host = socket.gethostname().replace("-", "_")
    for old in root.iterdir():
        with contextlib.suppress(OSError, ValueError):
            _, owner_host, owner_pid, _ = old.name.split("-", 3)
            dead = owner_host == host and not _process_alive(int(owner_pid))
            if dead or old.stat().st_mtime < time.time() - 86400:
                shutil.rmtree(old, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"run-{host}-{os.getpid()}-", dir=root)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stage_dir(stage_dir: str) -> None:
    import shutil

    shutil.rmtree(stage_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(stage_dir))  # only when no other run is staging there


def _publish_staged(parts: list, spec: WriteSpec) -> pd.DataFrame:
    """Publish the staged partitions in partition order, each as soon as it is staged.

    Partitions are key ranges in ascending order, so the store's B-trees grow at one edge; the workers
    keep staging the next partitions meanwhile. A failed partition cancels the rest: what was published
    stays (each batch is its own transaction, as in Feast's engine) and a re-run overwrites it.
    """
    publisher = SqlitePublisher(spec)
    frames = []
    try:
        for future in parts:
            stats = future.result()
            stats["written"] = [publisher.publish(path, n) if path else 0
                                for path, n in zip(stats["staged"], stats["entities"])]
            frames.append(stats)
            _fault_point("publish")
    except BaseException:
        for future in parts:
            future.cancel()
        raise
    finally:
        publisher.close()
    return pd.concat(frames, ignore_index=True) if frames else STATS_META.copy()


class SqlitePublisher:
    """The one connection that writes Feast's SQLite table: staged partitions, one transaction per batch.

    A single writer keeps its page cache: with one connection per worker, every commit by one worker
    made SQLite drop the other's whole cache, and each transaction started by re-reading its B-tree
    pages (measured: 2.5-4 s instead of 1.4 s per 50k entities x 10 features). The staged rows are
    unpivoted into (entity_key, feature_name) rows in key order by one ``INSERT ... SELECT`` per
    feature group, inside SQLite, with Feast's upsert.
    """

    def __init__(self, spec: WriteSpec):
        self.spec = spec
        self.conn = sqlite3.connect(spec.sqlite_path, timeout=120, isolation_level=None)
        self.conn.execute("PRAGMA busy_timeout = 120000")
        if spec.sqlite_wal:
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = FULL")  # every commit on disk, as in Feast's store
        self.conn.execute("PRAGMA cache_size = -65536")  # 64 MiB: key order keeps the B-tree pages touched few
        target = _quote(spec.sqlite_table)
        self.statements = [
            f"INSERT INTO main.{target} (entity_key, feature_name, value, value_text, event_ts, created_ts) "
            f"SELECT s.entity_key, n.name, {_pick('v', len(group))}, {_pick('t', len(group))}, s.event_ts, "
            f"s.created_ts FROM stage.stage_{g} AS s CROSS JOIN stage.names_{g} AS n "
            "WHERE s.rowid BETWEEN ? AND ? ORDER BY s.rowid, n.i "  # CROSS JOIN: the scan order, no sort
            "ON CONFLICT(entity_key, feature_name) DO UPDATE SET value = excluded.value, "
            "value_text = excluded.value_text, event_ts = excluded.event_ts, created_ts = excluded.created_ts"
            for g, group in enumerate(_feature_groups(spec))]

    def publish(self, staged: str, entities: int) -> int:
        """Move a staged partition into the store, ``batch_size`` entities per transaction."""
        self.conn.execute("ATTACH DATABASE ? AS stage", (staged,))
        try:
            for first in range(1, entities + 1, self.spec.batch_size):
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    for sql in self.statements:
                        self.conn.execute(sql, (first, first + self.spec.batch_size - 1))
                    self.conn.execute("COMMIT")
                except BaseException:
                    self.conn.execute("ROLLBACK")
                    raise
        finally:
            self.conn.execute("DETACH DATABASE stage")
        os.unlink(staged)
        return entities

    def close(self) -> None:
        """Copy the WAL back into the database file and truncate it: lookups then read the file alone."""
        try:
            if self.spec.sqlite_wal:
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self.conn.close()


def _redis_client(spec: WriteSpec):
    from feast.infra.online_stores.redis import RedisOnlineStore

    cache_key = ("redis", spec.repo_config.online_store.connection_string)
    client = _STORE_CACHE.get(cache_key)
    if client is None:
        client = RedisOnlineStore()._get_client(spec.repo_config.online_store)
        _STORE_CACHE[cache_key] = client
    return client


_BULK = pa.large_binary()


def _literal(value: bytes) -> pa.Scalar:
    return pa.scalar(value, _BULK)


def _concat(*parts) -> pa.Array:
    """Row-wise concatenation of binary arrays and literals, in Arrow (no Python object per row)."""
    return pc.binary_join_element_wise(*parts, _literal(b""))


def _bulk_strings(values) -> pa.Array:
    """Each value as a RESP bulk string, ``$<length>\r\n<value>\r\n``."""
    values = pa.array(values, _BULK) if not isinstance(values, pa.Array) else values.cast(_BULK)
    lengths = pc.cast(pc.binary_length(values), pa.string()).cast(_BULK)
    return _concat(_literal(b"$"), lengths, _literal(b"\r\n"), values, _literal(b"\r\n"))


def _resp(value: bytes) -> pa.Scalar:
    return _literal(b"$%d\r\n%b\r\n" % (len(value), value))


_REDIS_ROUND = 10_000
"""Commands sent before their replies are read (bounds the client's buffers)."""


def _read_replies(conn, n: int) -> list:
    """The next ``n`` replies on the connection; an error reply is returned as its exception.

    With hiredis, straight from its reader: redis-py's per-reply ``read_response`` costs ~8 us, which
    was more than the server spends on the HSET itself.
    """
    parser = getattr(conn, "_parser", None)
    reader = getattr(parser, "_reader", None)
    if reader is None or not hasattr(parser, "read_from_socket"):
        from redis.exceptions import ResponseError

        out = []
        for _ in range(n):
            try:
                out.append(conn.read_response(disconnect_on_error=True))
            except ResponseError as e:
                out.append(e)
        return out
    try:  # what redis-py's reader answers while a reply is incomplete (hiredis' own default: False)
        from redis._parsers.hiredis import NOT_ENOUGH_DATA
    except ImportError:
        NOT_ENOUGH_DATA = False
    out: list = []
    gets = reader.gets
    while len(out) < n:
        reply = gets()
        if reply is NOT_ENOUGH_DATA:
            parser.read_from_socket()
        else:
            out.append(reply)
    return out


def _redis_round_trips(client, commands: pa.Array) -> list:
    """Send pre-packed RESP commands on one pooled connection in rounds; return every reply.

    This is what ``pipeline(transaction=False)`` does, without redis-py packing each argument in Python:
    each round is one slice of the commands' Arrow buffer. Error replies are raised after the round
    (as redis-py's pipeline does after reading all its replies).
    """
    commands = commands.cast(_BULK)
    n = len(commands)
    offsets = np.frombuffer(commands.buffers()[1], dtype=np.int64)[commands.offset:commands.offset + n + 1]
    data = memoryview(commands.buffers()[2])
    pool = client.connection_pool
    conn = pool.get_connection()
    replies: list = []
    try:
        for start in range(0, n, _REDIS_ROUND):
            stop = min(n, start + _REDIS_ROUND)
            conn.send_packed_command([data[offsets[start]:offsets[stop]]])
            got = _read_replies(conn, stop - start)
            error = next((r for r in got if isinstance(r, Exception)), None)
            if error is not None:
                raise error
            replies.extend(got)
    except BaseException:
        conn.disconnect()
        raise
    finally:
        pool.release(conn)
    return replies


def _write_redis(batch: pd.DataFrame, spec: WriteSpec) -> int:
    """Feast's Redis layout: one hash per entity key (+ project), ``_ts:<view>`` and mmh3 field names.

    Commands are packed in Arrow (RESP) and sent in large non-transactional rounds; the timestamp rule is
    Feast's: an entity whose stored event timestamp is not older keeps its values.
    """
    from feast.infra.online_stores.helpers import _mmh3
    from feast.infra.online_stores.redis import _versioned_fv_name

    cfg = spec.repo_config
    store_cfg = cfg.online_store
    fv_name = _versioned_fv_name(_feature_view(spec), cfg)
    ts_field = _resp(f"_ts:{fv_name}".encode())
    ek, cols = _encode_batch(batch, spec, with_text=False)
    n = len(ek)
    if n == 0:
        return 0
    keys = _bulk_strings(_concat(pa.array(ek, _BULK), _literal(cfg.project.encode("utf-8"))))
    us = _utc(batch[spec.ts_col]).dt.tz_localize(None).to_numpy().astype("datetime64[us]").astype(np.int64)
    secs, micros = np.divmod(us, 1_000_000)
    client = _redis_client(spec)
    keep = np.ones(n, dtype=bool)
    if not store_cfg.skip_dedup:
        stored = _redis_round_trips(client, _concat(_literal(b"*3\r\n$5\r\nHMGET\r\n"), keys, ts_field))
        from google.protobuf.timestamp_pb2 import Timestamp

        ts_nanos = secs * 1_000_000_000 + micros * 1000
        for i, reply in enumerate(stored):
            if reply and reply[0]:
                t = Timestamp.FromString(reply[0])
                if int(ts_nanos[i]) <= t.seconds * 1_000_000_000 + t.nanos:
                    keep[i] = False
    if not keep.any():
        return 0
    parts = [_literal(b"*%d\r\n$4\r\nHSET\r\n" % (4 + 2 * len(cols))), keys, ts_field,
             _bulk_strings(_timestamp_protos(secs, micros * 1000))]
    for name, (values, _) in cols.items():
        parts += [_resp(_mmh3(f"{fv_name}:{name}")), _bulk_strings(values)]
    commands = _concat(*parts)
    if not keep.all():
        commands, keys = commands.filter(keep), keys.filter(keep)
    if store_cfg.key_ttl_seconds:  # after every HSET of the batch: same connection, same order
        ttl = str(int(store_cfg.key_ttl_seconds)).encode()
        expires = _concat(_literal(b"*3\r\n$6\r\nEXPIRE\r\n"), keys, _resp(ttl))
        commands = pa.concat_arrays([commands, expires])
    _redis_round_trips(client, commands)
    return int(keep.sum())


def _timestamp_protos(secs: np.ndarray, nanos: np.ndarray) -> list[bytes]:
    """Serialized ``google.protobuf.Timestamp`` of each (seconds, nanos) pair (proto3: zero fields omitted)."""
    from google.protobuf.timestamp_pb2 import Timestamp

    s_enc = _varints(secs, 0x08)
    n_enc = _varints(nanos, 0x10)
    out = [(a if s else b"") + (c if ns else b"") for a, c, s, ns in
           zip(s_enc, n_enc, (secs != 0).tolist(), (nanos != 0).tolist())]
    for i in {0, len(out) - 1}:  # check against protobuf itself
        t = Timestamp(seconds=int(secs[i]), nanos=int(nanos[i]))
        if t.SerializeToString() != out[i]:
            return [Timestamp(seconds=int(a), nanos=int(b)).SerializeToString()
                    for a, b in zip(secs.tolist(), nanos.tolist())]
    return out


def _write_generic(batch: pd.DataFrame, spec: WriteSpec) -> int:
    from feast.infra.online_stores.helpers import get_online_store_from_config
    from feast.utils import _convert_arrow_to_proto

    fv = _feature_view(spec)
    store = _STORE_CACHE.get(("generic", id(spec)))
    if store is None:
        store = get_online_store_from_config(spec.repo_config.online_store)
        _STORE_CACHE[("generic", id(spec))] = store
    table = pa.Table.from_pandas(batch.drop(columns=[ENTITY_KEY]), preserve_index=False).combine_chunks()
    rows = _convert_arrow_to_proto(table, fv, {k: ValueType(v) for k, v in spec.join_keys})
    store.online_write_batch(config=spec.repo_config, table=fv, data=rows, progress=None)
    return len(rows)


# --------------------------------------------------------------------------------------------------
# the engine


def _shuffle_method(partitions: int) -> str:
    """Named, not left to Dask: its default depends on whether our client is the global one, and its
    fallback ("disk") only works when all workers share one disk. A task shuffle costs little for a few
    partitions, where p2p spends seconds setting up its run on every worker; p2p scales to thousands."""
    return "tasks" if partitions <= 64 else "p2p"


class DaskEngine(ComputeEngine):
    """Feast ComputeEngine materializing FileSource feature views on a Dask cluster."""

    def __init__(self, *, repo_config, offline_store, online_store, **kwargs):
        super().__init__(repo_config=repo_config, offline_store=offline_store, online_store=online_store)
        if kwargs:
            self.config = DaskEngineConfig(**kwargs)
        elif isinstance(getattr(repo_config, "batch_engine", None), DaskEngineConfig):
            self.config = repo_config.batch_engine
        else:
            self.config = DaskEngineConfig()

    def update(self, project: str, views_to_delete, views_to_keep, entities_to_delete, entities_to_keep):
        pass

    def teardown_infra(self, project: str, fvs, entities):
        pass

    # -- support check --------------------------------------------------------------------------
    def _supported(self, fv) -> str | None:
        from feast.infra.offline_stores.file_source import FileSource

        if isinstance(fv, (OnDemandFeatureView, StreamFeatureView)):
            return "stream/on-demand views"
        if not isinstance(fv, FeatureView):
            return f"{type(fv).__name__}"
        if not isinstance(fv.batch_source, FileSource):
            return f"source {type(fv.batch_source).__name__}"
        if getattr(fv, "feature_transformation", None) or getattr(fv, "aggregations", None):
            return "transformations/aggregations"
        if getattr(fv, "source_views", None):
            return "derived views"
        if getattr(fv, "offline", False):
            return "offline write-back"
        return None

    def _local_engine(self):
        from feast.infra.compute_engines.local.compute import LocalComputeEngine

        return LocalComputeEngine(repo_config=self.repo_config, offline_store=self.offline_store,
                                  online_store=self.online_store)

    def _write_mode(self) -> str:
        from feast.infra.online_stores.redis import RedisOnlineStoreConfig, RedisType
        from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig

        store_cfg = self.repo_config.online_store
        if not self.config.direct_write:
            return "generic"
        if isinstance(store_cfg, SqliteOnlineStoreConfig):
            if store_cfg.vector_enabled or store_cfg.enable_openai_compatible_store:
                return "generic"
            return "sqlite"
        if isinstance(store_cfg, RedisOnlineStoreConfig) and store_cfg.redis_type == RedisType.redis:
            return "redis"
        return "generic"

    def _check_online_store(self, mode: str) -> None:
        """Fail before any work when the online store cannot be reached (no secrets in the message)."""
        store_cfg = self.repo_config.online_store
        if getattr(store_cfg, "type", "") == "redis" or mode == "redis":
            from feast.infra.online_stores.redis import RedisOnlineStore

            nodes, _ = RedisOnlineStore._parse_connection_string(store_cfg.connection_string)
            where = ",".join(f"{n.get('host')}:{n.get('port')}" for n in nodes)
            try:
                client = RedisOnlineStore()._get_client(store_cfg)
                client.ping()
            except Exception as e:  # noqa: BLE001
                raise ConnectionError(
                    f"Redis online store at {where} is unreachable ({type(e).__name__}); nothing was materialized"
                ) from None

    # -- materialize ----------------------------------------------------------------------------
    def _materialize_one(self, registry: BaseRegistry, task: MaterializationTask, **kwargs) -> MaterializationJob:
        fv = task.feature_view
        job_id = f"{fv.name}-{task.start_time}-{task.end_time}"
        reason = self._supported(fv)
        if reason is not None or not task.only_latest:
            log.info("DaskEngine: %s handled by Feast's local engine (%s)", fv.name, reason or "all rows")
            return self._local_engine()._materialize_one(registry, task, **kwargs)
        t0 = time.perf_counter()
        try:
            stats = self._run(registry, task)
        except Exception as e:  # noqa: BLE001
            log.error("DaskEngine: materializing %s failed: %s", fv.name, e)
            return DaskMaterializationJob(job_id, MaterializationJobStatus.ERROR, e,
                                          seconds=time.perf_counter() - t0)
        return DaskMaterializationJob(job_id, MaterializationJobStatus.SUCCEEDED, None,
                                      rows_read=int(stats["rows_in"].sum()),
                                      entities_written=int(stats["written"].sum()),
                                      seconds=time.perf_counter() - t0)

    def _run(self, registry: BaseRegistry, task: MaterializationTask) -> pd.DataFrame:
        fv: FeatureView = task.feature_view
        if not fv.online:
            return STATS_META.copy()
        mode = self._write_mode()
        self._check_online_store(mode)
        client, owned = _get_client(self.config)
        try:
            return self._run_on(client, registry, task, mode)
        finally:
            if owned:
                client.close()

    def _run_on(self, client, registry: BaseRegistry, task: MaterializationTask, mode: str) -> pd.DataFrame:
        import dask
        import dask.dataframe as dd
        from feast.infra.offline_stores.file_source import FileSource
        from feast.utils import _get_column_names

        fv: FeatureView = task.feature_view
        cfg = self.config
        entities: list[Entity] = [registry.get_entity(name, task.project) for name in fv.entities]
        join_cols, feature_cols, ts_col, created_col = _get_column_names(fv, entities)
        field_mapping = dict(fv.batch_source.field_mapping or {})
        source_cols = list(dict.fromkeys(join_cols + feature_cols + [ts_col] + ([created_col] if created_col else [])))
        uri = FileSource.get_uri_for_file_path(self.repo_config.repo_path, fv.batch_source.file_options.uri)
        threads = sum(client.nthreads().values())
        nparts = cfg.output_partitions or max(1, 2 * threads)
        fs, chunks, schema = _plan_reads(uri, source_cols, cfg.partition_rows, min_chunks=nparts)

        mapped = lambda c: field_mapping.get(c, c)  # noqa: E731
        jk_types = {e.join_key: e.value_type for e in entities if e.join_key in {mapped(c) for c in join_cols}}
        for col in fv.entity_columns:
            if col.name in jk_types:
                jk_types[col.name] = col.dtype.to_value_type()
        mapped_ts, mapped_created = mapped(ts_col), (mapped(created_col) if created_col else None)
        features = tuple((f.name, int(f.dtype.to_value_type().value)) for f in fv.features)

        run_id = uuid.uuid4().hex
        read_specs = [ReadSpec(path=p, row_groups=rg, columns=tuple(source_cols),
                               rename=tuple((k, v) for k, v in field_mapping.items() if k in source_cols),
                               join_keys=tuple(join_cols), ts_col=ts_col, created_col=created_col,
                               start=task.start_time, end=task.end_time,
                               entity_keys=tuple((k, int(v.value)) for k, v in jk_types.items()),
                               key_version=self.repo_config.entity_key_serialization_version,
                               run_id=run_id)
                      for p, rg in chunks]
        empty = schema.empty_table().select(source_cols).to_pandas()
        empty[ts_col] = empty[ts_col].astype("datetime64[ns, UTC]") if not isinstance(
            empty[ts_col].dtype, pd.DatetimeTZDtype) else empty[ts_col].dt.tz_convert("UTC")
        if created_col:
            empty[created_col] = pd.Series(dtype="datetime64[ns, UTC]")
        meta = empty.rename(columns=field_mapping)
        meta[ENTITY_KEY] = pd.Series(dtype=object)

        sqlite_path = sqlite_table = stage_dir = None
        if mode == "sqlite":
            from feast.infra.online_stores.sqlite import SqliteOnlineStore, _table_id

            sqlite_path = os.path.abspath(SqliteOnlineStore._get_db_path(self.repo_config))
            sqlite_table = _table_id(task.project, fv,
                                     self.repo_config.registry.enable_online_feature_view_versioning)
            stage_dir = _new_stage_dir(sqlite_path)
        wspec = WriteSpec(repo_config=self.repo_config, feature_view_proto=fv.to_proto().SerializeToString(),
                          join_keys=tuple((k, int(v.value)) for k, v in jk_types.items()),
                          features=features, ts_col=mapped_ts, created_col=mapped_created,
                          batch_size=cfg.write_batch_size, mode=mode, sqlite_path=sqlite_path,
                          sqlite_table=sqlite_table, sqlite_wal=cfg.sqlite_wal, stage_dir=stage_dir,
                          run_id=run_id)

        nparts = max(nparts, len(read_specs))
        try:
            # as_current: the key-range split samples the data through Dask's default scheduler
            with client.as_current(), dask.config.set({"dataframe.convert-string": False}):
                ddf = dd.from_map(read_chunk, read_specs, fs=fs, meta=meta, enforce_metadata=False)
                if ddf.npartitions < nparts:  # big row groups: split them, or one worker would do all the work
                    ddf = ddf.repartition(npartitions=nparts)
                if mode == "sqlite" and nparts > 1:
                    # key ranges, not hashes: each transaction then touches one region of SQLite's B-trees
                    # (a hash partition's keys land on every page of the table, every time)
                    ddf = ddf.sort_values(ENTITY_KEY, npartitions=nparts,
                                          shuffle_method=_shuffle_method(nparts))
                elif nparts > 1:
                    ddf = ddf.shuffle(on=[ENTITY_KEY], npartitions=nparts,
                                      shuffle_method=_shuffle_method(nparts))
                if mode != "sqlite":
                    out = ddf.map_partitions(write_partition, wspec, meta=STATS_META)
                    return client.compute(out, retries=cfg.retries).result()
                # staged in key order (by priority), so that the driver publishes each one as it comes
                parts = client.compute(ddf.to_delayed(), retries=cfg.retries)
            staged = [client.submit(write_partition, part, wspec, priority=len(parts) - i, retries=cfg.retries,
                                    pure=False) for i, part in enumerate(parts)]
            del parts  # each sorted partition is released once staged
            return _publish_staged(staged, wspec)
        finally:
            if stage_dir:
                _remove_stage_dir(stage_dir)
