"""Honest evaluation: grouped cross-validation, provider-held-out transfer and a temporal split.

Every figure is computed on rows the model never saw (and, for grouped CV, on creators it never saw),
and nothing about a test row (not even a per-creator statistic) is computed from the test fold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold

from imagerank.models.ensemble import fit_grouped


def _group_keys(groups: pd.Series) -> pd.Series:
    """Group keys; rows without a group are each their own group."""
    groups = pd.Series(groups).reset_index(drop=True).astype("string")
    return groups.fillna(pd.Series([f"__row{i}" for i in range(len(groups))], dtype="string"))


def grouped_cv_predictions(estimator, X: pd.DataFrame, y: pd.Series, groups: pd.Series, n_splits: int = 5,
                           *, pass_groups: bool = True) -> np.ndarray:
    """Out-of-fold predictions with folds split by ``groups``; the training fold's groups are handed to the
    estimator (inner folds of the ensemble) when ``pass_groups``."""
    X = X.reset_index(drop=True)
    y = pd.Series(y).reset_index(drop=True)
    keys = _group_keys(groups)
    n_splits = min(n_splits, keys.nunique())
    predictions = np.full(len(y), np.nan)
    for train, test in GroupKFold(n_splits=n_splits).split(X, y, keys):
        model = fit_grouped(clone(estimator), X.iloc[train], y.iloc[train],
                            keys.iloc[train].to_numpy() if pass_groups else None)
        predictions[test] = model.predict(X.iloc[test])
    return predictions


def spearman(a, b) -> float:
    a, b = np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64")
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    value = spearmanr(a[ok], b[ok]).statistic
    return float(value) if np.isfinite(value) else float("nan")


def pairwise_accuracy(predicted, actual, groups) -> dict:
    """Share of same-group pairs with different actual values that the prediction orders correctly
    (prediction ties count one half). The within-creator ordering: what a creator-level prior cannot give."""
    frame = pd.DataFrame({"p": np.asarray(predicted, dtype="float64"), "a": np.asarray(actual, dtype="float64"),
                          "g": _group_keys(groups).to_numpy()})
    right = pairs = 0.0
    for _, part in frame.groupby("g"):
        if len(part) < 2:
            continue
        p, a = part["p"].to_numpy(), part["a"].to_numpy()
        dp = np.sign(p[:, None] - p[None, :])
        da = np.sign(a[:, None] - a[None, :])
        mask = np.triu(da != 0, 1)
        pairs += mask.sum()
        right += ((dp == da) & mask).sum() + 0.5 * ((dp == 0) & mask).sum()
    return {"pairs": int(pairs), "accuracy": float(right / pairs) if pairs else float("nan")}


def quantile_lookup(percentile: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Values of ``reference``'s empirical quantile function at ``percentile`` (maps a [0, 1] score back
    onto a metric's scale, e.g. log views, using the training rows only)."""
    reference = np.sort(np.asarray(reference, dtype="float64"))
    n = reference.size
    return np.interp(np.clip(percentile, 0, 1), (np.arange(n) + 0.5) / n, reference)


def ranking_report(predicted: np.ndarray, metric: pd.Series, *, groups: pd.Series | None = None,
                   age_days: pd.Series | None = None, train_metric: pd.Series | None = None) -> dict:
    """Spearman to the raw metric (and to the metric per day of age), MAE on log1p(metric) after mapping the
    prediction through the *training* rows' log-metric quantiles, same-group pairwise accuracy, and AUC of
    'metric > 0' (the only ordering a mostly-zero metric such as wikimedia's global usage gives)."""
    predicted = np.asarray(predicted, dtype="float64")
    metric = pd.Series(metric).reset_index(drop=True).astype("float64")
    out = {"rows": int(len(metric)), "spearman": spearman(predicted, metric)}
    if age_days is not None:
        per_day = metric / pd.Series(age_days).reset_index(drop=True).astype("float64").clip(lower=1.0)
        out["spearman_per_day"] = spearman(predicted, per_day)
    if train_metric is not None and len(train_metric):
        log_pred = quantile_lookup(_percentile_of(predicted), np.log1p(pd.Series(train_metric).astype("float64")))
        out["mae_log"] = float(np.mean(np.abs(log_pred - np.log1p(metric.to_numpy()))))
    if groups is not None:
        pairs = pairwise_accuracy(predicted, metric, groups)
        out["pairwise_same_creator"] = pairs["accuracy"]
        out["same_creator_pairs"] = pairs["pairs"]
    positive = (metric > 0).to_numpy()
    if 0 < positive.sum() < len(positive):
        out["auc_nonzero"] = float(roc_auc_score(positive, predicted))
    return out


def _percentile_of(values: np.ndarray) -> np.ndarray:
    """Mid-rank percentile of each value within ``values`` (ties averaged)."""
    return pd.Series(values).rank(pct=True, method="average").to_numpy() - 0.5 / max(len(values), 1)


def regression_report(predicted: np.ndarray, target: pd.Series, raw_metric: pd.Series) -> dict:
    """Spearman to the raw metric (what ranking needs) and MAE on the [0, 1] target scale."""
    return {
        "rows": int(len(target)),
        "spearman": spearman(predicted, raw_metric),
        "mae": float(np.mean(np.abs(np.asarray(predicted) - np.asarray(target, dtype="float64")))),
    }
