"""The HTML run report and `imagerank explain`, on a small work directory built by the real pipeline."""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imagerank import cli
from imagerank.report import UnknownImage, explain, format_text, write_report
from imagerank.reporting import analysis
from imagerank.demo import REUPLOAD_EVERY
from imagerank.reporting.browser import external_resource_urls
from imagerank.reporting.build import SECTIONS

ROWS = 120
_BUILT: dict[str, tuple[Path, dict, Path]] = {}


def build_report_workdir(tmp_path_factory, dask_client) -> tuple[Path, dict, Path]:
    """One generated catalog (images, crawl, ranks) through the real pipeline and the report, once per session."""
    if "workdir" not in _BUILT:
        from imagerank.demo import generate
        from pipelines.recalculate import RecalculateOptions, recalculate

        workdir = tmp_path_factory.mktemp("report")
        sample = generate(workdir / "input", rows=ROWS)
        manifest = recalculate(RecalculateOptions(catalog=sample["catalog"], workdir=workdir, ranks=sample["ranks"],
                                                  images=sample["images"], crawl=sample["crawl"], materialize=False,
                                                  scheduler=dask_client.scheduler.address), quiet=True)
        path = write_report(workdir, importance_rows=120)
        _BUILT["workdir"] = (workdir, manifest, path)
    return _BUILT["workdir"]


@pytest.fixture(scope="module")
def built(tmp_path_factory, dask_client):
    return build_report_workdir(tmp_path_factory, dask_client)


@pytest.fixture(scope="module")
def page(built) -> str:
    return built[2].read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def scores(built) -> pd.DataFrame:
    return pd.read_parquet(built[0] / "scores")


@pytest.mark.slow
def test_report_is_written_atomically_under_the_workdir(built):
    workdir, _, path = built
    assert path == workdir / "report" / "index.html" and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["index.html"]  # no temporary sibling left behind


@pytest.mark.slow
def test_report_has_every_section_and_a_table_of_contents(page, built):
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in page, anchor
        assert f'href="#{anchor}"' in page, anchor
    assert built[1]["run_id"] in page
    for stage in built[1]["timings_s"]:
        assert stage in page


@pytest.mark.slow
def test_every_plot_is_an_embedded_svg_with_labels(page):
    uris = re.findall(r'<img class="plot" src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', page)
    # distributions, standardization, importance, popularity-authority, coverage, rejects, timings
    assert len(uris) >= 7
    for uri in uris:
        root = ET.fromstring(base64.b64decode(uri))
        assert root.tag.endswith("svg")
    assert page.count('<img class="plot"') == len(uris)


@pytest.mark.slow
def test_report_loads_nothing_from_the_network(page):
    assert external_resource_urls(page) == []
    assert not re.search(r"<script[^>]+src=", page, re.I)
    assert not re.search(r"<link[^>]+stylesheet", page, re.I)
    # outbound links to landing pages are fine: they are navigation, not resources
    assert re.search(r'<a href="https://', page)


@pytest.mark.slow
def test_report_shows_constants_coverage_rejects_and_thumbnails(page, built):
    workdir, manifest, _ = built
    for provider, constant in manifest["popularity"]["constants"].items():
        assert provider in page
        assert f"{constant['constant']:,.3f}" in page or f"{constant['constant']:.3g}" in page
    assert "Khosla" in page and "0.31–0.40" in page and "0.22–0.52" in page
    for label in ("pixels", "EXIF", "link evidence", "observed metric"):
        assert label in page
    assert "not computed" not in page.split('id="coverage"')[1].split("</section>")[0]  # every family exists here
    rejects = pd.read_parquet(workdir / "rejects")
    assert len(rejects) > 0 and str(rejects["reason"].iloc[0]).split(":")[0].strip() in page
    assert page.count("data:image/jpeg;base64,") >= 8  # thumbnails from the local image folder
    assert "Permutation importance" in page and "out-of-fold" in page


