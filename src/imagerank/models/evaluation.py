"""Honest evaluation: creator-grouped cross-validation, so no photographer is in both train and test."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.base import clone
from sklearn.model_selection import GroupKFold


def grouped_cv_predictions(estimator, X: pd.DataFrame, y: pd.Series, groups: pd.Series, n_splits: int = 5) -> np.ndarray:
    """Out-of-fold predictions with folds split by ``groups`` (rows without a group are their own group)."""
    groups = groups.astype("string").fillna(pd.Series([f"__row{i}" for i in range(len(groups))], index=groups.index, dtype="string"))
    n_splits = min(n_splits, groups.nunique())
    predictions = np.full(len(y), np.nan)
    for train, test in GroupKFold(n_splits=n_splits).split(X, y, groups):
        model = clone(estimator).fit(X.iloc[train], y.iloc[train])
        predictions[test] = model.predict(X.iloc[test])
    return predictions


def spearman(a, b) -> float:
    value = spearmanr(a, b, nan_policy="omit").statistic
    return float(value) if np.isfinite(value) else float("nan")


def regression_report(predicted: np.ndarray, target: pd.Series, raw_metric: pd.Series) -> dict:
    """Spearman to the raw metric (what ranking needs) and MAE on the [0, 1] target scale."""
    return {
        "rows": int(len(target)),
        "spearman": spearman(predicted, raw_metric),
        "mae": float(np.mean(np.abs(predicted - target.to_numpy()))),
    }
