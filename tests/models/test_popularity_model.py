"""Popularity for providers without a metric is honest by construction: predicted only where transfer holds."""

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from imagerank.models.popularity_model import provider_levels, train_popularity
from imagerank.scoring import score_partition

CHEAP = ("single_feature", "rank_linear")
NOW = pd.Timestamp("2025-01-01", tz="UTC")


@pytest.fixture(autouse=True)
def one_thread():
    with threadpool_limits(1):
        yield


def provider_rows(provider: str, n: int, seed: int, *, flip: float = 1.0, labelled: bool = True,
                  scale: tuple[float, float] = (0.0, 1.0)) -> pd.DataFrame:
    """Images whose metric grows with ``good`` everywhere and with ``flip * fickle`` (a provider-specific direction)."""
    rng = np.random.default_rng(seed)
    good, fickle = rng.normal(size=n), rng.normal(size=n)
    metric = np.round(100 * np.exp(2 + good + flip * fickle + rng.normal(0, 0.5, n)))
    lo, hi = scale
    observed = lo + (hi - lo) * metric / (metric + np.median(metric))
    return pd.DataFrame({
        "image_id": [f"{provider}-{i}" for i in range(n)], "provider": provider,
        "creator": [f"{provider}-c{i % (n // 4)}" for i in range(n)], "age_days": rng.uniform(100, 3000, n),
        "good": good, "fickle": fickle,
        "metric_value": metric if labelled else np.nan, "observed_popularity": observed if labelled else np.nan})


def catalog(*, fickle_only: bool) -> tuple[pd.DataFrame, list[str]]:
    # fickle's direction differs between providers: whichever is held out, the others disagree on it
    parts = [provider_rows("alpha", 240, 1), provider_rows("beta", 240, 2, flip=-1.0),
             provider_rows("gamma", 240, 3), provider_rows("epsilon", 240, 9, flip=-1.0),
             provider_rows("delta", 200, 4, labelled=False)]
    frame = pd.concat(parts, ignore_index=True)
    return frame, (["fickle"] if fickle_only else ["good", "fickle"])


def test_a_direction_that_holds_everywhere_is_served_to_providers_without_a_metric():
    frame, columns = catalog(fickle_only=False)
    model = train_popularity(frame, columns, candidates=CHEAP, fast=True)
    transfer = model.metrics["evaluation"]["transfer"]
    assert transfer["validated"] and transfer["served_columns"] == ["good"]  # fickle flips in beta: left out
    assert all(r["transfer_model"]["spearman"] > 0.5 for r in transfer["leave_one_provider_out"].values())
    values, sources = model.predict_with_source(frame)
    delta = (frame["provider"] == "delta").to_numpy()
    assert set(sources[delta]) == {"predicted"}
    assert np.corrcoef(values[delta], frame.loc[delta, "good"])[0, 1] > 0.9  # ordered by the validated column


def test_a_direction_that_flips_between_providers_serves_only_the_prior():
    frame, columns = catalog(fickle_only=True)
    model = train_popularity(frame, columns, candidates=CHEAP, fast=True)
    transfer = model.metrics["evaluation"]["transfer"]
    assert not transfer["validated"]
    directions = model.metrics["evaluation"]["feature_directions"]
    assert directions["alpha"]["fickle"] > 0.3 and directions["beta"]["fickle"] < -0.3  # would rank in reverse
    assert all(not r["transfer_model"]["columns"] for r in transfer["leave_one_provider_out"].values())
    values, sources = model.predict_with_source(frame)
    delta = (frame["provider"] == "delta").to_numpy()
    assert set(sources[delta]) == {"prior"} and len(set(values[delta])) == 1  # one level for the provider
    assert values[delta][0] == pytest.approx(model.metrics["levels"]["typical_level"])
    assert model.metrics["served"]["(providers without a metric)"]["source"] == "prior"
    # within each provider with a metric its own direction is learnt and served
    for provider in ("alpha", "beta", "gamma", "epsilon"):
        assert model.metrics["served"][provider]["source"] == "predicted"
        assert model.metrics["evaluation"]["providers"][provider]["grouped_cv"]["single_feature"]["spearman"] > 0.5


