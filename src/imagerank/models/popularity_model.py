"""The served popularity model: within-provider order, level across providers, and the evidence for both.

Raw provider metrics are not comparable, and features that rank one provider's images can rank
another's in reverse (on the sample, longer text goes with more Flickr views and with less Wikimedia
usage). So the model keeps two things apart:

- **Order within a provider that has a metric**: candidates from the simplest up
  (:mod:`imagerank.models.order`), each evaluated with creator-grouped cross-validation on that
  provider's rows (targets, score quantiles and metric quantiles fitted inside each training fold). A
  richer candidate is served only when it beats the best single raw feature by :data:`EARN_MARGIN` Spearman
  with within-creator pairwise accuracy of at least :data:`EARN_PAIRWISE`; else the single feature is.
  Predictions land on the provider's own observed scale (its quantile function of Openverse's standardized
  popularity): one map per provider, never a pooled one.
- **Providers without a metric**: an order only from columns whose direction holds in every provider
  that has a metric, served only when leave-one-provider-out transfer validates it for every such provider;
  otherwise every image of the provider gets the provider's **prior** (one level for the provider,
  ``popularity_source = "prior"``). The level comes from evidence every provider has (landing-domain link
  authority and ranks, re-use on the web) when enough providers with a metric exist to validate it, else
  the typical level of the providers with a metric.

A provider with a metric whose own order does not validate serves its median observed value as prior.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import GroupKFold

from imagerank.features.registry import PROVIDER_PROXIES
from imagerank.features.text import TEXT_COLUMN
from imagerank.models.ensemble import QuantileMap, fit_grouped
from imagerank.models.evaluation import (group_keys, pairwise_accuracy, quantile_lookup, ranking_report, run_folds,
                                         spearman)
from imagerank.models.order import RankLinear, SingleFeature, TransferOrder, feature_spearman
from imagerank.models.train import (GROUP_COLUMN, MIN_TRAINING_ROWS, TargetConfig, TrainingLimits, ensemble_estimator,
                                    input_frame, model_inputs, popularity_target)

#: Order candidates, simplest first (the first is the reference a richer one must beat).
CANDIDATES = ("single_feature", "rank_linear", "ensemble")
#: Candidates of the age-normalized variant and of the ceiling figures (cheap ones).
CHEAP_CANDIDATES = ("single_feature", "rank_linear")
EARN_MARGIN = 0.03
EARN_PAIRWISE = 0.6
#: Held-out Spearman an order needs (within a provider, or transferred to every held-out provider) to be served.
MIN_SERVED_SPEARMAN = 0.1
#: Rows with a metric a provider needs for its own creator-grouped evaluation (5 folds of 20).
MIN_PROVIDER_ROWS = 5 * MIN_TRAINING_ROWS
#: Providers with a metric needed before a level model on provider evidence can be validated (LOPO).
MIN_LEVEL_PROVIDERS = 4
#: Columns of evidence every provider has: landing-domain ranks and link authority, re-use on the web.
EVIDENCE_PREFIXES = ("linkgraph_", "domain_link", "domain_rank", "domain_pr", "host_rank", "host_pr",
                     "link_domains", "link_pages", "near_duplicate", "duplicate_")
GRID = np.linspace(0.0, 1.0, 101)
BOOTSTRAP_ROUNDS = 200
BOOTSTRAP_MAX_ROWS = 20_000
LEARNING_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
LEARNING_REPEATS = 3


def evidence_columns(columns) -> list[str]:
    return [c for c in columns if c in PROVIDER_PROXIES or c.startswith(EVIDENCE_PREFIXES)]


def target_value(rows: pd.DataFrame, target: TargetConfig) -> pd.Series:
    """The quantity the target ranks: the metric, or the metric per day since publication."""
    value = rows["metric_value"].astype("float64")
    if target.kind == "per_day_percentile":
        value = value / rows["age_days"].astype("float64").clip(lower=target.min_age_days)
    return value.reset_index(drop=True)


def make_candidate(name: str, columns: list[str], text: bool, random_state: int, fast: bool,
                   forest_max_samples: int | None = TrainingLimits.forest_max_samples):
    if name == "single_feature":
        return SingleFeature(columns)
    if name == "rank_linear":
        return RankLinear(columns)
    if name == "ensemble":
        return ensemble_estimator(columns, text, random_state, fast, forest_max_samples)
    raise ValueError(f"unknown order candidate {name!r}")


# --------------------------------------------------------------------------------------------- evaluation


def provider_cv(rows: pd.DataFrame, columns: list[str], *, text: bool, target: TargetConfig,
                candidates=CANDIDATES, random_state: int = 0, fast: bool = False, n_splits: int = 5,
                keep_creators: float = 1.0,
                forest_max_samples: int | None = TrainingLimits.forest_max_samples) -> tuple[dict, dict]:
    """Creator-grouped CV of each candidate on one provider's rows: ``({name: report}, {name: oof percentile})``.

    Inside each fold: the target percentiles, the map of scores to percentiles and the metric quantiles
    behind ``mae_log`` come from the training fold alone. Reports compare with the raw metric (``spearman``)
    and the metric per day since publication (``spearman_per_day``) whatever the target. ``keep_creators`` < 1 trains on that share of each
    training fold's creators (the learning curve). Folds are fitted through
    :func:`~imagerank.models.evaluation.run_folds` (spread over the cluster inside ``folds_on_cluster``)."""
    rows = rows.reset_index(drop=True)
    keys = group_keys(rows[GROUP_COLUMN] if GROUP_COLUMN in rows else pd.Series([None] * len(rows)))
    metric = rows["metric_value"].astype("float64")
    X = input_frame(rows, columns, text)
    labels = rows[[c for c in ("provider", "metric_value", "age_days") if c in rows]]
    n = len(rows)
    pct = {c: np.full(n, np.nan) for c in candidates}
    logs = {c: np.full(n, np.nan) for c in candidates}
    rng = np.random.default_rng(random_state)
    splits = min(n_splits, keys.nunique())
    folds = []
    for train, test in GroupKFold(n_splits=splits).split(X, metric, keys):
        if keep_creators < 1.0:
            creators = keys.iloc[train].unique()
            kept = set(rng.choice(creators, size=max(2, int(round(keep_creators * len(creators)))), replace=False))
            train = train[keys.iloc[train].isin(kept).to_numpy()]
        folds.append((train, test))
    options = dict(columns=columns, text=text, target=target, candidates=candidates, random_state=random_state,
                   fast=fast, forest_max_samples=forest_max_samples)
    fitted = run_folds(_fold_percentiles, [((X, labels, keys, train, test), options) for train, test in folds])
    tests = [test for _, test in folds]
    for test, (fold_pct, fold_logs) in zip(tests, fitted):
        for name in candidates:
            pct[name][test], logs[name][test] = fold_pct[name], fold_logs[name]
    reports = {name: {**ranking_report(pct[name], metric, groups=keys, age_days=rows.get("age_days"),
                                       log_predicted=logs[name]),
                      "fold_spearman": [spearman(pct[name][t], metric.iloc[t]) for t in tests]}
               for name in candidates}
    return reports, pct


def _fold_percentiles(X: pd.DataFrame, labels: pd.DataFrame, keys: pd.Series, train: np.ndarray, test: np.ndarray,
                      *, columns, text, target, candidates, random_state, fast, forest_max_samples):
    """One creator fold: every candidate fitted on ``train`` (target, score map and metric quantiles from the
    training fold only); the test rows' percentiles and log-metric predictions per candidate."""
    metric = labels["metric_value"].astype("float64")
    y = popularity_target(labels.iloc[train], target).to_numpy()
    usable = np.isfinite(y)  # a per-day target needs a publication date
    train, y = train[usable], y[usable]
    reference = np.log1p(metric.iloc[train].to_numpy())
    reference = reference[np.isfinite(reference)]
    pct, logs = {}, {}
    for name in candidates:
        model = fit_grouped(make_candidate(name, columns, text, random_state, fast, forest_max_samples),
                            X.iloc[train], y, keys.iloc[train].to_numpy())
        score_map = QuantileMap().fit(model.predict(X.iloc[train]))
        pct[name] = score_map.predict(model.predict(X.iloc[test]))
        logs[name] = quantile_lookup(pct[name], reference)
    return pct, logs


