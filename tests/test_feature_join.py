"""The families are joined once per run (the "features: join" stage, a bucketed join bounded in memory); train,
score and the training fingerprint read that dataset with no shuffle while it is current, and write it again
first when a family was rewritten since."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from imagerank import datasets
from imagerank.features.registry import (FAMILY_NAMES, family_versions, joined_features, joined_sources,
                                         stale_families, version_label, write_joined_features)
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


def merged_in_pandas(workdir) -> pd.DataFrame:
    """The expected join, with no buckets: each whole family read into pandas and merged onto the metadata."""
    versions = family_versions(workdir)
    joined = datasets.read_frame(workdir, "metadata")
    for name in FAMILY_NAMES:
        if name != "metadata" and name in versions:
            family = datasets.read_frame(workdir, name)
            joined = joined.merge(family[["image_id"] + [c for c in family.columns if c not in joined.columns]],
                                  on="image_id", how="left")
    return by_image(joined)


def test_the_joined_dataset_equals_the_families_merged_in_pandas(joined_run):
    workdir, result = joined_run
    stored = by_image(datasets.read_frame(workdir, "features"))
    expected = merged_in_pandas(workdir)
    assert result == {"rows": 1899, "families": ["domains", "metadata", "popularity", "text"], "buckets": 1,
                      "unmatched_rows": {}}
    assert len(stored) == 1899 and stored["image_id"].is_unique
    assert list(stored.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(stored.convert_dtypes(), expected.convert_dtypes())
    # it names the versions it was built from: the families' committed versions right now
    assert joined_sources(workdir) == {name: version_label(location)
                                       for name, location in family_versions(workdir).items()}
    assert all(label.startswith(f".{name}.v/") for name, label in joined_sources(workdir).items())


def test_the_join_in_many_buckets_equals_one_bucket(joined_run, tmp_path):
    """Every family is shuffled into the same buckets: with 8 of them (and images missing from some families,
    rows of images not in the catalog in another) the join is row for row the pandas one, and the scratch
    space is gone."""
    workdir, _ = joined_run
    for name in ("metadata", "popularity", "domains", "text"):
        frame = datasets.read_frame(workdir, name)
        if name == "domains":
            frame = frame.iloc[::3]  # a family without two images in three
        if name == "text":  # a family with rows of images no longer in the catalog
            frame = pd.concat([frame, frame.head(5).assign(image_id=[f"gone-{i}" for i in range(5)])])
        datasets.write_frame(frame, tmp_path, name)
    result = write_joined_features(tmp_path, rows_per_bucket=250)
    assert result["buckets"] == 8 and result["rows"] == 1899 and result["unmatched_rows"] == {"text": 5}
    stored = datasets.read_ddf(tmp_path, "features")
    assert stored.npartitions == 8
    pd.testing.assert_frame_equal(by_image(datasets.read_frame(tmp_path, "features")).convert_dtypes(),
                                  merged_in_pandas(tmp_path).convert_dtypes())
    assert not list(tmp_path.glob(".join-staging-*"))


def test_a_current_joined_dataset_is_read_with_no_shuffle(joined_run, capsys):
    workdir, _ = joined_run
    assert stale_families(workdir) == []
    features = joined_features(workdir)
    # what score builds (a partition-wise function of the rows) and what train reads
    scored = features.map_partitions(lambda part: part[["image_id"]], meta=features._meta[["image_id"]])
    for frame in (features, scored):
        assert shuffle_traces(frame) == set()
    assert features.npartitions == datasets.read_ddf(workdir, "features").npartitions
    assert "joining the families" not in capsys.readouterr().err  # nothing rejoined, nothing said
    # a frame with a merge is full of shuffles: the check above can see them
    assert shuffle_traces(features.merge(features[["image_id"]], on="image_id"))


def test_a_rewritten_family_makes_the_joined_dataset_stale(tmp_path, dask_client, sample_catalog, capsys):
    prepare(tmp_path, dask_client, sample_catalog)
    # an older work directory: no joined dataset yet; the first read writes it, said in one line
    capsys.readouterr()
    assert stale_families(tmp_path) is None
    assert shuffle_traces(joined_features(tmp_path)) == set()
    said = [line for line in capsys.readouterr().err.splitlines() if "joining the families" in line]
    assert len(said) == 1 and "no joined dataset" in said[0]
    assert stale_families(tmp_path) == []

    before = by_image(datasets.read_frame(tmp_path, "features", columns=["image_id", "observed_popularity"]))
    # `imagerank features popularity --percentile 0.5`: a new popularity version with other labels
    run_popularity_labels(dask_client, tmp_path, StandardizationConfig(percentile=0.5), NOW)
    new_labels = by_image(datasets.read_frame(tmp_path, "popularity", columns=["image_id", "observed_popularity"]))
    assert not before["observed_popularity"].equals(new_labels["observed_popularity"])

    capsys.readouterr()
    assert stale_families(tmp_path) == ["popularity"]
    features = joined_features(tmp_path)  # the stale dataset is not read: the families are joined again
    said = [line for line in capsys.readouterr().err.splitlines() if "joining the families" in line]
    assert len(said) == 1 and "predates popularity" in said[0]
    assert stale_families(tmp_path) == [] and shuffle_traces(features) == set()
    got = by_image(features[["image_id", "observed_popularity"]].compute())
    pd.testing.assert_series_equal(got["observed_popularity"], new_labels["observed_popularity"])
    joined_features(tmp_path)
    assert "joining the families" not in capsys.readouterr().err  # current now: read as it is