def test_each_provider_keeps_its_own_scale_without_pooled_ties():
    high = provider_rows("high", 240, 5, scale=(0.5, 1.0))
    low = provider_rows("low", 240, 6, scale=(0.0, 0.3))
    unlabelled = pd.concat([provider_rows("high", 200, 7, labelled=False), provider_rows("low", 200, 8, labelled=False)],
                           ignore_index=True)
    unlabelled["image_id"] = [f"u{i}" for i in range(len(unlabelled))]
    model = train_popularity(pd.concat([high, low], ignore_index=True), ["good", "fickle"], candidates=CHEAP, fast=True)
    values, sources = model.predict_with_source(unlabelled)
    is_high = (unlabelled["provider"] == "high").to_numpy()
    assert set(sources) == {"predicted"}
    assert values[is_high].min() >= high["observed_popularity"].min() - 1e-9
    assert values[~is_high].max() <= low["observed_popularity"].max() + 1e-9
    for part in (values[is_high], values[~is_high]):
        assert pd.Series(part).value_counts().iloc[0] <= 3  # no block of tied predictions


def test_scores_keep_observed_values_and_name_every_other_source():
    frame, columns = catalog(fickle_only=True)
    model = train_popularity(frame, columns, candidates=CHEAP, fast=True)
    scores = score_partition(frame, model, None, "v1", NOW)
    labelled = frame["observed_popularity"].notna().to_numpy()
    assert (scores.loc[labelled, "popularity_source"] == "observed").all()
    assert np.allclose(scores.loc[labelled, "popularity"], frame.loc[labelled, "observed_popularity"])
    assert set(scores.loc[~labelled, "popularity_source"]) == {"prior"}


def test_levels_come_from_provider_evidence_only_when_it_validates():
    levels = [0.1, 0.2, 0.4, 0.6, 0.8]
    training = pd.concat([pd.DataFrame({"provider": f"p{i}", "observed_popularity": np.full(30, level)})
                          for i, level in enumerate(levels)], ignore_index=True)
    evidence = pd.DataFrame({"provider": [f"p{i}" for i in range(5)] + ["new"],
                             "domain_rank_score": [0.1, 0.3, 0.5, 0.7, 0.9, 0.85]})
    fitted = provider_levels(training, evidence)
    assert "domain_rank_score" in fitted["method"]
    assert fitted["levels"]["new"] == pytest.approx(0.8, abs=0.21) and fitted["levels"]["new"] > fitted["typical_level"]
    noise = evidence.assign(domain_rank_score=[0.9, 0.1, 0.8, 0.2, 0.5, 0.85])  # says nothing about the level
    assert provider_levels(training, noise)["levels"] == {}
    two = provider_levels(training[training["provider"].isin(["p0", "p1"])], evidence)
    assert two["levels"] == {} and ">= 4" in two["why_not_evidence"]


def test_the_previous_model_version_is_a_baseline_row(tmp_path):
    from imagerank.models.card import write_model_card
    from imagerank.models.train import save_model
    from pipelines.train import previous_headline

    frame, columns = catalog(fickle_only=True)
    first = train_popularity(frame, columns, candidates=CHEAP, fast=True)
    write_model_card(tmp_path / "models" / "v1", {"popularity": save_model(first, tmp_path / "models" / "v1")}, "v1")
    previous = previous_headline(tmp_path, "v2")
    recorded = first.metrics["evaluation"]["providers"]["alpha"]["grouped_cv"]["single_feature"]["spearman"]
    assert previous["alpha"]["model_version"] == "v1" and previous["alpha"]["spearman"] == pytest.approx(recorded)
    assert previous_headline(tmp_path, "v1") is None  # a version is no baseline of itself
    second = train_popularity(frame, columns, candidates=CHEAP, fast=True, previous=previous)
    baseline = second.metrics["evaluation"]["providers"]["alpha"]["baselines"]["previous_version"]
    assert baseline["model_version"] == "v1" and baseline["spearman"] == pytest.approx(recorded)
