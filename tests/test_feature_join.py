"""The families are joined once per run (the "features: join" stage); train, score and the training fingerprint
read that dataset with no shuffle while it is current, and never when a family was rewritten since."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from imagerank import datasets
from imagerank.features.registry import (join_families, joined_features, joined_sources, load_features,
                                         family_versions, stale_families, version_label)
from imagerank.popularity import StandardizationConfig
from imagerank.testing import shared_fixture
from pipelines.features import run_domain_features, run_metadata_features, run_popularity_labels
from pipelines.ingest import run_ingest
from pipelines.stages import StageContext, stage_for
from pipelines.text import run_text_features

pytestmark = pytest.mark.slow

NOW = pd.Timestamp("2024-06-01T00:00:00Z")
#: what a shuffle or a merge leaves in a Dask graph: expression types and task-key prefixes
SHUFFLING = re.compile(r"shuffle|merge|hash|join|barrier|partd", re.IGNORECASE)


def shuffle_traces(frame) -> set[str]:
    """Names of the merges and shuffles in ``frame``'s expression (before and after optimization) and graph."""
    names = {type(e).__name__ for e in frame.expr.walk()} | {type(e).__name__ for e in frame.optimize().expr.walk()}
    names |= {(k[0] if isinstance(k, tuple) else k).rsplit("-", 1)[0] for k in frame.dask.keys()}
    return {n for n in names if SHUFFLING.search(n)}


def prepare(workdir, client, sample_catalog) -> None:
    """The families of a run without images or crawl: metadata, text, popularity, domains (with ranks)."""
    ranks = sorted(str(p) for p in shared_fixture("ranks").glob("*.txt.gz"))
    run_ingest(client, [str(sample_catalog)], workdir)
    run_metadata_features(client, workdir, NOW)
    run_text_features(client, workdir, NOW)
    run_popularity_labels(client, workdir, StandardizationConfig(), NOW)
    run_domain_features(client, workdir, ranks, NOW)


def join_stage(client, workdir) -> dict:
    """The stage table's join stage, as a recalculation or `imagerank features join` runs it."""
    return stage_for("join").run(StageContext(client=client, workdir=workdir, now=NOW))


def by_image(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("image_id", kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def joined_run(tmp_path_factory, dask_client, sample_catalog):
    workdir = tmp_path_factory.mktemp("feature-join")
    prepare(workdir, dask_client, sample_catalog)
    return workdir, join_stage(dask_client, workdir)


def test_the_joined_dataset_equals_the_join_on_the_fly(joined_run):
    workdir, result = joined_run
    stored = by_image(datasets.read_ddf(workdir, "features").compute())
    on_the_fly = by_image(join_families(family_versions(workdir)).compute())
    assert result == {"rows": 1899, "families": ["domains", "metadata", "popularity", "text"]}
    assert len(stored) == 1899 and stored["image_id"].is_unique
    assert list(stored.columns) == list(on_the_fly.columns)
    pd.testing.assert_frame_equal(stored, on_the_fly)
    # it names the versions it was built from: the families' committed versions right now
    assert joined_sources(workdir) == {name: version_label(location)
                                       for name, location in family_versions(workdir).items()}
    assert all(label.startswith(f".{name}.v/") for name, label in joined_sources(workdir).items())


def test_a_current_joined_dataset_is_read_with_no_shuffle(joined_run, capsys):
    workdir, _ = joined_run
    assert stale_families(workdir) == []
    features = load_features(workdir)
    # what score builds (a partition-wise function of the rows) and what train reads
    scored = features.map_partitions(lambda part: part[["image_id"]], meta=features._meta[["image_id"]])
    for frame in (features, scored, joined_features(workdir)):
        assert shuffle_traces(frame) == set()
    assert features.npartitions == datasets.read_ddf(workdir, "features").npartitions
    assert "joining the families" not in capsys.readouterr().err  # nothing rejoined, nothing said
    # the same frame the on-the-fly join builds is full of shuffles: the check above can see them
    assert shuffle_traces(join_families(family_versions(workdir)))


def test_a_rewritten_family_makes_the_joined_dataset_stale(tmp_path, dask_client, sample_catalog, capsys):
    prepare(tmp_path, dask_client, sample_catalog)
    # an older work directory: no joined dataset yet, the join is built on the fly and said in one line
    capsys.readouterr()
    assert stale_families(tmp_path) is None
    assert shuffle_traces(load_features(tmp_path))
    said = [line for line in capsys.readouterr().err.splitlines() if "joining the families" in line]
    assert len(said) == 1 and "no joined dataset" in said[0]

    join_stage(dask_client, tmp_path)
    before = by_image(datasets.read_frame(tmp_path, "features", columns=["image_id", "observed_popularity"]))
    # `imagerank features popularity --percentile 0.5`: a new popularity version with other labels
    run_popularity_labels(dask_client, tmp_path, StandardizationConfig(percentile=0.5), NOW)
    new_labels = by_image(datasets.read_frame(tmp_path, "popularity", columns=["image_id", "observed_popularity"]))
    assert not before["observed_popularity"].equals(new_labels["observed_popularity"])

    capsys.readouterr()
    assert stale_families(tmp_path) == ["popularity"]
    features = load_features(tmp_path)
    assert shuffle_traces(features)  # the stale dataset is not read: the families are joined again
    said = [line for line in capsys.readouterr().err.splitlines() if "joining the families" in line]
    assert len(said) == 1 and "predates popularity" in said[0]
    got = by_image(features[["image_id", "observed_popularity"]].compute())
    pd.testing.assert_series_equal(got["observed_popularity"], new_labels["observed_popularity"])

    # train's read rejoins once, and from then on the joined dataset is current and read with no shuffle
    refreshed = joined_features(tmp_path)
    assert stale_families(tmp_path) == [] and shuffle_traces(refreshed) == set()
    pd.testing.assert_series_equal(by_image(refreshed[["image_id", "observed_popularity"]].compute())
                                   ["observed_popularity"], new_labels["observed_popularity"])
    assert shuffle_traces(load_features(tmp_path)) == set()
