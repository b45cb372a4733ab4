"""The stage table is the one list of stages: the CLI's `features` families and recalculate's order come from it."""

import dataclasses

import pytest

from imagerank import datasets
from imagerank.cli import build_parser
from imagerank.runs import reconciliation_problems, reuse_model
from pipelines.recalculate import RecalculateOptions
from pipelines.stages import STAGES, feature_commands, stage_for


def _features_choices() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    family = next(a for a in sub.choices["features"]._actions if a.dest == "family")
    return list(family.choices)


def test_cli_feature_families_are_the_tables_commands():
    assert _features_choices() == feature_commands()
    assert "text" in feature_commands()  # the text stage has its own command


def test_every_feature_stage_has_a_command_and_each_command_one_stage():
    for stage in STAGES:
        if stage.name.startswith("features: "):
            assert stage.commands, f"{stage.name} has no `imagerank features` command"
    commands = feature_commands()
    assert len(commands) == len(set(commands))
    assert stage_for("exif") is stage_for("pixels")
    with pytest.raises(ValueError, match="no stage computes"):
        stage_for("colour")


def test_stages_name_catalogued_datasets_and_real_options():
    names = [s.name for s in STAGES]
    assert len(names) == len(set(names)) and len({s.key for s in STAGES}) == len(STAGES)
    option_fields = {f.name for f in dataclasses.fields(RecalculateOptions)}
    for stage in STAGES:
        unknown = set(stage.reads + stage.writes) - set(datasets.CATALOG)
        assert not unknown, f"{stage.name} names datasets the catalog does not know: {unknown}"
        assert stage.when is None or stage.when in option_fields


def test_train_and_score_read_every_feature_family():
    from imagerank.features.registry import FAMILY_NAMES
    from pipelines.stages import FEATURE_FAMILIES

    assert set(FEATURE_FAMILIES) == set(FAMILY_NAMES)


def test_optional_stages_run_only_with_their_input():
    bare = RecalculateOptions(catalog=["c.csv"], workdir="w", materialize=False)
    full = dataclasses.replace(bare, images="i/{image_id}", crawl=["c.warc"], linkgraph=["g"], materialize=True)
    assert [s.name for s in STAGES if s.runs(bare)] == [
        "ingest", "features: metadata", "features: text", "features: popularity", "features: domains", "features: join",
        "train", "score", "reconcile"]
    assert [s.name for s in STAGES if s.runs(full)] == [s.name for s in STAGES]


def test_model_reuse_follows_the_policy():
    previous = {"model_version": "v1", "training_fingerprint": "f"}
    assert reuse_model("auto", previous, True, "f") and not reuse_model("auto", previous, True, "g")
    assert not reuse_model("always", previous, True, "f")
    assert reuse_model("never", previous, True, "g") and not reuse_model("auto", previous, False, "f")
    with pytest.raises(FileNotFoundError, match="no earlier model version"):
        reuse_model("never", {}, False, "f")
    with pytest.raises(ValueError, match="--retrain must be one of"):
        reuse_model("sometimes", previous, True, "f")


def test_reconciliation_names_every_broken_promise():
    good = {"input_rows": 10, "catalog_rows": 8, "rejected_rows": 2, "score_rows": 8, "unscored_catalog_rows": 0,
            "min_score": 0.0, "max_score": 1.0, "null_scores": 0}
    assert reconciliation_problems(good) == []
    lost = {**good, "rejected_rows": 1, "score_rows": 7, "unscored_catalog_rows": 1, "max_score": 1.5}
    problems = reconciliation_problems(lost)
    assert len(problems) == 3 and "input rows 10 != catalog 8 + rejects 1" in problems[0]
