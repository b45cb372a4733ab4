"""Popularity and authority training on the real sample: honest numbers, no leakage, loadable models."""

import json

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from imagerank.catalog.ingest import good_rows, read_raw, validate_rows
from imagerank.features.metadata import metadata_features
from imagerank.features.registry import model_feature_columns
from imagerank.features.text import text_documents
from imagerank.models.evaluation import grouped_cv_predictions, spearman
from imagerank.models.train import (LINK_EVIDENCE_COLUMNS, TargetConfig, load_model, popularity_target,
                                    save_model, train_authority, train_popularity, write_model_card,
                                    _estimator, _frame)
from imagerank.popularity import StandardizationConfig, provider_constants, raw_metrics, standardize

NOW = pd.Timestamp("2025-01-01", tz="UTC")


@pytest.fixture(autouse=True)
def one_thread():
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def sample_features(sample_catalog):
    catalog = good_rows(validate_rows(read_raw(str(sample_catalog), 0)))
    config = StandardizationConfig()
    metrics = raw_metrics(catalog, config)
    counts = metrics.dropna(subset=["metric_value"]).groupby(["provider", "metric_value"]).size()
    metrics["observed_popularity"] = standardize(metrics, provider_constants(counts.rename("count").reset_index(), config))
    features = metadata_features(catalog, NOW).merge(metrics[["image_id", "metric_value", "observed_popularity"]],
                                                     on="image_id")
    return features.merge(text_documents(catalog), on="image_id")


def test_percentile_target_averages_ties_within_provider():
    rows = pd.DataFrame({"provider": ["w"] * 5 + ["f"] * 2, "metric_value": [0, 0, 0, 2, 1, 5, 50.0],
                         "age_days": [10, 10, 10, 10, 10, 1, 100.0]})
    target = popularity_target(rows)
    assert list(target[:5]) == pytest.approx([0.3, 0.3, 0.3, 0.9, 0.7])  # zeros: one block at their mid-rank
    assert list(target[5:]) == pytest.approx([0.25, 0.75])
    per_day = popularity_target(rows, TargetConfig("per_day_percentile"))
    assert list(per_day[5:]) == pytest.approx([0.75, 0.25])  # 5 views in 1 day beat 50 in 100


@pytest.mark.slow
def test_sample_popularity_beats_baselines_without_leakage(sample_features, tmp_path):
    labelled = sample_features[sample_features["observed_popularity"].notna()].copy()
    # a provider one-hot handed in as a feature must be dropped: provider identity is no input
    labelled["provider_flickr"] = (labelled["provider"] == "flickr").astype(float)
    # a column that knows the answer: the ablation must show what it adds
    noise = np.random.default_rng(3).normal(0, 0.5, len(labelled))
    labelled["oracle"] = np.log1p(labelled["metric_value"].astype(float)) + noise
    columns = model_feature_columns(labelled)
    assert "provider_flickr" in columns
    model = train_popularity(labelled, columns, fast=True, ablations={"the oracle": ["oracle"], "nothing": ["absent"]})
    assert not any(c.startswith(("provider", "source")) for c in model.feature_columns)
    evaluation = model.metrics["evaluation"]
    cv = evaluation["grouped_cv"]
    assert cv["ensemble"]["rows"] == 541 and evaluation["ensemble"] == cv["ensemble"]
    assert cv["ensemble"]["spearman"] > 0.5
    assert cv["ensemble"]["spearman"] > cv["baseline_tag_count"]["spearman"]
    assert 0.5 < cv["ensemble"]["pairwise_same_creator"] < 1 and cv["ensemble"]["same_creator_pairs"] > 500
    assert set(evaluation["provider_transfer"]) == {"flickr->wikimedia", "wikimedia->flickr"}
    assert np.isfinite(evaluation["provider_transfer"]["flickr->wikimedia"]["ensemble"]["auc_nonzero"])
    assert evaluation["temporal"]["split"]["test_rows"] > 100
    assert set(evaluation["ablations"]) == {"the oracle"}  # an ablation that removes no input is not run
    oracle = evaluation["ablations"]["the oracle"]
    assert oracle["removed_columns"] == ["oracle"]
    assert set(oracle["spearman"]) == {"grouped_cv", "temporal", "transfer flickr->wikimedia", "transfer wikimedia->flickr"}
    assert oracle["spearman"]["grouped_cv"]["added"] > 0.1
    assert oracle["spearman"]["grouped_cv"]["without"] == cv["ensemble without the oracle"]["spearman"]
    predicted = model.predict(sample_features)
    assert predicted.shape == (len(sample_features),) and ((0 <= predicted) & (predicted <= 1)).all()
    entry = save_model(model, tmp_path)
    write_model_card(tmp_path, {"popularity": entry}, "v1")
    card = json.loads((tmp_path / "metrics.json").read_text())
    loaded = load_model(tmp_path, "popularity", card["models"]["popularity"]["sha256"])
    assert np.allclose(loaded.predict(sample_features), predicted)
    # the scorer may hand a frame without the text family: it still gets a prediction for every row
    assert np.isfinite(loaded.predict(sample_features.drop(columns=["text"]))).all()
    card_text = (tmp_path / "model_card.md").read_text()
    assert "| grouped CV | ensemble | 541 |" in card_text and "What the oracle add (1 columns: oracle)" in card_text


@pytest.mark.slow
def test_shuffled_labels_give_no_skill_on_the_sample(sample_features):
    rows = sample_features[(sample_features["provider"] == "flickr") & sample_features["metric_value"].notna()]
    rows = rows.reset_index(drop=True).copy()
    rows["metric_value"] = np.random.default_rng(7).permutation(rows["metric_value"].to_numpy())
    columns = [c for c in model_feature_columns(rows) if not c.startswith("provider")]
    predicted = grouped_cv_predictions(_estimator(columns, True, 0, True), _frame(rows, columns, True),
                                       popularity_target(rows), rows["creator"])
    assert abs(spearman(predicted, rows["metric_value"])) < 0.12


def test_authority_learns_from_non_link_features_only():
    rng = np.random.default_rng(0)
    n = 120
    quality = rng.normal(size=n)
    frame = pd.DataFrame({"image_id": [str(i) for i in range(n)], "quality": quality,
                          "domain_rank_score": rng.random(n),
                          "landing_domain": [f"d{i % 12}.org" for i in range(n)],
                          "has_link_evidence": True,
                          "link_authority": 1 / (1 + np.exp(-quality))})
    frame["picashow"] = frame["link_authority"]  # the evidence itself: must not be an input
    frame["link_pages"] = (frame["link_authority"] * 10).round()
    columns = ["quality", "domain_rank_score", "picashow", "link_pages"]
    model = train_authority(frame, columns, fast=True, ablations={"quality": ["quality"]})
    assert model.feature_columns == ["quality", "domain_rank_score"]
    quality_adds = model.metrics["evaluation"]["ablations"]["quality"]["spearman"]["grouped_cv"]
    assert quality_adds["with"] > 0.7 and quality_adds["added"] > 0.5
    assert not set(model.feature_columns) & LINK_EVIDENCE_COLUMNS
    assert model.metrics["evaluation"]["grouped_cv"]["spearman"] > 0.7
    assert model.metrics["evaluation"]["holdout"]["rows"] == 24
    few = train_authority(frame.head(10), columns, fast=True)
    assert few.estimator is None and "10 images with link evidence" in few.metrics["reason"]
    assert np.isnan(few.predict(frame)).all()
    none = train_authority(frame.drop(columns=["has_link_evidence", "link_authority"]), columns)
    assert none.estimator is None and "no crawl" in none.metrics["reason"]
