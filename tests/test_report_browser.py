"""The HTML report in a real headless Chromium: it renders, logs no errors, loads nothing from the network."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from imagerank.reporting.browser import check_page, find_chromium
from imagerank.reporting.build import SECTIONS
from test_report import build_report_workdir

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: Screenshots are kept here (outside the temporary directories) so a person can look at them after a run.
SCREENSHOTS = Path(os.environ.get("IMAGERANK_SCREENSHOTS", Path(tempfile.gettempdir()) / "imagerank-report-screenshots"))


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        pytest.fail("chromium is not installed: run `make system-deps` to install it", pytrace=False)
    return path


@pytest.fixture(scope="module")
def checked(chromium, tmp_path_factory, dask_client):
    _, _, report = build_report_workdir(tmp_path_factory, dask_client)
    shots = tmp_path_factory.mktemp("screenshots")
    check = check_page(report, shots, chromium=chromium, timeout=120)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, path in check.screenshots.items():
        shutil.copy(path, SCREENSHOTS / path.name)
    return check


def test_report_renders_every_section_and_plot(checked):
    facts = checked.facts
    assert facts["title"].startswith("imagerank report")
    assert facts["sections"] == SECTIONS and facts["toc_links"] == len(SECTIONS)
    assert facts["plots"] >= 8 and facts["plots_rendered"] == facts["plots"]
    assert facts["broken_images"] == [] and facts["images"] > facts["plots"]  # thumbnails decoded too
    assert facts["body_width"] <= facts["viewport_width"]  # no horizontal overflow at 1360 px


def test_report_has_no_console_errors_and_needs_no_network(checked):
    assert checked.console_errors == []
    assert checked.network_requests == []


def test_screenshots_are_written(checked):
    for name in ("top", "full"):
        path = checked.screenshots[name]
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 20_000, name
