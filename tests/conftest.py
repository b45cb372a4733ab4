"""Shared test setup: real fixtures from ../shared (a missing one fails), a real Dask LocalCluster."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "corpus"))  # `from badcorpus import ...` anywhere

from imagerank.testing import SHARED_FIXTURES, shared_fixture  # noqa: F401 (re-exported)

# A graph the scheduler cannot deserialize is logged by distributed at INFO only, with the cause's traceback
# (the scheduler's own ERROR line drops it): keep it in a failing test's captured log.
logging.getLogger("distributed.protocol.pickle").setLevel(logging.INFO)


@pytest.fixture(scope="session")
def sample_catalog() -> Path:
    return shared_fixture("catalog/openverse_sample_images.csv")


@pytest.fixture(scope="session")
def dask_client():
    """One real LocalCluster (2 single-threaded worker processes) for the whole test session."""
    from imagerank.cluster import dask_client as make_client

    with make_client(n_workers=2, memory_limit="4GiB") as client:
        yield client


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 API server (moto's standalone server over HTTP) with bucket ``imagerank``; the standard AWS
    environment points every client at it for the session (Dask workers started later inherit it)."""
    import os

    from imagerank.testing import s3_environment, s3_server

    with s3_server("imagerank") as endpoint:
        saved = {k: os.environ.get(k) for k in s3_environment(endpoint)}
        os.environ.update(s3_environment(endpoint))
        try:
            yield endpoint
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL server (Debian's binaries) on a free port for the session; a missing installation
    fails the tests that need it (``make system-deps`` installs it), never skips them."""
    from imagerank.store.postgres_server import PostgresUnavailable, postgres_server

    try:
        with postgres_server() as server:
            yield server
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def sample_table(postgres, sample_catalog) -> str:
    """The real 1,899-row catalog sample in an Openverse-shaped ``image`` table (jsonb meta_data and tags, integer
    key id in file order); returns its ``--catalog`` URL."""
    from imagerank.store.postgres_server import load_image_table

    with postgres.connect() as connection:
        assert load_image_table(connection, sample_catalog, "image") == 1899
    return postgres.url("image")


@pytest.fixture(scope="session")
def redis_srv():
    """A real redis-server for the session; a missing binary fails the test with the command that installs it."""
    from imagerank.store.redis_server import RedisServerUnavailable, start_redis_server

    try:
        server = start_redis_server()
    except RedisServerUnavailable as e:
        pytest.fail(f"redis-server is not installed: run `make system-deps` ({e})", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sample_recalculation(tmp_path_factory, sample_catalog, dask_client):
    """The whole recalculation of the real 1,899-row sample with the Common Crawl ranks, materialized into Feast,
    run once per session: (work directory, manifest). The tests that use it only read them."""
    from pipelines.recalculate import RecalculateOptions, recalculate

    ranks = sorted(str(p) for p in shared_fixture("ranks").glob("*.txt.gz"))  # host and domain level
    workdir = tmp_path_factory.mktemp("recalculate")
    manifest = recalculate(RecalculateOptions(catalog=[str(sample_catalog)], workdir=workdir, ranks=ranks,
                                              scheduler=dask_client.scheduler.address), quiet=True)
    return workdir, manifest


# ---------------------------------------------------------------- two test processes (pytest-xdist, `make test`)
# Each test module runs whole in one process, so its module fixtures run once; modules that share a session
# result run in the process that computes it. The longest modules start first, so the short ones fill in at the
# end instead of one long module running alone.

#: module -> the module whose process it runs in (they share a session-scoped result)
SAME_PROCESS = {
    "tests/test_full_pipeline.py": "tests/test_report.py",  # build_report_workdir
    "tests/test_report_browser.py": "tests/test_report.py",
    "tests/test_postgres_recalculate.py": "tests/test_recalculate.py",  # sample_recalculation
}
#: the longest modules, longest first (measured: one process, 2 cores); every other module with a slow test follows
LONGEST_FIRST = [
    "tests/test_wheel_install.py", "tests/corpus/test_corpus.py", "tests/test_runs.py", "tests/test_recalculate.py",
    "tests/test_report.py", "tests/graph/test_linkgraph.py", "tests/test_camera_images_e2e.py",
    "tests/test_object_storage.py", "tests/store/test_faults_and_serve.py", "tests/test_cli_behaviour.py",
]


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``-n N`` (``--dist load``): whole modules to a process, SAME_PROCESS modules together, in collection order."""
    if config.getvalue("dist") != "load":
        return None  # an explicit --dist keeps its own scheduler
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return SAME_PROCESS.get(_module(nodeid), _module(nodeid))

    config.option.loadscopereorder = False  # keep the collection order below, not "most tests first"
    return ModuleScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """In an xdist worker: the modules in LONGEST_FIRST order, then the other modules with a slow test, then the
    rest (tests keep their order within a module; every worker sorts the same way, as xdist requires)."""
    if not hasattr(config, "workerinput"):
        return
    slow = {_module(item.nodeid) for item in items if item.get_closest_marker("slow")}
    rank = {module: i for i, module in enumerate(LONGEST_FIRST)}

    def key(item):
        module = SAME_PROCESS.get(_module(item.nodeid), _module(item.nodeid))
        return (rank.get(module, len(rank)), module not in slow)

    items.sort(key=key)


_FUZZ_TRIED: dict[str, set[str]] = {}  # the fuzz tally the workers handed over (tests/fuzz/conftest.py)
_FUZZ_MAX_EXAMPLES: list[int] = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    output = getattr(node, "workeroutput", {})
    for family, digests in output.get("fuzz_tried", {}).items():
        _FUZZ_TRIED.setdefault(family, set()).update(digests)
    if "fuzz_max_examples" in output:
        _FUZZ_MAX_EXAMPLES.append(output["fuzz_max_examples"])


def pytest_terminal_summary(terminalreporter):
    if _FUZZ_TRIED:  # only under pytest-xdist: in one process tests/fuzz/conftest.py reports it
        sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))
        from fuzzkit import summary

        terminalreporter.write_line(summary(_FUZZ_TRIED, max(_FUZZ_MAX_EXAMPLES)))
