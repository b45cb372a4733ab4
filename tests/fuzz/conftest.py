"""Loads the fuzz suite's Hypothesis profile (see :mod:`fuzzkit`) and reports how many inputs it tried."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzzkit import TRIED  # noqa: E402  (importing fuzzkit registers and loads the profile)
from hypothesis import settings  # noqa: E402


def pytest_terminal_summary(terminalreporter):
    if TRIED:
        total = sum(len(v) for v in TRIED.values())
        per = ", ".join(f"{k} {len(v)}" for k, v in sorted(TRIED.items()))
        terminalreporter.write_line(f"fuzz: {total} distinct hostile inputs tried ({per}); "
                                    f"profile {settings.default.max_examples} examples/property")
