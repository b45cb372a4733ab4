"""File sources over the Parquet datasets of the work directory named by IMAGERANK_WORKDIR."""

import os
from pathlib import Path

from feast import FileSource

WORKDIR = Path(os.environ.get("IMAGERANK_WORKDIR", Path(__file__).resolve().parents[1] / "imagerank-data"))


def dataset(name: str, relative: str) -> FileSource:
    return FileSource(name=name, path=str(WORKDIR / relative), timestamp_field="event_timestamp")


scores_source = dataset("scores", "scores")
metadata_source = dataset("metadata_features", "features/metadata")
domains_source = dataset("domain_features", "features/domains")
domain_stats_source = dataset("domain_stats", "features/domain_stats")
pixels_source = dataset("pixel_features", "features/pixels")
exif_source = dataset("exif_features", "features/exif")
links_source = dataset("link_features", "features/links")
visual_source = dataset("visual_features", "features/visual")
