"""Fuzzing the partition functions downstream of ingest: metadata, popularity and domain-rank features.

Inputs are hostile raw rows that *passed* validation (so they are what the catalog can really hold):
every output row is present, numeric features are finite or null, scores stay in [0, 1].
"""

from __future__ import annotations

import gzip
import math

import numpy as np
import pandas as pd
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fuzzkit import examples, tried
from imagerank.catalog.ingest import good_rows, validate_rows
from imagerank.features import domains as D
from imagerank.features.metadata import FEATURE_COLUMNS, METADATA_META, metadata_features
from imagerank.popularity import StandardizationConfig, metric_value, percentile_disc, percentile_disc_from_counts, \
    provider_constants, raw_metrics, standardize
from test_fuzz_catalog import COLUMNS, DATES, HOSTILE_TEXT, JSON_TEXT, NUMBERS, RAW_META, TAGS_TEXT, URLS

NOW = pd.Timestamp("2026-11-29", tz="UTC")


FIELD_STRATEGIES = {"width": NUMBERS, "height": NUMBERS, "filesize": NUMBERS, "created_on": DATES,
                    "updated_on": DATES, "meta_data": JSON_TEXT, "tags": TAGS_TEXT, "foreign_landing_url": URLS,
                    "creator_url": URLS, "title": HOSTILE_TEXT, "license": st.sampled_from(["by", "BY-NC", "cc0", "", "x-y-z"]),
                    "license_version": st.sampled_from(["2.0", "nan", "inf", "-1", "", "4.0 international"]),
                    "category": HOSTILE_TEXT, "watermarked": st.sampled_from(["t", "f", "", "maybe"])}


@st.composite
def mostly_valid_frames(draw):
    """Good rows with a few fields replaced by hostile values: most of them pass validation."""
    records = []
    for i in range(draw(st.integers(1, 6))):
        record = dict.fromkeys(COLUMNS)
        record.update(identifier=str(draw(st.uuids())), provider=draw(st.sampled_from(["flickr", "wikimedia"])),
                      url="https://h.org/a.jpg", foreign_landing_url="https://www.flickr.com/p/1")
        for name in draw(st.lists(st.sampled_from(sorted(FIELD_STRATEGIES)), max_size=5, unique=True)):
            record[name] = draw(FIELD_STRATEGIES[name])
        records.append(record)
    frame = pd.DataFrame(records, columns=COLUMNS)
    n = len(frame)
    frame["source_file"], frame["source_row"], frame["input_order"] = "f.csv", range(1, n + 1), range(n)
    frame["reason"], frame["raw"] = None, None
    return frame[RAW_META.columns].astype(RAW_META.dtypes.to_dict())


def catalog_of(raw: pd.DataFrame) -> pd.DataFrame:
    return good_rows(validate_rows(raw)).reset_index(drop=True)


@settings(max_examples=examples(1))
@given(mostly_valid_frames())
def test_metadata_features_are_finite_or_null(raw):
    catalog = catalog_of(raw)
    tried("features", catalog.to_dict("records"))
    out = metadata_features(catalog, NOW)
    assert list(out.columns) == list(METADATA_META.columns) and len(out) == len(catalog)
    assert list(out["image_id"]) == list(catalog["image_id"])
    values = out[FEATURE_COLUMNS].to_numpy(dtype="float64")
    assert not np.isinf(values).any()


METRIC = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(), st.text(max_size=8),
                   st.sampled_from(["12", " 7 ", "1e400", "-0", "NaN", "Infinity", "0x1F"]),
                   st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@settings(max_examples=examples(3))
@given(st.lists(st.tuples(st.sampled_from(["flickr", "wikimedia", "stocksnap", "nappy", "other"]), METRIC),
                min_size=0, max_size=30))
def test_observed_popularity_stays_in_unit_interval(rows):
    import json

    tried("popularity", rows)
    catalog = pd.DataFrame({
        "image_id": [f"id{i}" for i in range(len(rows))],
        "provider": [p for p, _ in rows],
        "meta_data": [json.dumps({StandardizationConfig().metrics.get(p, "views"): v}) for p, v in rows],
    })
    config = StandardizationConfig()
    metrics = raw_metrics(catalog, config)
    assert len(metrics) == len(rows)
    values = metrics["metric_value"].dropna()
    assert (values >= 0).all() and values.map(math.isfinite).all()
    counts = metrics.dropna(subset=["metric_value"]).groupby(["provider", "metric_value"]).size().rename("count")
    constants = provider_constants(counts.reset_index(), config)
    for k in constants.values():
        assert k.constant > 0 and math.isfinite(k.constant)
    scores = standardize(metrics, constants).dropna()
    assert ((scores >= 0) & (scores <= 1)).all()


@settings(max_examples=examples(2))
@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=False), st.none()), max_size=40),
       st.floats(0.01, 1.0))
