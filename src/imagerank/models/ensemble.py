"""The scoring ensemble: a stacked, calibrated scikit-learn regressor whose predictions live on [0, 1].

:class:`ScoreEnsemble` is a super learner: candidate gradient-boosting and random-forest members (a small
grid of their main capacity parameter) are fitted on inner folds (grouped, when ``groups`` are given, so
one creator never sits on both sides), their out-of-fold predictions are blended with non-negative
least-squares weights (the weights *are* the hyper-parameter choice, made on inner folds only), and
an isotonic regression of the target on the blended out-of-fold prediction maps it monotonically onto
[0, 1]. Then every member is refitted on all rows.

:func:`popularity_estimator` wraps it in a Pipeline whose ColumnTransformer builds the text features
(:class:`~imagerank.features.text.TextScore`, :class:`~imagerank.features.text.TextEmbedding`) from the
raw document column, so cross-validation fits them on training folds only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import nnls
from scipy.stats import spearmanr
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import GroupKFold, KFold
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted, validate_data

from imagerank.features.text import TEXT_COLUMN, TextEmbedding, TextScore

#: Rows each tree of a forest member is grown from, at most (see :class:`ScoreEnsemble`).
FOREST_MAX_SAMPLES = 10_000
#: Share of the raw blend kept next to the isotonic map, so the calibrated map is strictly increasing even
#: in its flat tails (isotonic alone is a step function: it would turn distinct predictions into ties).
TIE_BREAK = 0.02


class QuantileMap:
    """Monotone map of a prediction onto [0, 1]: its mid-rank position among the training rows' predictions.

    The right calibration for a percentile target (uniform on [0, 1] by construction): the calibrated
    output has the target's distribution and keeps the blend's order exactly (piecewise linear between
    the sorted reference values, so no new ties)."""

    def fit(self, reference):
        reference = np.sort(np.asarray(reference, dtype="float64"))
        n = reference.size
        # Mid-rank positions, ties averaged: equal references share one position.
        frame = pd.Series((np.arange(n) + 0.5) / n).groupby(reference).mean()
        self.x_ = frame.index.to_numpy(dtype="float64")
        self.y_ = frame.to_numpy(dtype="float64")
        return self

    def predict(self, x):
        x = np.asarray(x, dtype="float64")
        if self.x_.size < 2:
            return np.full(x.shape, 0.5)
        # Beyond the reference range: linear out to 0 / 1 one range-width away (still strictly increasing).
        width = self.x_[-1] - self.x_[0]
        return np.interp(x, np.r_[self.x_[0] - width, self.x_, self.x_[-1] + width], np.r_[0.0, self.y_, 1.0])


class CenteredIsotonic:
    """Centered isotonic regression (Oron & Flournoy 2017): isotonic fit, then linear interpolation
    between the centres of its constant blocks, so the map is strictly increasing inside the fitted range
    instead of a staircase (a staircase ties neighbours and coarsens the ranking to a few levels)."""

    def fit(self, x, y, sample_weight=None):
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y, sample_weight=sample_weight)
        fitted = iso.predict(x)
        frame = pd.DataFrame({"x": np.asarray(x, dtype="float64"), "level": fitted})
        blocks = frame.groupby("level", sort=True)["x"].mean()
        self.x_ = blocks.to_numpy()
        self.y_ = blocks.index.to_numpy(dtype="float64")
        order = np.argsort(self.x_)
        self.x_, self.y_ = self.x_[order], np.maximum.accumulate(self.y_[order])
        return self

    def predict(self, x):
        return np.interp(np.asarray(x, dtype="float64"), self.x_, self.y_)


def _as_tuple(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


class ScoreEnsemble(RegressorMixin, BaseEstimator):
    """Stacked gradient boosting + random forests, isotonic-calibrated onto [0, 1] on out-of-fold predictions.

    ``max_leaf_nodes`` and ``forest_min_samples_leaf`` may be tuples: one member per value (the search grid).
    ``forest_max_samples``: each tree is grown from a bootstrap of at most this many rows (all rows, as a
    plain forest does, when there are fewer), so a tree has at most ~``0.63 * forest_max_samples /
    min_samples_leaf`` leaves and fitting and storing a forest cost the same at 10 thousand or 10 million rows.
    ``fit(X, y, groups=None)``: ``groups`` (e.g. creators) make the inner folds grouped.
    """

    def __init__(self, learning_rate: float = 0.05, max_iter: int = 100, max_leaf_nodes=(15,),
                 min_samples_leaf: int = 20, l2_regularization: float = 1.0, n_estimators: int = 100,
                 forest_min_samples_leaf=(4, 12), max_features: float = 0.5, cv: int = 3,
                 calibrate: str | None = "quantile", random_state: int | None = 0, n_jobs: int | None = 1,
                 forest_max_samples: int | None = FOREST_MAX_SAMPLES):
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.n_estimators = n_estimators
        self.forest_min_samples_leaf = forest_min_samples_leaf
        self.max_features = max_features
        self.cv = cv
        self.calibrate = calibrate
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.forest_max_samples = forest_max_samples

    def _members(self, n_rows: int) -> list[tuple[str, object]]:
        """The members, forests bounded for ``n_rows`` training rows (scikit-learn refuses a cap above them)."""
        cap = self.forest_max_samples
        max_samples = cap if cap is not None and n_rows > cap else None
        members = [(f"boosting_leaves{leaves}", HistGradientBoostingRegressor(
            learning_rate=self.learning_rate, max_iter=self.max_iter, max_leaf_nodes=leaves,
            min_samples_leaf=self.min_samples_leaf, l2_regularization=self.l2_regularization,
            random_state=self.random_state)) for leaves in _as_tuple(self.max_leaf_nodes)]
        members += [(f"forest_leaf{leaf}", RandomForestRegressor(
            n_estimators=self.n_estimators, min_samples_leaf=leaf, max_features=self.max_features,
            max_samples=max_samples, random_state=self.random_state, n_jobs=self.n_jobs))
            for leaf in _as_tuple(self.forest_min_samples_leaf)]
        return members

    def fit(self, X, y, groups=None, sample_weight=None):
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", y_numeric=True)
        y = y.astype("float64")
        # A feature with fewer than two distinct values carries no split (and trips boosting's binning).
        self.empty_features_ = np.array([np.unique(col[~np.isnan(col)]).size < 2 for col in X.T], dtype=bool)
        X = self._fill_empty(X)
        members = self._members(len(y))
        oof = self._out_of_fold(X, y, groups, sample_weight)
        if oof is None:  # too few rows for inner folds: plain average, linear clip
            self.weights_ = np.full(len(members), 1.0 / len(members))
            self.calibrator_ = None
            self.inner_cv_ = {}
        else:
            weights, _ = nnls(oof, y)
            self.weights_ = weights / weights.sum() if weights.sum() > 0 else np.full(len(members), 1.0 / len(members))
            blend = oof @ self.weights_
            self.calibrator_ = CenteredIsotonic().fit(blend, y, sample_weight) if self.calibrate == "isotonic" else None
            self.inner_cv_ = {name: _spearman(oof[:, j], y) for j, (name, _) in enumerate(members)}
            self.inner_cv_["blend"] = _spearman(blend, y)
        self.member_names_ = [name for name, _ in members]
        self.estimators_ = [est.fit(X, y, sample_weight=sample_weight) for _, est in members]
        if self.calibrate == "quantile":
            self.calibrator_ = QuantileMap().fit(self._blend(X))
        elif self.calibrate == "quantile_oof" and oof is not None:
            self.calibrator_ = QuantileMap().fit(oof @ self.weights_)
        self.boosting_ = next(e for e in self.estimators_ if isinstance(e, HistGradientBoostingRegressor))
        self.forest_ = next(e for e in self.estimators_ if isinstance(e, RandomForestRegressor))
        return self

    def _out_of_fold(self, X, y, groups, sample_weight) -> np.ndarray | None:
        n = len(y)
        if groups is not None:
            keys = pd.Series(np.asarray(groups, dtype=object)).astype("string")
            keys = keys.fillna(pd.Series([f"__row{i}" for i in range(n)], dtype="string")).to_numpy()
            n_splits = min(self.cv, len(set(keys)))
            if n_splits < 2 or n < 10:
                return None
            splits = list(GroupKFold(n_splits=n_splits).split(X, y, keys))
        else:
            n_splits = min(self.cv, n)
            if n_splits < 2 or n < 10:
                return None
            splits = list(KFold(n_splits, shuffle=True, random_state=self.random_state).split(X))
        oof = np.zeros((n, len(self._members(n))))
        for train, test in splits:
            w = None if sample_weight is None else np.asarray(sample_weight)[train]
            X_train, X_test = X[train], X[test]
            missing = np.isnan(X_train).all(axis=0)  # present elsewhere, absent in this fold: boosting cannot bin it
            if missing.any():
                X_train, X_test = X_train.copy(), X_test.copy()
                X_train[:, missing], X_test[:, missing] = 0.0, 0.0
            for j, (_, est) in enumerate(self._members(len(train))):
                oof[test, j] = est.fit(X_train, y[train], sample_weight=w).predict(X_test)
        return oof

    def _fill_empty(self, X):
        if self.empty_features_.any():
            X = np.array(X, dtype="float64", copy=True)
            X[:, self.empty_features_] = 0.0
        # Forests need finite inputs (scikit-learn >= 1.4 handles NaN in trees, but not in every version/path).
        return X

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def _blend(self, X) -> np.ndarray:
        return np.column_stack([est.predict(X) for est in self.estimators_]) @ self.weights_

    def predict_blend(self, X) -> np.ndarray:
        """The uncalibrated blend of the members (the order the calibration keeps)."""
        check_is_fitted(self, ["estimators_", "weights_"])
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan")
        return self._blend(self._fill_empty(X))

    def predict(self, X):
        blend = self.predict_blend(X)
        if self.calibrator_ is None:
            return np.clip(blend, 0.0, 1.0)
        if isinstance(self.calibrator_, QuantileMap):
            return np.clip(self.calibrator_.predict(blend), 0.0, 1.0)
        calibrated = (1 - TIE_BREAK) * self.calibrator_.predict(blend) + TIE_BREAK * np.clip(blend, 0.0, 1.0)
        return np.clip(calibrated, 0.0, 1.0)


def _spearman(a, b) -> float:
    value = spearmanr(a, b).statistic
    return float(value) if np.isfinite(value) else float("nan")


def popularity_estimator(numeric_columns: list[str], *, text_column: str | None = TEXT_COLUMN,
                         group_column: str | None = "creator", text_components: int = 8,
                         random_state: int | None = 0, **ensemble_params) -> Pipeline:
    """Pipeline(ColumnTransformer(numeric passthrough, text score, text SVD) -> ScoreEnsemble).

    Input is a DataFrame holding ``numeric_columns``, ``text_column`` (documents) and ``group_column``
    (only used to group the text score's inner folds; never a model input). Fit with
    ``fit(X, y, ensemble__groups=...)`` to group the ensemble's inner folds too (see :func:`fit_grouped`).
    """
    parts = [("numeric", "passthrough", list(numeric_columns))]
    if text_column is not None:
        score_input = [text_column] + ([group_column] if group_column else [])
        parts += [("text_score", TextScore(random_state=random_state), score_input)]
        if text_components:
            parts += [("text_svd", TextEmbedding(n_components=text_components, n_features=2 ** 16,
                                                 random_state=random_state), [text_column])]
    features = ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=False)
    return Pipeline([("features", features),
                     ("ensemble", ScoreEnsemble(random_state=random_state, **ensemble_params))])


def fit_grouped(estimator, X, y, groups=None):
    """Fit, passing ``groups`` to a ScoreEnsemble (directly or as the last step of a Pipeline)."""
    if groups is not None:
        if isinstance(estimator, ScoreEnsemble):
            return estimator.fit(X, y, groups=groups)
        if isinstance(estimator, Pipeline) and isinstance(estimator.steps[-1][1], ScoreEnsemble):
            return estimator.fit(X, y, **{f"{estimator.steps[-1][0]}__groups": groups})
    return estimator.fit(X, y)
