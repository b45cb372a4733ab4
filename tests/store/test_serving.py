"""Serving as search uses it: the project's own feature_repo, its `ranking` service and the `rank_boost`
on-demand view, through `imagerank lookup` and through `feast serve` over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imagerank.store.boost import rank_boost
from imagerank.store.feast_repo import apply_and_materialize, default_feature_repo, lookup

T = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(hours=1)  # within materialize-incremental's window
N = 40


def _write(frame: pd.DataFrame, path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path / "part.0.parquet", index=False)


@pytest.fixture(scope="module")
def served_workdir(tmp_path_factory, dask_client) -> tuple[Path, pd.DataFrame]:
    """A work directory with scores, domain and metadata features, applied and materialized with the
    project's feature_repo (the Dask engine on the test cluster)."""
    workdir = tmp_path_factory.mktemp("served")
    rng = np.random.default_rng(11)
    ids = [f"{i:08d}-0000-4000-8000-000000000000" for i in range(N)]
    stamp = pd.Series([T] * N)
    scores = pd.DataFrame({
        "image_id": ids, "popularity": rng.random(N), "authority": rng.random(N),
        "popularity_source": rng.choice(["observed", "predicted", "prior"], N),
        "authority_source": rng.choice(["links", "predicted", "domain_rank"], N),
        "model_version": "v-test", "event_timestamp": stamp,
    })
    scores.loc[3, "authority"] = scores.loc[3, "popularity"]  # a tie between the two numbers
    _write(scores, workdir / "scores")
    link_score = rng.random(N)
    link_score[::5] = np.nan  # landing domains absent from the link graph
    _write(pd.DataFrame({
        "image_id": ids, "landing_host": "www.flickr.com", "landing_domain": "flickr.com",
        **{c: rng.random(N) for c in ("host_rank_score", "domain_rank_score", "host_pr_val", "domain_pr_val",
                                      "domain_authority", "domain_link_pagerank", "domain_link_harmonic",
                                      "domain_link_harmonic_score")},
        "domain_link_in_domains": rng.integers(0, 900, N).astype("float64"), "domain_link_score": link_score,
        "event_timestamp": stamp,
    }), workdir / "features" / "domains")
    _write(pd.DataFrame({
        "image_id": ids, **{c: rng.random(N) for c in ("title_chars", "title_words", "description_chars", "tag_count",
                                                      "license_version", "width", "height", "aspect", "age_days",
                                                      "taken_age_days", "has_geo")},
        "provider": rng.choice(["flickr", "wikimedia"], N), "landing_domain": "flickr.com", "event_timestamp": stamp,
    }), workdir / "features" / "metadata")
    done = apply_and_materialize(default_feature_repo(), workdir, scheduler=dask_client.scheduler.address)
    assert {"image_scores", "image_domain", "image_metadata"} <= set(done["materialized_views"])
    return workdir, scores.set_index("image_id")


def _expected_boost(p: float, a: float, weight: float, mode: str) -> float:
    """Written out independently of imagerank.store.boost: Openverse's min, or the linear blend."""
    return min(p, a) if mode == "min" else weight * p + (1 - weight) * a


@pytest.mark.slow
@pytest.mark.parametrize("mode,weight", [("min", 0.5), ("weighted", 0.8), ("weighted", 0.0)])
def test_lookup_reads_the_ranking_service_with_the_boost(served_workdir, mode, weight):
    workdir, scores = served_workdir
    ids = list(scores.index[:12]) + ["ffffffff-0000-4000-8000-000000000000"]
    rows = lookup(default_feature_repo(), workdir, ids, boost_weight=weight, boost_mode=mode)
    domains = pd.read_parquet(workdir / "features" / "domains").set_index("image_id")
    for row in rows[:-1]:
        want = scores.loc[row["image_id"]]
        assert row["found"] and row["popularity"] == pytest.approx(want["popularity"], abs=1e-12)
        assert row["authority"] == pytest.approx(want["authority"], abs=1e-12)
        assert row["authority_source"] == want["authority_source"]
        assert row["boost"] == pytest.approx(_expected_boost(want["popularity"], want["authority"], weight, mode),
                                             abs=1e-12)
        link = domains.at[row["image_id"], "domain_link_score"]
        assert (row["domain_link_score"] is None) if np.isnan(link) else row["domain_link_score"] == pytest.approx(link)
        assert row["provider"] in ("flickr", "wikimedia")
    assert rows[-1] == {"image_id": ids[-1], "found": False, "error": "unknown image_id: not in the online store"}


