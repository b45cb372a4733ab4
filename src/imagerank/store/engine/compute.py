"""The engine Feast calls: which views it handles, how it writes to the configured online store, and
the run of one view (pass 1 on the workers, key ranges on the driver, pass 2 shuffled and written)."""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import replace

import pandas as pd
from feast import Entity, FeatureView, OnDemandFeatureView, StreamFeatureView
from feast.infra.common.materialization_job import MaterializationJob, MaterializationJobStatus, MaterializationTask
from feast.infra.compute_engines.base import ComputeEngine
from feast.infra.registry.base_registry import BaseRegistry
from feast.value_type import ValueType

from imagerank.store.engine.config import DaskEngineConfig
from imagerank.store.engine.job import COUNTS, DaskMaterializationJob
from imagerank.store.engine.read import PARTITION, ReadSpec, key_boundaries, plan_reads, read_chunk, summarize_keys
from imagerank.store.engine.utils import ROW_ORDER, engine_client, progress_bar, shuffle_method
from imagerank.store.engine.write import STATS_META, bytes_with_values, collect_written, write_partition
from imagerank.store.spec import ENTITY_KEY, WriteSpec
from imagerank.store.sqlite_writer import WORKER_LOCAL, new_stage_dir, remove_stage_dir, remove_worker_stage_dir

log = logging.getLogger(__package__)  # "imagerank.store.engine": one logger for the engine's lines


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
        job.log_summary(fv.name)
        return job

    def _run(self, registry: BaseRegistry, task: MaterializationTask) -> tuple[dict, pd.DataFrame]:
        fv: FeatureView = task.feature_view
        if not fv.online:
            return dict.fromkeys(COUNTS, 0), STATS_META.copy()
        mode = self._write_mode()
        self._check_online_store(mode)
        client, owned = engine_client(self.config.scheduler_address, self.config.n_workers)
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
        fs, chunks, schema = plan_reads(uri, source_cols, cfg.partition_rows, min_chunks=nparts)

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
        progress = progress_bar(f"materialize {fv.name}", len(read_specs) + nparts)
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
            stage_dir = (WORKER_LOCAL if cfg.staging_dir == WORKER_LOCAL
                         else new_stage_dir(sqlite_path, cfg.staging_dir))
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
                                    shuffle_method=shuffle_method(nparts))
                parts = client.compute(ddf.to_delayed(), retries=cfg.retries)
            if any(ValueType(vt) == ValueType.BYTES for _, vt in features):
                found = client.gather(client.map(bytes_with_values, parts, spec=wspec, pure=False))
                wspec = replace(wspec, bytes_with_values=tuple(sorted(set().union(*found))))
            # written in key order (by priority), so that SQLite's driver publishes each one as it comes
            written = [client.submit(write_partition, part, wspec, priority=len(parts) - i, retries=cfg.retries,
                                     pure=False) for i, part in enumerate(parts)]
            del parts  # each partition is released once written
            return collect_written(written, wspec, progress)
        finally:
            if stage_dir == WORKER_LOCAL:
                client.run(remove_worker_stage_dir, run_id)
            elif stage_dir:
                remove_stage_dir(stage_dir, remove_root=cfg.staging_dir is None)

