"""Openverse's static authority: one trust value per source type, the baseline (and a prior) for authority.

Openverse's ingestion server boosts curated collections (0.85), cultural institutions (0.90), social media
(0.75) and everything else (0.80), keyed by the catalog row's ``source``; its search then boosts by
min(popularity, authority). The source-type table below is Openverse's own list.
"""

from __future__ import annotations

import pandas as pd

SOURCE_AUTHORITY_COLUMN = "openverse_source_authority"
TYPE_AUTHORITY = {"curated": 0.85, "cultural_institution": 0.90, "social_media": 0.75, "default": 0.80}
SOURCE_TYPES = {
    **dict.fromkeys(("flickr", "behance", "thingiverse", "sketchfab", "deviantart"), "social_media"),
    **dict.fromkeys(("thorvaldsensmuseum", "svgsilh", "smithsonian", "rijksmuseum", "museumsvictoria", "met",
                     "mccordsmuseum", "digitaltmuseum", "clevelandmuseum", "brooklynmuseum"), "cultural_institution"),
    **dict.fromkeys(("stocksnap", "rawpixel"), "curated"),
}


def source_authority(source: pd.Series) -> pd.Series:
    """Openverse's static authority of each row's source (the default type for a source it does not list)."""
    types = source.astype("string").str.lower().map(SOURCE_TYPES).fillna("default")
    return types.map(TYPE_AUTHORITY).astype("float64")
