"""Training is bounded at any catalog size: samples drawn on the workers, forests of bounded size, folds on the
cluster, and the same figures as training on the same sample in one process."""

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import get_task_stream
from threadpoolctl import threadpool_limits

from imagerank.models.ensemble import ScoreEnsemble
from imagerank.models.popularity_model import train_popularity
from imagerank.models.protocol import evaluation_sample
from imagerank.models.sampling import ALL_ROWS, sample_shares, stratified_sample
from imagerank.models.train import TrainingLimits, train_authority


@pytest.fixture(autouse=True)
def one_thread():
    with threadpool_limits(1):
        yield


def catalog_rows(n: int, seed: int = 0) -> pd.DataFrame:
    """Two providers with a metric (one large), one without; 5 % of rows with link evidence over 12 domains."""
    rng = np.random.default_rng(seed)
    quality = rng.normal(size=n)
    provider = np.where(np.arange(n) % 4 == 3, "gamma", np.where(np.arange(n) % 4 == 2, "beta", "alpha"))
    metric = np.where(provider == "gamma", np.nan, np.round(np.exp(2 + quality + rng.normal(0, 0.5, n))))
    evidence = np.arange(n) % 5 == 0
    return pd.DataFrame({
        "image_id": [f"i{i:06d}" for i in range(n)], "provider": pd.array(provider, dtype="string"),
        "creator": pd.array([f"c{i % (n // 6)}" for i in range(n)], dtype="string"),
        "landing_domain": pd.array([f"d{i % 12}.org" for i in range(n)], dtype="string"),
        "age_days": rng.uniform(100, 3000, n), "good": quality + rng.normal(0, 0.5, n), "noise": rng.normal(size=n),
        "metric_value": metric, "observed_popularity": metric / (metric + np.nanmedian(metric)),
        "has_link_evidence": evidence, "link_authority": np.where(evidence, 1 / (1 + np.exp(-quality)), np.nan)})


def test_the_sample_is_the_same_rows_whatever_the_partitioning():
    rows = catalog_rows(4000)
    shares = sample_shares(rows["provider"].value_counts(), 500)
    assert shares["gamma"] == pytest.approx(0.5) and shares["alpha"] == pytest.approx(0.25)
    whole = stratified_sample(rows, shares, "provider", random_state=3)
    parts = pd.concat(stratified_sample(p, shares, "provider", random_state=3) for p in np.array_split(rows, 7))
    assert list(parts["image_id"]) == list(whole["image_id"])
    counts = whole["provider"].value_counts()
    assert ((counts > 400) & (counts < 600)).all()  # about the cap in every stratum
    assert set(stratified_sample(rows, shares, "provider", random_state=4)["image_id"]) != set(whole["image_id"])
    small = sample_shares(rows["provider"].value_counts(), 10_000)
    assert stratified_sample(rows, small, "provider").equals(rows)  # under the cap: every row, untouched
    one = stratified_sample(rows, {ALL_ROWS: 0.1}, None)
    assert 300 < len(one) < 500
    assert len(evaluation_sample(rows, 1000)) < 1200 and evaluation_sample(rows, None).equals(rows)


def test_the_evaluation_sample_of_a_training_sample_is_bounded_too():
    """The training sample is an id-hash draw; the evaluation drawn from it must still shrink to its bound."""
    rows = catalog_rows(20_000)
    training = stratified_sample(rows, {ALL_ROWS: 0.2}, None, random_state=0)  # ~4,000 rows, hashes < 0.2
    evaluation = evaluation_sample(training, 400, random_state=0)
    assert 300 < len(evaluation) < 500, len(evaluation)
    assert set(evaluation["image_id"]) <= set(training["image_id"])


