"""Dask job: fit the popularity ensemble on rows with an observed metric; write ``W/models/<version>/``."""

from __future__ import annotations

from pathlib import Path

from distributed import Client

from imagerank.features.registry import load_features, model_feature_columns
from imagerank.models.train import save_model, train_popularity, write_model_card

MAX_TRAINING_ROWS = 2_000_000  # a uniform sample beyond this: the ensemble saturates long before


def run_train(client: Client, workdir: str | Path, model_version: str, *, random_state: int = 0) -> dict:
    """Train on a worker (single-threaded BLAS/OpenMP there, so boosting does not oversubscribe cores)."""
    workdir = Path(workdir)
    features = load_features(workdir)
    columns = model_feature_columns(features)
    labelled = features[features["observed_popularity"].notnull()]
    n = int(labelled.map_partitions(len).sum().compute())
    if n > MAX_TRAINING_ROWS:
        labelled = labelled.sample(frac=MAX_TRAINING_ROWS / n, random_state=random_state)
    training = labelled.compute()
    model = client.submit(train_popularity, training, columns, random_state=random_state, pure=False).result()
    directory = workdir / "models" / model_version
    entries = {"popularity": save_model(model, directory)}
    write_model_card(directory, entries, model_version)
    return {"model_version": model_version, "directory": str(directory), "models": entries}
