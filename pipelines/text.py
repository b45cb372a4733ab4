"""Dask job: the ``features: text`` stage, ``W/catalog/`` -> ``W/features/text/``.

The cleaned title/description/tags document the popularity estimator embeds itself
(:func:`imagerank.features.text.text_documents`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from distributed import Client

from imagerank import datasets
from imagerank.cluster import persist
from imagerank.features.text import TEXT_META, text_documents
from imagerank.io import stamped


def run_text_features(client: Client, workdir: str | Path, now: pd.Timestamp | None = None) -> int:
    """``W/features/text/``: image_id, the cleaned document and its counts, one row per catalog image."""
    catalog = datasets.read_ddf(workdir, "catalog", columns=["image_id", "title", "meta_data", "tags"])
    text = persist(client, stamped(catalog.map_partitions(text_documents, meta=TEXT_META), now), "features: text")
    datasets.write_ddf(text, workdir, "text")
    return int(text.map_partitions(len).sum().compute())
