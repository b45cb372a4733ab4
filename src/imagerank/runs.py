"""Run bookkeeping for a work directory: one run at a time, resumable stages, fingerprints, manifests.

- A lock (``W/.lock``, ``flock``) refuses a second recalculation on the same work directory; the kernel
  releases it when the holder exits, even by SIGKILL, so a killed run never leaves a stale lock. On object
  storage the lock is an object created exclusively (a conditional PUT where the store supports it, else
  check-then-write: best effort) naming its holder; a lock whose holder process is gone on this machine is
  taken over, one from another machine stays until removed by hand (the error says which object).
- ``W/runs/in-progress.json`` records the stages a run has finished (each stage's outputs are already
  renamed into place by then). A run started again with the same inputs and parameters resumes: it reuses
  the run id and timestamp and skips finished stages, so its outputs equal an uninterrupted run's.
- Input fingerprints (size, modification time, and a hash of the first and last MiB of every file) tell
  whether anything changed since the last finished run.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import sys
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Iterator

from imagerank import datasets, storage
from imagerank.io import write_json

EDGE_BYTES = 1 << 20
STATE_FILE = "in-progress.json"
PACKAGES = ("imagerank", "dask", "distributed", "feast", "pandas", "pyarrow", "scikit-learn", "numpy", "pillow",
            "fastwarc", "selectolax", "tldextract")


class WorkdirBusy(RuntimeError):
    """Another recalculation holds the work directory."""


@contextmanager
def workdir_lock(workdir: str | Path) -> Iterator[None]:
    if storage.is_url(workdir):
        with _object_lock(datasets.location(workdir, "lock")):
            yield
        return
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = Path(datasets.location(workdir, "lock"))
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise WorkdirBusy(f"{workdir} is in use by another recalculation ({holder}); "
                          "wait for it to finish — two runs on one work directory are refused") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} since {datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


@contextmanager
def _object_lock(location: str) -> Iterator[None]:
    """The work directory lock on object storage: an object naming its holder, removed on exit."""
    fs, path = storage.filesystem(location)
    me = {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex,
          "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    for _ in range(2):
        try:
            with fs.open(path, "xb") as handle:  # exclusive create (If-None-Match on S3)
                handle.write(json.dumps(me).encode())
            break
        except FileExistsError:
            holder = _lock_holder(fs, path)
            if holder is None or not _holder_gone(holder):
                raise WorkdirBusy(f"{location} is held by another recalculation ({_describe(holder)}); wait for it "
                                  "to finish, or delete that object if its run is known to be dead") from None
            fs.rm(path)  # its process is gone from this machine: a killed run
    if (_lock_holder(fs, path) or {}).get("token") != me["token"]:
        raise WorkdirBusy(f"{location} was taken by another recalculation at the same moment")
    try:
        yield
    finally:
        if (_lock_holder(fs, path) or {}).get("token") == me["token"]:
            fs.rm(path)


def _lock_holder(fs, path: str) -> dict | None:
    try:
        return json.loads(fs.cat_file(path))
    except (FileNotFoundError, ValueError):
        return None


def _holder_gone(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, ValueError, TypeError):
        return False
    return False


def _describe(holder: dict | None) -> str:
    if not holder:
        return "unknown holder"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"


def file_fingerprint(path: str | Path) -> dict:
    """Cheap and catches ordinary changes: size, mtime, sha256 of the first and last MiB."""
    path = Path(path)
    if path.is_dir():
        return {"path": str(path), "directory": True, "files": [file_fingerprint(p) for p in sorted(path.rglob("*")) if p.is_file()]}
    stat = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(EDGE_BYTES))
        if stat.st_size > 2 * EDGE_BYTES:
            handle.seek(-EDGE_BYTES, os.SEEK_END)
            digest.update(handle.read(EDGE_BYTES))
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256_edges": digest.hexdigest()}


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def run_key(inputs: dict, parameters: dict) -> str:
    """What decides a run's outputs: the input fingerprints and the parameters."""
    blob = json.dumps({"inputs": inputs, "parameters": parameters}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class RunState:
    """The in-progress record of a run: its id, timestamp, key, and the results of finished stages."""

    def __init__(self, workdir: str | Path, run_id: str, event_timestamp: str, key: str, stages: dict | None = None,
                 resumed: bool = False):
        self.path = datasets.location(workdir, "run_state")
        self.run_id, self.event_timestamp, self.key = run_id, event_timestamp, key
        self.stages: dict = stages or {}
        self.resumed = resumed

    @classmethod
    def start(cls, workdir: str | Path, run_id: str, event_timestamp: str, key: str) -> "RunState":
        """Resume the interrupted run with the same key, else begin a new one."""
        if datasets.exists(workdir, "run_state"):
            previous = datasets.read_json(workdir, "run_state")
            if previous.get("key") == key:
                return cls(workdir, previous["run_id"], previous["event_timestamp"], key, previous["stages"], True)
        state = cls(workdir, run_id, event_timestamp, key)
        state.save()
        return state

    def done(self, stage: str) -> bool:
        return stage in self.stages

    def record(self, stage: str, result) -> None:
        self.stages[stage] = result
        self.save()

    def save(self) -> None:
        write_json({"run_id": self.run_id, "event_timestamp": self.event_timestamp, "key": self.key,
                    "stages": self.stages}, self.path)

    def finish(self) -> None:
        fs, path = storage.filesystem(self.path)
        try:
            fs.rm(path)
        except FileNotFoundError:
            pass


def finished_runs(workdir: str | Path) -> list[str]:
    """Locations of the finished runs' manifests (``runs/<run_id>.json``), oldest first."""
    return [p for p in datasets.list_files(workdir, "runs", "*.json") if not p.endswith("/" + STATE_FILE)
            and os.path.basename(p) != STATE_FILE]


def last_finished_run(workdir: str | Path) -> dict | None:
    runs = finished_runs(workdir)
    return json.loads(storage.read_text(runs[-1])) if runs else None
