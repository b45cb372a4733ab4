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