def single_feature_table(rows: pd.DataFrame, columns: list[str], target: TargetConfig) -> dict:
    """Every raw column alone over all of the provider's rows (sign chosen on those rows: an optimistic bar)."""
    rows = rows.reset_index(drop=True)
    value = target_value(rows, target)
    keys = group_keys(rows[GROUP_COLUMN])
    table = {}
    for column, rho in feature_spearman(rows, value, columns).items():
        if not np.isfinite(rho):
            continue
        oriented = np.sign(rho) * pd.to_numeric(rows[column], errors="coerce").astype("float64").to_numpy()
        pairs = pairwise_accuracy(oriented, value, keys)
        table[column] = {"spearman": abs(rho), "sign": int(np.sign(rho)), "pairwise_same_creator": pairs["accuracy"]}
    return dict(sorted(table.items(), key=lambda kv: -kv[1]["spearman"]))


def choose_served(reports: dict, best_single: float) -> tuple[str, str]:
    """The simplest candidate as good as anything richer: a richer one must beat the best single raw feature
    by EARN_MARGIN with pairwise accuracy >= EARN_PAIRWISE."""
    bar = best_single + EARN_MARGIN
    earned = [(r["spearman"], name) for name, r in reports.items() if name != "single_feature"
              and np.isfinite(r.get("spearman", np.nan)) and r["spearman"] >= bar
              and r.get("pairwise_same_creator", 0) >= EARN_PAIRWISE]
    if earned:
        spearman_, name = max(earned)
        return name, (f"{name}: CV Spearman {spearman_:.3f} >= best single feature {best_single:.3f} + {EARN_MARGIN} "
                      f"and pairwise {reports[name]['pairwise_same_creator']:.3f} >= {EARN_PAIRWISE}")
    richer = {name: (round(r.get("spearman", np.nan), 3), round(r.get("pairwise_same_creator", np.nan), 3))
              for name, r in reports.items() if name != "single_feature"}
    return "single_feature", (f"no richer candidate beats the best single feature ({best_single:.3f}) by "
                              f"{EARN_MARGIN} with pairwise >= {EARN_PAIRWISE} (CV Spearman, pairwise: {richer})")


