"""Dask job: score every catalog image with the models of one version; write ``W/scores/``."""

from __future__ import annotations

import json
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from distributed import Client

from imagerank.cluster import persist
from imagerank.features.registry import joined_features
from imagerank import datasets, storage
from imagerank.io import keep_unchanged_timestamps
from imagerank.models.train import load_model
from imagerank.scoring import SCORES_META, SCORES_SCHEMA, score_partition


MODEL_NAMES = ("popularity", "authority")


def load_models(workdir: str | Path, model_version: str, expected_sha256: dict[str, str] | None = None) -> dict:
    """The models of ``model_version``, each refused unless its file's sha256 matches the record.

    ``expected_sha256`` comes from the run that trained them (its manifest lives outside the model
    directory); without it, the digests in the version's own metrics.json are used.
    """
    directory = datasets.location(workdir, "models", model_version)
    card = json.loads(storage.read_text(storage.join(directory, "metrics.json")))
    models = {}
    with local_model_directory(directory) as local:
        for name, entry in card["models"].items():
            if name not in MODEL_NAMES:
                raise ValueError(f"{directory}/metrics.json names an unknown model {name!r}; refusing to load it")
            digest = (expected_sha256 or {}).get(name, entry["sha256"])
            if digest != entry["sha256"]:
                raise ValueError(f"{directory}/metrics.json records sha256 {entry['sha256']} for {name}, the run "
                                 f"that trained it recorded {digest}; refusing to load")
            models[name] = load_model(local, name, digest)
    return models


@contextmanager
def local_model_directory(directory: str):
    """The model files as a local directory: the directory itself, or for a URL a temporary copy of its
    ``*.joblib`` files (models.train loads from local paths; the copy is removed after loading)."""
    if not storage.is_url(directory):
        yield Path(directory)
        return
    fs, path = storage.filesystem(directory)
    with tempfile.TemporaryDirectory(prefix="imagerank-models-") as local:
        for remote in fs.glob(f"{path}/*.joblib"):
            fs.get(remote, str(Path(local) / remote.rsplit("/", 1)[-1]))
        yield Path(local)


def recorded_digests(workdir: str | Path, model_version: str) -> dict[str, str] | None:
    """Model digests as recorded by the run that trained ``model_version`` (its manifest or in-progress state)."""
    for path in reversed(datasets.list_files(workdir, "runs", "*.json")):
        run = json.loads(storage.read_text(path))
        models = run.get("models") or run.get("stages", {}).get("train")
        if models and models.get("model_version") == model_version and not models.get("reused"):
            return {name: entry["sha256"] for name, entry in models.get("models", {}).items()}
    return None


def run_score(client: Client, workdir: str | Path, model_version: str, event_timestamp: pd.Timestamp) -> dict:
    models = load_models(workdir, model_version, recorded_digests(workdir, model_version))
    popularity = client.scatter(models.get("popularity"), broadcast=True)
    authority = client.scatter(models.get("authority"), broadcast=True)
    features = joined_features(workdir)
    scores = features.map_partitions(score_partition, popularity, authority, model_version, event_timestamp,
                                     meta=SCORES_META)
    # Unchanged scores keep their model_version and event_timestamp: materialize-incremental skips them.
    scores = keep_unchanged_timestamps(scores, datasets.location(workdir, "scores"),
                                       carry=("model_version", "event_timestamp"))
    scores = persist(client, scores, "score")
    datasets.write_ddf(scores, workdir, "scores", schema=SCORES_SCHEMA)
    summary = scores.groupby(["popularity_source", "authority_source"]).size().compute()
    return {"score_rows": int(summary.sum()),
            "by_source": {f"{p}/{a}": int(v) for (p, a), v in summary.items()}}
