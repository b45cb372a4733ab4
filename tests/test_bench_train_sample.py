"""benchmarks.bench_train: the bounded sample per catalog size that makes training time flat."""

from benchmarks.bench_train import PROVIDERS, feature_partition, training_sample
from imagerank.models.train import TrainingLimits


def test_two_million_rows_draw_the_sample_four_hundred_thousand_draw_at_a_quarter_with_links():
    limits = TrainingLimits()
    assert training_sample(2_000_000, limits, 0.05) == training_sample(400_000, limits, 0.25)
    assert training_sample(2_000_000, limits, 0.05)["saturated"]


def test_below_the_bounds_the_sample_grows_with_the_catalog():
    small = training_sample(20_000, TrainingLimits(), 0.05)
    assert not small["saturated"]
    assert small["popularity_rows"]["flickr"] == round(20_000 * PROVIDERS["flickr"])
    assert small["authority_rows"] == 1_000


def test_lifted_bounds_are_never_saturated():
    assert not training_sample(10**9, TrainingLimits(rows_per_provider=None), 0.05)["saturated"]


def test_link_evidence_share_sets_the_share_of_rows_with_evidence():
    part = feature_partition(0, 4_000, 4_000, link_evidence_share=0.25)
    assert 0.2 < part["has_link_evidence"].mean() < 0.3
    assert part.loc[~part["has_link_evidence"], "link_authority"].isna().all()
