"""Dask job: fit the popularity and authority ensembles; write ``W/models/<version>/``.

Bounded at any catalog size: each model's training sample is drawn on the workers (an id-hash sample,
per provider for popularity; :class:`~imagerank.models.train.TrainingLimits` sets the sizes), persisted
there, and handed as partition futures to the task that trains, which gathers them from its peers: only
the sample leaves the workers, and never through the driver. That task fits its evaluation folds through
joblib's Dask backend (:func:`~imagerank.models.evaluation.folds_on_cluster`), so they spread over the
cluster.

The features are the joined dataset (``W/features/joined/``, :mod:`imagerank.features.registry`): each
use below reads its Parquet files, none re-runs the families' join (rewritten first if a family changed).

:func:`run_train` writes the text features (:mod:`pipelines.text`) when they are missing, so a caller that
did not run the text stage still trains and scores with text. :func:`train_or_reuse` is the train stage of a
recalculation (:mod:`pipelines.stages`).
"""

from __future__ import annotations

import json
import tempfile
from contextlib import contextmanager
from pathlib import Path

import dask.dataframe as dd
import pandas as pd
from distributed import Client, futures_of

from imagerank.cluster import persist
from imagerank.features.registry import (IMAGE_FAMILIES, PROVIDER_PROXIES, family_columns, joined_features,
                                         model_feature_columns)
from imagerank import datasets, storage
from imagerank.models.card import write_model_card
from imagerank.models.evaluation import folds_on_cluster
from imagerank.models.popularity_model import evidence_columns, headline_of, train_popularity
from imagerank.models.sampling import ALL_ROWS, sample_shares, stratified_sample
from imagerank.models.train import TargetConfig, TrainingLimits, save_model, train_authority
from imagerank.runs import check_retrain_policy, previous_model, reuse_model, training_fingerprint
from imagerank.settings import event_time
from pipelines.text import run_text_features


def run_train(client: Client, workdir: str | Path, model_version: str, *, random_state: int = 0,
              target: TargetConfig = TargetConfig(), limits: TrainingLimits | None = None) -> dict:
    """Train on workers (single-threaded BLAS/OpenMP there, so boosting does not oversubscribe cores).

    ``limits`` default to :meth:`TrainingLimits.from_env` (``IMAGERANK_TRAIN_*``, else the defaults)."""
    limits = TrainingLimits.from_env() if limits is None else limits
    if not datasets.exists(workdir, "text") and datasets.exists(workdir, "catalog"):
        run_text_features(client, workdir, event_time())
    features = joined_features(workdir)  # read by every use below: the families' join never runs again here
    ablations = {"image features (pixels, EXIF, visual)": family_columns(workdir, IMAGE_FAMILIES)}
    models = train_models(client, features, target=target, random_state=random_state, ablations=ablations,
                          previous=previous_headline(workdir, model_version), limits=limits)
    directory = datasets.location(workdir, "models", model_version)
    untrained = {name: m.metrics for name, m in models.items() if m.estimator is None}
    extra = {"popularity_authority_correlation": "computed by the report from W/scores/ per provider",
             "authority_against_link_graph": authority_against_link_graph(client, features, limits, random_state)}
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


def train_models(client: Client, features: dd.DataFrame, *, target: TargetConfig = TargetConfig(),
                 random_state: int = 0, ablations: dict[str, list[str]] | None = None, previous: dict | None = None,
                 limits: TrainingLimits = TrainingLimits(), fast: bool = False) -> dict:
    """``{"popularity": model, "authority": model}`` from the joined feature rows (a Dask frame on the cluster):
    each model's sample is drawn and persisted on the workers, then trained by one task that gathers it from
    them; the driver receives only per-provider counts and means, and the fitted models. ``fast``: smaller
    ensembles, no ceiling figures (tests)."""
    columns = model_feature_columns(features)
    popularity_columns = [c for c in columns if c not in PROVIDER_PROXIES]
    evidence = provider_evidence(features, evidence_columns(columns))
    labelled = persist(client, labelled_sample(features, limits.rows_per_provider, random_state),
                       "train: popularity sample")
    linked = persist(client, link_evidence_sample(features, limits.authority_rows, random_state),
                     "train: authority sample")
    popularity = client.submit(train_popularity_from_parts, futures_of(labelled), labelled._meta, popularity_columns,
                               target=target, random_state=random_state, ablations=ablations,
                               provider_evidence=evidence, previous=previous, limits=limits, fast=fast, pure=False)
    authority = client.submit(train_authority_from_parts, futures_of(linked), linked._meta, columns,
                              random_state=random_state, ablations=ablations, limits=limits, fast=fast, pure=False)
    return {"popularity": popularity.result(), "authority": authority.result()}


