"""Metadata features: what the catalog row itself says about an image (text, license, size, age, place).

Provider metric keys (views, global_usage_count, ...) are never features: they are the label.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa

from imagerank.catalog.fields import date_taken, location, meta_object, published_time, tag_names
from imagerank.popularity import DEFAULT_METRICS
from imagerank.schemas import empty_frame
from imagerank.urls import host_of, registered_domain

FILENAME_TITLE = re.compile(r"^(img|dsc|dscn|dscf|p|pict|photo|image|gopr|dji)?[\s_-]*\d{3,}", re.IGNORECASE)
LICENSE_PARTS = ("by", "sa", "nc", "nd")
CATEGORIES = ("photograph", "digitized_artwork", "illustration")
SECONDS_PER_DAY = 86_400.0
METRIC_KEYS = set(DEFAULT_METRICS.values())

#: Numeric features the models use, in a fixed order.
FEATURE_COLUMNS = [
    "title_chars", "title_words", "title_is_filename", "title_digit_share",
    "description_chars", "description_words", "tag_count", "tag_chars_mean",
    *[f"license_{part}" for part in LICENSE_PARTS], "license_cc0", "license_pdm", "license_version",
    "width", "height", "aspect", "log_megapixels", "log_filesize",
    "age_days", "taken_age_days", "upload_lag_days", "has_geo", "meta_keys", "has_creator_url",
    "has_alt_text", *[f"category_{c}" for c in CATEGORIES], "watermarked",
]
#: Columns measured from the run's clock: they advance every run without anything in the catalog changing.
RELATIVE_TO_RUN = ["age_days", "taken_age_days"]
TEXT_COLUMNS = ["image_id", "provider", "source", "creator", "landing_host", "landing_domain"]
#: What :func:`metadata_features` returns; ``W/features/metadata/`` adds the run's event time.
METADATA_SCHEMA = pa.schema([*(pa.field(c, pa.string()) for c in TEXT_COLUMNS),
                             *(pa.field(c, pa.float64()) for c in FEATURE_COLUMNS)])
METADATA_META = empty_frame(METADATA_SCHEMA)


def metadata_features(catalog: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
    """Partition function: one row of metadata features per catalog row (``now`` fixes 'age')."""
    meta = [meta_object(m) for m in catalog["meta_data"]]
    tags = [tag_names(t) for t in catalog["tags"]]
    title = catalog["title"].fillna("").astype(str)
    description = pd.Series([str(m.get("description") or "") for m in meta], index=catalog.index)
    license_code = catalog["license"].fillna("").str.lower()
    width = pd.to_numeric(catalog["width"], errors="coerce").astype("float64")
    height = pd.to_numeric(catalog["height"], errors="coerce").astype("float64")
    filesize = pd.to_numeric(catalog["filesize"], errors="coerce").astype("float64")
    published = _utc([published_time(m) for m in meta], catalog.index).fillna(
        pd.to_datetime(catalog["created_on"], utc=True, errors="coerce")).astype("datetime64[ns, UTC]")
    taken = _utc([date_taken(m)[0] for m in meta], catalog.index)  # taken_at's catalog fallback: one parser
    now = pd.Timestamp(now).tz_convert("UTC") if pd.Timestamp(now).tzinfo else pd.Timestamp(now, tz="UTC")
    landing = [host_of(u) or host_of(c) for u, c in zip(catalog["foreign_landing_url"], catalog["creator_url"])]

    out = pd.DataFrame(index=catalog.index)
    out["image_id"] = catalog["image_id"].astype("string")
    out["provider"] = catalog["provider"].astype("string")
    out["source"] = catalog["source"].astype("string")
    out["creator"] = catalog["creator"].astype("string")
    out["landing_host"] = pd.array(landing, dtype="string")
    out["landing_domain"] = pd.array([registered_domain(h) for h in landing], dtype="string")
    out["title_chars"] = title.str.len()
    out["title_words"] = title.str.split().str.len()
    out["title_is_filename"] = title.str.match(FILENAME_TITLE).astype("float64")
    out["title_digit_share"] = title.str.count(r"\d") / title.str.len().clip(lower=1)
    out["description_chars"] = description.str.len()
    out["description_words"] = description.str.split().str.len()
    out["tag_count"] = [len(t) for t in tags]
    out["tag_chars_mean"] = [sum(map(len, t)) / len(t) if t else 0.0 for t in tags]
    for part in LICENSE_PARTS:
        out[f"license_{part}"] = license_code.str.split("-").apply(lambda parts, p=part: p in parts).astype("float64")
    out["license_cc0"] = (license_code == "cc0").astype("float64")
    out["license_pdm"] = (license_code == "pdm").astype("float64")
    out["license_version"] = pd.to_numeric(catalog["license_version"], errors="coerce")
    out["width"] = width
    out["height"] = height
    out["aspect"] = width / height
    out["log_megapixels"] = np.log10(width * height / 1e6)
    out["log_filesize"] = np.log10(filesize)
    out["age_days"] = (now - published).dt.total_seconds() / SECONDS_PER_DAY
    out["taken_age_days"] = (now - taken).dt.total_seconds() / SECONDS_PER_DAY
    out["upload_lag_days"] = (published - taken).dt.total_seconds() / SECONDS_PER_DAY
    out["has_geo"] = [float(location(m) is not None) for m in meta]
    out["meta_keys"] = [float(sum(k not in METRIC_KEYS for k in m)) for m in meta]  # the label's key is no feature
    out["has_creator_url"] = catalog["creator_url"].notna().astype("float64")
    out["has_alt_text"] = [float(bool(m.get("image_alt_text"))) for m in meta]
    category = catalog["category"].fillna("")
    for name in CATEGORIES:
        out[f"category_{name}"] = (category == name).astype("float64")
    out["watermarked"] = catalog["watermarked"].astype("float64")
    out[FEATURE_COLUMNS] = out[FEATURE_COLUMNS].astype("float64").replace([np.inf, -np.inf], np.nan)
    return out[METADATA_META.columns].reset_index(drop=True)


def _utc(moments: list, index: pd.Index) -> pd.Series:
    """Timestamps (aware, or naive meaning UTC) and Nones -> a UTC datetime series (NaT for None)."""
    return pd.to_datetime(pd.Series(moments, index=index, dtype="object"), utc=True, errors="coerce",
                          format="mixed").astype("datetime64[ns, UTC]")
