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


# what a run decides and checks from its work directory: the model reuse rule and the reconciliation

def previous_model(workdir: str | Path) -> tuple[dict, bool]:
    """The last finished run's model entry, and whether its model version is still on disk."""
    previous = (last_finished_run(workdir) or {}).get("models", {})
    exists = bool(previous.get("model_version")) and datasets.exists(
        workdir, "models", previous["model_version"], "metrics.json")
    return previous, exists


def check_retrain_policy(policy: str) -> None:
    from imagerank.settings import RETRAIN_POLICIES

    if policy not in RETRAIN_POLICIES:
        raise ValueError(f"--retrain must be one of {', '.join(RETRAIN_POLICIES)}, not {policy!r}")


def reuse_model(policy: str, previous: dict, previous_exists: bool, fingerprint: str) -> bool:
    """Keep the previous model version (True) or train a new one (False) under a ``--retrain`` policy.

    ``never`` keeps it (and needs one), ``auto`` keeps it while the training fingerprint is unchanged,
    ``always`` trains.
    """
    check_retrain_policy(policy)
    if policy == "never" and not previous_exists:
        raise FileNotFoundError("--retrain never, but no earlier model version exists in this work directory")
    return previous_exists and (policy == "never" or (
        policy == "auto" and previous.get("training_fingerprint") == fingerprint))


def training_fingerprint(workdir: str | Path) -> str:
    """Order-independent digest of every row a model learns from (labelled or with link evidence), all features.

    Ages are left out: they advance with the clock every run, which alone does not call for a new model.
    """
    import dask.dataframe as dd
    import pandas as pd

    from imagerank.features.metadata import RELATIVE_TO_RUN
    from imagerank.features.registry import joined_features
    from imagerank.io import row_digest

    features = joined_features(workdir)
    links = "has_link_evidence" in features.columns

    def learnt(part: pd.DataFrame) -> pd.DataFrame:
        keep = part["observed_popularity"].notna()
        return part[keep | part["has_link_evidence"].fillna(False).astype(bool)] if links else part[keep]

    rows = features.map_partitions(learnt, meta=features._meta)
    columns = sorted(c for c in rows.columns if c != "event_timestamp" and c not in RELATIVE_TO_RUN)
    # 31 high bits per row, summed as int64: exact and independent of row order up to ~4e9 rows
    digests = rows.map_partitions(lambda p: pd.Series(row_digest(p, columns).to_numpy() >> 33, dtype="int64"),
                                  meta=("d", "int64"))
    count, total = dd.compute(digests.size, digests.sum())
    return f"{int(count)}:{int(total)}:{','.join(columns)}"


class ReconciliationError(RuntimeError):
    """Rows were lost or scores left [0, 1]: the run must not be published."""


def reconciliation_problems(result: dict) -> list[str]:
    """What breaks the run's promise in its counts: every input row in the catalog or rejects, every catalog
    row scored, every score in [0, 1]."""
    n_catalog, n_rejects, n_scores = result["catalog_rows"], result["rejected_rows"], result["score_rows"]
    unscored, lo, hi, nulls = (result["unscored_catalog_rows"], result["min_score"], result["max_score"],
                               result["null_scores"])
    problems = []
    if result["input_rows"] != n_catalog + n_rejects:
        problems.append(f"input rows {result['input_rows']} != catalog {n_catalog} + rejects {n_rejects}")
    if n_scores != n_catalog or unscored:
        problems.append(f"score rows {n_scores} for {n_catalog} catalog rows ({unscored} unscored)")
    if nulls or lo < 0 or hi > 1:
        problems.append(f"scores outside [0, 1] or null (min {lo}, max {hi}, nulls {nulls})")
    return problems


def reconcile(workdir: str | Path, ingest_counts: dict) -> dict:
    """input rows = catalog + rejects; catalog rows = score rows (same ids); both numbers within [0, 1]."""
    import dask.dataframe as dd

    catalog_ids = datasets.read_ddf(workdir, "catalog", columns=["image_id"])["image_id"]
    scores = datasets.read_ddf(workdir, "scores", columns=["image_id", "popularity", "authority"])
    rejects = datasets.read_ddf(workdir, "rejects", columns=["reason"])
    n_catalog, n_rejects, n_scores = (int(x) for x in dd.compute(catalog_ids.size, rejects.shape[0], scores.shape[0]))
    joined = catalog_ids.to_frame().merge(scores[["image_id"]].assign(scored=1), on="image_id", how="left")
    unscored = int(joined["scored"].isnull().sum().compute())
    lo = float(scores[["popularity", "authority"]].min().min().compute()) if n_scores else 0.0
    hi = float(scores[["popularity", "authority"]].max().max().compute()) if n_scores else 1.0
    nulls = int(scores[["popularity", "authority"]].isnull().sum().sum().compute())
    result = {"input_rows": ingest_counts["input_rows"], "catalog_rows": n_catalog, "rejected_rows": n_rejects,
              "score_rows": n_scores, "unscored_catalog_rows": unscored, "min_score": lo, "max_score": hi,
              "null_scores": nulls}
    problems = reconciliation_problems(result)
    result["ok"] = not problems
    if problems:
        raise ReconciliationError("; ".join(problems))
    return result