@pytest.mark.slow
def test_stored_out_of_fold_predictions_become_a_scatter(built):
    from imagerank.reporting import build, data

    workdir, manifest, _ = built
    version = data.model_version(workdir, manifest)
    card = data.model_card(workdir, version)
    labelled = data.labelled_ids(workdir, "popularity")
    stored = workdir / "models" / version / "oof_popularity.parquet"
    assert not stored.exists()  # this small sample has too few flickr rows for the grouped evaluation
    pd.DataFrame({"image_id": labelled["image_id"], "observed": labelled["target"],
                  "predicted": labelled["target"].clip(0.05, 0.95)}).to_parquet(stored)
    try:
        section = build._evaluation(workdir, card, {}, 0, lambda message: None)
    finally:
        stored.unlink()
    popularity = section.split("authority model")[0]
    assert popularity.count('<img class="plot"') >= 1 and "stored by the training stage" in popularity
    assert "flickr" in popularity.split("Spearman")[-1]


@pytest.mark.slow
def test_explain_contributions_add_up_to_prediction_minus_baseline(built, scores):
    workdir = built[0]
    image_id = scores.loc[scores["popularity_source"] == "predicted", "image_id"].iloc[0]
    result = explain(workdir, image_id)
    model = result["popularity"]["model"]
    assert result["popularity"]["source"] == "predicted"
    assert model["prediction"] == pytest.approx(result["popularity"]["value"], abs=1e-9)
    assert model["contributions_sum"] == pytest.approx(model["prediction"] - model["baseline"], abs=1e-9)
    shown = sum(f["contribution"] for f in model["top_features"]) + model["other_features"]["contribution"]
    assert shown == pytest.approx(model["contributions_sum"], abs=1e-9)
    contributions = [abs(f["contribution"]) for f in model["top_features"]]
    assert contributions == sorted(contributions, reverse=True)
    assert result["authority"]["source"] in {"links", "predicted", "domain_rank", "prior"}
    assert result["authority"]["links"]["available"] and result["duplicates"]["available"]
    text = format_text(result)
    assert image_id in text and "POPULARITY" in text and "baseline" in text and "LINK EVIDENCE" in text


@pytest.mark.slow
def test_explain_observed_image_shows_its_metric_and_constants(built, scores):
    workdir, manifest, _ = built
    image_id = scores.loc[scores["popularity_source"] == "observed", "image_id"].iloc[0]
    result = explain(workdir, image_id, contributions=False)
    observed = result["popularity"]["observed"]
    constants = manifest["popularity"]["constants"][observed["provider"]]
    assert observed["V"] == constants["percentile_value"] and observed["C"] == constants["constant"]
    x = observed["raw_value"]
    assert result["popularity"]["value"] == pytest.approx(x / (x + observed["C"]), abs=1e-9)


