"""Connect to the Dask cluster a job runs on: the given scheduler, else a LocalCluster sized to the machine."""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from contextlib import contextmanager, redirect_stdout
from typing import Iterator

from distributed import Client, LocalCluster


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def unlock_dask_cached_properties() -> int:
    """Drop Python 3.11's class-wide ``cached_property`` locks from dask's expression classes.

    Before 3.12 (CPython gh-87634) ``functools.cached_property`` holds one lock per attribute for *all*
    instances. dask-expr computes ``divisions``/``npartitions`` through nested cached properties both in the
    client's thread and in a LocalCluster scheduler's graph-materializing thread of the same process, taking
    the two locks in opposite orders: a run can deadlock (seen here in the visual-duplicates stage). The
    properties are pure, so computing one twice in a race is harmless; 3.12 dropped the lock for that reason.
    """
    if sys.version_info >= (3, 12):
        return 0
    import gc

    import dask.array  # noqa: F401 - load every dask class that declares cached properties
    import dask.dataframe  # noqa: F401

    patched = 0
    for obj in gc.get_objects():
        if isinstance(obj, functools.cached_property) and getattr(obj.func, "__module__", "").startswith("dask") \
                and not isinstance(obj.lock, _NoLock):
            obj.lock = _NoLock()
            patched += 1
    return patched


unlock_dask_cached_properties()


@contextmanager
def dask_client(scheduler: str | None = None, *, n_workers: int | None = None,
                memory_limit: str = "auto", quiet: bool = True) -> Iterator[Client]:
    """Yield a distributed Client.

    ``scheduler`` (or ``DASK_SCHEDULER_ADDRESS``) selects an existing cluster; otherwise a LocalCluster
    with one single-threaded worker process per core is started (pixel decoding and sklearn hold the
    GIL, so processes beat threads) and closed on exit.
    """
    address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        with Client(address) as client:
            say_dashboard(client)
            yield client
        return
    n_workers = n_workers or max(1, os.cpu_count() or 1)
    silence = {"silence_logs": 40} if quiet else {}
    # port 0: the OS picks a free port, so a second cluster on the machine gets no "Port 8787 is already in use";
    # on loopback, like the scheduler (Dask's default would serve its status pages on every interface)
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                      memory_limit=memory_limit, dashboard_address="127.0.0.1:0", **silence) as cluster:
        with Client(cluster) as client:
            say_dashboard(client)
            yield client


def dashboard_link(client: Client) -> str | None:
    """Where to watch the cluster: Dask's dashboard, or its plain status pages when bokeh is not installed."""
    try:
        link = client.dashboard_link
    except Exception:  # noqa: BLE001 - a scheduler without an HTTP server has no link to show
        return None
    if not link:
        return None
    if importlib.util.find_spec("bokeh") is None:
        return link.rsplit("/", 1)[0] + "/info/main/workers.html (the full dashboard needs bokeh>=3.1)"
    return link


def say_dashboard(client: Client) -> None:
    """One line on stderr, once per cluster connection: stdout carries results only."""
    link = dashboard_link(client)
    if link:
        print(f"[imagerank] Dask dashboard: {link}", file=sys.stderr, flush=True)


def show_progress() -> bool:
    """Progress bars on an interactive terminal, or when IMAGERANK_PROGRESS=1 (e.g. in job logs)."""
    flag = os.environ.get("IMAGERANK_PROGRESS")
    return flag == "1" if flag is not None else sys.stderr.isatty()


def persist(client: Client, collection, label: str):
    """Persist a Dask collection on the cluster, with a progress bar for long stages.

    The collection's own ``persist`` on ``client`` (the current client) rather than ``client.persist`` or
    ``dask.persist``: a ``to_parquet`` of what those return failed with "lost dependencies" in the score
    stage on the real sample.
    """
    with client.as_current():
        persisted = collection.persist()
    progress_bar(persisted, label)
    return persisted


def progress_bar(futures, label: str | None = None) -> None:
    """Wait for ``futures`` (or a persisted collection) behind Dask's text progress bar, drawn on stderr.

    Dask's bar writes to stdout, which carries a command's results (``imagerank features ... | jq``):
    it is redirected for as long as the bar runs. Without progress (see :func:`show_progress`) nothing is
    drawn and nothing waits.
    """
    if not show_progress():
        return
    from distributed import progress

    if label:
        print(f"[imagerank] {label}", file=sys.stderr, flush=True)
    with redirect_stdout(sys.stderr):
        progress(futures)
    print(file=sys.stderr, flush=True)
