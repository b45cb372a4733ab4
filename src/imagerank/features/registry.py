"""The feature families of the work directory and how they join into one frame per image."""

from __future__ import annotations

from pathlib import Path

import dask.dataframe as dd
import pandas as pd

from imagerank import datasets

#: family -> its dataset's location relative to the work directory (the family is also its name in
#: ``imagerank.datasets``); ``metadata`` is the base every image has. ``text`` is the cleaned text document
#: (a string: embedded inside the popularity estimator).
FAMILY_NAMES = ("metadata", "popularity", "domains", "pixels", "exif", "links", "visual", "text")
FAMILIES = {name: datasets.relative(name) for name in FAMILY_NAMES}
#: Columns that are labels, keys or bookkeeping, never model inputs.
NOT_MODEL_INPUTS = {
    "metric_value", "observed_popularity", "event_timestamp", "link_authority", "has_link_evidence",
    "domain_authority",  # authority evidence itself; popularity may use the rank scores it is made of
    "phash",  # a hash, not a quantity: its numeric value means nothing
}


#: Landing-host/domain ranks are constant within a provider: for popularity they would only say "which
#: provider", a shortcut that does not transfer to providers without metrics. Authority may use them.
PROVIDER_PROXIES = {"host_rank_score", "domain_rank_score", "host_pr_val", "domain_pr_val", "domain_n_hosts",
                    "host_graph_pagerank", "host_graph_in_domains", "domain_link_pagerank", "domain_link_harmonic",
                    "domain_link_in_domains", "domain_link_score", "domain_link_harmonic_score"}


#: Families computed from the image bytes: what the model card's "with and without image features" removes.
IMAGE_FAMILIES = ("pixels", "exif", "visual")


def family_columns(workdir: str | Path, families: tuple[str, ...]) -> list[str]:
    """Columns of the given families' datasets (from their Parquet schemas), without the key."""
    import pyarrow.dataset as ds

    from imagerank import storage

    columns: list[str] = []
    for name in families:
        found = datasets.current(workdir, name)
        if found is not None:
            fs, path = storage.filesystem(found)
            columns += [c for c in ds.dataset(path, format="parquet", filesystem=fs).schema.names
                        if c != "image_id" and c not in columns]
    return columns


def available_families(workdir: str | Path) -> list[str]:
    return [name for name in FAMILIES if datasets.exists(workdir, name)]


def load_features(workdir: str | Path) -> dd.DataFrame:
    """Every available family left-joined on image_id onto the metadata features (one row per image)."""
    frame = datasets.read_ddf(workdir, "metadata")
    for name in available_families(workdir):
        if name == "metadata":
            continue
        other = datasets.read_ddf(workdir, name)
        keep = ["image_id"] + [c for c in other.columns if c not in frame.columns]
        frame = frame.merge(other[keep], on="image_id", how="left")
    return frame


def model_feature_columns(frame: pd.DataFrame | dd.DataFrame) -> list[str]:
    """Numeric columns that may feed a model: everything numeric but labels, keys and bookkeeping."""
    numeric = frame._meta if isinstance(frame, dd.DataFrame) else frame
    return [c for c in numeric.columns
            if c not in NOT_MODEL_INPUTS and not c.endswith(("_error", "_pos"))
            and pd.api.types.is_numeric_dtype(numeric[c])]
