"""Writing: each output partition's latest row per entity, encoded and written by a worker (Redis, any
store through ``online_write_batch``) or staged for the driver's SQLite publisher; the driver collects the
per-partition stats."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time

import pandas as pd
import pyarrow as pa
from feast.value_type import ValueType

from imagerank.store.encoding import has_non_empty_value
from imagerank.store.engine.utils import ROW_ORDER, latest_per_entity
from imagerank.store.redis_writer import write_redis
from imagerank.store.spec import ENTITY_KEY, WriteSpec, cached_store, feature_view_of
from imagerank.store.sqlite_writer import WORKER_LOCAL, SqlitePublisher, stage_sqlite, take_staged

STATS_META = pd.DataFrame({"rows_in": pd.Series(dtype="int64"), "entities": pd.Series(dtype="int64"),
                           "written": pd.Series(dtype="int64"), "seconds": pd.Series(dtype="float64"),
                           "staged": pd.Series(dtype=object), "staged_on": pd.Series(dtype=object)})
"""Schema of the per-partition stats frame the write step returns (``staged``: the SQLite staging file
the driver publishes, None when the worker wrote to the store itself; ``staged_on``: the worker that
holds it)."""


def _worker_address() -> str | None:
    from distributed import get_worker

    try:
        return get_worker().address
    except ValueError:  # not on a worker
        return None


def write_partition(df: pd.DataFrame, spec: WriteSpec) -> pd.DataFrame:
    """Keep the latest row per entity, encode it and write it to the online store in batches (SQLite:
    stage it for the driver to publish)."""
    t0 = time.perf_counter()
    rows_in = len(df)
    df = latest_per_entity(df.reset_index(drop=True), [ENTITY_KEY], spec.ts_col, spec.created_col)
    written, staged, staged_on = 0, None, None
    if spec.mode == "sqlite":
        staged_on = _worker_address()
        staged = stage_sqlite(df.sort_values(ENTITY_KEY).reset_index(drop=True), spec)
    else:
        df = df.reset_index(drop=True)
        write = write_redis if spec.mode == "redis" else _write_generic
        for start in range(0, len(df), spec.batch_size):
            written += write(df.iloc[start:start + spec.batch_size].reset_index(drop=True), spec)
    return pd.DataFrame({"rows_in": [rows_in], "entities": [len(df)], "written": [written],
                         "seconds": [time.perf_counter() - t0], "staged": [staged], "staged_on": [staged_on]}).astype(
        STATS_META.dtypes.to_dict())


def bytes_with_values(df: pd.DataFrame, spec: WriteSpec) -> set[str]:
    """The BYTES features with a non-empty value in the partition's rows to be written."""
    df = latest_per_entity(df.reset_index(drop=True), [ENTITY_KEY], spec.ts_col, spec.created_col)
    return {name for name, vt in spec.features
            if ValueType(vt) == ValueType.BYTES and has_non_empty_value(df[name])}


def _write_generic(batch: pd.DataFrame, spec: WriteSpec) -> int:
    from feast.infra.online_stores.helpers import get_online_store_from_config
    from feast.utils import _convert_arrow_to_proto

    fv = feature_view_of(spec)
    store = cached_store(("generic", id(spec)), lambda: get_online_store_from_config(spec.repo_config.online_store))
    table = pa.Table.from_pandas(batch.drop(columns=[ENTITY_KEY, ROW_ORDER]), preserve_index=False).combine_chunks()
    rows = _convert_arrow_to_proto(table, fv, {k: ValueType(v) for k, v in spec.join_keys})
    store.online_write_batch(config=spec.repo_config, table=fv, data=rows, progress=None)
    return len(rows)


def collect_written(written: list, spec: WriteSpec, progress) -> pd.DataFrame:
    """The stats of every written partition; SQLite: publish the staged partitions in partition order,
    each as soon as it is staged.

    Partitions are key ranges in ascending order, so the store's B-trees grow at one edge; the workers
    keep staging the next partitions meanwhile. A failed partition cancels the rest: what was published
    stays (each batch is its own transaction, as in Feast's engine) and a re-run overwrites it.
    """
    from distributed import as_completed

    publisher = SqlitePublisher(spec) if spec.mode == "sqlite" else None
    fetched = tempfile.mkdtemp(prefix="imagerank-staged-") if spec.stage_dir == WORKER_LOCAL else None

    def publish(path: str, worker: str | None, entities: int) -> int:
        if fetched is None:
            return publisher.publish(path, entities)
        # no shared disk: the staged file comes from the worker that wrote it, one partition at a time (through
        # the scheduler, as client.run does; a worker lost meanwhile fails the run, which a re-run repeats)
        data = written[0].client.run(take_staged, path, workers=[worker])[worker]
        local = os.path.join(fetched, os.path.basename(path))
        with open(local, "wb") as handle:
            handle.write(data)
        del data
        return publisher.publish(local, entities)

    frames = []
    try:
        # the futures' own client: with a scheduler address the engine's client is not the default one
        in_order = publisher or not written
        for future in (written if in_order else as_completed(written, loop=written[0].client.loop)):
            stats = future.result()
            if publisher:
                stats["written"] = [publish(path, worker, n) if path else 0
                                    for path, worker, n in zip(stats["staged"], stats["staged_on"], stats["entities"])]
            frames.append(stats)
            progress.update(1)
    except BaseException:
        for future in written:
            future.cancel()
        raise
    finally:
        if publisher:
            publisher.close()
        if fetched:
            with contextlib.suppress(OSError):
                shutil.rmtree(fetched)
    return pd.concat(frames, ignore_index=True) if frames else STATS_META.copy()

