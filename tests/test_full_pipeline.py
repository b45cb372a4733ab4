"""The whole process with every kind of evidence: images, a crawl and ranks (the generated demo sample)."""

import json

import numpy as np
import pandas as pd
import pytest

from test_report import build_report_workdir

pytestmark = pytest.mark.slow

IMAGE_ABLATION = "image features (pixels, EXIF, visual)"


@pytest.fixture(scope="module")
def run(tmp_path_factory, dask_client):
    workdir, manifest, _ = build_report_workdir(tmp_path_factory, dask_client)
    return workdir, manifest


def test_every_feature_family_is_written_for_every_catalog_row(run):
    workdir, manifest = run
    n = manifest["reconciliation"]["catalog_rows"]
    for family in ("metadata", "popularity", "domains", "pixels", "exif", "links", "visual", "text"):
        frame = pd.read_parquet(workdir / "features" / family, columns=["image_id"])
        assert len(frame) == n and frame["image_id"].is_unique, family


def test_generated_images_decode_without_errors(run):
    pixels = pd.read_parquet(run[0] / "features" / "pixels")
    assert pixels["pixels_error"].isna().all()
    assert pixels["sharpness"].gt(0).all() and pixels["phash"].notna().all()


def test_authority_uses_links_then_the_model_trained_on_them(run):
    workdir, manifest = run
    card = json.loads((workdir / "models" / manifest["models"]["model_version"] / "metrics.json").read_text())
    assert {"popularity", "authority"} <= set(card["models"])
    scores = pd.read_parquet(workdir / "scores").merge(
        pd.read_parquet(workdir / "features" / "links", columns=["image_id", "has_link_evidence", "link_authority"]),
        on="image_id")
    linked = scores[scores["has_link_evidence"]]
    assert (linked["authority_source"] == "links").all()
    assert (linked["authority"] - linked["link_authority"]).abs().max() < 1e-12
    assert set(scores.loc[~scores["has_link_evidence"], "authority_source"]) == {"predicted"}
    assert scores[["popularity", "authority"]].apply(lambda c: c.between(0, 1)).all().all()


def test_model_card_says_what_the_image_features_add(run):
    """Each model is evaluated a second time without the image columns, on the same rows of every split, and the
    card prints those figures: with, without and what the image features add."""
    workdir, manifest = run
    directory = workdir / "models" / manifest["models"]["model_version"]
    card = json.loads((directory / "metrics.json").read_text())
    text = (directory / "model_card.md").read_text()
    image_columns = set().union(*(pd.read_parquet(workdir / "features" / f).columns for f in ("pixels", "exif", "visual")))
    for name in ("popularity", "authority"):
        evaluation = card["models"][name]["metrics"]["evaluation"]
        ablation = evaluation["ablations"][IMAGE_ABLATION]
        removed = set(ablation["removed_columns"])
        assert {"sharpness", "colourfulness", "jpeg_quality"} <= removed
        assert removed <= image_columns & set(card["models"][name]["features"])
        assert ablation["spearman"]  # the demo sample is too small for popularity's grouped CV: transfer splits
        for split, figures in ablation["spearman"].items():
            assert np.isfinite(figures["with"]) and np.isfinite(figures["without"]), (name, split)
            assert figures["added"] == pytest.approx(figures["with"] - figures["without"])
            row = f"| {split} | {figures['with']:.3f} | {figures['without']:.3f} | {figures['added']:+.3f} |"
            assert row in text, (name, row)
        if name == "authority":  # "with" is the served ensemble's own domain-grouped CV figure
            assert ablation["spearman"]["grouped_cv"]["with"] == evaluation["grouped_cv"]["spearman"]
    assert f"What {IMAGE_ABLATION} add" in text