@pytest.mark.slow
def test_lookup_refuses_a_bad_boost_request(served_workdir):
    workdir, scores = served_workdir
    with pytest.raises(ValueError, match="boost_mode must be one of"):
        lookup(default_feature_repo(), workdir, [scores.index[0]], boost_mode="max")
    with pytest.raises(ValueError, match=r"boost_weight must lie in \[0, 1\]"):
        lookup(default_feature_repo(), workdir, [scores.index[0]], boost_weight=1.5, boost_mode="weighted")


def test_rank_boost_blends_and_never_invents():
    p = np.array([0.2, 0.9, np.nan, 0.5])
    a = np.array([0.6, 0.3, 0.4, 0.5])
    assert np.allclose(rank_boost(p, a, 0.3, "min"), [0.2, 0.3, np.nan, 0.5], equal_nan=True)
    assert np.allclose(rank_boost(p, a, 0.3, "weighted"), [0.48, 0.48, np.nan, 0.5], equal_nan=True)
    per_row = rank_boost(p, a, [1.0, 0.0, 0.5, 0.5], ["weighted", "weighted", "min", "min"])
    assert np.allclose(per_row, [0.2, 0.3, np.nan, 0.5], equal_nan=True)
    with pytest.raises(ValueError, match="boost_mode"):
        rank_boost(p, a, 0.5, "max")
    lenient = rank_boost(p, a, [0.5, 2.0, 0.5, 0.5], ["max", "weighted", "min", "weighted"], strict=False)
    assert np.allclose(lenient, [np.nan, np.nan, np.nan, 0.5], equal_nan=True)


def _free_port() -> int:
    from imagerank.store.redis_server import free_port

    return free_port()


@pytest.mark.slow
def test_feast_serve_answers_the_ranking_service_with_request_data(served_workdir):
    workdir, scores = served_workdir
    repo = default_feature_repo()
    port = _free_port()
    feast = Path(sys.executable).with_name("feast")
    env = {**os.environ, "IMAGERANK_WORKDIR": str(workdir.resolve())}
    proc = subprocess.Popen([str(feast), "-c", str(repo), "serve", "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(base + "/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"feast serve did not start: {proc.stderr.read().decode()[-2000:]}")
                time.sleep(0.5)
        ids = list(scores.index[:10])
        modes = ["min", "weighted"] * 5
        weights = [0.25 * (i % 5) for i in range(10)]
        body = json.dumps({"feature_service": "ranking",
                           "entities": {"image_id": ids, "boost_mode": modes, "boost_weight": weights}}).encode()
        request = urllib.request.Request(base + "/get-online-features", data=body,
                                         headers={"Content-Type": "application/json"})
        got = json.load(urllib.request.urlopen(request, timeout=60))
        columns = {name: result["values"] for name, result in zip(got["metadata"]["feature_names"], got["results"])}
        assert columns["image_id"] == ids
        for i, image_id in enumerate(ids):
            want = scores.loc[image_id]
            assert columns["popularity"][i] == pytest.approx(want["popularity"], abs=1e-12)
            assert columns["boost"][i] == pytest.approx(
                _expected_boost(want["popularity"], want["authority"], weights[i], modes[i]), abs=1e-12)
        assert {"authority", "popularity_source", "domain_authority", "domain_link_score", "provider"} <= set(columns)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
