"""The ensemble is an ordinary scikit-learn estimator, learns real signal, and learns nothing from noise."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from imagerank.models.ensemble import QuantileMap, ScoreEnsemble
from imagerank.models.evaluation import grouped_cv_predictions, pairwise_accuracy, spearman

FAST = dict(max_iter=25, n_estimators=15, cv=2)


@pytest.fixture(autouse=True)
def one_thread():
    with threadpool_limits(1):
        yield


def synthetic(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 5)), columns=list("abcde"))
    X.loc[rng.random(n) < 0.3, "c"] = np.nan  # missing values are normal in the catalog
    X["constant"] = 1.0
    y = 1 / (1 + np.exp(-(1.5 * X["a"] - X["b"] + rng.normal(0, 0.3, n))))
    groups = pd.Series(rng.integers(0, 60, n)).astype(str)
    return X, y, groups


def test_follows_estimator_conventions():
    model = ScoreEnsemble(**FAST)
    assert clone(model).get_params() == model.get_params()
    with pytest.raises(NotFittedError):
        model.predict(np.zeros((1, 6)))
    X, y, groups = synthetic(200)
    assert model.fit(X, y, groups=groups) is model
    assert model.n_features_in_ == 6 and hasattr(model, "boosting_") and hasattr(model, "forest_")
    assert len(model.weights_) == len(model.estimators_) and model.weights_.sum() == pytest.approx(1)
    prediction = make_pipeline(StandardScaler(), ScoreEnsemble(**FAST)).fit(X, y).predict(X)
    assert prediction.shape == (200,) and ((0 <= prediction) & (prediction <= 1)).all()


@pytest.mark.parametrize("calibrate", ["quantile", "isotonic", None])
def test_calibration_is_monotone_and_keeps_the_order(calibrate):
    X, y, groups = synthetic(300)
    model = ScoreEnsemble(calibrate=calibrate, **FAST).fit(X, y, groups=groups)
    blend, calibrated = model.predict_blend(X), model.predict(X)
    order = np.argsort(blend)
    assert (np.diff(calibrated[order]) >= 0).all()
    assert ((0 <= calibrated) & (calibrated <= 1)).all()
    assert spearman(blend, calibrated) > 0.99  # a strictly increasing map: no new ties


def test_quantile_map_gives_mid_ranks_and_stays_in_range():
    q = QuantileMap().fit([3.0, 1.0, 2.0, 2.0])
    assert q.predict([1.0, 2.0, 3.0]) == pytest.approx([0.125, 0.5, 0.875])
    assert 0 <= q.predict([-100.0])[0] < 0.125 and 0.875 < q.predict([100.0])[0] <= 1


def test_learns_the_signal_across_groups():
    X, y, groups = synthetic()
    predicted = grouped_cv_predictions(ScoreEnsemble(**FAST), X, y, groups)
    assert spearman(predicted, y) > 0.8


def test_shuffled_labels_give_no_skill():
    X, y, groups = synthetic()
    shuffled = pd.Series(np.random.default_rng(1).permutation(y.to_numpy()))
    predicted = grouped_cv_predictions(ScoreEnsemble(**FAST), X, shuffled, groups)
    assert abs(spearman(predicted, shuffled)) < 0.15


def test_pairwise_accuracy_counts_only_same_group_pairs():
    result = pairwise_accuracy([1, 2, 3, 0], [10, 20, 5, 99], ["a", "a", "a", "b"])
    # pairs in group a: (1,2) right, (1,3) wrong, (2,3) wrong; group b has one row
    assert result == {"pairs": 3, "accuracy": pytest.approx(1 / 3), "sampled": False}


def test_pairwise_accuracy_samples_pairs_when_groups_are_huge():
    rng = np.random.default_rng(0)
    n = 30_000  # two creators of 15k images: 225 M same-creator pairs, never materialized
    actual = rng.normal(size=n)
    predicted = actual + rng.normal(0, 1.0, n)  # true pairwise accuracy: 1 - arccos(1/sqrt(2)) / pi = 0.75
    groups = np.repeat(["a", "b"], n // 2)
    result = pairwise_accuracy(predicted, actual, groups, max_pairs=50_000)
    assert result["sampled"] and result["pairs"] == 50_000
    assert result["accuracy"] == pytest.approx(0.75, abs=0.01)
    exact = pairwise_accuracy(predicted[:400], actual[:400], groups[:400])
    assert not exact["sampled"] and exact["pairs"] == 400 * 399 // 2
