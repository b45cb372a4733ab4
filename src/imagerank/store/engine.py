"""A Feast batch materialization engine that runs on a Dask cluster.

Feast loads it from ``feature_store.yaml``::

    batch_engine:
      type: imagerank.store.engine.DaskEngine
      scheduler_address: null        # or tcp://host:8786; null -> $DASK_SCHEDULER_ADDRESS -> LocalCluster
      partition_rows: 250000         # rows read per task (parquet row groups are grouped up to this)
      write_batch_size: 100000       # entities per online-store transaction / pipeline

so that ``feast materialize`` and ``feast materialize-incremental`` run on Dask:

1. the FileSource's parquet files are split into row-group chunks (at least two per worker thread when
   the row groups allow). A first pass reads only their key and timestamp columns: it counts the rows in
   the materialization window (both ends inclusive, as Feast's file offline store has it), the rows
   without a value in some join key (skipped and reported: Feast's own engine fails on them) and the
   rows superseded by a later row of the same entity, and samples the serialized entity keys, from
   which the driver picks the key ranges of the output partitions (fewer when there are fewer keys;
   none for an empty view). Dask's own quantiles are not used: they fail on a bytes column of few rows;
2. the second pass reads every column, keeps each chunk's latest row per entity and tags it with its
   key range; a shuffle on that tag brings every entity's rows into one partition, where the latest row
   is kept (event timestamp, then created timestamp, as Feast's local engine orders them, then the
   source order). The partitions are key ranges in ascending order, so that each SQLite transaction
   touches one region of the table's B-trees;
3. every partition converts its rows to Feast ``Value`` protobuf bytes column by column
   (:mod:`imagerank.store.encoding`) and writes them in batches, in the exact key/value layout of
   Feast's own stores: Redis from the workers, with Arrow-packed non-transactional pipelines
   (:mod:`~imagerank.store.redis_writer`); SQLite, which has one writer at a time, by staging every
   partition in a scratch SQLite file on the workers, in parallel and in key order, that the driver
   publishes into the store with one ``INSERT ... SELECT`` transaction per batch
   (:mod:`~imagerank.store.sqlite_writer`); any other online store through its ``online_write_batch``.

The driver only holds the task graph, the key samples (about 20 per output partition), one small stats
row per partition and (SQLite) a bounded page cache, so its memory does not grow with the table. It
shows a progress bar over the tasks on stderr when the project's switch is on (a terminal, or
``IMAGERANK_PROGRESS=1``) and logs one line per view with the counts above. Values read back through ``get_online_features`` are
identical to what Feast's local engine writes (the test suite compares both engines byte for byte); the
vectorized encoder checks a sample of every column against Feast's converter and falls back to it on any
difference.
Feature views this engine does not handle (non-file sources, transformations, aggregations) are
delegated to Feast's local engine.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
import uuid
from bisect import bisect_right
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, Optional, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from pydantic import StrictInt, StrictStr

from feast import Entity, FeatureView, OnDemandFeatureView, StreamFeatureView
from feast.infra.common.materialization_job import (
    MaterializationJob,
    MaterializationJobStatus,
    MaterializationTask,
)
from feast.infra.compute_engines.base import ComputeEngine
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import FeastConfigBaseModel
from feast.value_type import ValueType

from imagerank.store.encoding import _utc, encode_entity_keys, has_non_empty_value
from imagerank.store.redis_writer import _write_redis
from imagerank.store.spec import _STORE_CACHE, ENTITY_KEY, WriteSpec, _feature_view
from imagerank.store.sqlite_writer import SqlitePublisher, _new_stage_dir, _remove_stage_dir, _stage_sqlite

log = logging.getLogger(__name__)

ENGINE_TYPE = "imagerank.store.engine.DaskEngine"
STATS_META = pd.DataFrame({"rows_in": pd.Series(dtype="int64"), "entities": pd.Series(dtype="int64"),
                           "written": pd.Series(dtype="int64"), "seconds": pd.Series(dtype="float64"),
                           "staged": pd.Series(dtype=object)})
"""Schema of the per-partition stats frame the write step returns (``staged``: the SQLite staging file
the driver publishes, None when the worker wrote to the store itself)."""
COUNTS = ("rows", "in_window", "null_keys", "entities")
"""What the key pass counts per chunk: source rows, rows in the window, rows of those without a value in
some join key (skipped), entities (the latest row of each) in the chunk."""
ROW_ORDER = "__imagerank_row_order"
"""Position of a row in the source (chunk << 32 | row): the last tie-breaker between an entity's rows."""
PARTITION = "__imagerank_partition"
"""Output partition of a row: the key range its entity key falls in."""


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
    """Rows of the source files."""
    rows_in_window: int = 0
    """Rows whose event timestamp lies in the materialization window."""
    null_keys: int = 0
    """Rows in the window without a value in some join key: skipped (Feast's local engine fails on them)."""
    entities_written: int = 0
    """Entities written (one row each, the latest)."""
    superseded_rows: int = 0
    """Rows in the window not written because a later row of the same entity was (duplicate keys)."""
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
_DASK_UNLOCKED = False


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

    global _DASK_UNLOCKED
    if not _DASK_UNLOCKED:  # Python 3.11 cached_property locks can deadlock dask (see there); once: it walks gc
        unlock_dask_cached_properties()
        _DASK_UNLOCKED = True

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
# planning: what to read, and which key range each output partition gets


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


