"""A real PostgreSQL server for the catalog tests: a throwaway cluster on a free port, for the whole session."""

from __future__ import annotations

import pytest

from imagerank.store.postgres_server import PostgresUnavailable, load_image_table, postgres_server


@pytest.fixture(scope="session")
def postgres():
    """A running PostgreSQL server (Debian's binaries); a missing installation fails the tests, never skips them."""
    try:
        with postgres_server() as server:
            yield server
    except PostgresUnavailable as exc:
        pytest.fail(f"{exc}", pytrace=False)


@pytest.fixture(scope="session")
def sample_table(postgres, sample_catalog) -> str:
    """The real 1,899-row catalog sample in an Openverse-shaped ``image`` table; returns its --catalog URL."""
    with postgres.connect() as connection:
        assert load_image_table(connection, sample_catalog, "image") == 1899
    return postgres.url("image")
