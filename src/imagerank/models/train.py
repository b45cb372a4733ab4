"""Training the popularity and authority models, their honest evaluation, and the model card.

Popularity target (:class:`TargetConfig`): the within-provider percentile rank (ties averaged) of the
provider's metric, optionally per day of age (Khosla et al. 2014), so every provider's labels are uniform
on [0, 1] (provider identity then says nothing about the label) and wikimedia's 90 % zeros form one tied
block below the images that are used. Predictions (a percentile) are mapped back onto Openverse's
standardized scale by the monotone map percentile -> observed standardized popularity of the training rows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.feature_selection import VarianceThreshold
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline

from imagerank.features.metadata import FEATURE_COLUMNS as METADATA_COLUMNS
from imagerank.features.text import TEXT_COLUMN
from imagerank.io import atomic_path
from imagerank.models.ensemble import ScoreEnsemble, fit_grouped, popularity_estimator
from imagerank.models.evaluation import grouped_cv_predictions, ranking_report, spearman

MIN_TRAINING_ROWS = 20
EVALUATION_PROVIDER = "flickr"  # the provider whose metric (views) is dense enough to evaluate on
TRANSFER_PROVIDERS = ("flickr", "wikimedia")
GROUP_COLUMN = "creator"
#: Link-derived columns: the authority evidence itself, never an input of the authority model.
LINK_EVIDENCE_COLUMNS = {
    "has_link_evidence", "link_pages", "link_hosts", "link_domains", "link_alt_pages", "link_alt_fraction",
    "picashow", "landing_crawled", "landing_pagerank", "landing_in_links", "authority_prob", "link_authority",
}
#: Columns that would name the provider (one-hot or code): never model inputs.
PROVIDER_COLUMN_PREFIXES = ("provider", "source")
PUBLISHED_BARS = {"khosla2014_content_only_spearman": [0.31, 0.40], "svr_baseline_spearman": [0.22, 0.52]}


@dataclass(frozen=True)
class TargetConfig:
    """``kind``: ``percentile`` (of the raw metric) or ``per_day_percentile`` (metric / days since publication)."""

    kind: str = "percentile"
    min_age_days: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


def popularity_target(training: pd.DataFrame, config: TargetConfig = TargetConfig()) -> pd.Series:
    """Within-provider percentile rank of the (age-normalized) metric, ties averaged, on (0, 1)."""
    value = training["metric_value"].astype("float64")
    if config.kind == "per_day_percentile":
        value = value / training["age_days"].astype("float64").clip(lower=config.min_age_days)
    elif config.kind != "percentile":
        raise ValueError(f"unknown popularity target {config.kind!r}")
    ranks = value.groupby(training["provider"].astype("string")).rank(method="average")
    sizes = value.groupby(training["provider"].astype("string")).transform("count")
    return ((ranks - 0.5) / sizes).astype("float64")


def model_inputs(feature_columns: list[str]) -> list[str]:
    return [c for c in feature_columns if not c.startswith(PROVIDER_COLUMN_PREFIXES)]


@dataclass
class TrainedModel:
    name: str
    estimator: object | None  # None: too few labelled rows to learn from
    feature_columns: list[str]
    metrics: dict = field(default_factory=dict)
    text_column: str | None = None
    group_column: str | None = None
    #: monotone map of the estimator's [0, 1] output onto the served scale (x -> y, linear between points)
    output_x: np.ndarray | None = None
    output_y: np.ndarray | None = None
    #: out-of-fold predictions of the evaluation (image_id, provider, observed, predicted on the target scale)
    held_out: pd.DataFrame | None = None

    def input_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The columns the estimator reads; missing feature columns are NaN, a missing text is empty."""
        out = pd.DataFrame(index=frame.index)
        for column in self.feature_columns:
            out[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64") if column in frame \
                else np.nan
        for column in (self.text_column, self.group_column):
            if column:
                out[column] = frame[column].astype("string").fillna("") if column in frame else ""
        return out

    def predict_raw(self, frame: pd.DataFrame) -> np.ndarray:
        """The estimator's own output (a within-provider percentile for popularity)."""
        if self.estimator is None:
            return np.full(len(frame), np.nan)
        return np.asarray(self.estimator.predict(self.input_frame(frame)), dtype="float64")

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Served value on [0, 1] for every row of ``frame`` (NaN when no model was trained)."""
        raw = self.predict_raw(frame)
        if self.output_x is None or self.estimator is None:
            return np.clip(raw, 0.0, 1.0)
        return np.clip(np.interp(raw, self.output_x, self.output_y), 0.0, 1.0)


def output_map(percentile: pd.Series, served: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Monotone map percentile -> served standardized popularity, fitted on the training labels."""
    ok = percentile.notna() & served.notna()
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(percentile[ok], served[ok])
    grid = np.linspace(0.0, 1.0, 101)
    return grid, iso.predict(grid)


def _estimator(columns: list[str], text: bool, random_state: int, fast: bool):
    params = dict(max_iter=40, n_estimators=30) if fast else {}
    return popularity_estimator(columns, text_column=TEXT_COLUMN if text else None, group_column=GROUP_COLUMN,
                                text_components=0, random_state=random_state, **params)


def _frame(rows: pd.DataFrame, columns: list[str], text: bool) -> pd.DataFrame:
    model = TrainedModel("x", None, columns, text_column=TEXT_COLUMN if text else None, group_column=GROUP_COLUMN)
    return model.input_frame(rows)


def train_popularity(training: pd.DataFrame, feature_columns: list[str], *, target: TargetConfig = TargetConfig(),
                     random_state: int = 0, evaluate_model: bool = True, fast: bool = False,
                     ablations: dict[str, list[str]] | None = None) -> TrainedModel:
    """Fit the ensemble on every observed row; evaluate it and its baselines honestly.

    ``training`` holds the features plus ``observed_popularity`` (Openverse's standardized score),
    ``metric_value`` (the raw provider metric), ``provider``, ``creator``, ``age_days`` and, when the text
    family exists, ``text``. ``ablations`` (name -> columns) are also evaluated without those columns, to
    say what they add. ``fast`` shrinks the members (tests).
    """
    training = training.dropna(subset=["observed_popularity", "metric_value"]).reset_index(drop=True)
    columns = model_inputs(feature_columns)
    text = TEXT_COLUMN in training.columns
    if len(training) < MIN_TRAINING_ROWS:
        return TrainedModel("popularity", None, columns,
                            {"trained": False, "reason": f"only {len(training)} rows with an observed metric"})
    y = popularity_target(training, target)
    estimator = fit_grouped(_estimator(columns, text, random_state, fast), _frame(training, columns, text), y,
                            _groups(training))
    grid, served = output_map(y, training["observed_popularity"].astype("float64"))
    ensemble = estimator.steps[-1][1]
    metrics = {"trained": True, "target": target.to_dict(), "training_rows": int(len(training)),
               "training_rows_by_provider": {str(k): int(v) for k, v in training["provider"].value_counts().items()},
               "text_features": text,
               "ensemble": {"members": ensemble.member_names_, "weights": [float(w) for w in ensemble.weights_],
                            "inner_cv_spearman": ensemble.inner_cv_, "calibration": ensemble.calibrate}}
    held_out = None
    if evaluate_model:
        metrics["evaluation"] = evaluate(training, columns, target=target, random_state=random_state, fast=fast,
                                         ablations=ablations)
        held_out = metrics["evaluation"].pop("_oof", None)
    return TrainedModel("popularity", estimator, columns, metrics, text_column=TEXT_COLUMN if text else None,
                        group_column=GROUP_COLUMN, output_x=grid, output_y=served, held_out=held_out)


def _groups(rows: pd.DataFrame) -> np.ndarray:
    return rows[GROUP_COLUMN].astype("string").to_numpy() if GROUP_COLUMN in rows else None


def _baselines(columns: list[str], random_state: int):
    metadata_only = [c for c in METADATA_COLUMNS if c in columns]
    return metadata_only, make_pipeline(VarianceThreshold(), HistGradientBoostingRegressor(random_state=random_state))


def _variants(columns: list[str], ablations: dict[str, list[str]] | None) -> dict[str, list[str]]:
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


def evaluate(training: pd.DataFrame, columns: list[str], *, target: TargetConfig = TargetConfig(),
             random_state: int = 0, fast: bool = False, ablations: dict[str, list[str]] | None = None) -> dict:
    """Grouped CV, provider transfer both ways and a temporal split: the ensemble beside its baselines
    and beside itself without each ablation's columns.

    Structure: ``{protocol, target, grouped_cv: {model: report}, provider_transfer: {"a->b": {model: report}},
    temporal: {split, model: report}, ablations, published_bars, ensemble: grouped_cv.ensemble}`` where every
    ``report`` is :func:`~imagerank.models.evaluation.ranking_report` (rows, spearman, spearman_per_day,
    mae_log, pairwise_same_creator, same_creator_pairs, auc_nonzero when the metric has zeros and non-zeros).
    """
    text = TEXT_COLUMN in training.columns
    y_all = popularity_target(training, target)
    metadata_only, baseline = _baselines(columns, random_state)
    variants = _variants(columns, ablations)
    report: dict = {
        "protocol": (f"within-provider percentile target ({target.kind}); 5-fold GroupKFold by creator on "
                     f"{EVALUATION_PROVIDER} rows; provider transfer trains on one provider and ranks the other; "
                     "temporal trains on the oldest 70% of flickr by pub_date and tests on the newest 30%. "
                     "Spearman against the raw metric; mae_log on log1p(metric) via the training rows' quantiles."),
        "target": target.to_dict(), "published_bars": PUBLISHED_BARS,
    }
    rows = training[training["provider"] == EVALUATION_PROVIDER].reset_index(drop=True)
    y = y_all[training["provider"] == EVALUATION_PROVIDER].reset_index(drop=True)
    if len(rows) < 5 * MIN_TRAINING_ROWS:
        report["grouped_cv"] = {"skipped": f"only {len(rows)} {EVALUATION_PROVIDER} rows with a metric"}
    else:
        groups = rows[GROUP_COLUMN]
        common = dict(groups=groups, age_days=rows["age_days"], train_metric=rows["metric_value"])
        predictions = {name: grouped_cv_predictions(_estimator(cols, text, random_state, fast),
                                                    _frame(rows, cols, text), y, groups)
                       for name, cols in variants.items()}
        held_out = predictions["ensemble"]
        report["_oof"] = pd.DataFrame({"image_id": rows["image_id"].astype(str) if "image_id" in rows else None,
                                       "provider": rows["provider"].astype(str), "observed": np.asarray(y, "float64"),
                                       "predicted": held_out})
        cv = {
            **{name: ranking_report(p, rows["metric_value"], **common) for name, p in predictions.items()},
            "baseline_boosting": ranking_report(grouped_cv_predictions(baseline, rows[metadata_only].astype("float64"),
                                                                       y, groups, pass_groups=False),
                                                rows["metric_value"], **common),
            "baseline_tag_count": ranking_report(rows["tag_count"].astype("float64").to_numpy(),
                                                 rows["metric_value"], **common),
        }
        report["grouped_cv"] = cv
        report["ensemble"] = cv["ensemble"]  # the headline figure, where the report and older readers look
    report["provider_transfer"] = _transfer(training, y_all, variants, metadata_only, baseline, text, random_state, fast)
    report["temporal"] = _temporal(rows, y, variants, metadata_only, baseline, text, random_state, fast)
    if len(variants) > 1:
        report["ablations"] = ablation_summary(report, variants, columns)
    return report


def _fit_predict(model, train_X, train_y, groups, test_X) -> np.ndarray:
    return fit_grouped(model, train_X, train_y, groups).predict(test_X)


def _ensembles(variants, text, random_state, fast, tr, ytr, te, common) -> dict:
    """Each variant of the ensemble trained on ``tr`` and ranked on ``te``."""
    return {name: ranking_report(_fit_predict(_estimator(cols, text, random_state, fast), _frame(tr, cols, text), ytr,
                                              _groups(tr), _frame(te, cols, text)), te["metric_value"], **common)
            for name, cols in variants.items()}


def _transfer(training, y_all, variants, metadata_only, baseline, text, random_state, fast) -> dict:
    out = {}
    for source in TRANSFER_PROVIDERS:
        for dest in TRANSFER_PROVIDERS:
            if source == dest:
                continue
            key = f"{source}->{dest}"
            train_mask, test_mask = training["provider"] == source, training["provider"] == dest
            if train_mask.sum() < MIN_TRAINING_ROWS or test_mask.sum() < MIN_TRAINING_ROWS:
                out[key] = {"skipped": f"{int(train_mask.sum())} {source} and {int(test_mask.sum())} {dest} rows"}
                continue
            tr, te = training[train_mask].reset_index(drop=True), training[test_mask].reset_index(drop=True)
            ytr = y_all[train_mask].reset_index(drop=True)
            common = dict(groups=te[GROUP_COLUMN], age_days=te["age_days"], train_metric=None)
            out[key] = {
                **_ensembles(variants, text, random_state, fast, tr, ytr, te, common),
                "baseline_boosting": ranking_report(_fit_predict(baseline, tr[metadata_only].astype("float64"), ytr,
                                                                 None, te[metadata_only].astype("float64")),
                                                    te["metric_value"], **common),
                "baseline_tag_count": ranking_report(te["tag_count"].astype("float64").to_numpy(),
                                                     te["metric_value"], **common),
                "train_rows": int(len(tr)),
            }
    return out


def _temporal(rows, y, variants, metadata_only, baseline, text, random_state, fast, train_share: float = 0.7) -> dict:
    if len(rows) < 5 * MIN_TRAINING_ROWS or rows["age_days"].notna().sum() < 5 * MIN_TRAINING_ROWS:
        return {"skipped": f"only {len(rows)} {EVALUATION_PROVIDER} rows with a metric and a date"}
    dated = rows["age_days"].notna()
    rows, y = rows[dated].reset_index(drop=True), y[dated].reset_index(drop=True)
    cutoff = float(rows["age_days"].quantile(1 - train_share))  # older rows have larger ages
    old, new = rows["age_days"] >= cutoff, rows["age_days"] < cutoff
    tr, te, ytr = rows[old].reset_index(drop=True), rows[new].reset_index(drop=True), y[old].reset_index(drop=True)
    common = dict(groups=te[GROUP_COLUMN], age_days=te["age_days"], train_metric=tr["metric_value"])
    shared = set(tr[GROUP_COLUMN].dropna()) & set(te[GROUP_COLUMN].dropna())
    return {
        "split": {"train_rows": int(len(tr)), "test_rows": int(len(te)), "cutoff_age_days": cutoff,
                  "creators_in_both": len(shared)},
        **_ensembles(variants, text, random_state, fast, tr, ytr, te, common),
        "baseline_boosting": ranking_report(_fit_predict(baseline, tr[metadata_only].astype("float64"), ytr, None,
                                                         te[metadata_only].astype("float64")),
                                            te["metric_value"], **common),
        "baseline_tag_count": ranking_report(te["tag_count"].astype("float64").to_numpy(), te["metric_value"], **common),
    }


# --------------------------------------------------------------------------------------------- authority


def authority_columns(feature_columns: list[str]) -> list[str]:
    """Inputs of the authority model: everything but the link evidence (and provider identity)."""
    return [c for c in model_inputs(feature_columns)
            if c not in LINK_EVIDENCE_COLUMNS and not c.startswith(("link_", "landing_"))]


def train_authority(features: pd.DataFrame, feature_columns: list[str], *, random_state: int = 0,
                    fast: bool = False, holdout_share: float = 0.2,
                    ablations: dict[str, list[str]] | None = None) -> TrainedModel:
    """Fit an ensemble on images with link evidence (target ``link_authority``) from non-link features;
    ``ablations`` (name -> columns) are cross-validated without those columns too."""
    columns = authority_columns(feature_columns)
    if "has_link_evidence" not in features or "link_authority" not in features:
        return TrainedModel("authority", None, columns, {"trained": False, "reason": "no link features (no crawl)"})
    evidence = features["has_link_evidence"].fillna(False).astype(bool) & features["link_authority"].notna()
    rows = features[evidence].reset_index(drop=True)
    if len(rows) < MIN_TRAINING_ROWS:
        return TrainedModel("authority", None, columns,
                            {"trained": False, "reason": f"only {len(rows)} images with link evidence",
                             "rows_with_link_evidence": int(len(rows))})
    y = rows["link_authority"].astype("float64")
    params = dict(max_iter=40, n_estimators=30) if fast else {}
    make = lambda: ScoreEnsemble(random_state=random_state, calibrate="isotonic", **params)  # noqa: E731
    X = rows[columns].astype("float64")
    groups = rows["landing_domain"] if "landing_domain" in rows else pd.Series([None] * len(rows))
    n_groups = _group_count(groups)
    metrics = {"trained": True, "training_rows": int(len(rows)), "target": "link_authority where has_link_evidence",
               "excluded_inputs": sorted(LINK_EVIDENCE_COLUMNS), "landing_domains": n_groups}
    evaluation = {}
    if n_groups >= 3:
        variants = _variants(columns, ablations)
        scores = {}
        for name, cols in variants.items():
            predicted = grouped_cv_predictions(make(), rows[cols].astype("float64"), y, groups)
            scores[name] = {"spearman": spearman(predicted, y), "mae": float(np.mean(np.abs(predicted - y.to_numpy())))}
        evaluation["grouped_cv"] = {"protocol": "GroupKFold by landing domain", "rows": int(len(rows)),
                                    **scores["ensemble"]}
        if len(variants) > 1:
            evaluation["ablations"] = ablation_summary({"grouped_cv": scores}, variants, columns)
    else:
        evaluation["grouped_cv"] = {"skipped": f"only {n_groups} landing domains: domain-grouped folds impossible"}
    test = np.zeros(len(rows), dtype=bool)
    test[np.random.default_rng(random_state).permutation(len(rows))[:max(1, int(holdout_share * len(rows)))]] = True
    held = make().fit(X[~test], y[~test]).predict(X[test])
    evaluation["holdout"] = {"protocol": f"random {holdout_share:.0%} of images with link evidence held out",
                             "rows": int(test.sum()), "spearman": spearman(held, y[test]),
                             "mae": float(np.mean(np.abs(held - y[test].to_numpy())))}
    metrics["evaluation"] = evaluation
    estimator = make().fit(X, y)
    return TrainedModel("authority", estimator, columns, metrics)


def _group_count(groups: pd.Series) -> int:
    return int(pd.Series(groups).astype("string").nunique())


# --------------------------------------------------------------------------------------------- persistence


def save_model(model: TrainedModel, directory: str | Path, card_extra: dict | None = None) -> dict:
    """Write ``<name>.joblib``, its sha256, and the metrics into ``directory`` (atomically per file)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / f"{model.name}.joblib") as tmp:
        joblib.dump(model, tmp)
    digest = hashlib.sha256((directory / f"{model.name}.joblib").read_bytes()).hexdigest()
    entry = {"file": f"{model.name}.joblib", "sha256": digest, "features": model.feature_columns,
             "text_column": model.text_column, "metrics": model.metrics, **(card_extra or {})}
    return entry


def load_model(directory: str | Path, name: str, expected_sha256: str) -> TrainedModel:
    """Load a model written by :func:`save_model`, refusing a file whose digest differs from the record."""
    path = Path(directory) / f"{name}.joblib"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != expected_sha256:
        raise ValueError(f"{path}: sha256 {digest} differs from the recorded {expected_sha256}; refusing to load")
    return joblib.load(path)


def write_model_card(directory: str | Path, entries: dict[str, dict], version: str,
                     untrained: dict[str, dict] | None = None, extra: dict | None = None) -> None:
    """``metrics.json``: ``{model_version, models: {name: entry}, untrained: {name: metrics}, ...extra}``
    (only loadable models under ``models``: the scorer loads every one) and a readable ``model_card.md``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    card = {"model_version": version, "models": entries, "untrained": untrained or {}, **(extra or {})}
    with atomic_path(directory / "metrics.json") as tmp:
        Path(tmp).write_text(json.dumps(card, indent=2, default=_json_default))
    lines = [f"# imagerank models {version}", ""]
    for name, entry in entries.items():
        lines += [f"## {name}", "", f"- file: `{entry['file']}` (sha256 `{entry['sha256'][:16]}…`)",
                  f"- features ({len(entry['features'])}): {', '.join(entry['features'])}"
                  + (f" + text column `{entry['text_column']}`" if entry.get("text_column") else "")]
        metrics = entry["metrics"]
        for key in ("target", "training_rows", "training_rows_by_provider", "ensemble"):
            if key in metrics:
                lines.append(f"- {key}: {json.dumps(metrics[key], default=_json_default)}")
        lines += _evaluation_lines(metrics.get("evaluation", {}))
        lines.append("")
    for name, metrics in (untrained or {}).items():
        lines += [f"## {name} (not trained)", "", f"- {metrics.get('reason', 'not trained')}", ""]
    with atomic_path(directory / "model_card.md") as tmp:
        Path(tmp).write_text("\n".join(lines))


def _evaluation_lines(evaluation: dict) -> list[str]:
    lines = []
    if "protocol" in evaluation:
        lines.append(f"- protocol: {evaluation['protocol']}")
    tables = [("grouped CV", evaluation.get("grouped_cv", {}))]
    tables += [(f"transfer {k}", v) for k, v in evaluation.get("provider_transfer", {}).items()]
    if "temporal" in evaluation:
        tables.append(("temporal", evaluation["temporal"]))
    head = "| split | model | rows | spearman | per-day | mae_log | same-creator pairs | auc>0 |"
    body = []
    for split, table in tables:
        if not isinstance(table, dict):
            continue
        for model, r in table.items():
            if isinstance(r, dict) and "spearman" in r:
                body.append(f"| {split} | {model} | {r.get('rows', '')} | {_f(r.get('spearman'))} | "
                            f"{_f(r.get('spearman_per_day'))} | {_f(r.get('mae_log'))} | "
                            f"{_f(r.get('pairwise_same_creator'))} | {_f(r.get('auc_nonzero'))} |")
    if body:
        lines += ["", head, "|" + "---|" * 8, *body, ""]
    for key in ("holdout",):
        if key in evaluation:
            lines.append(f"- {key}: {json.dumps(evaluation[key], default=_json_default)}")
    for name, ablation in evaluation.get("ablations", {}).items():
        lines += ["", f"What {name} add ({len(ablation['removed_columns'])} columns: "
                      f"{', '.join(ablation['removed_columns'])}), Spearman with and without them:", "",
                  "| split | with | without | added |", "|---|---|---|---|"]
        lines += [f"| {split} | {_f(r['with'])} | {_f(r['without'])} | {r['added']:+.3f} |"
                  for split, r in ablation["spearman"].items()]
        lines.append("")
    if "published_bars" in evaluation:
        lines.append(f"- published content-only bars: {json.dumps(evaluation['published_bars'])}")
    return lines


def _f(value) -> str:
    return "" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.3f}"


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