def _plan_reads(uri: str, columns: list[str], partition_rows: int, min_chunks: int = 1):
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


def _latest_per_entity(df: pd.DataFrame, keys: Sequence[str], ts_col: str,
                       created_col: str | None) -> pd.DataFrame:
    """Keep each entity's row with the latest event timestamp, then created timestamp, then the last in
    source order (Feast's local engine sorts ascending and keeps the last row; its order among exact
    ties is not defined, this one is)."""
    if df.empty:
        return df
    sort_cols = [ts_col] + ([created_col] if created_col else []) + [ROW_ORDER]
    df = df.sort_values(sort_cols, kind="stable")
    return df.drop_duplicates(subset=list(keys), keep="last")


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
        dropped = _utc(table.filter(pa.array(~valid)).column(spec.ts_col).to_pandas())
        null_keys = int(_in_window(dropped, spec).sum())
        table = table.filter(pa.array(valid))
    df = table.to_pandas()
    df[spec.ts_col] = _utc(df[spec.ts_col])
    if spec.created_col:
        df[spec.created_col] = _utc(df[spec.created_col])
    df = df[_in_window(df[spec.ts_col], spec)]
    in_window = len(df) + null_keys
    df = _latest_per_entity(df, spec.join_keys, spec.ts_col, spec.created_col)
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


# --------------------------------------------------------------------------------------------------
# writing (run on the workers; SQLite: published by the driver)


def write_partition(df: pd.DataFrame, spec: WriteSpec) -> pd.DataFrame:
    """Keep the latest row per entity, encode it and write it to the online store in batches (SQLite:
    stage it for the driver to publish)."""
    t0 = time.perf_counter()
    rows_in = len(df)
    df = _latest_per_entity(df.reset_index(drop=True), [ENTITY_KEY], spec.ts_col, spec.created_col)
    written, staged = 0, None
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


def bytes_with_values(df: pd.DataFrame, spec: WriteSpec) -> set[str]:
    """The BYTES features with a non-empty value in the partition's rows to be written."""
    df = _latest_per_entity(df.reset_index(drop=True), [ENTITY_KEY], spec.ts_col, spec.created_col)
    return {name for name, vt in spec.features
            if ValueType(vt) == ValueType.BYTES and has_non_empty_value(df[name])}


def _write_generic(batch: pd.DataFrame, spec: WriteSpec) -> int:
    from feast.infra.online_stores.helpers import get_online_store_from_config
    from feast.utils import _convert_arrow_to_proto

    fv = _feature_view(spec)
    store = _STORE_CACHE.get(("generic", id(spec)))
    if store is None:
        store = get_online_store_from_config(spec.repo_config.online_store)
        _STORE_CACHE[("generic", id(spec))] = store
    table = pa.Table.from_pandas(batch.drop(columns=[ENTITY_KEY, ROW_ORDER]), preserve_index=False).combine_chunks()
    rows = _convert_arrow_to_proto(table, fv, {k: ValueType(v) for k, v in spec.join_keys})
    store.online_write_batch(config=spec.repo_config, table=fv, data=rows, progress=None)
    return len(rows)


