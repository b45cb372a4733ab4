"""The ensemble is an ordinary scikit-learn estimator, learns real signal, and learns nothing from noise."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from imagerank.models.ensemble import ScoreEnsemble
from imagerank.models.evaluation import grouped_cv_predictions, spearman

FAST = dict(max_iter=60, n_estimators=40)


def synthetic(n=600, seed=0):
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
    X, y, _ = synthetic(200)
    assert model.fit(X, y) is model
    assert model.n_features_in_ == 6 and hasattr(model, "boosting_") and hasattr(model, "forest_")
    prediction = make_pipeline(StandardScaler(), ScoreEnsemble(**FAST)).fit(X, y).predict(X)
    assert prediction.shape == (200,) and ((0 <= prediction) & (prediction <= 1)).all()


def test_learns_the_signal_across_groups():
    X, y, groups = synthetic()
    predicted = grouped_cv_predictions(ScoreEnsemble(**FAST), X, y, groups)
    assert spearman(predicted, y) > 0.8


def test_shuffled_labels_give_no_skill():
    X, y, groups = synthetic()
    shuffled = pd.Series(np.random.default_rng(1).permutation(y.to_numpy()))
    predicted = grouped_cv_predictions(ScoreEnsemble(**FAST), X, shuffled, groups)
    assert abs(spearman(predicted, shuffled)) < 0.15