def test_percentile_disc_from_counts_agrees_with_the_direct_one(values, fraction):
    tried("popularity", (values, fraction))
    direct = percentile_disc(values, fraction)
    clean = pd.Series(values, dtype="float64").dropna()
    counted = percentile_disc_from_counts(clean.value_counts(), fraction)
    assert direct == counted


@settings(max_examples=examples(2))
@given(st.lists(st.tuples(st.integers(-5, 10**9), st.floats(allow_nan=True), st.text(max_size=20)), max_size=20),
       st.booleans())
def test_ranks_files_never_break_the_domain_scores(tmp_path_factory, rows, domain_level):
    """Hostile ranks files: negative / zero positions, NaN values, odd names. Scores stay in [0, 1] or null."""
    tried("ranks", (rows, domain_level))
    header = "#harmonicc_pos\t#harmonicc_val\t#pr_pos\t#pr_val\t#host_rev" + ("\t#n_hosts" if domain_level else "")
    lines = [header] + [f"{pos}\t{val}\t{pos}\t{val}\t{name.replace(chr(9), ' ').replace(chr(10), ' ')}"
                        + ("\t3" if domain_level else "") for pos, val, name in rows]
    path = tmp_path_factory.mktemp("ranks") / "ranks.txt.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    try:
        ranks = D.read_ranks(path)
    except D.RanksFileError:
        return  # a file-level refusal with a reason is allowed
    scores = D.rank_scores([ranks], ranks.level)
    assert scores["score"].dropna().between(0, 1).all()
    metadata = pd.DataFrame({"image_id": ["a", "b"], "landing_host": [None, "x.org"], "landing_domain": [None, "x.org"]})
    out = D.domain_features(metadata, scores if ranks.level == "host" else D.rank_scores([], "host"),
                            scores if ranks.level == "domain" else D.rank_scores([], "domain"))
    assert len(out) == 2
    assert out["domain_authority"].dropna().between(0, 1).all()


@settings(max_examples=examples(1))
@given(st.one_of(st.none(), st.text(max_size=30), st.integers(), st.floats(), st.binary(max_size=10),
                 st.dictionaries(st.sampled_from(["views", "x"]), METRIC, max_size=2)))
def test_metric_value_never_raises(meta):
    import json

    tried("popularity", meta)
    text = meta if isinstance(meta, (str, type(None))) else None
    if isinstance(meta, dict):
        text = json.dumps(meta)
    try:
        value = metric_value(text, "views")
    except ValueError:
        assume(False)  # only catalog-validated JSON reaches metric_value; see the catalog properties
        raise
    assert math.isnan(value) or (value >= 0 and math.isfinite(value))


def test_stray_lines_in_a_ranks_file_are_skipped_and_counted(tmp_path):
    """A non-numeric position made read_ranks raise ValueError (small file) or ArrowInvalid (later block),
    killing the domains stage; position 0 scored as the top name (log 0 = -inf, clipped to 1)."""
    header = "#harmonicc_pos\t#harmonicc_val\t#pr_pos\t#pr_val\t#host_rev"
    good = [f"{i}\t{1.0 / i}\t{i}\t{0.1 / i}\torg.h{i}" for i in range(1, 3000)]
    bad = ["abc\tx\t0\t0.1\torg.bad1", "0\t1\t1\t0.1\torg.bad2", "-4\t1\t1\t0.1\torg.bad3", "2.5\t1\t1\t1\torg.bad4",
           "\t\t\t\t", "7\t1\t1\t1\torg.bad5\textra"]
    path = tmp_path / "ranks.txt.gz"
    path.write_bytes(gzip.compress("\n".join([header, *good[:5], *bad[:3], *good[5:], *bad[3:]]).encode() + b"\n"))
    ranks = D.read_ranks(path, block_size=1 << 12)
    assert ranks.rows == len(good) and ranks.skipped == len(bad)
    assert not ranks.table["name"].str.startswith("bad").any()
    scores = D.rank_scores([ranks], "host")
    assert scores["score"].between(0, 1).all() and scores["score"].max() == 1.0
    assert scores.set_index("name").loc["h1.org", "score"] == 1.0


def test_giant_date_text_in_meta_data_is_not_parsed(monkeypatch):
    """meta_data dates (pub_date, date_taken ...) of ~1 MB went to pd.Timestamp/dateutil: minutes per row."""
    from imagerank.catalog import fields as M

    seen = []
    real = pd.Timestamp

    def spy(value, *args, **kwargs):
        seen.append(len(str(value)))
        return real(value, *args, **kwargs)

    monkeypatch.setattr(M.pd, "Timestamp", spy)
    assert M.parse_time("9" * 500_000 + "x") is None and M.parse_time("y" * 100_000) is None
    assert not seen or max(seen) <= M.MAX_TIME_CHARS
    assert M.parse_time("2020-01-02T03:04:05Z") == real("2020-01-02T03:04:05Z")
