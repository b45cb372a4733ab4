"""Honest evaluation: grouped cross-validation, provider-held-out transfer and a temporal split.

Every figure is computed on rows the model never saw (and, for grouped CV, on creators it never saw),
and nothing about a test row (not even a per-creator statistic) is computed from the test fold.

Folds are fitted through :func:`run_folds`: one after another in this process by default, as tasks on
the Dask cluster (joblib's Dask backend) inside :func:`folds_on_cluster` (the training task does that).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from contextlib import contextmanager
from contextvars import ContextVar

from joblib import Parallel, delayed, parallel_config
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold

from imagerank.models.ensemble import fit_grouped


_FOLD_BACKEND: ContextVar[str | None] = ContextVar("imagerank_fold_backend", default=None)


@contextmanager
def folds_on_cluster():
    """Within this block, :func:`run_folds` sends each fold to the Dask cluster of the current client."""
    token = _FOLD_BACKEND.set("dask")
    try:
        yield
    finally:
        _FOLD_BACKEND.reset(token)


def run_folds(function, jobs: list[tuple[tuple, dict]]) -> list:
    """``[function(*args, **kwargs) for args, kwargs in jobs]``, in order: in this process, or inside
    :func:`folds_on_cluster` one task per job through joblib's Dask backend (a frame shared by the jobs is
    scattered once). Each job runs with joblib's sequential backend, so a forest's own trees never become
    tasks of their own."""
    backend = _FOLD_BACKEND.get()
    if backend is None:
        return [function(*args, **kwargs) for args, kwargs in jobs]
    with parallel_config(backend=backend, n_jobs=-1):  # by name: joblib registers its Dask backend on first use
        return Parallel(batch_size=1)(delayed(_one_fold)(function, *args, **kwargs) for args, kwargs in jobs)


def _one_fold(function, *args, **kwargs):
    with parallel_config(backend="sequential"):
        return function(*args, **kwargs)


def group_keys(groups: pd.Series) -> pd.Series:
    """Group keys; rows without a group are each their own group."""
    groups = pd.Series(groups).reset_index(drop=True).astype("string")
    return groups.fillna(pd.Series([f"__row{i}" for i in range(len(groups))], dtype="string"))


def grouped_cv_predictions(estimator, X: pd.DataFrame, y: pd.Series, groups: pd.Series, n_splits: int = 5,
                           *, pass_groups: bool = True) -> np.ndarray:
    """Out-of-fold predictions with folds split by ``groups``; the training fold's groups are handed to the
    estimator (inner folds of the ensemble) when ``pass_groups``."""
    X = X.reset_index(drop=True)
    y = pd.Series(y).reset_index(drop=True)
    keys = group_keys(groups)
    n_splits = min(n_splits, keys.nunique())
    folds = list(GroupKFold(n_splits=n_splits).split(X, y, keys))
    fitted = run_folds(fold_predictions, [((estimator, X, y, train, test,
                                             keys.iloc[train].to_numpy() if pass_groups else None), {})
                                           for train, test in folds])
    predictions = np.full(len(y), np.nan)
    for (_, test), predicted in zip(folds, fitted):
        predictions[test] = predicted
    return predictions


def fold_predictions(estimator, X: pd.DataFrame, y: pd.Series, train: np.ndarray, test: np.ndarray,
                     groups: np.ndarray | None = None) -> np.ndarray:
    """Fit a clone of ``estimator`` on the ``train`` rows (with their groups, if any) and predict ``test``:
    one fold, the unit of work spread over the cluster."""
    model = fit_grouped(clone(estimator), X.iloc[train], y.iloc[train], groups)
    return np.asarray(model.predict(X.iloc[test]), dtype="float64")


def spearman(a, b) -> float:
    a, b = np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64")
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    value = spearmanr(a[ok], b[ok]).statistic
    return float(value) if np.isfinite(value) else float("nan")


#: Same-group pairs counted exactly up to this many; beyond it a uniform sample of this many (bounded memory).
MAX_PAIRS = 200_000


def pairwise_accuracy(predicted, actual, groups, *, max_pairs: int = MAX_PAIRS, random_state: int = 0) -> dict:
    """Share of same-group pairs with different actual values that the prediction orders correctly
    (prediction ties count one half). The within-creator ordering: what a creator-level prior cannot give.

    Every pair is counted when the groups hold at most ``max_pairs`` pairs; otherwise ``max_pairs`` pairs
    are drawn uniformly among all same-group pairs (``sampled`` says so), so memory stays bounded at
    millions of rows and a creator with 100k images costs no more than one with 100."""
    p = np.asarray(predicted, dtype="float64")
    a = np.asarray(actual, dtype="float64")
    codes = pd.factorize(group_keys(groups).to_numpy())[0]
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    pair_counts = sizes.astype("float64") * (sizes - 1) / 2
    total = float(pair_counts.sum())
    if total == 0:
        return {"pairs": 0, "accuracy": float("nan"), "sampled": False}
    if total <= max_pairs:
        firsts, seconds = [], []
        for g in np.flatnonzero(sizes > 1):
            i, j = np.triu_indices(sizes[g], 1)
            firsts.append(order[starts[g] + i])
            seconds.append(order[starts[g] + j])
        first, second, sampled = np.concatenate(firsts), np.concatenate(seconds), False
    else:
        rng = np.random.default_rng(random_state)
        g = rng.choice(sizes.size, size=max_pairs, p=pair_counts / total)
        i = rng.integers(0, sizes[g])
        j = rng.integers(0, sizes[g] - 1)
        j = j + (j >= i)  # a different member of the same group
        first, second, sampled = order[starts[g] + i], order[starts[g] + j], True
    da = np.sign(a[first] - a[second])
    dp = np.sign(p[first] - p[second])
    counted = (da != 0) & np.isfinite(da) & np.isfinite(dp)
    pairs = int(counted.sum())
    right = float(((dp == da) & counted).sum() + 0.5 * ((dp == 0) & counted).sum())
    return {"pairs": pairs, "accuracy": right / pairs if pairs else float("nan"), "sampled": sampled}


def quantile_lookup(percentile: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Values of ``reference``'s empirical quantile function at ``percentile`` (maps a [0, 1] score back
    onto a metric's scale, e.g. log views, using the training rows only)."""
    reference = np.sort(np.asarray(reference, dtype="float64"))
    n = reference.size
    return np.interp(np.clip(percentile, 0, 1), (np.arange(n) + 0.5) / n, reference)


