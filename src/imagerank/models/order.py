"""Candidate models of the order of images *within* one provider, from the simplest up.

Every candidate reads the same input frame (numeric feature columns, plus the text document and the
creator for the ensemble) and returns a score whose only meaning is its order. The training code picks the
simplest candidate that held-out evidence supports:

- :class:`SingleFeature`: one raw column, oriented by its sign on the training rows (the column with the
  largest absolute Spearman there). A legitimate model: on the sample, text length alone ranks Flickr
  views as well as anything richer.
- :class:`RankLinear`: ridge regression on the columns' within-training quantiles (rank-transformed, so a
  heavy tail or a unit does not dominate). Cheap, and it orders images of one creator better than trees.
- ``ensemble``: the stacked gradient boosting / random forest ensemble with the text score
  (:func:`~imagerank.models.ensemble.popularity_estimator`).
- :class:`TransferOrder`: :class:`RankLinear` on only the columns whose relation to popularity has the same
  direction (and some strength) in every training provider: the order model for providers without a metric.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.impute import SimpleImputer
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import QuantileTransformer

from imagerank.models.evaluation import spearman

#: A column must be present (finite) on at least this share of the training rows to be chosen alone.
MIN_PRESENT_SHARE = 0.5
#: |Spearman| a column needs in every training provider for its direction to count as holding across them.
MIN_AGREEING_RHO = 0.1


def _numeric(X: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.to_numeric(X[c], errors="coerce") if c in X else np.nan for c in columns},
                        index=X.index).astype("float64")


def feature_spearman(X: pd.DataFrame, y, columns: list[str]) -> dict[str, float]:
    """Spearman of each usable column with ``y`` (NaN when the column is mostly missing or constant)."""
    frame = _numeric(X, columns)
    y = np.asarray(y, dtype="float64")
    out = {}
    for column in columns:
        values = frame[column].to_numpy()
        present = np.isfinite(values)
        out[column] = spearman(values, y) if present.mean() >= MIN_PRESENT_SHARE else float("nan")
    return out


class SingleFeature(RegressorMixin, BaseEstimator):
    """The one column with the largest |Spearman| to the target on the training rows, times its sign."""

    def __init__(self, columns: list[str] | None = None):
        self.columns = columns

    def fit(self, X, y):
        rho = feature_spearman(X, y, list(self.columns or []))
        usable = {c: r for c, r in rho.items() if np.isfinite(r)}
        if usable:
            self.column_ = max(usable, key=lambda c: (abs(usable[c]), c))
            self.rho_ = float(usable[self.column_])
            self.sign_ = 1.0 if self.rho_ >= 0 else -1.0
            self.fill_ = float(np.nanmedian(_numeric(X, [self.column_])[self.column_]))
        else:  # nothing varies: a constant (every image ties)
            self.column_, self.rho_, self.sign_, self.fill_ = None, float("nan"), 0.0, 0.0
        return self

    def predict(self, X):
        if self.column_ is None:
            return np.zeros(len(X))
        values = _numeric(X, [self.column_])[self.column_].fillna(self.fill_).to_numpy()
        return self.sign_ * values


class RankLinear(RegressorMixin, BaseEstimator):
    """Ridge (alpha by efficient leave-one-out) on within-training quantiles of the columns."""

    def __init__(self, columns: list[str] | None = None, n_quantiles: int = 200):
        self.columns = columns
        self.n_quantiles = n_quantiles

    def fit(self, X, y):
        frame = _numeric(X, list(self.columns or []))
        self.kept_ = [c for c in frame.columns if frame[c].nunique() > 1]
        if not self.kept_:
            self.pipeline_ = None
            self.mean_ = float(np.mean(y))
            return self
        self.pipeline_ = make_pipeline(
            SimpleImputer(strategy="median"),
            QuantileTransformer(n_quantiles=max(2, min(self.n_quantiles, len(frame))), subsample=100_000,
                                random_state=0),
            RidgeCV(alphas=np.logspace(-2, 3, 12)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self.pipeline_.fit(frame[self.kept_].to_numpy(), np.asarray(y, dtype="float64"))
        return self

    def predict(self, X):
        if self.pipeline_ is None:
            return np.full(len(X), self.mean_)
        return self.pipeline_.predict(_numeric(X, self.kept_).to_numpy())

    def coefficients(self) -> dict[str, float]:
        if self.pipeline_ is None:
            return {}
        return {c: float(w) for c, w in zip(self.kept_, self.pipeline_[-1].coef_)}


def agreeing_columns(X: pd.DataFrame, y, providers, columns: list[str], min_rho: float = MIN_AGREEING_RHO
                     ) -> dict[str, float]:
    """Columns whose Spearman with ``y`` has one sign and at least ``min_rho`` in every provider of ``X``:
    column -> the weakest of those correlations (signed)."""
    providers = pd.Series(np.asarray(providers, dtype=object), index=X.index).astype("string")
    y = pd.Series(np.asarray(y, dtype="float64"), index=X.index)
    per_provider = {p: feature_spearman(X[providers == p], y[providers == p], columns)
                    for p in providers.dropna().unique()}
    out = {}
    for column in columns:
        values = np.array([rho[column] for rho in per_provider.values()], dtype="float64")
        if values.size and np.isfinite(values).all() and (np.abs(values) >= min_rho).all() \
                and len(set(np.sign(values))) == 1:
            out[column] = float(values[np.argmin(np.abs(values))])
    return out


class TransferOrder(RegressorMixin, BaseEstimator):
    """:class:`RankLinear` on the columns whose direction agrees across the training providers; ``providers``
    (one per row) is passed to ``fit``. With no agreeing column it has nothing to order by (``columns_`` is
    empty and every prediction ties)."""

    def __init__(self, columns: list[str] | None = None, min_rho: float = MIN_AGREEING_RHO):
        self.columns = columns
        self.min_rho = min_rho

    def fit(self, X, y, providers=None):
        providers = np.full(len(X), "all", dtype=object) if providers is None else providers
        self.agreeing_ = agreeing_columns(X, y, providers, list(self.columns or []), self.min_rho)
        self.columns_ = sorted(self.agreeing_)
        self.model_ = RankLinear(self.columns_).fit(X, y) if self.columns_ else None
        return self

    def predict(self, X):
        if self.model_ is None:
            return np.zeros(len(X))
        return self.model_.predict(X)
