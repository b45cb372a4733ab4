"""SQLite online store: partitions staged on the workers, published by one connection in the driver.

SQLite has one writer at a time. The costly part of a write (Feast's values and texts, binding them) runs on
every worker at once into scratch files; the :class:`SqlitePublisher` then moves the rows into Feast's table
inside SQLite, in key order, one transaction per batch. The scratch files sit beside the store (workers that
share the driver's disk: a LocalCluster), under a directory given explicitly, or (:data:`WORKER_LOCAL`, no
shared filesystem) in each worker's own local directory, from which the driver fetches them over Dask.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import uuid
from pathlib import Path

import pandas as pd

from imagerank.store.encoding import py_datetimes
from imagerank.store.spec import WriteSpec, encode_batch


def _sqlite_ts(ts: pd.Series) -> list[int]:
    """What Feast's registered sqlite adapter stores for the naive-UTC datetime: ``int(dt.timestamp())``."""
    return [int(d.timestamp()) for d in py_datetimes(ts)]


STAGE_FEATURES = 32
"""Features per staging row: wider views stage groups of features in several tables, so that the CASE
that unpivots a row stays short."""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _pick(prefix: str, n: int) -> str:
    """The staging column ``<prefix><i>`` of the feature being unpivoted (``n.i``)."""
    return "CASE n.i " + " ".join(f"WHEN {j} THEN s.{prefix}{j}" for j in range(n)) + " END"


def _feature_groups(spec: WriteSpec) -> list[list[str]]:
    names = sorted(name for name, _ in spec.features)
    return [names[i:i + STAGE_FEATURES] for i in range(0, len(names), STAGE_FEATURES)]


WORKER_LOCAL = "worker-local"
"""``staging_dir`` value: stage in each worker's Dask local directory; the driver fetches every staged file
from the worker that wrote it (nothing assumes a disk shared by the driver and the workers)."""


def worker_stage_dir(run_id: str, worker=None) -> str:
    """This run's staging directory in the Dask local directory (removed with the worker) of ``worker``, or of
    the worker running this task; in the temporary directory outside a worker."""
    import tempfile

    if worker is None:
        from distributed import get_worker

        with contextlib.suppress(ValueError):  # not in a task on a worker
            worker = get_worker()
    root = worker.local_directory if worker is not None else tempfile.gettempdir()
    path = os.path.join(root, f"imagerank-staging-{run_id}")
    os.makedirs(path, exist_ok=True)
    return path


def take_staged(path: str) -> bytes:
    """The staged file's bytes, removed from the worker's disk (runs on the worker that staged it)."""
    with open(path, "rb") as handle:
        data = handle.read()
    os.unlink(path)
    return data


def remove_worker_stage_dir(run_id: str, dask_worker=None) -> None:
    """What a failed run left in this worker's staging directory (``client.run`` on every worker at the end,
    which passes the worker as ``dask_worker``)."""
    import shutil

    shutil.rmtree(worker_stage_dir(run_id, dask_worker), ignore_errors=True)


def stage_sqlite(df: pd.DataFrame, spec: WriteSpec) -> str:
    """Encode a partition into a staging SQLite file in the run's staging directory; return its path.

    One staging row per entity (entity key, timestamps, then value and text of each feature), in
    entity-key order, so that rowid ranges are key ranges. This is the costly part of a SQLite write
    (Feast's protobuf values and texts, and binding them), and it runs on every worker at once; the
    driver's :class:`SqlitePublisher` then moves the rows into Feast's table inside SQLite. Binding a
    wide row costs a fifth of binding one row per feature. Blobs are bound as ``bytearray``, which
    Python 3.11's sqlite3 binds directly (``bytes`` first goes through a failing adapter lookup).
    """
    stage_dir = worker_stage_dir(spec.run_id) if spec.stage_dir == WORKER_LOCAL else spec.stage_dir
    path = os.path.join(stage_dir, f"{uuid.uuid4().hex}.db")  # a retried task writes a new file
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
            ek, cols = encode_batch(batch, spec, with_text=True)
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


def new_stage_dir(db_path: str, root: str | None = None) -> str:
    """A fresh staging directory under ``root`` (default: beside the store), where the workers write and the
    driver reads, named by this host and process. Ones left by killed runs are removed: those of dead
    processes on this host, and any older than a day."""
    import shutil
    import socket
    import tempfile

    root = Path(root) if root else Path(db_path).parent / f".{Path(db_path).name}.staging"
    root.mkdir(parents=True, exist_ok=True)
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


def remove_stage_dir(stage_dir: str, remove_root: bool = True) -> None:
    """Remove a run's staging directory, and the staging root beside the store when no other run stages
    there (``remove_root=False``: a root given explicitly stays)."""
    import shutil

    shutil.rmtree(stage_dir, ignore_errors=True)
    if remove_root:
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(stage_dir))


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
