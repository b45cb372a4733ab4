"""Training the popularity ensemble on rows with an observed metric, with its evaluation and model card."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.feature_selection import VarianceThreshold
from sklearn.pipeline import make_pipeline

from imagerank.io import atomic_path
from imagerank.models.ensemble import ScoreEnsemble
from imagerank.models.evaluation import grouped_cv_predictions, regression_report

MIN_TRAINING_ROWS = 20
EVALUATION_PROVIDER = "flickr"  # the provider whose metric (views) is dense enough to evaluate on


@dataclass
class TrainedModel:
    name: str
    estimator: object | None  # None: too few labelled rows to learn from
    feature_columns: list[str]
    metrics: dict = field(default_factory=dict)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        if self.estimator is None:
            return np.full(len(frame), np.nan)
        return self.estimator.predict(frame[self.feature_columns].astype("float64"))


def train_popularity(training: pd.DataFrame, feature_columns: list[str], *, random_state: int = 0) -> TrainedModel:
    """Fit the ensemble on every observed row; evaluate it (and a plain boosting baseline) by grouped CV.

    ``training`` holds the features plus ``observed_popularity`` (target on [0, 1]), ``metric_value``
    (the raw provider metric), ``provider`` and ``creator``.
    """
    training = training.dropna(subset=["observed_popularity"]).reset_index(drop=True)
    if len(training) < MIN_TRAINING_ROWS:
        return TrainedModel("popularity", None, feature_columns,
                            {"trained": False, "reason": f"only {len(training)} rows with an observed metric"})
    X = training[feature_columns].astype("float64")
    y = training["observed_popularity"].astype("float64")
    estimator = ScoreEnsemble(random_state=random_state).fit(X, y)
    metrics = {"trained": True, "training_rows": int(len(training)),
               "training_rows_by_provider": training["provider"].value_counts().to_dict(),
               "evaluation": evaluate(training, feature_columns, random_state=random_state)}
    return TrainedModel("popularity", estimator, feature_columns, metrics)


def evaluate(training: pd.DataFrame, feature_columns: list[str], *, random_state: int = 0) -> dict:
    """Creator-grouped 5-fold CV on the evaluation provider's rows: the ensemble next to plain boosting."""
    rows = training[training["provider"] == EVALUATION_PROVIDER].reset_index(drop=True)
    if len(rows) < 5 * MIN_TRAINING_ROWS:
        return {"skipped": f"only {len(rows)} {EVALUATION_PROVIDER} rows with a metric"}
    X = rows[feature_columns].astype("float64")
    y = rows["observed_popularity"].astype("float64")
    models = {"ensemble": ScoreEnsemble(random_state=random_state),
              "baseline_boosting": make_pipeline(VarianceThreshold(), HistGradientBoostingRegressor(random_state=random_state))}
    report = {"protocol": f"5-fold GroupKFold by creator on {EVALUATION_PROVIDER} rows; Spearman against the raw "
                          "metric, MAE on the standardized [0, 1] target"}
    for name, model in models.items():
        predicted = np.clip(grouped_cv_predictions(model, X, y, rows["creator"]), 0, 1)
        report[name] = regression_report(predicted, y, rows["metric_value"])
    return report


def save_model(model: TrainedModel, directory: str | Path, card_extra: dict | None = None) -> dict:
    """Write ``<name>.joblib``, its sha256, and the metrics into ``directory`` (atomically per file)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / f"{model.name}.joblib") as tmp:
        joblib.dump(model, tmp)
    digest = hashlib.sha256((directory / f"{model.name}.joblib").read_bytes()).hexdigest()
    entry = {"file": f"{model.name}.joblib", "sha256": digest, "features": model.feature_columns,
             "metrics": model.metrics, **(card_extra or {})}
    return entry


def load_model(directory: str | Path, name: str, expected_sha256: str) -> TrainedModel:
    """Load a model written by :func:`save_model`, refusing a file whose digest differs from the record."""
    path = Path(directory) / f"{name}.joblib"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != expected_sha256:
        raise ValueError(f"{path}: sha256 {digest} differs from the recorded {expected_sha256}; refusing to load")
    return joblib.load(path)


def write_model_card(directory: str | Path, entries: dict[str, dict], version: str) -> None:
    directory = Path(directory)
    (directory / "metrics.json").write_text(json.dumps({"model_version": version, "models": entries},
                                                       indent=2, default=str))
    lines = [f"# imagerank models {version}", ""]
    for name, entry in entries.items():
        lines += [f"## {name}", "", f"- file: `{entry['file']}` (sha256 `{entry['sha256'][:16]}…`)",
                  f"- features ({len(entry['features'])}): {', '.join(entry['features'])}"]
        evaluation = entry["metrics"].get("evaluation", {})
        for key, value in evaluation.items():
            lines.append(f"- {key}: {json.dumps(value, default=str)}")
        lines.append("")
    (directory / "model_card.md").write_text("\n".join(lines))
