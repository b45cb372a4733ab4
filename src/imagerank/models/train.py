"""Training: the authority model, the popularity target, the training limits and model persistence.

Popularity target (:class:`TargetConfig`): the within-provider percentile rank (ties averaged) of the
provider's metric, optionally per day of age (Khosla et al. 2014), so every provider's labels are uniform
on [0, 1] and wikimedia's 90 % zeros form one tied block below the images that are used. The popularity
model itself (order within a provider, level across providers) lives in
:mod:`imagerank.models.popularity_model`, the authority model's evaluation protocol in
:mod:`imagerank.models.protocol`, the model card writer in :mod:`imagerank.models.card`.

Training is bounded whatever the catalog's size (:class:`TrainingLimits`): the rows are an id-hash sample
drawn on the workers (:mod:`imagerank.models.sampling`), the evaluation runs on a smaller sample, and each
tree of a forest sees at most ``forest_max_samples`` rows, so a model's size does not grow with the catalog.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from imagerank.features.text import TEXT_COLUMN
from imagerank.io import atomic_path
from imagerank.models.ensemble import ScoreEnsemble, popularity_estimator
from imagerank.models.evaluation import spearman
from imagerank.models.protocol import evaluate_authority, evaluation_sample
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
class TrainingLimits:
    """What bounds training at any catalog size. ``None`` lifts a bound (the benchmark's reference path).

    - ``rows_per_provider``: popularity rows per provider with a metric (its evaluation runs on the same rows:
      every figure is for the model as served);
    - ``authority_rows``: authority rows (images with link evidence) the served model is fit on;
    - ``evaluation_rows``: authority rows its cross-validation, ablations and holdout run on;
    - ``forest_max_samples``: rows each tree of a forest is grown from (bounds trees to a few thousand nodes).

    :meth:`from_env` reads ``IMAGERANK_TRAIN_<FIELD>`` (e.g. ``IMAGERANK_TRAIN_ROWS_PER_PROVIDER=20000``)."""

    rows_per_provider: int | None = 50_000
    authority_rows: int | None = 100_000
    evaluation_rows: int | None = 20_000
    forest_max_samples: int | None = 10_000

    @classmethod
    def from_env(cls, environ=os.environ) -> "TrainingLimits":
        values = {}
        for f in fields(cls):
            raw = environ.get(f"IMAGERANK_TRAIN_{f.name.upper()}")
            if raw is None:
                continue
            if raw.strip().lower() in ("", "none"):
                values[f.name] = None
                continue
            try:
                values[f.name] = int(raw)
            except ValueError:
                raise ValueError(f"IMAGERANK_TRAIN_{f.name.upper()}={raw!r}: expected a row count or 'none'") from None
            if values[f.name] < 1:
                raise ValueError(f"IMAGERANK_TRAIN_{f.name.upper()}={raw!r}: a row count must be at least 1")
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


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


def ensemble_estimator(columns: list[str], text: bool, random_state: int, fast: bool,
                       forest_max_samples: int | None = TrainingLimits.forest_max_samples):
    """The popularity ``ensemble`` candidate: text score + stacked boosting/forests, trees bounded in size."""
    params = dict(max_iter=40, n_estimators=30) if fast else {}
    return popularity_estimator(columns, text_column=TEXT_COLUMN if text else None, group_column=GROUP_COLUMN,
                                text_components=0, random_state=random_state,
                                forest_max_samples=forest_max_samples, **params)


def input_frame(rows: pd.DataFrame, columns: list[str], text: bool) -> pd.DataFrame:
    """What a model with these columns (and the text document, if ``text``) reads from ``rows``."""
    model = TrainedModel("x", None, columns, text_column=TEXT_COLUMN if text else None, group_column=GROUP_COLUMN)
    return model.input_frame(rows)


# --------------------------------------------------------------------------------------------- authority


def authority_columns(feature_columns: list[str]) -> list[str]:
    """Inputs of the authority model: everything but the link evidence, the host graph of the crawl that
    built the target (a leak) and provider identity; plus Openverse's static source authority as a prior."""
    return [c for c in model_inputs(feature_columns)
            if c not in LINK_EVIDENCE_COLUMNS and not c.startswith(("link_", "landing_", *OWN_CRAWL_PREFIXES))] \
        + [SOURCE_AUTHORITY_COLUMN]


def train_authority(features: pd.DataFrame, feature_columns: list[str], *, random_state: int = 0,
                    fast: bool = False, holdout_share: float = 0.2,
                    ablations: dict[str, list[str]] | None = None,
                    limits: TrainingLimits = TrainingLimits()) -> TrainedModel:
    """Fit an ensemble on images with link evidence (target ``link_authority``) from non-link features.

    Evaluated with folds and a holdout grouped by landing domain (:func:`~imagerank.models.protocol.
    evaluate_authority`, on at most ``limits.evaluation_rows`` rows), beside Openverse's static source
    authority and the Common Crawl domain rank as baselines; ``ablations`` (name -> columns) are
    cross-validated without those columns, and the own-crawl host-graph columns (excluded as inputs) *with*
    them, to show what the leak would have added. ``features`` is already bounded by the caller (the
    training sample); forests grow each tree from at most ``limits.forest_max_samples`` rows."""
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
    params = dict(max_iter=40, n_estimators=30) if fast else {}
    make = lambda: ScoreEnsemble(random_state=random_state, calibrate="isotonic",  # noqa: E731
                                 forest_max_samples=limits.forest_max_samples, **params)
    groups = rows["landing_domain"] if "landing_domain" in rows else pd.Series([None] * len(rows))
    leaking = [c for c in feature_columns if c.startswith(OWN_CRAWL_PREFIXES) and c in rows]
    metrics = {"trained": True, "training_rows": int(len(rows)), "target": "link_authority where has_link_evidence",
               "excluded_inputs": sorted(LINK_EVIDENCE_COLUMNS | set(leaking)),
               "landing_domains": int(groups.astype("string").nunique()),
               "prior_feature": SOURCE_AUTHORITY_COLUMN if SOURCE_AUTHORITY_COLUMN in columns else None,
               "limits": limits.to_dict()}
    y = rows["link_authority"].astype("float64")
    baselines = {}
    if "source" in rows:
        baselines["openverse_source_authority"] = spearman(source_authority(rows["source"]), y)
    if "domain_authority" in rows:
        baselines["domain_rank (Common Crawl)"] = spearman(rows["domain_authority"].astype("float64"), y)
    sample = evaluation_sample(rows, limits.evaluation_rows, random_state)
    metrics["evaluation"] = evaluate_authority(
        sample, model.input_frame(sample), sample["link_authority"].astype("float64"), make, columns=columns,
        ablations=ablations, leaking=leaking, holdout_share=holdout_share, random_state=random_state,
        baselines=baselines)
    metrics["evaluation"]["evaluation_rows"] = int(len(sample))
    model.estimator = make().fit(model.input_frame(rows), y)
    model.metrics = metrics
    return model


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
