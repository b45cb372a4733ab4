"""Loads the fuzz suite's Hypothesis profile (see :mod:`fuzzkit`) and reports how many inputs it tried."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzzkit import TRIED, summary  # noqa: E402  (importing fuzzkit registers and loads the profile)
from hypothesis import settings  # noqa: E402


def pytest_terminal_summary(terminalreporter):
    if TRIED:
        terminalreporter.write_line(summary(TRIED, settings.default.max_examples))


def pytest_sessionfinish(session):
    """In a pytest-xdist worker: hand the tally to the controlling process, which reports the whole run's
    (tests/conftest.py)."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None and TRIED:
        workeroutput["fuzz_tried"] = {family: sorted(digests) for family, digests in TRIED.items()}
        workeroutput["fuzz_max_examples"] = settings.default.max_examples
