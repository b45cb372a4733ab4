"""Training the authority model, the popularity target, model persistence and the model card.

Popularity target (:class:`TargetConfig`): the within-provider percentile rank (ties averaged) of the
provider's metric, optionally per day of age (Khosla et al. 2014), so every provider's labels are uniform
on [0, 1] and wikimedia's 90 % zeros form one tied block below the images that are used. The popularity
model itself (order within a provider, level across providers) lives in
:mod:`imagerank.models.popularity_model`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit

from imagerank.features.text import TEXT_COLUMN
from imagerank.io import atomic_path
from imagerank.models.ensemble import ScoreEnsemble, popularity_estimator
from imagerank.models.evaluation import grouped_cv_predictions, spearman
from imagerank.models.source_authority import SOURCE_AUTHORITY_COLUMN, source_authority

MIN_TRAINING_ROWS = 20
GROUP_COLUMN = "creator"
#: Link-derived columns: the authority evidence itself, never an input of the authority model.
LINK_EVIDENCE_COLUMNS = {
    "has_link_evidence", "link_pages", "link_hosts", "link_domains", "link_alt_pages", "link_alt_fraction",
    "picashow", "landing_crawled", "landing_pagerank", "landing_in_links", "authority_prob", "link_authority",
}
#: Built from the same crawl as the authority target (our own host graph): never authority inputs (a leak).
OWN_CRAWL_PREFIXES = ("host_graph_",)
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
            if column == SOURCE_AUTHORITY_COLUMN and column not in frame and "source" in frame:
                out[column] = source_authority(frame["source"])
                continue
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


def _estimator(columns: list[str], text: bool, random_state: int, fast: bool):
    params = dict(max_iter=40, n_estimators=30) if fast else {}
    return popularity_estimator(columns, text_column=TEXT_COLUMN if text else None, group_column=GROUP_COLUMN,
                                text_components=0, random_state=random_state, **params)


def _frame(rows: pd.DataFrame, columns: list[str], text: bool) -> pd.DataFrame:
    model = TrainedModel("x", None, columns, text_column=TEXT_COLUMN if text else None, group_column=GROUP_COLUMN)
    return model.input_frame(rows)


def _groups(rows: pd.DataFrame) -> np.ndarray:
    return rows[GROUP_COLUMN].astype("string").to_numpy() if GROUP_COLUMN in rows else None


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


# --------------------------------------------------------------------------------------------- authority


def authority_columns(feature_columns: list[str]) -> list[str]:
    """Inputs of the authority model: everything but the link evidence, the host graph of the crawl that
    built the target (a leak) and provider identity; plus Openverse's static source authority as a prior."""
    return [c for c in model_inputs(feature_columns)
            if c not in LINK_EVIDENCE_COLUMNS and not c.startswith(("link_", "landing_", *OWN_CRAWL_PREFIXES))] \
        + [SOURCE_AUTHORITY_COLUMN]


