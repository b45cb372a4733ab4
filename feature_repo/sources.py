"""File sources over the Parquet datasets of the work directory named by IMAGERANK_WORKDIR.

Each source points at the dataset's committed version (``imagerank.datasets.current``), resolved when the
repository is loaded: ``feast apply`` then records that version, and the pipeline applies right before it
materializes, so materialization reads exactly the version the run published.
"""

import os
from pathlib import Path

from feast import FileSource

from imagerank import datasets

WORKDIR = os.environ.get("IMAGERANK_WORKDIR", str(Path(__file__).resolve().parents[1] / "imagerank-data"))


def dataset(name: str, catalog_name: str) -> FileSource:
    path = datasets.current(WORKDIR, catalog_name) or datasets.location(WORKDIR, catalog_name)
    return FileSource(name=name, path=path, timestamp_field="event_timestamp")


scores_source = dataset("scores", "scores")
metadata_source = dataset("metadata_features", "metadata")
domains_source = dataset("domain_features", "domains")
domain_stats_source = dataset("domain_stats", "domain_stats")
pixels_source = dataset("pixel_features", "pixels")
exif_source = dataset("exif_features", "exif")
links_source = dataset("link_features", "links")
visual_source = dataset("visual_features", "visual")