@pytest.mark.slow
def test_explain_lists_near_duplicate_copies(built):
    workdir = built[0]
    visual = pd.read_parquet(workdir / "features" / "visual")
    with_copies = visual[visual["dup_neighbors"] > 0]
    assert len(with_copies) >= 2 * (ROWS // REUPLOAD_EVERY)  # the generator's re-uploads and their originals
    image_id = str(with_copies["image_id"].iloc[0])
    duplicates = explain(workdir, image_id, contributions=False)["duplicates"]
    # LSH finds a subset of the exact-scan copies (its recall at the threshold is below 1)
    assert duplicates["copies_found"] >= int(with_copies["dup_neighbors"].iloc[0])
    assert all(c["hamming_distance"] <= duplicates["threshold"] for c in duplicates["copies"])


@pytest.mark.slow
def test_explain_lists_the_pages_embedding_the_image(built):
    workdir = built[0]
    links = pd.read_parquet(workdir / "features" / "links")
    linked = links[links["link_pages"] > 0]
    image_id = str(linked["image_id"].iloc[0])
    evidence = explain(workdir, image_id, contributions=False)["authority"]["links"]
    assert evidence["link_pages"] == int(linked["link_pages"].iloc[0])
    assert len(evidence["embedding_pages"]) == min(evidence["link_pages"], 10)


@pytest.mark.slow
def test_cli_explain_json_and_unknown_id(built, scores, capsys):
    workdir = built[0]
    image_id = scores["image_id"].iloc[0]
    assert cli.main(["explain", image_id, "--workdir", str(workdir), "--json", "--top", "5"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["image_id"] == image_id and set(result) >= {"popularity", "authority", "duplicates", "catalog"}
    assert len(result["popularity"]["model"]["top_features"]) == 5

    unknown = "00000000-0000-0000-0000-000000000000"
    assert cli.main(["explain", unknown, "--workdir", str(workdir)]) != 0
    captured = capsys.readouterr()
    assert captured.out == "" and f"unknown image_id '{unknown}'" in captured.err
    with pytest.raises(UnknownImage):
        explain(workdir, unknown)


@pytest.mark.slow
def test_cli_report_prints_the_path_and_text_summary(built, capsys, tmp_path):
    workdir = built[0]
    out = tmp_path / "copy.html"
    assert cli.main(["report", "--workdir", str(workdir), "--output", str(out), "--oof-rows", "0",
                     "--importance-rows", "50", "--no-thumbnails"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert "data:image/jpeg" not in out.read_text() and '<section id="top-images">' in out.read_text()
    assert cli.main(["report", "--workdir", str(workdir), "--text"]) == 0
    assert "popularity constants:" in capsys.readouterr().out


# --- fast: the methods alone --------------------------------------------------------------------------------

class _Tree:
    """A small fitted tree ensemble with an interaction, behind the predict(frame) interface of saved models."""

    def __init__(self):
        from sklearn.ensemble import RandomForestRegressor

        rng = np.random.default_rng(0)
        X = pd.DataFrame(rng.normal(size=(300, 4)), columns=["a", "b", "c", "noise"])
        y = 2 * X["a"] + X["b"] * X["c"] + 0.01 * rng.normal(size=300)
        self.X, self.y = X, y.to_numpy()
        self.model = RandomForestRegressor(n_estimators=30, random_state=0).fit(X, y)
        self.feature_columns = list(X.columns)

    def predict(self, frame):
        return self.model.predict(frame[self.feature_columns])


def test_contributions_sum_exactly_and_find_the_driving_feature():
    tree = _Tree()
    x = pd.DataFrame([[3.0, 0.0, 0.0, 0.0]], columns=tree.feature_columns)
    result = analysis.contributions(tree, x, tree.X.sample(16, random_state=1), orderings=4)
    assert result.total == pytest.approx(result.prediction - result.baseline, abs=1e-9)
    assert result.table["feature"].iloc[0] == "a" and result.table["contribution"].iloc[0] > 0


def test_out_of_fold_refits_predict_every_row():
    tree = _Tree()
    tree.estimator = tree.model
    groups = pd.Series([f"creator{i % 17}" for i in range(len(tree.y))])
    predicted = analysis.out_of_fold(tree, tree.X, (tree.y - tree.y.min()) / np.ptp(tree.y), groups, n_splits=3)
    assert predicted is not None and np.isfinite(predicted).all() and predicted.min() >= 0 and predicted.max() <= 1


def test_permutation_importance_ranks_the_informative_feature_first():
    tree = _Tree()
    table = analysis.permutation_importance(tree, tree.X, tree.y, n_repeats=2)
    assert table["feature"].iloc[0] == "a"
    assert table.set_index("feature").loc["noise", "mae_rise"] < table.set_index("feature").loc["a", "mae_rise"] / 5


def test_report_of_a_workdir_without_runs_fails_clearly(tmp_path, capsys):
    assert cli.main(["report", "--workdir", str(tmp_path)]) != 0
    assert "no runs in" in capsys.readouterr().err
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "in-progress.json").write_text("{}")  # an unfinished run is not a run
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path)
