"""Served scores: observed where a provider metric exists, else what the popularity model validates for the
row's provider (``predicted``) or the provider's prior level (``prior``); always in [0, 1]."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from imagerank.features.domains import AUTHORITY_PRIOR

SCORES_SCHEMA = pa.schema([
    ("image_id", pa.string()),
    ("popularity", pa.float64()),
    ("authority", pa.float64()),
    ("popularity_source", pa.string()),  # observed | predicted | prior
    ("authority_source", pa.string()),  # links | domain_rank | predicted | prior
    ("model_version", pa.string()),
    ("event_timestamp", pa.timestamp("us", tz="UTC")),
])
SCORES_META = SCORES_SCHEMA.empty_table().to_pandas()
#: What the ``image_scores`` feature view serves: every column but the key and the event time.
SCORE_FEATURES = [name for name in SCORES_SCHEMA.names if name not in ("image_id", "event_timestamp")]
#: Popularity of a row when no model could be trained (no provider metric anywhere in the catalog).
POPULARITY_PRIOR = 0.0


def score_partition(features: pd.DataFrame, popularity_model, authority_model, model_version: str,
                    event_timestamp: pd.Timestamp) -> pd.DataFrame:
    """Partition function: one scores row per features row (features of every family, joined on image_id)."""
    observed = _column(features, "observed_popularity")
    popularity, popularity_source = _choose([("observed", observed)], POPULARITY_PRIOR)
    if popularity_model is not None:
        modelled, modelled_source = _modelled_popularity(popularity_model, features)
        fill = ~np.isfinite(observed) & np.isfinite(modelled)
        popularity[fill] = modelled[fill]
        popularity_source[fill] = modelled_source[fill]

    has_links = _column(features, "has_link_evidence") > 0
    link_authority = np.where(has_links, _column(features, "link_authority"), np.nan)
    predicted_authority = authority_model.predict(features) if authority_model is not None else np.full(len(features), np.nan)
    domain_authority = _column(features, "domain_authority")
    # Link evidence first; the model (trained on link evidence, using the domain ranks among its inputs)
    # for the rest; the bare domain rank only when no crawl was given to train a model on.
    authority, authority_source = _choose([("links", link_authority), ("predicted", predicted_authority),
                                           ("domain_rank", domain_authority)], AUTHORITY_PRIOR)
    return pd.DataFrame({
        "image_id": features["image_id"].astype(str).to_numpy(),
        "popularity": np.clip(popularity, 0.0, 1.0),
        "authority": np.clip(authority, 0.0, 1.0),
        "popularity_source": popularity_source,
        "authority_source": authority_source,
        "model_version": model_version,
        "event_timestamp": pd.Series([event_timestamp] * len(features), dtype=SCORES_META["event_timestamp"].dtype).to_numpy(),
    })


def _modelled_popularity(model, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(value, source) from the model: its own per-row source when it gives one, else all ``predicted``."""
    if hasattr(model, "predict_with_source"):
        values, sources = model.predict_with_source(features)
        return np.asarray(values, dtype="float64"), np.asarray(sources, dtype=object)
    values = np.asarray(model.predict(features), dtype="float64")
    return values, np.full(len(values), "predicted", dtype=object)


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").astype("float64").to_numpy()


def _choose(candidates: list[tuple[str, np.ndarray]], prior: float) -> tuple[np.ndarray, np.ndarray]:
    """First finite candidate per row, with the name of the source it came from; ``prior`` otherwise."""
    n = len(candidates[0][1])
    value = np.full(n, prior, dtype="float64")
    source = np.full(n, "prior", dtype=object)
    for name, values in reversed(candidates):
        ok = np.isfinite(values)
        value[ok] = values[ok]
        source[ok] = name
    return value, source
