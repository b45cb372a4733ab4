"""Dask job: fit the popularity and authority ensembles; write ``W/models/<version>/``.

Also home of the text feature stage (``W/features/text/``: the cleaned title/description/tags document the
popularity estimator embeds itself); :func:`run_train` writes it when it is missing, so a recalculation
that does not call :func:`run_text_features` in its features stage still trains and scores with text.
"""

from __future__ import annotations

import json
import tempfile
from contextlib import contextmanager
from pathlib import Path

import dask.dataframe as dd
import pandas as pd
from distributed import Client

from imagerank.cluster import persist
from imagerank.features.registry import (IMAGE_FAMILIES, PROVIDER_PROXIES, family_columns, load_features,
                                         model_feature_columns)
from imagerank.features.text import TEXT_META, text_documents
from imagerank import datasets, storage
from imagerank.io import stamped
from imagerank.models.popularity_model import evidence_columns, headline_of, train_popularity
from imagerank.models.train import TargetConfig, save_model, train_authority, write_model_card
from imagerank.settings import event_time

MAX_TRAINING_ROWS = 2_000_000  # authority: a uniform sample beyond this (the ensemble saturates long before)
#: Popularity: a uniform sample of each provider's labelled rows beyond this (every candidate is
#: cross-validated on it, so training and evaluation stay bounded whatever the catalog's size).
MAX_ROWS_PER_PROVIDER = 100_000


def run_text_features(client: Client, workdir: str | Path, now: pd.Timestamp | None = None) -> int:
    """``W/features/text/``: image_id, the cleaned document and its counts, one row per catalog image."""
    catalog = datasets.read_ddf(workdir, "catalog", columns=["image_id", "title", "meta_data", "tags"])
    text = persist(client, stamped(catalog.map_partitions(text_documents, meta=TEXT_META), now), "features: text")
    datasets.write_ddf(text, workdir, "text")
    return int(text.map_partitions(len).sum().compute())


def run_train(client: Client, workdir: str | Path, model_version: str, *, random_state: int = 0,
              target: TargetConfig = TargetConfig()) -> dict:
    """Train on a worker (single-threaded BLAS/OpenMP there, so boosting does not oversubscribe cores)."""
    if not datasets.exists(workdir, "text") and datasets.exists(workdir, "catalog"):
        run_text_features(client, workdir, event_time())
    features = load_features(workdir)
    columns = model_feature_columns(features)
    training = _labelled_rows(features, random_state)
    popularity_columns = [c for c in columns if c not in PROVIDER_PROXIES]
    evidence = provider_evidence(features, evidence_columns(columns))
    ablations = {"image features (pixels, EXIF, visual)": family_columns(workdir, IMAGE_FAMILIES)}
    popularity = client.submit(train_popularity, training, popularity_columns, target=target,
                               random_state=random_state, ablations=ablations, provider_evidence=evidence,
                               previous=previous_headline(workdir, model_version), pure=False)
    evidence = _link_evidence_rows(features, random_state)
    authority = client.submit(train_authority, evidence, columns, random_state=random_state, ablations=ablations,
                              pure=False)
    models = {"popularity": popularity.result(), "authority": authority.result()}
    directory = datasets.location(workdir, "models", model_version)
    untrained = {name: m.metrics for name, m in models.items() if m.estimator is None}
    extra = {"popularity_authority_correlation": "computed by the report from W/scores/ per provider"}
    if datasets.exists(workdir, "linkgraph_summary"):  # the --linkgraph domain graph the authority features used
        summary = datasets.read_json(workdir, "linkgraph_summary")
        extra["domain_link_authority"] = {k: summary.get(k) for k in (
            "linkgraph", "domains", "domain_edges", "weighting", "pagerank_iterations", "ranks_agreement")}
    with model_directory(directory) as local:
        entries = {name: save_model(m, local) for name, m in models.items() if m.estimator is not None}
        for name, model in models.items():
            if getattr(model, "held_out", None) is not None:  # for the report's observed-vs-predicted plot
                model.held_out.to_parquet(local / f"oof_{name}.parquet", index=False)
        write_model_card(local, entries, model_version, untrained, extra=extra)
    return {"model_version": model_version, "directory": str(directory), "models": entries, "untrained": untrained}


