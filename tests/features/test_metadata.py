"""Metadata features: what a catalog row says, independent of how the partition is indexed."""

import json

import numpy as np
import pandas as pd

from imagerank.catalog.ingest import good_rows, read_raw, validate_rows
from imagerank.features.exif import catalog_facts
from imagerank.features.metadata import FEATURE_COLUMNS, METADATA_META, metadata_features

NOW = pd.Timestamp("2026-11-29", tz="UTC")


def catalog_row(**overrides):
    row = {"image_id": "a", "provider": "flickr", "source": "flickr", "creator": "x", "title": "IMG_1234",
           "foreign_landing_url": "www.flickr.com/photos/x/1", "creator_url": None, "url": "https://live.staticflickr.com/1.jpg",
           "license": "by-nc-sa", "license_version": "2.0", "width": 640, "height": 480, "filesize": None,
           "created_on": pd.Timestamp("2020-01-01", tz="UTC"), "category": None, "watermarked": False,
           "meta_data": json.dumps({"pub_date": str(int(pd.Timestamp("2016-11-29", tz="UTC").timestamp())),
                                    "date_taken": "2016-11-19 10:00:00", "views": "120", "description": "a b c"}),
           "tags": json.dumps(["sea", "harbour"])}
    return {**row, **overrides}


def test_values_follow_the_row():
    out = metadata_features(pd.DataFrame([catalog_row()]), NOW).iloc[0]
    assert out["landing_host"] == "www.flickr.com" and out["landing_domain"] == "flickr.com"  # never the CDN
    assert round(out["age_days"]) == 3652 and round(out["upload_lag_days"] * 24) == 10 * 24 - 10
    assert out["title_is_filename"] == 1 and out["tag_count"] == 2 and out["tag_chars_mean"] == 5.0
    assert (out["license_by"], out["license_nc"], out["license_sa"], out["license_nd"]) == (1, 1, 1, 0)
    assert out["description_words"] == 3 and out["aspect"] == 640 / 480
    assert out["meta_keys"] == 3  # pub_date, date_taken, description: the metric key is the label, not a feature


def test_missing_dates_fall_back_to_created_on_and_empty_rows_are_finite_or_null():
    out = metadata_features(pd.DataFrame([catalog_row(meta_data="{}", tags="[]", title=None, width=None)]), NOW).iloc[0]
    assert round(out["age_days"]) == (NOW - pd.Timestamp("2020-01-01", tz="UTC")).days
    assert np.isnan(out["taken_age_days"]) and np.isnan(out["aspect"])
    assert out[FEATURE_COLUMNS].apply(lambda v: v is None or np.isnan(v) or np.isfinite(v)).all()


def test_output_does_not_depend_on_the_partition_index(sample_catalog):
    catalog = good_rows(validate_rows(read_raw(str(sample_catalog), 0)))
    plain = metadata_features(catalog, NOW)
    shuffled = catalog.iloc[::-1].set_index(pd.Index(range(5000, 5000 + len(catalog))))
    other = metadata_features(shuffled, NOW).iloc[::-1].reset_index(drop=True)
    assert list(plain.columns) == list(METADATA_META.columns)
    np.testing.assert_allclose(plain[FEATURE_COLUMNS].to_numpy(float), other[FEATURE_COLUMNS].to_numpy(float))
    # 1456 rows with a date taken (1800..2200); the same rows get taken_at from the EXIF family's fallback
    assert plain["taken_age_days"].notna().sum() == 1456
    assert plain["taken_age_days"].notna().tolist() == ["taken_at" in catalog_facts(m) for m in catalog["meta_data"]]
