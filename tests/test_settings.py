"""Each default lives once, in imagerank.settings: the CLI, the library functions and the pipelines take it
from there, and the run's event time is one value set once."""

from __future__ import annotations

import inspect

import pandas as pd
import pytest

from imagerank.cli import build_parser, image_limits
from imagerank.graph import build as graph_build
from imagerank.graph.pagerank import pagerank, pagerank_blocked
from imagerank.inputs import InputError
from imagerank.popularity import StandardizationConfig
from imagerank.settings import (DEFAULT_RETRAIN, PAGERANK, RETRAIN_POLICIES, STANDARDIZATION_PERCENTILE,
                                ImageLimits, PageRankSettings, event_time)
from pipelines import graph as graph_stage
from pipelines.recalculate import RecalculateOptions, checked_options, run_parameters


def test_event_time_is_utc_to_the_second():
    assert event_time("2026-11-29T13:14:15.987+02:00") == pd.Timestamp("2026-11-29T11:14:15", tz="UTC")
    assert event_time("2026-11-29 13:14:15.5") == pd.Timestamp("2026-11-29T13:14:15", tz="UTC")  # naive = UTC
    now = event_time()
    assert str(now.tz) == "UTC" and now.microsecond == 0 and now.nanosecond == 0


def test_cli_defaults_are_the_settings():
    parser = build_parser()
    run = parser.parse_args(["recalculate", "--catalog", "c.csv"])
    assert run.percentile == STANDARDIZATION_PERCENTILE and run.retrain == DEFAULT_RETRAIN
    assert image_limits(run) == ImageLimits()
    graph = parser.parse_args(["graph", "build"])
    assert (graph.damping, graph.tol, graph.max_iter) == (PAGERANK.damping, PAGERANK.tol, PAGERANK.max_iter)
    assert parser.parse_args(["features", "popularity"]).percentile == STANDARDIZATION_PERCENTILE
    for policy in RETRAIN_POLICIES:
        assert parser.parse_args(["recalculate", "--catalog", "c.csv", "--retrain", policy]).retrain == policy
    with pytest.raises(SystemExit):
        parser.parse_args(["recalculate", "--catalog", "c.csv", "--retrain", "sometimes"])
    limited = parser.parse_args(["recalculate", "--catalog", "c.csv", "--max-image-bytes", "10", "--allow-remote-images"])
    assert image_limits(limited) == ImageLimits(max_bytes=10, allow_remote=True)


def test_library_defaults_are_the_settings():
    assert StandardizationConfig().percentile == STANDARDIZATION_PERCENTILE
    for fn in (pagerank, pagerank_blocked, graph_build.page_graph, graph_build.host_graph, graph_build.pages_frame,
               graph_stage.run_graph, graph_stage.run_linkgraph):
        params = inspect.signature(fn).parameters
        assert params["damping"].default == PAGERANK.damping, fn
        assert params["tol"].default == PAGERANK.tol and params["max_iter"].default == PAGERANK.max_iter, fn
    assert inspect.signature(graph_stage.run_link_features).parameters["damping"].default == PAGERANK.damping
    assert RecalculateOptions(catalog=[], workdir="w").retrain == DEFAULT_RETRAIN


def test_image_limits_are_one_typed_value():
    assert ImageLimits.from_kwargs(max_bytes=None, timeout_s=3) == ImageLimits(timeout_s=3)
    with pytest.raises(TypeError, match="max_byte"):
        ImageLimits.from_kwargs(max_byte=1)
    assert ImageLimits(max_pixels=0, timeout_s=-1).problems() == [
        "image limit max_pixels must be positive, not 0", "image limit timeout_s must be positive, not -1"]
    options = RecalculateOptions(catalog=[], workdir="w", image_limits=ImageLimits(max_bytes=5))
    assert run_parameters(options)["image_limits"] == {**ImageLimits().to_dict(), "max_bytes": 5}


def test_a_run_refuses_an_out_of_range_image_limit(tmp_path, sample_catalog):
    options = RecalculateOptions(catalog=[str(sample_catalog)], workdir=tmp_path / "w",
                                 image_limits=ImageLimits(timeout_s=0))
    with pytest.raises(InputError, match="timeout_s must be positive"):
        checked_options(options)
    assert not (tmp_path / "w").exists()


def test_pagerank_settings_are_checked():
    with pytest.raises(ValueError, match="damping"):
        PageRankSettings(damping=1.0)
    with pytest.raises(ValueError, match="max_iter"):
        PageRankSettings(max_iter=0)
