"""The ``batch_engine:`` block of feature_store.yaml. Feast finds it as ``<type>Config`` beside the engine."""

from __future__ import annotations

from typing import Literal, Optional

from feast.repo_config import FeastConfigBaseModel
from pydantic import StrictInt, StrictStr

ENGINE_TYPE = "imagerank.store.engine.DaskEngine"


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
    staging_dir: Optional[StrictStr] = None
    """Where the workers stage SQLite partitions for the driver to publish. None: beside the store (the
    workers share the driver's disk, as on a LocalCluster); ``worker-local``: each worker's Dask local
    directory, fetched by the driver over Dask (no shared filesystem); else that directory, which the driver
    and every worker must reach."""