def ceiling_evidence(rows: pd.DataFrame, columns: list[str], pct: dict, *, text: bool, target: TargetConfig,
                     random_state: int = 0) -> dict:
    """What says this sample cannot support more: creator-bootstrap intervals of the richer candidates' gain over
    the single feature and of their pairwise accuracy, and a learning curve (CV Spearman with a share of the
    training creators) of the cheap candidates."""
    rows = rows.reset_index(drop=True)
    value = target_value(rows, target).to_numpy()
    keys = group_keys(rows[GROUP_COLUMN]).to_numpy()
    rng = np.random.default_rng(random_state)
    sample = np.arange(len(rows))
    if len(rows) > BOOTSTRAP_MAX_ROWS:  # bounded: creators of a uniform row sample
        sample = np.sort(rng.choice(len(rows), BOOTSTRAP_MAX_ROWS, replace=False))
    codes, creators = pd.factorize(keys[sample])
    members = [sample[codes == i] for i in range(len(creators))]
    gains: dict[str, list] = {name: [] for name in pct if name != "single_feature"}
    pairwise: dict[str, list] = {name: [] for name in pct}
    for _ in range(BOOTSTRAP_ROUNDS):
        chosen = rng.integers(0, len(members), len(members))
        idx = np.concatenate([members[i] for i in chosen])
        # resampled creators get fresh keys, so a creator drawn twice does not pair with its own copy
        boot_keys = np.repeat(np.arange(len(chosen)), [len(members[i]) for i in chosen])
        base = spearman(pct["single_feature"][idx], value[idx])
        for name in gains:
            gains[name].append(spearman(pct[name][idx], value[idx]) - base)
        for name in pairwise:
            pairwise[name].append(pairwise_accuracy(pct[name][idx], value[idx], boot_keys, max_pairs=20_000)["accuracy"])
    ci = lambda values: [float(np.nanpercentile(values, 2.5)), float(np.nanpercentile(values, 97.5))]  # noqa: E731
    curve = {}
    for fraction in LEARNING_FRACTIONS:  # mean over LEARNING_REPEATS random creator subsets (one at 100 %)
        repeats = [provider_cv(rows, columns, text=text, target=target, candidates=CHEAP_CANDIDATES,
                               random_state=random_state + r, keep_creators=fraction)[0]
                   for r in range(LEARNING_REPEATS if fraction < 1 else 1)]
        curve[f"{fraction:.2f}"] = {name: float(np.mean([r[name]["spearman"] for r in repeats]))
                                    for name in CHEAP_CANDIDATES}
    widths = [(hi - lo) / 2 for lo, hi in (ci(v) for v in gains.values())]
    return {"bootstrap_rounds": BOOTSTRAP_ROUNDS, "creators": int(len(members)),
            "resolution": float(np.min(widths)) if widths else float("nan"),
            "spearman_gain_over_single_feature_ci95": {name: ci(v) for name, v in gains.items()},
            "pairwise_same_creator_ci95": {name: ci(v) for name, v in pairwise.items()},
            "learning_curve_cv_spearman": curve}


