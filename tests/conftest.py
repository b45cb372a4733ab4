"""Shared test setup: real fixtures from ../shared (a missing one fails), a real Dask LocalCluster."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "corpus"))  # `from badcorpus import ...` anywhere

from imagerank.testing import SHARED_FIXTURES, shared_fixture  # noqa: F401 (re-exported)


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