def test_training_limits_come_from_the_environment_or_fail_clearly():
    limits = TrainingLimits.from_env({"IMAGERANK_TRAIN_ROWS_PER_PROVIDER": "20000",
                                      "IMAGERANK_TRAIN_FOREST_MAX_SAMPLES": "none"})
    assert limits.rows_per_provider == 20_000 and limits.forest_max_samples is None
    assert limits.authority_rows == TrainingLimits().authority_rows
    with pytest.raises(ValueError, match="IMAGERANK_TRAIN_EVALUATION_ROWS='many'"):
        TrainingLimits.from_env({"IMAGERANK_TRAIN_EVALUATION_ROWS": "many"})
    with pytest.raises(ValueError, match="at least 1"):
        TrainingLimits.from_env({"IMAGERANK_TRAIN_AUTHORITY_ROWS": "0"})


def test_forest_trees_stop_growing_with_the_rows_and_small_data_is_untouched():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 5))
    y = X[:, 0] + rng.normal(0, 0.3, 4000)
    params = dict(max_iter=10, n_estimators=5, cv=2, forest_min_samples_leaf=(4,))
    leaves = {}
    for n in (1000, 4000):
        model = ScoreEnsemble(forest_max_samples=300, **params).fit(X[:n], y[:n])
        leaves[n] = max(tree.get_n_leaves() for tree in model.forest_.estimators_)
    assert leaves[4000] <= 300 / 4 and leaves[1000] <= 300 / 4  # at most max_samples / min_samples_leaf
    unbounded = ScoreEnsemble(forest_max_samples=None, **params).fit(X, y)
    assert max(tree.get_n_leaves() for tree in unbounded.forest_.estimators_) > 4 * leaves[4000]
    # at or below the cap, the bound changes nothing: the same trees as an unbounded forest
    bounded = ScoreEnsemble(forest_max_samples=1000, **params).fit(X[:1000], y[:1000])
    plain = ScoreEnsemble(forest_max_samples=None, **params).fit(X[:1000], y[:1000])
    assert np.array_equal(bounded.predict(X), plain.predict(X))


@pytest.mark.slow
def test_cluster_training_draws_its_sample_on_the_workers_and_spreads_the_folds(dask_client):
    from pipelines.train import labelled_sample, link_evidence_sample, train_models

    rows = catalog_rows(1200)
    limits = TrainingLimits(rows_per_provider=200, authority_rows=180, evaluation_rows=120, forest_max_samples=100)
    features = dd.from_pandas(rows, npartitions=5)
    with get_task_stream(dask_client) as stream:
        models = train_models(dask_client, features, limits=limits, random_state=1, fast=True)
    popularity, authority = models["popularity"], models["authority"]
    by_provider = popularity.metrics["training_rows_by_provider"]
    assert set(by_provider) == {"alpha", "beta"} and all(140 < n < 260 for n in by_provider.values())
    assert popularity.metrics["limits"] == limits.to_dict()
    assert 130 < authority.metrics["training_rows"] < 230  # 240 rows with evidence, sampled to about 180
    assert authority.metrics["evaluation"]["evaluation_rows"] < authority.metrics["training_rows"]
    # the folds ran as tasks of their own, on both workers
    folds = [t for t in stream.data if "fold" in str(t["key"])]
    assert folds and len({t["worker"] for t in folds}) == 2
    # the same figures as training the same sample in one process, folds one after another
    with dask_client.as_current():
        local = labelled_sample(features, limits.rows_per_provider, 1).compute().sort_values("image_id",
                                                                                             ignore_index=True)
        linked = link_evidence_sample(features, limits.authority_rows, 1).compute().sort_values(
            "image_id", ignore_index=True)
    columns = ["age_days", "good", "noise"]
    alone = train_popularity(local, columns, random_state=1, limits=limits, fast=True)
    assert alone.metrics["evaluation"]["providers"] == popularity.metrics["evaluation"]["providers"]
    assert alone.metrics["served"] == popularity.metrics["served"]
    authority_alone = train_authority(linked, columns, random_state=1, limits=limits, fast=True)
    assert authority_alone.metrics["evaluation"] == authority.metrics["evaluation"]
