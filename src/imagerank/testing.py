"""Test support shared by the test suite and benchmarks: the real fixtures under ../shared/fixtures, and faults
injected into a real Dask cluster from the test side."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

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


class WorkerEnvironment(WorkerPlugin):
    """Environment variables on every worker of a cluster, workers that join later included: a nanny restarts
    a killed worker with the environment the nanny started with, so a one-off ``client.run`` is lost then.
    Register it with ``client.register_plugin(WorkerEnvironment(env))``."""

    name = "imagerank-worker-environment"

    def __init__(self, env: dict[str, str]):
        self.env = dict(env)

    def setup(self, worker) -> None:
        os.environ.update(self.env)


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


@contextmanager
def s3_server(bucket: str = "imagerank") -> Iterator[str]:
    """A throwaway S3 API server over HTTP (moto's standalone server) on a free 127.0.0.1 port, with one bucket.

    Yields the endpoint URL. The caller points clients at it through the standard environment
    (``AWS_ENDPOINT_URL`` and credentials; see :func:`s3_environment`). The server keeps everything in memory
    and dies with the context manager.
    """
    import shutil
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    binary = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    process = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start on port {port} (exit code {process.poll()})")
                time.sleep(0.2)
        request = urllib.request.Request(f"{endpoint}/{bucket}", method="PUT")
        urllib.request.urlopen(request, timeout=10).close()
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def s3_environment(endpoint: str) -> dict[str, str]:
    """The standard AWS environment that points boto/s3fs (and every Dask worker started after it) at ``endpoint``."""
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
