"""Connect to the Dask cluster a job runs on: the given scheduler, else a LocalCluster sized to the machine."""

from __future__ import annotations

import atexit
import functools
import importlib.util
import os
import sys
import threading
from contextlib import contextmanager, redirect_stdout
from typing import Callable, Iterator

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

    _import_expression_modules()
    patched = 0
    for obj in gc.get_objects():
        if isinstance(obj, functools.cached_property) and getattr(obj.func, "__module__", "").startswith("dask") \
                and not isinstance(obj.lock, _NoLock):
            obj.lock = _NoLock()
            patched += 1
    return patched



#: packages of dask expression classes whose modules dask imports only on first use (cumsum, rolling, .loc, ...)
_LAZY_DASK_PACKAGES = ("dask.dataframe.dask_expr", "dask.dataframe.tseries", "dask.array._array_expr")


def _import_expression_modules() -> None:
    """Import every module of :data:`_LAZY_DASK_PACKAGES` (tests aside), so that the classes of the lazily
    imported ones (``_cumulative``, ``_rolling``, ...) are patched too, not only those loaded so far."""
    import pkgutil

    def walk(package: str) -> None:
        module = _try_import(package)
        for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
            if info.ispkg and info.name != "tests":
                walk(f"{package}.{info.name}")
            elif not info.ispkg:
                _try_import(f"{package}.{info.name}")

    for package in _LAZY_DASK_PACKAGES:
        walk(package)


def _try_import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:  # an optional dependency of dask that is not installed
        return None


unlock_dask_cached_properties()


def local_cluster(n_workers: int | None = None, *, memory_limit: str = "auto", dashboard: bool = True,
                  quiet: bool = True) -> LocalCluster:
    """The LocalCluster every job here starts when no scheduler is given: one single-threaded worker process
    per core (pixel decoding, sklearn and Feast's encoders hold the GIL, so processes beat threads).

    ``dashboard``: on a free loopback port (port 0: a second cluster on the machine gets no "Port 8787 is
    already in use"; loopback, like the scheduler: Dask's default serves its pages on every interface).
    """
    return LocalCluster(n_workers=n_workers or max(1, os.cpu_count() or 1), threads_per_worker=1, processes=True,
                        memory_limit=memory_limit, dashboard_address="127.0.0.1:0" if dashboard else None,
                        **({"silence_logs": 40} if quiet else {}))


@contextmanager
def dask_client(scheduler: str | None = None, *, n_workers: int | None = None,
                memory_limit: str = "auto", quiet: bool = True) -> Iterator[Client]:
    """Yield a distributed Client.

    ``scheduler`` (or ``DASK_SCHEDULER_ADDRESS``) selects an existing cluster; otherwise a
    :func:`local_cluster` is started and closed on exit.
    """
    address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        with Client(address) as client:
            say_dashboard(client)
            yield client
        return
    with local_cluster(n_workers, memory_limit=memory_limit, quiet=quiet) as cluster:
        with Client(cluster) as client:
            say_dashboard(client)
            yield client


_SHARED_LOCK = threading.Lock()
_SHARED: dict[str, object] = {}
_UNLOCKED_AGAIN = False


def _close_shared_cluster() -> None:
    for name in ("client", "cluster"):
        obj = _SHARED.pop(name, None)
        if obj is not None:
            try:
                obj.close()
            except Exception:  # noqa: BLE001 - the process is exiting: nothing left to tell
                pass


def shared_client(scheduler: str | None = None, *, n_workers: int | None = None,
                  worker_setup: Callable[[], None] | None = None) -> tuple[Client, bool]:
    """``(client, owned)`` for code another program calls (Feast calls the materialization engine once per view).

    ``scheduler`` (or ``DASK_SCHEDULER_ADDRESS``): a new client the caller closes (``owned``); else the active
    default client; else one :func:`local_cluster` (no dashboard) per process, started on the first call and
    closed at exit, with ``worker_setup`` run once on its workers. None of these becomes the default client.
    """
    global _UNLOCKED_AGAIN
    if not _UNLOCKED_AGAIN:  # dask classes imported since this module's import (it walks gc: once)
        unlock_dask_cached_properties()
        _UNLOCKED_AGAIN = True
    address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        return Client(address, set_as_default=False), True
    from distributed import default_client

    try:
        return default_client(), False
    except ValueError:
        pass
    with _SHARED_LOCK:
        if "client" not in _SHARED:
            cluster = local_cluster(n_workers, dashboard=False)
            _SHARED["cluster"] = cluster
            _SHARED["client"] = client = Client(cluster, set_as_default=False)
            if worker_setup is not None:
                client.run(worker_setup)
            atexit.register(_close_shared_cluster)
        return _SHARED["client"], False


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


def persist(client: Client | None, collection, label: str | None = None):
    """Persist a Dask collection on the cluster and wait for it, with a progress bar for long stages.

    ``client``: None for the default client, or, without one, Dask's local scheduler (which computes in
    place). The collection's own ``persist`` under ``client.as_current()`` rather than ``client.persist`` or
    ``dask.persist``: a ``to_parquet`` of what those return failed with "lost dependencies" in the score stage.

    It waits because a LocalCluster's scheduler deserializes the graph in a thread of this process: a driver
    building its next expressions meanwhile raced it inside dask's expression caches, which are not
    thread-safe, and the persisted graph was lost ("lost dependencies" at the next write). Waiting also
    raises a failed piece's own error here, under the stage that persisted it.
    """
    from distributed import futures_of, wait

    if client is None:
        try:
            from distributed import default_client

            client = default_client()
        except ValueError:
            return collection.persist()  # no cluster: the local scheduler has computed it on return
    with client.as_current():
        persisted = collection.persist()
    progress_bar(persisted, label)
    futures = futures_of(persisted)
    wait(futures)
    for future in futures:
        if future.status != "finished":
            future.result()  # raises the piece's error (or why it was cancelled)
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
