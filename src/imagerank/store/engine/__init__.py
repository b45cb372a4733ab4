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

The package follows Feast's ``compute_engines/<engine>/`` layout: :mod:`.config` (the yaml block),
:mod:`.compute` (the engine: planning and the two passes), :mod:`.job` (what a run reports), :mod:`.read`
(pass 1 and the read side of pass 2, on the workers), :mod:`.write` (writing partitions, on the workers; SQLite
publishing on the driver) and :mod:`.utils` (what several of them share).
"""

from imagerank.store.engine.compute import DaskEngine
from imagerank.store.engine.config import ENGINE_TYPE, DaskEngineConfig
from imagerank.store.engine.job import DaskMaterializationJob

__all__ = ["ENGINE_TYPE", "DaskEngine", "DaskEngineConfig", "DaskMaterializationJob"]