def _collect(written: list, spec: WriteSpec, progress) -> pd.DataFrame:
    """The stats of every written partition; SQLite: publish the staged partitions in partition order,
    each as soon as it is staged.

    Partitions are key ranges in ascending order, so the store's B-trees grow at one edge; the workers
    keep staging the next partitions meanwhile. A failed partition cancels the rest: what was published
    stays (each batch is its own transaction, as in Feast's engine) and a re-run overwrites it.
    """
    from distributed import as_completed

    publisher = SqlitePublisher(spec) if spec.mode == "sqlite" else None
    frames = []
    try:
        # the futures' own client: with a scheduler address the engine's client is not the default one
        in_order = publisher or not written
        for future in (written if in_order else as_completed(written, loop=written[0].client.loop)):
            stats = future.result()
            if publisher:
                stats["written"] = [publisher.publish(path, n) if path else 0
                                    for path, n in zip(stats["staged"], stats["entities"])]
            frames.append(stats)
            progress.update(1)
    except BaseException:
        for future in written:
            future.cancel()
        raise
    finally:
        if publisher:
            publisher.close()
    return pd.concat(frames, ignore_index=True) if frames else STATS_META.copy()


def _progress_bar(label: str, total: int):
    """A bar on stderr over the run's tasks (key pass, then written partitions), when the project's
    progress switch is on (an interactive terminal, or IMAGERANK_PROGRESS=1)."""
    from tqdm import tqdm

    from imagerank.cluster import show_progress

    return tqdm(total=total, desc=label, unit="task", file=sys.stderr, disable=not show_progress(),
                dynamic_ncols=True, leave=True)


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
            counts, stats = self._run(registry, task)
        except Exception as e:  # noqa: BLE001
            log.error("DaskEngine: materializing %s failed: %s", fv.name, e)
            return DaskMaterializationJob(job_id, MaterializationJobStatus.ERROR, e,
                                          seconds=time.perf_counter() - t0)
        job = DaskMaterializationJob(job_id, MaterializationJobStatus.SUCCEEDED, None,
                                     rows_read=counts["rows"], rows_in_window=counts["in_window"],
                                     null_keys=counts["null_keys"],
                                     entities_written=int(stats["entities"].sum()),
                                     seconds=time.perf_counter() - t0)
        job.superseded_rows = job.rows_in_window - job.null_keys - job.entities_written
        _report(fv.name, job)
        return job

    def _run(self, registry: BaseRegistry, task: MaterializationTask) -> tuple[dict, pd.DataFrame]:
        fv: FeatureView = task.feature_view
        if not fv.online:
            return dict.fromkeys(COUNTS, 0), STATS_META.copy()
        mode = self._write_mode()
        self._check_online_store(mode)
        client, owned = _get_client(self.config)
        try:
            return self._run_on(client, registry, task, mode)
        finally:
            if owned:
                client.close()

    def _run_on(self, client, registry: BaseRegistry, task: MaterializationTask,
                mode: str) -> tuple[dict, pd.DataFrame]:
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
        read_specs = [ReadSpec(path=p, row_groups=rg, chunk=i, columns=tuple(source_cols),
                               rename=tuple((k, v) for k, v in field_mapping.items() if k in source_cols),
                               join_keys=tuple(join_cols), ts_col=ts_col, created_col=created_col,
                               start=task.start_time, end=task.end_time,
                               entity_keys=tuple((k, int(v.value)) for k, v in jk_types.items()),
                               key_version=self.repo_config.entity_key_serialization_version,
                               run_id=run_id)
                      for i, (p, rg) in enumerate(chunks)]
        nparts = max(nparts, len(read_specs))
        progress = _progress_bar(f"materialize {fv.name}", len(read_specs) + nparts)
        try:
            # pass 1, key columns only: the counts, and the key ranges of the output partitions
            sample = min(1000, max(2, -(-20 * nparts // len(read_specs)))) if read_specs else 0
            summaries = []
            for future in client.map(summarize_keys, read_specs, fs=fs, sample_size=sample,
                                     retries=cfg.retries, pure=False):
                summaries.append(future.result())
                progress.update(1)
            counts = {name: sum(s[name] for s in summaries) for name in COUNTS}
            boundaries = key_boundaries(summaries, nparts)
            del summaries
            if counts["entities"] == 0:
                progress.update(progress.total - progress.n)
                return counts, STATS_META.copy()
            nparts = len(boundaries) + 1
            progress.total = len(read_specs) + nparts
            progress.refresh()
            stats = self._write(client, fv, task, mode, read_specs, fs, schema, boundaries, field_mapping,
                                jk_types, features, mapped_ts, mapped_created, run_id, progress)
            return counts, stats
        finally:
            progress.close()

    def _write(self, client, fv: FeatureView, task: MaterializationTask, mode: str, read_specs, fs, schema,
               boundaries: list[bytes], field_mapping, jk_types, features, ts_col: str, created_col: str | None,
               run_id: str, progress) -> pd.DataFrame:
        """Pass 2: read every chunk, bring each key range into its partition, keep the latest row per
        entity there and write it (SQLite: stage it, the driver publishes)."""
        import dask
        import dask.dataframe as dd

        cfg = self.config
        source_cols = list(read_specs[0].columns)
        source_ts = read_specs[0].ts_col
        source_created = read_specs[0].created_col
        empty = schema.empty_table().select(source_cols).to_pandas()
        empty[source_ts] = pd.Series(dtype="datetime64[ns, UTC]")
        if source_created:
            empty[source_created] = pd.Series(dtype="datetime64[ns, UTC]")
        meta = empty.rename(columns=field_mapping)
        meta[ROW_ORDER] = pd.Series(dtype="int64")
        meta[ENTITY_KEY] = pd.Series(dtype=object)
        meta[PARTITION] = pd.Series(dtype="int64")

        sqlite_path = sqlite_table = stage_dir = None
        if mode == "sqlite":
            from feast.infra.online_stores.sqlite import SqliteOnlineStore, _table_id

            sqlite_path = os.path.abspath(SqliteOnlineStore._get_db_path(self.repo_config))
            sqlite_table = _table_id(task.project, fv,
                                     self.repo_config.registry.enable_online_feature_view_versioning)
            stage_dir = _new_stage_dir(sqlite_path)
        wspec = WriteSpec(repo_config=self.repo_config, feature_view_proto=fv.to_proto().SerializeToString(),
                          join_keys=tuple((k, int(v.value)) for k, v in jk_types.items()),
                          features=features, ts_col=ts_col, created_col=created_col,
                          batch_size=cfg.write_batch_size, mode=mode, sqlite_path=sqlite_path,
                          sqlite_table=sqlite_table, sqlite_wal=cfg.sqlite_wal, stage_dir=stage_dir,
                          run_id=run_id)
        nparts = len(boundaries) + 1
        try:
            with client.as_current(), dask.config.set({"dataframe.convert-string": False}):
                ddf = dd.from_map(read_chunk, read_specs, fs=fs, boundaries=boundaries, meta=meta,
                                  enforce_metadata=False)
                # key range i -> partition i: the ranges were chosen from the keys themselves, so Dask
                # computes nothing here (its own quantiles fail on a bytes column with few rows)
                ddf = ddf.set_index(PARTITION, divisions=list(range(nparts + 1)),
                                    shuffle_method=_shuffle_method(nparts))
                parts = client.compute(ddf.to_delayed(), retries=cfg.retries)
            if any(ValueType(vt) == ValueType.BYTES for _, vt in features):
                found = client.gather(client.map(bytes_with_values, parts, spec=wspec, pure=False))
                wspec = replace(wspec, bytes_with_values=tuple(sorted(set().union(*found))))
            # written in key order (by priority), so that SQLite's driver publishes each one as it comes
            written = [client.submit(write_partition, part, wspec, priority=len(parts) - i, retries=cfg.retries,
                                     pure=False) for i, part in enumerate(parts)]
            del parts  # each partition is released once written
            return _collect(written, wspec, progress)
        finally:
            if stage_dir:
                _remove_stage_dir(stage_dir)


def _report(view: str, job: DaskMaterializationJob) -> None:
    """One line per view: what was read, written and left out. Rows without a key are a data problem
    (Feast's own engine stops at the first): a warning that names how many."""
    line = (f"DaskEngine: {view}: {job.rows_in_window} rows in the window, {job.entities_written} entities "
            f"written, {job.superseded_rows} rows superseded by a later row of the same entity, "
            f"{job.null_keys} rows without an entity key skipped")
    if job.null_keys:
        log.warning(line)
    else:
        log.info(line)