def transfer_evaluation(training: pd.DataFrame, columns: list[str], providers: list[str], *,
                        target: TargetConfig) -> dict:
    """Leave-one-provider-out: for every provider with a metric, the transfer order (columns whose direction
    holds in every *training* provider), the best single feature and a rank-linear model of the other
    providers, ranked against the held-out provider's metric."""
    out = {}
    for held in providers:
        train_mask = training["provider"].isin([p for p in providers if p != held])
        test_mask = training["provider"] == held
        if train_mask.sum() < MIN_TRAINING_ROWS or test_mask.sum() < MIN_TRAINING_ROWS:
            out[held] = {"skipped": f"{int(train_mask.sum())} training and {int(test_mask.sum())} held-out rows"}
            continue
        tr, te = training[train_mask].reset_index(drop=True), training[test_mask].reset_index(drop=True)
        y = popularity_target(tr, target).to_numpy()
        value = target_value(te, target)
        common = dict(groups=group_keys(te[GROUP_COLUMN]), age_days=te["age_days"])
        transfer = TransferOrder(columns).fit(tr, y, providers=tr["provider"].to_numpy())
        single = SingleFeature(columns).fit(tr, y)
        ranked = RankLinear(columns).fit(tr, y)
        out[held] = {
            "trained_on": sorted(set(tr["provider"].astype(str))), "rows": int(len(te)),
            "transfer_model": {**ranking_report(transfer.predict(te), value, **common),
                               "columns": transfer.columns_},
            "single_feature": {**ranking_report(single.predict(te), value, **common), "column": single.column_,
                               "sign": single.sign_},
            "rank_linear": ranking_report(ranked.predict(te), value, **common),
        }
    return out


def transfer_validated(lopo: dict) -> tuple[bool, str]:
    done = {p: r for p, r in lopo.items() if "transfer_model" in r}
    if len(done) < 2:
        return False, f"leave-one-provider-out needs two providers with a metric; {len(done)} evaluated"
    failing = {p: r["transfer_model"].get("spearman") for p, r in done.items()
               if not r["transfer_model"]["columns"]
               or not np.isfinite(r["transfer_model"].get("spearman", np.nan))
               or r["transfer_model"]["spearman"] < MIN_SERVED_SPEARMAN}
    if failing:
        return False, (f"transfer not validated: held-out Spearman below {MIN_SERVED_SPEARMAN} (or no column whose "
                       f"direction holds across the training providers) for {failing}")
    return True, f"transfer validated: held-out Spearman >= {MIN_SERVED_SPEARMAN} for every provider with a metric"


