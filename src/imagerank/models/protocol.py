"""The authority model's evaluation protocol, on a bounded sample, with its folds spread over the cluster.

Grouped by landing domain (a domain's images never sit on both sides): 5-fold cross-validation of the
model and of every ablation variant (without a family's columns; *with* the own-crawl host graph, to show
what that leak would add), and one holdout of whole domains. Every (variant, fold) fit and the holdout fit
are independent jobs of one :func:`~imagerank.models.evaluation.run_folds` call: in this process by
default, spread over the workers inside :func:`~imagerank.models.evaluation.folds_on_cluster`. Figures are
computed on at most ``evaluation_rows`` rows (an id-hash sample), so the evaluation costs the same whatever
the catalog's size.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, GroupShuffleSplit

from imagerank.models.evaluation import fold_predictions, group_keys, run_folds, spearman
from imagerank.models.sampling import ALL_ROWS, stratified_sample
from imagerank.models.source_authority import source_authority

N_SPLITS = 5
LEAK_VARIANT = "ensemble with own-crawl host graph (leak)"


def variants(columns: list[str], ablations: dict[str, list[str]] | None) -> dict[str, list[str]]:
    """``{"ensemble": columns, "ensemble without <name>": columns - removed}`` for ablations that remove something."""
    out = {"ensemble": columns}
    for name, removed in (ablations or {}).items():
        kept = [c for c in columns if c not in set(removed)]
        if len(kept) < len(columns):
            out[f"ensemble without {name}"] = kept
    return out


def ablation_summary(evaluation: dict, variants: dict[str, list[str]], columns: list[str]) -> dict:
    """Per ablation: the columns removed and Spearman with / without them on every split that has both."""
    splits = {"grouped_cv": evaluation.get("grouped_cv", {}), "temporal": evaluation.get("temporal", {}),
              **{f"transfer {k}": v for k, v in evaluation.get("provider_transfer", {}).items()}}
    out = {}
    for variant, kept in variants.items():
        if variant == "ensemble":
            continue
        rows = {}
        for split, table in splits.items():
            with_, without = (table.get("ensemble") or {}), (table.get(variant) or {})
            if "spearman" in with_ and "spearman" in without:
                rows[split] = {"with": with_["spearman"], "without": without["spearman"],
                               "added": with_["spearman"] - without["spearman"]}
        out[variant.removeprefix("ensemble without ")] = {
            "removed_columns": [c for c in columns if c not in set(kept)], "spearman": rows}
    return out


def evaluation_sample(rows: pd.DataFrame, evaluation_rows: int | None, random_state: int = 0) -> pd.DataFrame:
    """At most about ``evaluation_rows`` of ``rows`` (an id-hash sample when there are more), index reset.

    ``rows`` is usually itself an id-hash sample drawn with ``random_state`` (the training sample): its hashes
    all lie below that draw's share, so a second draw with the same hash would keep every row. The
    evaluation draws with the next ``random_state``: a hash independent of the first."""
    rows = rows.reset_index(drop=True)
    if evaluation_rows is None or len(rows) <= evaluation_rows or "image_id" not in rows:
        return rows
    share = {ALL_ROWS: evaluation_rows / len(rows)}
    return stratified_sample(rows, share, None, random_state + 1).reset_index(drop=True)


def evaluate_authority(rows: pd.DataFrame, X: pd.DataFrame, y: pd.Series, make, *, columns: list[str],
                       ablations: dict[str, list[str]] | None, leaking: list[str], holdout_share: float,
                       random_state: int, baselines: dict) -> dict:
    """The ``evaluation`` entry of the authority card, from ``rows`` (the evaluation sample), their inputs ``X``
    and target ``y``; ``make()`` builds an unfitted model."""
    X, y = X.reset_index(drop=True), pd.Series(y).reset_index(drop=True)
    groups = rows["landing_domain"] if "landing_domain" in rows else pd.Series([None] * len(rows))
    groups = groups.astype("string").reset_index(drop=True)
    n_groups = int(groups.nunique())
    evaluation: dict = {"baselines_spearman": baselines}
    frames: dict[str, pd.DataFrame] = {}
    folds: list = []
    if n_groups >= 3:
        named = variants(columns, ablations)
        frames = {name: X[cols] for name, cols in named.items()}
        if leaking:
            frames[LEAK_VARIANT] = X.join(rows[leaking].reset_index(drop=True).astype("float64"))
        keys = group_keys(groups)
        folds = list(GroupKFold(n_splits=min(N_SPLITS, keys.nunique())).split(X, y, keys))
    jobs = [(name, k, train, test, group_keys(groups).iloc[train].to_numpy())
            for name in frames for k, (train, test) in enumerate(folds)]
    holdout = None
    if n_groups >= 2:
        holdout = next(GroupShuffleSplit(n_splits=1, test_size=holdout_share, random_state=random_state)
                       .split(X, y, groups.fillna("__none__")))
        jobs.append(("holdout", 0, holdout[0], holdout[1], None))  # fitted without groups, as before
    fitted = run_folds(fold_predictions, [((make(), frames.get(name, X), y, train, test, keys), {})
                                          for name, _, train, test, keys in jobs])
    predictions = {name: np.full(len(y), np.nan) for name in frames}
    held = None
    for (name, _, _, test, _), predicted in zip(jobs, fitted):
        if name == "holdout":
            held = predicted
        else:
            predictions[name][test] = predicted
    if n_groups >= 3:
        scores = {name: {"spearman": spearman(p, y), "mae": float(np.mean(np.abs(p - y.to_numpy())))}
                  for name, p in predictions.items()}
        evaluation["grouped_cv"] = {"protocol": "GroupKFold by landing domain", "rows": int(len(rows)),
                                    **scores["ensemble"], "baselines": baselines}
        named = variants(columns, ablations)
        if len(named) > 1:
            evaluation["ablations"] = ablation_summary({"grouped_cv": scores}, named, columns)
        if leaking:
            evaluation["leak_ablation"] = {"columns": leaking, "spearman_with_leak": scores[LEAK_VARIANT]["spearman"],
                                           "spearman_without": scores["ensemble"]["spearman"],
                                           "note": "excluded: built from the crawl that built the target"}
    else:
        evaluation["grouped_cv"] = {"skipped": f"only {n_groups} landing domains: domain-grouped folds impossible"}
    if holdout is not None:
        test = holdout[1]
        evaluation["holdout"] = {"protocol": f"{holdout_share:.0%} of landing domains held out (grouped)",
                                 "rows": int(len(test)), "domains": int(groups.iloc[test].nunique()),
                                 "spearman": spearman(held, y.iloc[test]),
                                 "mae": float(np.mean(np.abs(held - y.iloc[test].to_numpy())))}
        if "source" in rows:
            evaluation["holdout"]["openverse_source_authority_spearman"] = spearman(
                source_authority(rows["source"].iloc[test].reset_index(drop=True)), y.iloc[test])
    else:
        evaluation["holdout"] = {"skipped": f"only {n_groups} landing domain: a domain-grouped holdout is impossible"}
    return evaluation