def train_authority(features: pd.DataFrame, feature_columns: list[str], *, random_state: int = 0,
                    fast: bool = False, holdout_share: float = 0.2,
                    ablations: dict[str, list[str]] | None = None) -> TrainedModel:
    """Fit an ensemble on images with link evidence (target ``link_authority``) from non-link features.

    Evaluated with folds and a holdout grouped by landing domain (a domain's images never sit on both
    sides), beside Openverse's static source authority and the Common Crawl domain rank as baselines;
    ``ablations`` (name -> columns) are cross-validated without those columns, and the own-crawl host-graph
    columns (excluded as inputs) *with* them, to show what the leak would have added."""
    columns = [c for c in authority_columns(feature_columns) if c != SOURCE_AUTHORITY_COLUMN or "source" in features]
    if "has_link_evidence" not in features or "link_authority" not in features:
        return TrainedModel("authority", None, columns, {"trained": False, "reason": "no link features (no crawl)"})
    evidence = features["has_link_evidence"].fillna(False).astype(bool) & features["link_authority"].notna()
    rows = features[evidence].reset_index(drop=True)
    if len(rows) < MIN_TRAINING_ROWS:
        return TrainedModel("authority", None, columns,
                            {"trained": False, "reason": f"only {len(rows)} images with link evidence",
                             "rows_with_link_evidence": int(len(rows))})
    model = TrainedModel("authority", None, columns)
    X = model.input_frame(rows)
    y = rows["link_authority"].astype("float64")
    params = dict(max_iter=40, n_estimators=30) if fast else {}
    make = lambda: ScoreEnsemble(random_state=random_state, calibrate="isotonic", **params)  # noqa: E731
    groups = rows["landing_domain"] if "landing_domain" in rows else pd.Series([None] * len(rows))
    groups = groups.astype("string").reset_index(drop=True)
    n_groups = _group_count(groups)
    leaking = [c for c in feature_columns if c.startswith(OWN_CRAWL_PREFIXES) and c in rows]
    metrics = {"trained": True, "training_rows": int(len(rows)), "target": "link_authority where has_link_evidence",
               "excluded_inputs": sorted(LINK_EVIDENCE_COLUMNS | set(leaking)), "landing_domains": n_groups,
               "prior_feature": SOURCE_AUTHORITY_COLUMN if SOURCE_AUTHORITY_COLUMN in columns else None}
    baselines = {}
    if "source" in rows:
        baselines["openverse_source_authority"] = spearman(source_authority(rows["source"]), y)
    if "domain_authority" in rows:
        baselines["domain_rank (Common Crawl)"] = spearman(rows["domain_authority"].astype("float64"), y)
    evaluation: dict = {"baselines_spearman": baselines}
    if n_groups >= 3:
        variants = _variants(columns, ablations)
        frames = {name: X[cols] for name, cols in variants.items()}
        if leaking:
            frames["ensemble with own-crawl host graph (leak)"] = X.join(rows[leaking].astype("float64"))
        scores = {}
        for name, frame in frames.items():
            predicted = grouped_cv_predictions(make(), frame, y, groups)
            scores[name] = {"spearman": spearman(predicted, y), "mae": float(np.mean(np.abs(predicted - y.to_numpy())))}
        evaluation["grouped_cv"] = {"protocol": "GroupKFold by landing domain", "rows": int(len(rows)),
                                    **scores["ensemble"], "baselines": baselines}
        if len(variants) > 1:
            evaluation["ablations"] = ablation_summary({"grouped_cv": scores}, variants, columns)
        if leaking:
            leak = scores["ensemble with own-crawl host graph (leak)"]
            evaluation["leak_ablation"] = {"columns": leaking, "spearman_with_leak": leak["spearman"],
                                           "spearman_without": scores["ensemble"]["spearman"],
                                           "note": "excluded: built from the crawl that built the target"}
    else:
        evaluation["grouped_cv"] = {"skipped": f"only {n_groups} landing domains: domain-grouped folds impossible"}
    if n_groups >= 2:
        train, test = next(GroupShuffleSplit(n_splits=1, test_size=holdout_share, random_state=random_state)
                           .split(X, y, groups.fillna("__none__")))
        held = make().fit(X.iloc[train], y.iloc[train]).predict(X.iloc[test])
        evaluation["holdout"] = {"protocol": f"{holdout_share:.0%} of landing domains held out (grouped)",
                                 "rows": int(len(test)), "domains": int(groups.iloc[test].nunique()),
                                 "spearman": spearman(held, y.iloc[test]),
                                 "mae": float(np.mean(np.abs(held - y.iloc[test].to_numpy())))}
        if "source" in rows:
            evaluation["holdout"]["openverse_source_authority_spearman"] = spearman(
                source_authority(rows["source"].iloc[test]), y.iloc[test])
    else:
        evaluation["holdout"] = {"skipped": f"only {n_groups} landing domain: a domain-grouped holdout is impossible"}
    metrics["evaluation"] = evaluation
    model.estimator = make().fit(X, y)
    model.metrics = metrics
    return model


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
        if "served" in metrics:  # the popularity model: order per provider, level across providers
            from imagerank.models.popularity_model import card_lines

            lines += card_lines(metrics)
        else:
            lines += _evaluation_lines(metrics.get("evaluation", {}))
        lines.append("")
    for name, metrics in (untrained or {}).items():
        lines += [f"## {name} (not trained)", "", f"- {metrics.get('reason', 'not trained')}", ""]
    lines += _domain_link_lines(card.get("domain_link_authority"))
    with atomic_path(directory / "model_card.md") as tmp:
        Path(tmp).write_text("\n".join(lines))


def ablation_lines(ablations: dict) -> list[str]:
    """The card's "what these columns add" tables: Spearman with and without each ablation's columns."""
    lines = []
    for name, ablation in ablations.items():
        lines += ["", f"What {name} add ({len(ablation['removed_columns'])} columns: "
                      f"{', '.join(ablation['removed_columns'])}), Spearman with and without them:", "",
                  "| split | with | without | added |", "|---|---|---|---|"]
        lines += [f"| {split} | {_f(r['with'])} | {_f(r['without'])} | {r['added']:+.3f} |"
                  for split, r in ablation["spearman"].items()]
        lines.append("")
    return lines


def _domain_link_lines(summary: dict | None) -> list[str]:
    """The card's account of the ``--linkgraph`` domain graph: its size and how it agrees with Common Crawl."""
    if not summary:
        return []
    lines = ["## domain link authority (--linkgraph)", "",
             f"- {summary.get('domains')} registered domains, {summary.get('domain_edges')} cross-domain edges "
             f"({summary.get('weighting')}), PageRank in {summary.get('pagerank_iterations')} iterations; joined "
             "to images by landing domain as `domain_link_*` (authority inputs; for popularity only evidence of a "
             "provider's level, never its order)"]
    for level, r in ((summary.get("ranks_agreement") or {}).items()):
        if isinstance(r, dict) and "spearman_pagerank" in r:
            lines.append(f"- agreement with Common Crawl's {level} ranks over {r['shared_domains']} shared domains: "
                         f"Spearman PageRank {_f(r['spearman_pagerank'])}, harmonic {_f(r['spearman_harmonic'])}")
    return lines + [""]


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
        if "spearman" in table:  # one model's figures (the authority model's domain-grouped CV)
            table = {"ensemble": table}
        for model, r in table.items():
            if isinstance(r, dict) and "spearman" in r:
                body.append(f"| {split} | {model} | {r.get('rows', '')} | {_f(r.get('spearman'))} | "
                            f"{_f(r.get('spearman_per_day'))} | {_f(r.get('mae_log'))} | "
                            f"{_f(r.get('pairwise_same_creator'))} | {_f(r.get('auc_nonzero'))} |")
    if body:
        lines += ["", head, "|" + "---|" * 8, *body, ""]
    for key in ("baselines_spearman", "leak_ablation", "holdout"):
        if key in evaluation:
            lines.append(f"- {key}: {json.dumps(evaluation[key], default=_json_default)}")
    lines += ablation_lines(evaluation.get("ablations") or {})
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