@contextmanager
def model_directory(directory: str):
    """A local directory to write a model version into (models.train writes local files).

    For a local work directory it is the version's own directory, and ``metrics.json``, written last, is
    what makes the version loadable. For a URL it is a temporary directory uploaded on success, its
    ``metrics.json`` last (one PUT: the version's commit record), then removed.
    """
    if not storage.is_url(directory):
        Path(directory).mkdir(parents=True, exist_ok=True)
        yield Path(directory)
        return
    fs, path = storage.filesystem(directory)
    with tempfile.TemporaryDirectory(prefix="imagerank-models-") as local:
        yield Path(local)
        files = sorted(Path(local).iterdir(), key=lambda p: p.name == "metrics.json")
        for file in files:
            fs.put_file(str(file), f"{path}/{file.name}")


def _labelled_rows(features: dd.DataFrame, random_state: int) -> pd.DataFrame:
    """Rows with an observed metric, a uniform sample of at most MAX_ROWS_PER_PROVIDER per provider."""
    labelled = features[features["observed_popularity"].notnull()]
    counts = labelled["provider"].value_counts().compute()
    fractions = {str(p): min(1.0, MAX_ROWS_PER_PROVIDER / n) for p, n in counts.items()}
    if any(f < 1.0 for f in fractions.values()):
        def sample(part: pd.DataFrame) -> pd.DataFrame:
            keep = [g.sample(frac=fractions.get(str(p), 1.0), random_state=random_state) if fractions.get(str(p), 1.0) < 1
                    else g for p, g in part.groupby("provider", observed=True)]
            return pd.concat(keep) if keep else part.iloc[:0]
        labelled = labelled.map_partitions(sample, meta=labelled._meta)
    return labelled.compute().sort_values("image_id", ignore_index=True)  # same rows, same model


def provider_evidence(features: dd.DataFrame, columns: list[str]) -> pd.DataFrame | None:
    """Per provider (every provider of the catalog): mean of each evidence column and the image count."""
    if not columns:
        return None
    frame = features[["provider", *columns]]
    means = frame.groupby("provider").mean().compute()
    means["images"] = features.groupby("provider").size().compute()
    return means.reset_index()


def previous_headline(workdir: str | Path, model_version: str) -> dict | None:
    """The headline figures of the newest other model version in W/models/ (a baseline row), if any."""
    base = datasets.location(workdir, "models")
    fs, path = storage.filesystem(base)
    cards = [p for p in fs.glob(f"{path}/*/metrics.json") if p.rsplit("/", 2)[-2] != model_version]
    for card in sorted(cards, key=lambda p: _modified(fs, p), reverse=True):
        try:
            headline = headline_of(json.loads(fs.cat_file(card)))
        except ValueError:
            continue
        if headline:
            return headline
    return None


def _modified(fs, path: str) -> float:
    info = fs.info(path)
    value = info.get("mtime") or info.get("LastModified") or info.get("created") or 0
    return value.timestamp() if hasattr(value, "timestamp") else float(value)


def _link_evidence_rows(features: dd.DataFrame, random_state: int) -> pd.DataFrame:
    """Rows with link evidence (the authority model's training set); empty when no crawl was processed."""
    if "has_link_evidence" not in features.columns:
        return features._meta.copy()
    # a partition-wise filter: dask's optimizer turns `frame[mask.fillna(False).astype(bool)]` into a Series here
    rows = features.map_partitions(lambda p: p[p["has_link_evidence"].fillna(False).astype(bool)], meta=features._meta)
    n = int(rows.map_partitions(len).sum().compute())
    if n > MAX_TRAINING_ROWS:
        rows = rows.sample(frac=MAX_TRAINING_ROWS / n, random_state=random_state)
    return rows.compute()
