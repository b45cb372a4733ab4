"""Test support shared by the test suite and benchmarks: the real fixtures under ../shared/fixtures, and faults
injected into a real Dask cluster from the test side."""

from __future__ import annotations

import os
from pathlib import Path

from dask.utils import key_split
from distributed import WorkerPlugin

ROOT = Path(__file__).resolve().parents[2]
SHARED_FIXTURES = Path(os.environ.get("IMAGERANK_SHARED_FIXTURES", ROOT.parent / "shared" / "fixtures"))


def shared_fixture(relative: str) -> Path:
    """Path of a file in ../shared/fixtures; a missing file fails the test (never skips it) and says where to look."""
    import pytest

    path = SHARED_FIXTURES / relative
    if not path.exists():
        pytest.fail(f"test fixture {relative} is missing: expected at {path} (the shared fixtures live in "
                    f"../shared/fixtures next to the repository; set IMAGERANK_SHARED_FIXTURES=/path/to/fixtures "
                    f"to read them from elsewhere)", pytrace=False)
    return path


class KillWorkerWhenTaskStarts(WorkerPlugin):
    """A Dask worker plugin that kills its worker process (``os._exit``, as a crash would) the moment a task of
    ``task_prefix`` (Dask's key prefix, e.g. ``score_partition``) starts executing, once for the whole cluster.

    Faults come from the test side, at a chosen point, with no dependence on timing: the first worker to
    create ``marker`` (atomically) writes its pid and the task key there and dies; every later task, on any
    worker, runs normally. Register it with ``client.register_plugin(KillWorkerWhenTaskStarts(...))``.
    """

    name = "imagerank-kill-worker-when-task-starts"

    def __init__(self, task_prefix: str, marker: str | Path):
        self.task_prefix = task_prefix
        self.marker = str(marker)

    def transition(self, key, start: str, finish: str, **kwargs) -> None:
        # fused tasks carry every fused layer's name: ``read_parquet-blockwisemerge-score_partition-<token>``
        if finish != "executing" or self.task_prefix not in key_split(key).split("-"):
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return  # already fired once
        os.write(fd, f"{os.getpid()} {key}\n".encode())
        os.close(fd)
        os._exit(1)