def provider_levels(training: pd.DataFrame, evidence: pd.DataFrame | None) -> dict:
    """Per-provider prior level: a provider with a metric has its median standardized popularity; any other
    gets a level predicted from its evidence (mean landing-domain rank/authority, re-use), but only when a
    leave-one-provider-out check over >= MIN_LEVEL_PROVIDERS providers with a metric shows that beats the
    typical level; otherwise the typical level (median over providers with a metric of their medians)."""
    observed = training.groupby(training["provider"].astype(str))["observed_popularity"].median()
    typical = float(observed.median()) if len(observed) else 0.0
    out = {"observed_medians": {p: float(v) for p, v in observed.items()}, "typical_level": typical,
           "method": "typical level of the providers with a metric", "levels": {}}
    columns = [c for c in (evidence.columns if evidence is not None else []) if c != "provider"]
    if evidence is not None and len(columns):
        out["evidence"] = {str(r["provider"]): {c: _float(r[c]) for c in columns} for _, r in evidence.iterrows()}
    known = [p for p in observed.index if evidence is not None and p in set(evidence["provider"].astype(str))]
    if len(known) < MIN_LEVEL_PROVIDERS:
        out["why_not_evidence"] = (f"{len(known)} providers with a metric and provider evidence; a level model needs "
                                   f">= {MIN_LEVEL_PROVIDERS} to be checked leave-one-provider-out")
    else:
        table = evidence.assign(provider=evidence["provider"].astype(str)).set_index("provider")
        constant_error = np.mean([abs(observed[p] - observed.drop(p).median()) for p in known])
        best = None
        for column in columns:
            x = table.loc[known, column].astype("float64")
            if x.notna().sum() < MIN_LEVEL_PROVIDERS or x.nunique() < 2:
                continue
            errors = []
            for p in known:
                rest = [q for q in known if q != p and np.isfinite(x[q])]
                if not np.isfinite(x[p]) or len(rest) < 2:
                    continue
                up = spearman(x[rest], observed[rest]) >= 0
                iso = IsotonicRegression(increasing=bool(up), out_of_bounds="clip").fit(x[rest], observed[rest])
                errors.append(abs(float(iso.predict([x[p]])[0]) - observed[p]))
            if errors and (best is None or np.mean(errors) < best[1]):
                best = (column, float(np.mean(errors)))
        out["lopo_abs_error"] = {"typical_level": float(constant_error), **({best[0]: best[1]} if best else {})}
        if best and best[1] < constant_error:
            column = best[0]
            x = table.loc[known, column].astype("float64")
            ok = x.notna()
            up = spearman(x[ok], observed[known][ok]) >= 0
            iso = IsotonicRegression(increasing=bool(up), out_of_bounds="clip").fit(x[ok], observed[known][ok])
            for provider, row in table.iterrows():
                if provider not in observed.index and np.isfinite(row[column]):
                    out["levels"][provider] = float(np.clip(iso.predict([row[column]])[0], 0, 1))
            out["method"] = f"isotonic in provider mean {column} (LOPO error {best[1]:.3f} < {constant_error:.3f})"
    return out


