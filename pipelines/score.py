"""Dask job: score every catalog image with the models of one version; write ``W/scores/``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from distributed import Client

from imagerank.cluster import persist
from imagerank.features.registry import load_features
from imagerank.io import keep_unchanged_timestamps, write_ddf
from imagerank.models.train import load_model
from imagerank.scoring import SCORES_META, SCORES_SCHEMA, score_partition


def load_models(workdir: Path, model_version: str) -> dict:
    """The models of ``model_version``, each checked against the digest its metrics.json recorded."""
    directory = workdir / "models" / model_version
    card = json.loads((directory / "metrics.json").read_text())
    return {name: load_model(directory, name, entry["sha256"]) for name, entry in card["models"].items()}


def run_score(client: Client, workdir: str | Path, model_version: str, event_timestamp: pd.Timestamp) -> dict:
    workdir = Path(workdir)
    models = load_models(workdir, model_version)
    popularity = client.scatter(models.get("popularity"), broadcast=True)
    authority = client.scatter(models.get("authority"), broadcast=True)
    features = load_features(workdir)
    scores = features.map_partitions(score_partition, popularity, authority, model_version, event_timestamp,
                                     meta=SCORES_META)
    # Unchanged scores keep their model_version and event_timestamp: materialize-incremental skips them.
    scores = keep_unchanged_timestamps(scores, workdir / "scores", carry=("model_version", "event_timestamp"))
    scores = persist(client, scores, "score")
    write_ddf(scores, workdir / "scores", schema=SCORES_SCHEMA)
    summary = scores.groupby(["popularity_source", "authority_source"]).size().compute()
    return {"score_rows": int(summary.sum()),
            "by_source": {f"{p}/{a}": int(v) for (p, a), v in summary.items()}}
