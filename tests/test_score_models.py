"""Model files are loaded only when their digest matches what the training run recorded outside them."""

import json

import joblib
import pytest

from imagerank.models.card import write_model_card
from imagerank.models.train import TrainedModel, save_model
from pipelines.score import load_models, recorded_digests


@pytest.fixture
def workdir(tmp_path):
    directory = tmp_path / "models" / "v1"
    entry = save_model(TrainedModel("popularity", None, ["a"]), directory)
    write_model_card(directory, {"popularity": entry}, "v1")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "r1.json").write_text(json.dumps({"models": {"model_version": "v1", "reused": False,
                                                                      "models": {"popularity": entry}}}))
    return tmp_path


def test_models_load_with_the_recorded_digest(workdir):
    digests = recorded_digests(workdir, "v1")
    assert set(load_models(workdir, "v1", digests)) == {"popularity"}


def test_a_rewritten_model_and_card_are_refused(workdir):
    directory = workdir / "models" / "v1"
    joblib.dump(TrainedModel("popularity", None, ["evil"]), directory / "popularity.joblib")
    card = json.loads((directory / "metrics.json").read_text())
    import hashlib
    card["models"]["popularity"]["sha256"] = hashlib.sha256((directory / "popularity.joblib").read_bytes()).hexdigest()
    (directory / "metrics.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="the run that trained it recorded"):
        load_models(workdir, "v1", recorded_digests(workdir, "v1"))


def test_unknown_model_names_are_refused(workdir):
    directory = workdir / "models" / "v1"
    card = json.loads((directory / "metrics.json").read_text())
    card["models"]["../../etc/passwd"] = card["models"]["popularity"]
    (directory / "metrics.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="unknown model"):
        load_models(workdir, "v1")
