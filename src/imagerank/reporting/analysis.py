"""Model diagnostics computed from the saved models: permutation importance, per-image contributions,
out-of-fold predictions.

Per-image contributions are a sampled interventional Shapley estimate (the "permutation explainer"): for
each background row ``b`` (a fixed sample of the model's labelled training rows) and each of a few random
feature orderings (and their reverses), the features are switched one at a time from ``b``'s values to the
image's values and each switch is credited with the change in the prediction it causes. Along one path the
credits sum exactly to ``f(x) - f(b)``, so their average sums exactly to ``f(x) - mean_b f(b)``: the
prediction minus the baseline (the mean prediction over the background). It is an approximation of the
Shapley values (finite orderings, finite background), costs ``background x orderings x (features + 1)``
predictions in one batch, and treats the features as independent (like SHAP's interventional mode).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import spearmanr


def feature_columns(model, entry: dict | None = None) -> list[str]:
    columns = getattr(model, "feature_columns", None) or (entry or {}).get("features") or []
    return list(columns)


def model_frame(frame: pd.DataFrame, columns: list[str], model=None) -> pd.DataFrame:
    """The model's input columns of ``frame`` (the model's own ``input_frame`` when it has one: numeric
    features as float64 plus e.g. a raw text column); absent families become NaN."""
    if model is not None and hasattr(model, "input_frame"):
        return model.input_frame(frame)
    out = pd.DataFrame(index=frame.index)
    for column in columns:
        out[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64") if column in frame else np.nan
    return out


def predict(model, X: pd.DataFrame) -> np.ndarray:
    return np.asarray(model.predict(X), dtype="float64")


def spearman(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(spearmanr(a[ok], b[ok]).statistic)


def permutation_importance(model, X: pd.DataFrame, y: np.ndarray, *, n_repeats: int = 3, seed: int = 0,
                           max_batch_rows: int = 200_000) -> pd.DataFrame:
    """Drop in Spearman and rise in MAE when one feature's column is shuffled, per feature (mean, std).

    All shuffled copies are predicted in a few large batches (one ``predict`` per batch, not per feature).
    Features that are constant (or all missing) in ``X`` cannot matter here and get 0 without being predicted.
    """
    rng = np.random.default_rng(seed)
    y = np.asarray(y, dtype=float)
    X = X.reset_index(drop=True)
    base = predict(model, X)
    base_rho, base_mae = spearman(base, y), float(np.mean(np.abs(base - y)))
    varying = [j for j, c in enumerate(X.columns) if X[c].nunique(dropna=False) > 1]
    jobs = [(j, r) for j in varying for r in range(n_repeats)]
    drops = {j: [] for j in varying}
    rises = {j: [] for j in varying}
    n = len(X)
    per_batch = max(1, max_batch_rows // max(n, 1))
    for start in range(0, len(jobs), per_batch):
        chunk = jobs[start:start + per_batch]
        stacked = pd.concat([X] * len(chunk), ignore_index=True)
        for k, (j, _) in enumerate(chunk):
            column = X.columns[j]
            stacked.iloc[k * n:(k + 1) * n, j] = X[column].to_numpy()[rng.permutation(n)]
        out = predict(model, stacked)
        for k, (j, _) in enumerate(chunk):
            p = out[k * n:(k + 1) * n]
            drops[j].append(base_rho - spearman(p, y))
            rises[j].append(float(np.mean(np.abs(p - y))) - base_mae)
    rows = []
    for j, name in enumerate(X.columns):
        d, m = drops.get(j, [0.0]), rises.get(j, [0.0])
        rows.append({"feature": name, "spearman_drop": float(np.nanmean(d)) if d else 0.0,
                     "spearman_drop_std": float(np.nanstd(d)) if d else 0.0,
                     "mae_rise": float(np.mean(m)), "mae_rise_std": float(np.std(m))})
    table = pd.DataFrame(rows).sort_values("mae_rise", ascending=False, kind="stable").reset_index(drop=True)
    table.attrs.update(rows=n, repeats=n_repeats, spearman=base_rho, mae=base_mae)
    return table


@dataclass
class Contributions:
    prediction: float
    baseline: float
    table: pd.DataFrame  # feature, value, background_median, contribution (sorted by |contribution|)
    background_rows: int
    orderings: int

    @property
    def total(self) -> float:
        return float(self.table["contribution"].sum())


def contributions(model, x: pd.DataFrame, background: pd.DataFrame, *, orderings: int = 6,
                  seed: int = 0) -> Contributions:
    """Per-feature contributions of one row ``x`` (a 1-row frame of model inputs) against ``background``.

    See the module docstring: the contributions sum to prediction - baseline (up to float rounding).
    """
    rng = np.random.default_rng(seed)
    background = background.reset_index(drop=True)
    d = x.shape[1]
    paths = []
    for _ in range((orderings + 1) // 2):
        order = rng.permutation(d)
        paths += [order, order[::-1]]
    steps = d + 1
    # mask[s, j]: at step s of a path, feature j already holds the image's value
    masks = []
    for order in paths:
        mask = np.zeros((steps, d), dtype=bool)
        for s_, j in enumerate(order):
            mask[s_ + 1:, j] = True
        masks.append(mask)
    mask = np.concatenate(masks)  # one block per path
    n_bg = len(background)
    columns = {}
    for j, name in enumerate(x.columns):
        own = x[name].iloc[0]
        other = np.repeat(background[name].to_numpy(dtype=object), len(mask))
        use = np.tile(mask[:, j], n_bg)
        values = np.where(use, np.array([own] * len(use), dtype=object), other)
        columns[name] = pd.Series(values).astype(x[name].dtype) if x[name].dtype != object else pd.Series(values)
    out = predict(model, pd.DataFrame(columns))
    credit = np.zeros(d)
    n_paths = n_bg * len(paths)
    for k in range(n_paths):
        p = out[k * steps:(k + 1) * steps]
        order = paths[k % len(paths)]
        credit[order] += np.diff(p)
    credit /= n_paths
    baseline = float(np.mean(out[0::steps]))
    prediction = float(predict(model, x)[0])

    def typical(series: pd.Series):
        if pd.api.types.is_numeric_dtype(series):
            values = pd.to_numeric(series, errors="coerce").astype("float64")
            return float(values.median()) if values.notna().any() else np.nan
        mode = series.dropna().astype(str)
        return mode.mode().iloc[0] if len(mode) else None

    table = pd.DataFrame({
        "feature": list(x.columns), "value": [x[c].iloc[0] for c in x.columns],
        "background_median": [typical(background[c]) for c in x.columns],
        "contribution": credit,
    })
    table = table.reindex(table["contribution"].abs().sort_values(ascending=False, kind="stable").index)
    return Contributions(prediction, baseline, table.reset_index(drop=True), n_bg, len(paths))


def out_of_fold(model, X: pd.DataFrame, y: np.ndarray, groups: pd.Series | None, *, n_splits: int = 5,
                seed: int = 0) -> np.ndarray | None:
    """Grouped out-of-fold predictions from clones of the saved model's estimator (None if not clonable)."""
    from sklearn.base import clone
    from sklearn.model_selection import GroupKFold, KFold

    estimator = getattr(model, "estimator", None)
    if estimator is None:
        return None
    try:
        template = clone(estimator)
    except Exception:  # noqa: BLE001 - a non-sklearn model: no refits
        return None
    y = np.asarray(y, dtype=float)
    if groups is not None:
        groups = groups.astype("string").fillna(pd.Series([f"__row{i}" for i in range(len(groups))],
                                                          index=groups.index, dtype="string"))
        k = min(n_splits, int(groups.nunique()))
        splits = GroupKFold(n_splits=k).split(X, y, groups) if k >= 2 else []
    else:
        k = min(n_splits, len(y))
        splits = KFold(n_splits=k, shuffle=True, random_state=seed).split(X) if k >= 2 else []
    predictions = np.full(len(y), np.nan)
    for train, test in splits:
        fitted = clone(template).fit(X.iloc[train], y[train])
        predictions[test] = np.clip(fitted.predict(X.iloc[test]), 0, 1)
    return predictions if np.isfinite(predictions).any() else None
