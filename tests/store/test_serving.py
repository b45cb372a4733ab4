"""Serving as search uses it: the project's own feature_repo, its `ranking` service and the `rank_boost`
on-demand view, through `imagerank lookup` and through `feast serve` over HTTP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imagerank.store.boost import rank_boost
from imagerank.store.feast_repo import (apply_and_materialize, default_feature_repo, feature_store, lookup,
                                       views_to_materialize)

from .conftest import feast_serve, get_online_features

T = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(hours=1)  # within materialize-incremental's window
N = 40


def _write(frame: pd.DataFrame, path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path / "part.0.parquet", index=False)


@pytest.fixture(scope="module")
def served_workdir(tmp_path_factory, dask_client) -> tuple[Path, pd.DataFrame]:
    """A work directory with scores, domain and metadata features (what search reads) and domain stats (what it
    does not), applied and materialized with the project's feature_repo (the Dask engine on the test cluster)."""
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
    _write(pd.DataFrame({"domain": ["flickr.com", "wikimedia.org"], "rank_score": [0.9, 0.7], "images": [30, 10],
                         "providers": [1, 1], "observed_share": [0.5, 0.25], "event_timestamp": [T, T]}),
           workdir / "features" / "domain_stats")
    done = apply_and_materialize(default_feature_repo(), workdir, scheduler=dask_client.scheduler.address)
    assert done["materialized_views"] == ["image_scores", "image_domain", "image_metadata"]
    return workdir, scores.set_index("image_id")


DOMAIN_STATS = ["domain_stats:rank_score", "domain_stats:images"]


def _domain_stats(workdir: Path) -> dict:
    store = feature_store(default_feature_repo(), workdir)
    return store.get_online_features(features=DOMAIN_STATS, entity_rows=[{"domain": "flickr.com"}]).to_dict()


@pytest.mark.slow
def test_materialization_pushes_only_what_search_reads_unless_asked(served_workdir, dask_client):
    workdir, _ = served_workdir
    store = feature_store(default_feature_repo(), workdir)
    assert not store.get_feature_view("domain_stats").materialization_intervals  # by default: not pushed
    assert _domain_stats(workdir)["rank_score"] == [None]
    assert set(views_to_materialize(store, ["all"])) == {"image_scores", "image_domain", "image_metadata",
                                                         "domain_stats"}  # the views with data
    done = apply_and_materialize(default_feature_repo(), workdir, scheduler=dask_client.scheduler.address,
                                 views=["domain_stats"])
    assert done["materialized_views"] == ["domain_stats"]
    assert _domain_stats(workdir) == {"domain": ["flickr.com"], "rank_score": [0.9], "images": [30]}


@pytest.mark.slow
def test_materialize_views_refuses_unknown_views_and_views_without_data(served_workdir):
    workdir, _ = served_workdir
    store = feature_store(default_feature_repo(), workdir)
    with pytest.raises(ValueError, match="unknown feature view.*no_such_view.*pass 'all' or some of .*image_scores"):
        views_to_materialize(store, ["image_scores", "no_such_view"])
    with pytest.raises(FileNotFoundError, match="no data for feature view.*image_pixels"):
        views_to_materialize(store, ["image_pixels"])


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


@pytest.mark.slow
def test_feast_serve_answers_the_ranking_service_with_request_data(served_workdir):
    workdir, scores = served_workdir
    repo = default_feature_repo()
    env = {"IMAGERANK_WORKDIR": str(workdir.resolve())}
    ids = list(scores.index[:10])
    modes = ["min", "weighted"] * 5
    weights = [0.25 * (i % 5) for i in range(10)]
    with feast_serve(repo, env=env) as base:
        columns = get_online_features(base, {"feature_service": "ranking", "entities": {
            "image_id": ids, "boost_mode": modes, "boost_weight": weights}})
    assert columns["image_id"] == ids
    for i, image_id in enumerate(ids):
        want = scores.loc[image_id]
        assert columns["popularity"][i] == pytest.approx(want["popularity"], abs=1e-12)
        assert columns["boost"][i] == pytest.approx(
            _expected_boost(want["popularity"], want["authority"], weights[i], modes[i]), abs=1e-12)
    assert {"authority", "popularity_source", "domain_authority", "domain_link_score", "provider"} <= set(columns)