def labelled_sample(features: dd.DataFrame, rows_per_provider: int | None, random_state: int) -> dd.DataFrame:
    """Rows with an observed metric, at most about ``rows_per_provider`` per provider (an id-hash sample drawn
    partition by partition on the workers; only the per-provider counts reach the driver)."""
    labelled = features[features["observed_popularity"].notnull()]
    shares = sample_shares(labelled["provider"].value_counts().compute(), rows_per_provider)
    return labelled.map_partitions(stratified_sample, shares, "provider", random_state, meta=labelled._meta)


def link_evidence_sample(features: dd.DataFrame, authority_rows: int | None, random_state: int) -> dd.DataFrame:
    """Rows with link evidence (the authority model's training set), at most about ``authority_rows``; empty
    when no crawl was processed."""
    if "has_link_evidence" not in features.columns:
        return features.map_partitions(lambda p: p.iloc[:0], meta=features._meta)
    # a partition-wise filter: dask's optimizer turns `frame[mask.fillna(False).astype(bool)]` into a Series here
    rows = features.map_partitions(lambda p: p[p["has_link_evidence"].fillna(False).astype(bool)], meta=features._meta)
    shares = sample_shares(pd.Series({ALL_ROWS: int(rows.map_partitions(len).sum().compute())}), authority_rows)
    return rows.map_partitions(stratified_sample, shares, None, random_state, meta=rows._meta)


def gather_sample(parts: list[pd.DataFrame], meta: pd.DataFrame) -> pd.DataFrame:
    """The sample's partitions as one frame in image_id order (the same rows give the same model)."""
    parts = [p for p in parts if len(p)]
    frame = pd.concat(parts) if parts else meta.copy()
    return frame.sort_values("image_id", ignore_index=True, kind="stable")


def train_popularity_from_parts(parts: list[pd.DataFrame], meta: pd.DataFrame, columns: list[str], **kwargs):
    """Worker task: the popularity model from the sample's partitions, folds spread over the cluster."""
    with folds_on_cluster():
        return train_popularity(gather_sample(parts, meta), columns, **kwargs)


def train_authority_from_parts(parts: list[pd.DataFrame], meta: pd.DataFrame, columns: list[str], **kwargs):
    """Worker task: the authority model from the sample's partitions, folds spread over the cluster."""
    with folds_on_cluster():
        return train_authority(gather_sample(parts, meta), columns, **kwargs)


def authority_against_link_graph(client: Client, features: dd.DataFrame, limits: TrainingLimits,
                                 random_state: int = 0) -> dict:
    """How the authority candidates agree with the landing domain's place in the --linkgraph graph
    (:mod:`imagerank.models.authority_evidence`), on a bounded id-hash sample evaluated by one worker task."""
    from imagerank.models.authority_evidence import TARGET_COLUMN

    if TARGET_COLUMN not in features.columns:
        return {"evaluated": False, "reason": "no crawl-derived link graph (--linkgraph)"}
    rows = features.map_partitions(lambda p: p[p[TARGET_COLUMN].notna()], meta=features._meta)
    shares = sample_shares(pd.Series({ALL_ROWS: int(rows.map_partitions(len).sum().compute())}), limits.evaluation_rows)
    sample = persist(client, rows.map_partitions(stratified_sample, shares, None, random_state, meta=rows._meta),
                     "train: link-graph authority sample")
    return client.submit(evaluate_authority_from_parts, futures_of(sample), sample._meta,
                         model_feature_columns(features), random_state, pure=False).result()


def evaluate_authority_from_parts(parts: list[pd.DataFrame], meta: pd.DataFrame, columns: list[str],
                                  random_state: int) -> dict:
    """Worker task: :func:`imagerank.models.authority_evidence.evaluate_sample` on the gathered sample."""
    from imagerank.models.authority_evidence import evaluate_sample

    return evaluate_sample(gather_sample(parts, meta), columns, random_state)


def provider_evidence(features: dd.DataFrame, columns: list[str]) -> pd.DataFrame | None:
    """Per provider (every provider of the catalog): mean of each evidence column and the image count."""
    if not columns:
        return None
    frame = features[["provider", *columns]]
    means, images = dd.compute(frame.groupby("provider").mean(), frame.groupby("provider").size())  # one read
    means["images"] = images
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


def train_or_reuse(client: Client, workdir: str | Path, run_id: str, policy: str) -> dict:
    """The train stage: a new model version, or the last one when the policy allows (:func:`imagerank.runs.reuse_model`)."""
    check_retrain_policy(policy)  # before the fingerprint's pass over the features
    fingerprint = training_fingerprint(workdir)
    previous, previous_exists = previous_model(workdir)
    if reuse_model(policy, previous, previous_exists, fingerprint):
        return {**previous, "reused": True, "training_fingerprint": fingerprint}
    return {**run_train(client, workdir, run_id), "reused": False, "training_fingerprint": fingerprint}