def ranking_report(predicted: np.ndarray, metric: pd.Series, *, groups: pd.Series | None = None,
                   age_days: pd.Series | None = None, log_predicted: np.ndarray | None = None) -> dict:
    """Spearman to the raw metric (and to the metric per day of age), MAE on log1p(metric) of
    ``log_predicted`` (the prediction mapped onto log1p(metric) by the *training* rows' quantiles; the caller
    does that inside each fold), same-group pairwise accuracy, and AUC of 'metric > 0' (the only ordering a
    mostly-zero metric such as wikimedia's global usage gives)."""
    predicted = np.asarray(predicted, dtype="float64")
    metric = pd.Series(metric).reset_index(drop=True).astype("float64")
    out = {"rows": int(len(metric)), "spearman": spearman(predicted, metric)}
    if age_days is not None:
        per_day = metric / pd.Series(age_days).reset_index(drop=True).astype("float64").clip(lower=1.0)
        out["spearman_per_day"] = spearman(predicted, per_day)
    if log_predicted is not None:
        error = np.abs(np.asarray(log_predicted, dtype="float64") - np.log1p(metric.to_numpy()))
        out["mae_log"] = float(np.nanmean(error)) if np.isfinite(error).any() else float("nan")
    if groups is not None:
        pairs = pairwise_accuracy(predicted, metric, groups)
        out["pairwise_same_creator"] = pairs["accuracy"]
        out["same_creator_pairs"] = pairs["pairs"]
    positive = (metric > 0).to_numpy()
    finite = np.isfinite(predicted)
    if 0 < positive[finite].sum() < finite.sum():
        out["auc_nonzero"] = float(roc_auc_score(positive[finite], predicted[finite]))
    return out


def regression_report(predicted: np.ndarray, target: pd.Series, raw_metric: pd.Series) -> dict:
    """Spearman to the raw metric (what ranking needs) and MAE on the [0, 1] target scale."""
    return {
        "rows": int(len(target)),
        "spearman": spearman(predicted, raw_metric),
        "mae": float(np.mean(np.abs(np.asarray(predicted) - np.asarray(target, dtype="float64")))),
    }
