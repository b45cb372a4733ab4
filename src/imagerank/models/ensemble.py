"""The scoring ensemble: a scikit-learn regressor whose predictions live on the [0, 1] score scale."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.utils.validation import check_is_fitted, validate_data


class ScoreEnsemble(RegressorMixin, BaseEstimator):
    """Average of gradient boosting and a random forest, clipped to [0, 1].

    Boosting finds the interactions, the forest keeps the variance down on small labelled sets; both
    handle missing features natively, which most catalog rows have (no EXIF, no links, no size).
    """

    def __init__(self, boosting_weight: float = 0.5, learning_rate: float = 0.05, max_iter: int = 300,
                 max_leaf_nodes: int = 15, min_samples_leaf: int = 20, l2_regularization: float = 1.0,
                 n_estimators: int = 300, forest_min_samples_leaf: int = 5, max_features: float = 0.5,
                 random_state: int | None = 0, n_jobs: int | None = 1):
        self.boosting_weight = boosting_weight
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.n_estimators = n_estimators
        self.forest_min_samples_leaf = forest_min_samples_leaf
        self.max_features = max_features
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y, sample_weight=None):
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", y_numeric=True)
        # A feature with fewer than two distinct values carries no split (and trips boosting's binning).
        self.empty_features_ = np.array([np.unique(col[~np.isnan(col)]).size < 2 for col in X.T], dtype=bool)
        X = self._fill_empty(X)
        self.boosting_ = HistGradientBoostingRegressor(
            learning_rate=self.learning_rate, max_iter=self.max_iter, max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf, l2_regularization=self.l2_regularization,
            random_state=self.random_state).fit(X, y, sample_weight=sample_weight)
        self.forest_ = RandomForestRegressor(
            n_estimators=self.n_estimators, min_samples_leaf=self.forest_min_samples_leaf,
            max_features=self.max_features, random_state=self.random_state, n_jobs=self.n_jobs,
        ).fit(X, y, sample_weight=sample_weight)
        return self

    def _fill_empty(self, X):
        if self.empty_features_.any():
            X = np.array(X, dtype="float64", copy=True)
            X[:, self.empty_features_] = 0.0
        return X

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def predict(self, X):
        check_is_fitted(self, ["boosting_", "forest_"])
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan")
        X = self._fill_empty(X)
        w = self.boosting_weight
        blend = w * self.boosting_.predict(X) + (1 - w) * self.forest_.predict(X)
        return np.clip(blend, 0.0, 1.0)
