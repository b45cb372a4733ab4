"""Openverse's standardized popularity, reproduced on the real catalog sample."""

import math

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from imagerank.catalog.ingest import good_rows, read_raw, validate_rows
from imagerank.popularity import (StandardizationConfig, metric_value, percentile_disc,
                                  percentile_disc_from_counts, provider_constants, raw_metrics, standardize)


def standardized(catalog: pd.DataFrame, config: StandardizationConfig = StandardizationConfig()):
    metrics = raw_metrics(catalog, config)
    observed = metrics.dropna(subset=["metric_value"])
    counts = observed.groupby(["provider", "metric_value"]).size().rename("count").reset_index()
    constants = provider_constants(counts, config)
    return standardize(metrics, constants), constants


def test_reproduces_openverse_standardized_popularity_on_every_sample_row(sample_catalog):
    catalog = good_rows(validate_rows(read_raw(str(sample_catalog), 0)))
    expected = pd.read_csv(sample_catalog, usecols=["identifier", "standardized_popularity"])
    ours, constants = standardized(catalog)
    both = pd.DataFrame({"image_id": catalog["image_id"], "ours": ours}).merge(
        expected, left_on="image_id", right_on="identifier")
    has_value = both["standardized_popularity"].notna()
    assert has_value.sum() == 774
    assert (both["ours"].notna() == has_value).all(), "rows with/without a value must match Openverse exactly"
    assert np.abs(both.loc[has_value, "ours"] - both.loc[has_value, "standardized_popularity"]).max() < 1e-6
    assert constants["flickr"].percentile_value == 254
    assert constants["wikimedia"].percentile_value == 1  # percentile 0 replaced by 1
    assert math.isclose(constants["flickr"].constant, 0.15 / 0.85 * 254)


def test_percentile_disc_follows_postgresql():
    # SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY x) FROM (VALUES (1),(2),(3),(4)) t(x) -> 2
    assert percentile_disc([4, 1, 3, 2], 0.5) == 2
    assert percentile_disc(range(1, 11), 0.85) == 9
    assert percentile_disc([None, 5, float("nan")], 0.85) == 5
    assert percentile_disc([], 0.85) is None
    assert percentile_disc([7], 0.0) == 7


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=300), st.floats(0, 1))
def test_percentile_from_value_counts_equals_the_sorted_definition(values, fraction):
    counts = pd.Series(values).value_counts()
    assert percentile_disc_from_counts(counts, fraction) == percentile_disc(values, fraction)


def test_value_at_the_percentile_scores_r_and_config_is_honoured():
    catalog = pd.DataFrame({"image_id": list("abcd"), "provider": ["nappy"] * 4,
                            "meta_data": ['{"downloads": 10}', '{"downloads": 20}', '{"downloads": "x"}', "{}"]})
    scores, constants = standardized(catalog, StandardizationConfig(percentile=0.5))
    assert constants["nappy"].percentile_value == 10
    assert scores.iloc[0] == 0.5  # x = V scores exactly r
    assert scores.iloc[2:].isna().all()
    other, _ = standardized(catalog, StandardizationConfig(metrics={"nappy": "missing_key"}))
    assert other.isna().all()


def test_metric_value_rejects_what_is_not_a_count():
    assert metric_value('{"views": "12"}', "views") == 12
    for bad in ('{"views": -3}', '{"views": "NaN"}', '{"views": true}', '{"views": null}', "", None, '{"views": "inf"}'):
        assert math.isnan(metric_value(bad, "views"))
