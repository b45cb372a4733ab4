"""The whole recalculation on the real 1,899-row catalog sample, read back through Feast."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from imagerank.store.feast_repo import default_feature_repo, lookup
from pipelines.recalculate import RecalculateOptions

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sample_run(sample_recalculation):
    """The session's run of the sample (tests/conftest.py; test_postgres_recalculate compares a table run with it)."""
    return sample_recalculation


def test_every_row_is_scored_and_reconciled(sample_run):
    workdir, manifest = sample_run
    rec = manifest["reconciliation"]
    assert rec["ok"] and rec["input_rows"] == 1899 and rec["catalog_rows"] == 1899 and rec["score_rows"] == 1899
    scores = pd.read_parquet(workdir / "scores")
    assert scores["image_id"].is_unique and len(scores) == 1899
    assert scores[["popularity", "authority"]].apply(lambda c: c.between(0, 1)).all().all()
    assert set(scores["popularity_source"]) == {"observed", "predicted", "prior"}
    saved = json.loads(next((workdir / "runs").glob("*.json")).read_text())
    assert saved["reconciliation"] == rec


def test_observed_popularity_is_openverse_score(sample_run, sample_catalog):
    workdir, _ = sample_run
    scores = pd.read_parquet(workdir / "scores")
    expected = pd.read_csv(sample_catalog, usecols=["identifier", "standardized_popularity"])
    both = scores.merge(expected, left_on="image_id", right_on="identifier")
    observed = both[both["popularity_source"] == "observed"]
    assert len(observed) == 774
    assert np.allclose(observed["popularity"], observed["standardized_popularity"], atol=1e-6)


def test_authority_comes_from_the_landing_domain_rank(sample_run):
    workdir, _ = sample_run
    scores = pd.read_parquet(workdir / "scores").merge(
        pd.read_parquet(workdir / "features" / "metadata", columns=["image_id", "landing_domain"]), on="image_id")
    by_domain = scores.groupby("landing_domain")["authority_source"].agg(set)
    assert by_domain["flickr.com"] == {"domain_rank"} and by_domain["geograph.org.uk"] == {"prior"}
    flickr = scores[scores["landing_domain"] == "flickr.com"]["authority"]
    geograph = scores[scores["landing_domain"] == "geograph.org.uk"]["authority"]
    assert flickr.min() > geograph.max()


def test_model_card_reports_cross_validated_metrics(sample_run):
    """The popularity model's grouped-CV figures are those of its stored held-out predictions (each labelled flickr
    row predicted once, by a model fitted without it), its held-out ranking carries real signal, and the card
    prints the figures metrics.json holds."""
    from scipy.stats import spearmanr

    workdir, manifest = sample_run
    directory = workdir / "models" / manifest["run_id"]
    card = json.loads((directory / "metrics.json").read_text())
    evaluation = card["models"]["popularity"]["metrics"]["evaluation"]
    head = evaluation["headline"]
    assert head["provider"] == "flickr" and head["rows"] == 541
    held_out = pd.read_parquet(directory / "oof_popularity.parquet")
    flickr = held_out[held_out["provider"] == "flickr"]
    assert len(flickr) == 541 and flickr["image_id"].is_unique
    rho, p_value = spearmanr(flickr["predicted"], flickr["observed"])
    assert head["spearman"] == pytest.approx(rho, abs=1e-9)
    assert rho > 0 and p_value < 1e-3  # the held-out ranking is far from chance on 541 real rows
    text = (directory / "model_card.md").read_text()
    assert text.startswith("# imagerank models")
    assert f"creator-grouped CV Spearman {head['spearman']:.3f}" in text
    section = text.split("### flickr:", 1)[1].split("\n### ", 1)[0]
    reported = evaluation["providers"]["flickr"]["grouped_cv"]
    assert head["model"] in reported
    for model, report in reported.items():
        line = next((line for line in section.splitlines() if line.startswith(f"| grouped CV | {model} |")), None)
        assert line is not None, model
        spearman = f"{report['spearman']:.3f}" if np.isfinite(report["spearman"]) else ""  # the card leaves NaN blank
        assert line.startswith(f"| grouped CV | {model} | {report['rows']} | {spearman} |"), line


def test_online_lookups_equal_the_scores_dataset(sample_run):
    workdir, _ = sample_run
    scores = pd.read_parquet(workdir / "scores").set_index("image_id")
    ids = list(scores.index)
    rows = lookup(default_feature_repo(), workdir, ids + ["00000000-0000-0000-0000-000000000000"])
    for row in rows[:-1]:
        expected = scores.loc[row["image_id"]]
        assert row["found"] and row["popularity"] == pytest.approx(expected["popularity"], abs=1e-12)
        assert row["authority"] == pytest.approx(expected["authority"], abs=1e-12)
        assert row["popularity_source"] == expected["popularity_source"]
    assert rows[-1] == {"image_id": "00000000-0000-0000-0000-000000000000", "found": False,
                        "error": "unknown image_id: not in the online store"}


def test_lookup_command_prints_json_lines(sample_run):
    workdir, _ = sample_run
    scores = pd.read_parquet(workdir / "scores")
    first, second = scores["image_id"].iloc[:2]
    done = subprocess.run([sys.executable, "-m", "imagerank.cli", "lookup", "--workdir", str(workdir), first, "--file", "-"],
                          input=f"{second}\n", capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["image_id"] for line in lines] == [first, second]
    unknown = subprocess.run([sys.executable, "-m", "imagerank.cli", "lookup", "--workdir", str(workdir), "no-such-id"],
                             capture_output=True, text=True, timeout=300)
    assert unknown.returncode == 1 and json.loads(unknown.stdout)["found"] is False


def test_held_out_predictions_are_stored_for_the_report(sample_run):
    workdir, manifest = sample_run
    held_out = pd.read_parquet(workdir / "models" / manifest["run_id"] / "oof_popularity.parquet")
    assert len(held_out) == 774 and set(held_out["provider"]) == {"flickr", "wikimedia"}
    assert held_out[["observed", "predicted"]].apply(lambda c: c.between(0, 1)).all().all()


def test_stages_ran_in_the_tables_order(sample_run):
    from pipelines.stages import STAGES

    _, manifest = sample_run
    options = RecalculateOptions(catalog=["catalog"], workdir="w", ranks=["ranks"])
    expected = [s.name for s in STAGES if s.runs(options)]
    assert list(manifest["timings_s"]) == expected
    assert {s.key for s in STAGES if s.runs(options)} <= set(manifest)
