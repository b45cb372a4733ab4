"""The one parser per catalog field: malformed input, the geo rule, and agreement of every stage that reads
the same field (``taken_age_days`` vs ``taken_at``, ``has_geo`` vs the EXIF location)."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagerank.catalog.fields import (MAX_TIME_CHARS, date_taken, location, meta_object, parse_catalog_date,
                                      parse_meta_data, parse_tags, parse_time, tag_names, valid_location)
from imagerank.catalog.ingest import _validate_record
from imagerank.features.exif import catalog_facts
from imagerank.features.metadata import SECONDS_PER_DAY, metadata_features
from imagerank.features.text import text_documents
from imagerank.popularity import metric_value

NOW = pd.Timestamp("2026-11-29 12:34:56", tz="UTC")

MALFORMED_META = [
    ('{"views": 12', "is not valid JSON"),
    ("[1, 2]", "is not a JSON object: got list"),
    ('"views"', "is not a JSON object: got str"),
    ("NaN", "is not a JSON object: got float"),
    ("[" * 100_000, "is not valid JSON"),  # nesting deeper than the recursion limit
    ('{"a":1}{"b":2}', "is not valid JSON"),
    (b"\xff\xfe{", "is not valid JSON"),
    (12, "is not JSON text: got int"),
]


@pytest.mark.parametrize("value, reason", MALFORMED_META)
def test_malformed_meta_data_is_empty_with_its_reason(value, reason):
    meta, why = parse_meta_data(value)
    assert meta == {} and why.startswith(reason)
    assert meta_object(value) == {}


@pytest.mark.parametrize("value", [None, "", "  ", "null", float("nan"), pd.NA])
def test_missing_meta_data_is_empty_without_a_reason(value):
    assert parse_meta_data(value) == ({}, None)


def test_meta_data_objects_parse_from_text_bytes_or_dict():
    assert parse_meta_data(' {"views": "10"} ') == ({"views": "10"}, None)
    assert parse_meta_data(b'{"a": 1}') == ({"a": 1}, None)
    assert parse_meta_data({"a": 1}) == ({"a": 1}, None)


@pytest.mark.parametrize("value, reason", MALFORMED_META[:2])
def test_ingest_rejects_what_the_features_read_as_empty(value, reason):
    """One parser: the reason ingest rejects a row with is the parser's, and a feature stage handed the same
    value still gives the row its output (no facts, no exception)."""
    record = {"identifier": "6f1c1d3e-6d2e-4f9a-9b3a-0d3c8f1e2a10", "url": "https://a.org/x.jpg", "provider": "x",
              "meta_data": value, "source_file": "f", "source_row": 1, "input_order": 0}
    row, why = _validate_record(record)
    assert row is None and why == f"meta_data {parse_meta_data(value)[1]}"
    catalog = pd.DataFrame({"image_id": ["a"], "title": ["t"], "meta_data": [value], "tags": ["{bad"]})
    assert text_documents(catalog)["text"].tolist() == ["t"]
    assert math.isnan(metric_value(value, "views")) and catalog_facts(value) == {}


def test_tags_names_and_malformed_tags():
    assert parse_tags('[{"name": " sea "}, "harbour", {"name": ""}, 3, {"x": 1}]') == (["sea", "harbour"], None)
    assert parse_tags("{}") == ([], None) and parse_tags(None) == ([], None)
    assert parse_tags('"sea"') == ([], "is not a JSON list: got str")
    assert parse_tags("{bad json")[1].startswith("is not valid JSON") and tag_names("{bad json") == []


def test_catalog_dates_outside_the_years_a_picture_can_have_are_none():
    assert parse_catalog_date("2018-06-12 10:26:00") == datetime(2018, 6, 12, 10, 26)
    assert parse_catalog_date("ca. 1885 - ca. 1910") == datetime(1885, 1, 1)
    # before: "1797" became 1970-01-01 00:29:57 (epoch seconds) in the metadata features and None in EXIF
    for text in ("1797", "ca. 1500 - ca. 1600", "2301-01-01", "+0000-00-00T00:00:00Z", "9999-12-31", "0"):
        assert parse_catalog_date(text) is None, text
    assert parse_catalog_date("x" * 1_000_000 + " 1990") is None  # only the first 200 characters are read
    assert parse_catalog_date(float("inf")) is None and parse_catalog_date(True) is None


def test_publication_times_longer_than_a_timestamp_are_not_parsed():
    assert parse_time("1" * (MAX_TIME_CHARS + 1)) is None
    assert parse_time("1480377600") == pd.Timestamp("2016-11-29", tz="UTC")
    assert parse_time("2020-01-02T03:04:05+02:00") == pd.Timestamp("2020-01-02T01:04:05", tz="UTC")


@pytest.mark.parametrize("lat, lon, expected", [
    ("51.18113", "-1.82615", (51.18113, -1.82615)), (0, 0, None), ("0.0", "0", None), (0, 10, (0.0, 10.0)),
    (91, 0, None), (10, 181, None), ("nan", 1, None), ("inf", 1, None), (True, 1, None), ([1], 1, None),
    ("north", 1, None), (None, 1, None), (10**400, 1, None),
])
def test_one_geo_rule(lat, lon, expected):
    assert location({"latitude": lat, "longitude": lon}) == expected
    facts = catalog_facts(json.dumps({"latitude": lat, "longitude": lon}) if lat != 10**400 else {"latitude": lat,
                                                                                                    "longitude": lon})
    assert (facts.get("latitude"), facts.get("longitude")) == (expected or (None, None))


def test_exif_gps_follows_the_same_rule():
    assert not valid_location(0.0, 0.0) and valid_location(-33.9, 18.4) and not valid_location(None, 1.0)


# --- agreement over generated rows ---------------------------------------------------------------------

MOMENTS = st.datetimes(min_value=datetime(1700, 1, 1), max_value=datetime(2300, 12, 31))
DATE_TEXT = st.one_of(
    MOMENTS.map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S")), MOMENTS.map(lambda d: d.strftime("%Y-%m-%d")),
    MOMENTS.map(lambda d: d.strftime("%A, %d %B, %Y")), MOMENTS.map(lambda d: d.strftime("%B %Y")),
    MOMENTS.map(lambda d: str(d.year)), MOMENTS.map(lambda d: f"ca. {d.year} - ca. {d.year + 20}"),
    MOMENTS.map(lambda d: f"circa {d.year} <div style='display: none;'>date QS:P,+{d.year}-00-00T00:00:00Z/9</div>"),
    MOMENTS.map(lambda d: d.strftime("%Y:%m:%d %H:%M:%S")), st.text(max_size=30),
    st.integers(-10**12, 10**12), st.floats(), st.none(), st.booleans(), st.just(""),
)
COORDINATE = st.one_of(st.floats(), st.integers(-200, 200), st.floats(-200, 200).map(str), st.none(),
                       st.sampled_from(["0", "0.0", "", "x", "nan", "-0"]))


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries({}, optional={"date_taken": DATE_TEXT, "date_originally_created": DATE_TEXT,
                                                    "latitude": COORDINATE, "longitude": COORDINATE}),
                min_size=1, max_size=8))
def test_taken_age_days_and_taken_at_cannot_disagree(metas):
    """taken_age_days (metadata family) is exactly the age of taken_at's catalog fallback (EXIF family) at
    the run's event time, and has_geo is exactly whether the EXIF family found a catalog location."""
    catalog = pd.DataFrame({
        "image_id": [str(i) for i in range(len(metas))], "provider": "flickr", "source": "flickr", "creator": None,
        "title": None, "foreign_landing_url": None, "creator_url": None, "license": "by", "license_version": None,
        "width": None, "height": None, "filesize": None, "created_on": None, "category": None, "watermarked": False,
        "meta_data": [json.dumps(m) for m in metas], "tags": "[]"})
    out = metadata_features(catalog, NOW)
    for meta_text, age, geo in zip(catalog["meta_data"], out["taken_age_days"], out["has_geo"]):
        facts = catalog_facts(meta_text)
        taken = facts.get("taken_at")
        if taken is None:
            assert math.isnan(age)
        else:
            expected = (NOW.to_pydatetime() - taken.replace(tzinfo=timezone.utc)).total_seconds() / SECONDS_PER_DAY
            assert age == pytest.approx(expected, rel=1e-12, abs=1e-9)
            assert date_taken(json.loads(meta_text))[0] == taken
        assert geo == float(facts.get("location_source") == "meta_data")
