"""Shared test setup: real fixtures from ../shared (skipped only outside CI), a real Dask LocalCluster."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = ROOT.parent / "shared" / "fixtures"
IN_CI = os.environ.get("CI", "").lower() == "true"


def shared_fixture(relative: str) -> Path:
    """Path of a file in ../shared/fixtures; skip when absent locally, fail under CI."""
    path = SHARED_FIXTURES / relative
    if not path.exists():
        if IN_CI:
            pytest.fail(f"fixture {path} is missing (CI must have ../shared/fixtures)")
        pytest.skip(f"fixture {path} not present (../shared/fixtures absent)")
    return path


@pytest.fixture(scope="session")
def sample_catalog() -> Path:
    return shared_fixture("catalog/openverse_sample_images.csv")


@pytest.fixture(scope="session")
def dask_client():
    """One real LocalCluster (2 single-threaded worker processes) for the whole test session."""
    from imagerank.cluster import dask_client as make_client

    with make_client(n_workers=2, memory_limit="4GiB") as client:
        yield client