def _float(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


# --------------------------------------------------------------------------------------------- the model


@dataclass
class ProviderOrder:
    """Serving state of one provider with a metric."""

    kind: str  # the served candidate
    model: object | None  # fitted candidate (None: not validated, the level is served)
    score_map: QuantileMap | None
    output_y: np.ndarray  # the provider's observed standardized popularity at GRID percentiles
    level: float
    validated: bool


@dataclass
class PopularityModel:
    """Served popularity of rows without an observed metric, with the source of each value."""

    name: str
    estimator: dict | None  # provider -> ProviderOrder (None: too few labelled rows, nothing trained)
    feature_columns: list[str]
    metrics: dict = field(default_factory=dict)
    text_column: str | None = None
    group_column: str | None = GROUP_COLUMN
    transfer: TransferOrder | None = None
    transfer_map: QuantileMap | None = None
    pooled_output_y: np.ndarray | None = None
    levels: dict = field(default_factory=dict)
    default_level: float = 0.0
    held_out: pd.DataFrame | None = None

    def input_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Feature columns (NaN when absent), the text and the creator, and the provider that picks the map."""
        out = input_frame(frame, self.feature_columns, self.text_column is not None)
        out["provider"] = frame["provider"].astype("string").to_numpy() if "provider" in frame else pd.NA
        return out

    def predict_with_source(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(value on [0, 1], "predicted" | "prior") per row: a provider's validated order on its own scale,
        a validated transfer order around the provider's level, or the provider's level."""
        n = len(frame)
        values, sources = np.full(n, self.default_level, dtype="float64"), np.full(n, "prior", dtype=object)
        if self.estimator is None or n == 0:
            return values, sources
        X = self.input_frame(frame)
        providers = X["provider"].astype("string").fillna("").to_numpy()
        for provider in pd.unique(providers):
            rows = providers == provider
            order = self.estimator.get(provider)
            level = self.levels.get(provider, self.default_level)
            if order is not None and order.validated:
                pct = order.score_map.predict(order.model.predict(X[rows]))
                values[rows] = np.interp(pct, GRID, order.output_y)
                sources[rows] = "predicted"
            elif order is not None:
                values[rows] = order.level
            elif self.transfer is not None:
                pct = self.transfer_map.predict(self.transfer.predict(X[rows]))
                spread = np.interp(pct, GRID, self.pooled_output_y) - np.interp(0.5, GRID, self.pooled_output_y)
                values[rows] = level + spread
                sources[rows] = "predicted"
            else:
                values[rows] = level
        return np.clip(values, 0.0, 1.0), sources

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.predict_with_source(frame)[0]


def train_popularity(training: pd.DataFrame, feature_columns: list[str], *, target: TargetConfig = TargetConfig(),
                     random_state: int = 0, evaluate_model: bool = True, fast: bool = False,
                     ablations: dict[str, list[str]] | None = None, provider_evidence: pd.DataFrame | None = None,
                     previous: dict | None = None, candidates=CANDIDATES,
                     limits: TrainingLimits = TrainingLimits()) -> PopularityModel:
    """Evaluate the candidates per provider, choose what is served, and fit it on the same rows.

    ``training`` holds the features plus ``observed_popularity``, ``metric_value``, ``provider``, ``creator``,
    ``age_days`` and, when the text family exists, ``text``. ``provider_evidence``: one row per provider
    (every provider of the catalog) with evidence columns (means over its images). ``previous``: the previous
    model version's recorded headline (a baseline row). ``fast`` shrinks the ensemble and skips the ceiling
    figures and the per-day variant (tests). ``training`` is already bounded by the caller (at most
    ``limits.rows_per_provider`` rows per provider); ``limits.forest_max_samples`` bounds the ensemble's trees.
    """
    training = training.dropna(subset=["observed_popularity", "metric_value"]).reset_index(drop=True)
    training["provider"] = training["provider"].astype("string").fillna("")
    columns = model_inputs(feature_columns)
    text = TEXT_COLUMN in training.columns
    levels = provider_levels(training, provider_evidence)
    if len(training) < MIN_TRAINING_ROWS:
        return PopularityModel("popularity", None, columns,
                               {"trained": False, "reason": f"only {len(training)} rows with an observed metric",
                                "levels": levels}, default_level=levels["typical_level"])
    counts = training["provider"].value_counts()
    labelled = [str(p) for p in counts.index if counts[p] >= MIN_TRAINING_ROWS]
    evaluation: dict = {"protocol": PROTOCOL.format(target=target.kind, margin=EARN_MARGIN, pairwise=EARN_PAIRWISE,
                                                    served=MIN_SERVED_SPEARMAN),
                        "target": target.to_dict(), "providers": {}}
    orders, served, held = {}, {}, []
    largest = labelled[0] if labelled else None  # the headline provider: its ceiling figures are computed
    for provider in labelled:
        rows = training[training["provider"] == provider].reset_index(drop=True)
        entry, order, oof = _provider(rows, columns, text=text, target=target, random_state=random_state, fast=fast,
                                      candidates=candidates if evaluate_model else (),
                                      previous=(previous or {}).get(provider), ceiling=provider == largest,
                                      forest_max_samples=limits.forest_max_samples)
        evaluation["providers"][provider] = entry
        orders[provider] = order
        served[provider] = {"source": "predicted" if order.validated else "prior", "model": order.kind,
                            "level": order.level, "reason": entry["served_reason"]}
        if oof is not None:
            held.append(oof)
    headline = max(labelled, key=lambda p: ("grouped_cv" in evaluation["providers"][p], counts[p]), default=None)
    head = evaluation["providers"].get(headline) or {}
    if "grouped_cv" in head:
        evaluation["headline"] = {"provider": headline, "model": head["served_model"],
                                  **head["grouped_cv"][head["served_model"]]}
    # across providers
    evaluation["feature_directions"] = {
        p: {c: r for c, r in feature_spearman(training[training["provider"] == p], popularity_target(
            training[training["provider"] == p], target), columns).items() if np.isfinite(r)} for p in labelled}
    lopo = transfer_evaluation(training, columns, labelled, target=target)
    ok, why = transfer_validated(lopo)
    evaluation["transfer"] = {"leave_one_provider_out": lopo, "validated": ok, "reason": why}
    evaluation["ablations"] = _ablations(training, labelled, columns, text, target, random_state, ablations)
    transfer = transfer_map = pooled = None
    pooled_rows = training[training["provider"].isin(labelled)].reset_index(drop=True)
    if ok:
        y = popularity_target(pooled_rows, target).to_numpy()
        transfer = TransferOrder(columns).fit(pooled_rows, y, providers=pooled_rows["provider"].to_numpy())
        transfer_map = QuantileMap().fit(transfer.predict(pooled_rows))
        pooled = np.quantile(pooled_rows["observed_popularity"].astype("float64"), GRID)
        evaluation["transfer"]["served_columns"] = transfer.columns_
    served["(providers without a metric)"] = {
        "source": "predicted" if ok else "prior",
        "model": f"transfer order on {transfer.columns_} around the provider's level" if ok else "the provider's level",
        "level": levels["typical_level"], "level_method": levels["method"], "reason": why}
    evaluation["openverse_behaviour"] = ("no popularity for rows without a provider metric: within a provider "
                                         "every such row ties (Spearman 0, pairwise 0.5), and providers without "
                                         "a metric get nothing")
    metrics = {"trained": True, "target": target.to_dict(), "training_rows": int(len(training)),
               "training_rows_by_provider": {str(k): int(v) for k, v in counts.items()}, "text_features": text,
               "served": served, "levels": levels, "evaluation": evaluation, "limits": limits.to_dict()}
    return PopularityModel("popularity", orders, columns, metrics, text_column=TEXT_COLUMN if text else None,
                           transfer=transfer, transfer_map=transfer_map, pooled_output_y=pooled,
                           levels=levels["levels"], default_level=levels["typical_level"],
                           held_out=pd.concat(held, ignore_index=True) if held else None)


PROTOCOL = ("Per provider with a metric: 5-fold GroupKFold by creator; inside each training fold the within-provider "
            "percentile target ({target}), the map of scores to percentiles and the log-metric quantiles behind mae_log "
            "are fitted on that fold only. Every figure is for the model as served (same rows, same procedure). A "
            "richer candidate is served only if its CV Spearman beats the best single raw feature by {margin} with "
            "within-creator pairwise accuracy >= {pairwise} (pairs sampled when too many). An order is served as "
            "'predicted' only with held-out Spearman >= {served}: within its provider (creator-grouped CV) or, for "
            "providers without a metric, in leave-one-provider-out transfer to every provider with a metric; "
            "otherwise the provider's prior level is served as 'prior'.")


def _provider(rows, columns, *, text, target, random_state, fast, candidates, previous, ceiling, forest_max_samples):
    """Evaluate and fit one provider's order: (card entry, ProviderOrder, out-of-fold frame or None)."""
    observed = rows["observed_popularity"].astype("float64")
    output_y = np.quantile(observed, GRID)
    level = float(observed.median())
    keys = group_keys(rows[GROUP_COLUMN])
    entry: dict = {"rows": int(len(rows)), "creators": int(keys.nunique()),
                   "level_median_observed": level}
    singles = single_feature_table(rows, columns, target)
    best_column = next(iter(singles), None)
    best = singles[best_column]["spearman"] if best_column else float("nan")
    entry["best_single_feature"] = {"column": best_column, **(singles.get(best_column) or {})}
    entry["single_features"] = singles
    entry["baselines"] = {"openverse_no_score": {"spearman": 0.0, "pairwise_same_creator": 0.5,
                                                 "note": "no score for rows without the metric: all tie"}}
    if previous:
        entry["baselines"]["previous_version"] = previous
    oof = None
    if not candidates or len(rows) < MIN_PROVIDER_ROWS or keys.nunique() < 5:
        kind, why = "single_feature", (f"{len(rows)} rows / {keys.nunique()} creators: too few for a creator-grouped "
                                       f"evaluation (needs {MIN_PROVIDER_ROWS} rows, 5 creators)")
        validated = False
    else:
        reports, pct = provider_cv(rows, columns, text=text, target=target, candidates=candidates,
                                   random_state=random_state, fast=fast, forest_max_samples=forest_max_samples)
        entry["grouped_cv"] = reports
        kind, why = choose_served(reports, best)
        cv = reports[kind]["spearman"]
        validated = bool(np.isfinite(cv) and cv >= MIN_SERVED_SPEARMAN)
        if not validated:
            why += f"; its CV Spearman {cv:.3f} < {MIN_SERVED_SPEARMAN}: the provider's median is served as prior"
        if ceiling and not fast and kind == "single_feature" and len(candidates) > 1:
            entry["ceiling"] = ceiling_evidence(rows, columns, pct, text=text, target=target,
                                                random_state=random_state)
        if target.kind == "percentile" and not fast:
            per_day = TargetConfig("per_day_percentile")
            entry["per_day_variant"], _ = provider_cv(rows, columns, text=text, target=per_day,
                                                      candidates=CHEAP_CANDIDATES, random_state=random_state)
        oof = pd.DataFrame({"image_id": rows["image_id"].astype(str) if "image_id" in rows else None,
                            "provider": rows["provider"].astype(str),
                            "observed": popularity_target(rows, target).to_numpy(), "predicted": pct[kind]})
    entry["served_model"], entry["served_reason"], entry["validated"] = kind, why, validated
    y = popularity_target(rows, target).to_numpy()
    X = input_frame(rows, columns, text)
    model = fit_grouped(make_candidate(kind, columns, text, random_state, fast, forest_max_samples), X, y,
                        keys.to_numpy())
    if isinstance(model, SingleFeature):
        entry["served_column"] = {"column": model.column_, "sign": model.sign_}
    if isinstance(model, RankLinear):
        entry["served_coefficients"] = model.coefficients()
    order = ProviderOrder(kind, model, QuantileMap().fit(model.predict(X)), output_y, level, validated)
    return entry, order, oof


def _ablations(training, labelled, columns, text, target, random_state, ablations) -> dict:
    """Rank-linear Spearman with and without each ablation's columns: creator-grouped CV of every provider
    large enough for it, and leave-one-provider-out transfer to every provider with a metric."""
    out = {}
    for name, removed in (ablations or {}).items():
        kept = [c for c in columns if c not in set(removed)]
        if len(kept) == len(columns):
            continue
        splits = {}
        for provider in labelled:
            rows = training[training["provider"] == provider].reset_index(drop=True)
            if len(rows) < MIN_PROVIDER_ROWS or group_keys(rows[GROUP_COLUMN]).nunique() < 5:
                continue
            with_, _ = provider_cv(rows, columns, text=text, target=target, candidates=("rank_linear",),
                                   random_state=random_state)
            without, _ = provider_cv(rows, kept, text=text, target=target, candidates=("rank_linear",),
                                     random_state=random_state)
            splits[f"grouped CV {provider} (rank_linear)"] = _with_without(with_["rank_linear"]["spearman"],
                                                                           without["rank_linear"]["spearman"])
        for held in labelled:
            tr = training[training["provider"].isin([p for p in labelled if p != held])].reset_index(drop=True)
            te = training[training["provider"] == held].reset_index(drop=True)
            if len(tr) < MIN_TRAINING_ROWS or len(te) < MIN_TRAINING_ROWS:
                continue
            y = popularity_target(tr, target).to_numpy()
            value = target_value(te, target)
            splits[f"transfer to {held} (rank_linear)"] = _with_without(
                spearman(RankLinear(columns).fit(tr, y).predict(te), value),
                spearman(RankLinear(kept).fit(tr, y).predict(te), value))
        out[name] = {"removed_columns": [c for c in columns if c in set(removed)], "spearman": splits}
    return out


def _with_without(with_: float, without: float) -> dict:
    return {"with": with_, "without": without, "added": with_ - without}


def headline_of(card: dict) -> dict | None:
    """The headline figures a model card records per provider (the next version's 'previous version' row)."""
    metrics = ((card.get("models") or {}).get("popularity") or {}).get("metrics") or {}
    providers = (metrics.get("evaluation") or {}).get("providers") or {}
    out = {}
    for provider, entry in providers.items():
        report = (entry.get("grouped_cv") or {}).get(entry.get("served_model"))
        if report:
            out[provider] = {"model_version": card.get("model_version"), "model": entry.get("served_model"),
                             "spearman": report.get("spearman"),
                             "pairwise_same_creator": report.get("pairwise_same_creator"),
                             "note": "as recorded in that version's card (its own creator-grouped CV)"}
    return out or None
