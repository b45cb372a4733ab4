"""Test support shared by the test suite and benchmarks: the real fixtures under ../shared/fixtures."""

from __future__ import annotations

import os
from pathlib import Path

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
