"""Test support shared by the test suite and benchmarks: the real fixtures under ../shared/fixtures."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED_FIXTURES = Path(os.environ.get("IMAGERANK_SHARED_FIXTURES", ROOT.parent / "shared" / "fixtures"))
IN_CI = os.environ.get("CI", "").lower() == "true"


def shared_fixture(relative: str) -> Path:
    """Path of a file in ../shared/fixtures; the test is skipped when absent locally, and fails under CI."""
    import pytest

    path = SHARED_FIXTURES / relative
    if not path.exists():
        if IN_CI:
            pytest.fail(f"fixture {path} is missing (CI must have ../shared/fixtures)")
        pytest.skip(f"fixture {path} not present (../shared/fixtures absent)")
    return path
