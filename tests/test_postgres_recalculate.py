"""The whole recalculation with the catalog read from PostgreSQL: the same scores as from its CSV export, a run
record without the password, and the scores exported back to the API's table."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from imagerank.store.postgres_server import PASSWORD
from imagerank.testing import shared_fixture
from pipelines.export import run_export
from pipelines.recalculate import RecalculateOptions, recalculate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, dask_client, sample_table, sample_recalculation):
    """The table run, and the session's run of the same rows from the CSV file (tests/conftest.py): the same
    options (ranks included) but for the catalog; the CSV run also materializes, which changes no score."""
    ranks = sorted(str(p) for p in shared_fixture("ranks").glob("*.txt.gz"))
    workdir = tmp_path_factory.mktemp("recalculate-table")
    manifest = recalculate(RecalculateOptions(catalog=[sample_table], workdir=workdir, ranks=ranks,
                                              materialize=False, scheduler=dask_client.scheduler.address), quiet=True)
    return {"table": (workdir, manifest), "csv": sample_recalculation}


def scores(workdir) -> pd.DataFrame:
    return pd.read_parquet(workdir / "scores").sort_values("image_id", ignore_index=True)


def test_the_table_gives_the_same_scores_as_the_csv(two_runs):
    (table_dir, table_run), (csv_dir, csv_run) = two_runs["table"], two_runs["csv"]
    assert table_run["reconciliation"]["ok"] and table_run["reconciliation"]["input_rows"] == 1899
    for key in ("input_rows", "catalog_rows", "rejected_rows", "score_rows"):
        assert table_run["reconciliation"][key] == csv_run["reconciliation"][key], key
    from_table, from_csv = scores(table_dir), scores(csv_dir)
    assert from_table["image_id"].tolist() == from_csv["image_id"].tolist()
    for column in ("popularity_source", "authority_source"):
        assert from_table[column].tolist() == from_csv[column].tolist(), column
    for column in ("popularity", "authority"):
        pd.testing.assert_series_equal(from_table[column], from_csv[column], rtol=0, atol=1e-9)


def test_the_run_record_names_the_table_without_its_password(two_runs, sample_table):
    workdir, manifest = two_runs["table"]
    record = next(p for p in (workdir / "runs").glob("*.json") if p.name != "in-progress.json").read_text()
    assert PASSWORD in sample_table and PASSWORD not in record
    catalog = json.loads(record)["inputs"]["catalog"]
    assert catalog[0]["path"] == sample_table.replace(PASSWORD, "***") and catalog[0]["rows"] == 1899
    assert manifest["ingest"]["files"] == [sample_table.replace(PASSWORD, "***")]


def test_the_exported_table_equals_the_scores(two_runs, dask_client, postgres):
    workdir, _ = two_runs["table"]
    url = postgres.url("image_popularity_sample")
    assert run_export(dask_client, workdir, url)["inserted"] == 1899
    assert run_export(dask_client, workdir, url)["unchanged"] == 1899
    with postgres.connect() as connection:
        rows = connection.execute("SELECT identifier::text, popularity, authority, popularity_source, authority_source, "
                                  "model_version FROM image_popularity_sample ORDER BY 1").fetchall()
    expected = scores(workdir)
    exported = pd.DataFrame(rows, columns=["image_id", "popularity", "authority", "popularity_source",
                                           "authority_source", "model_version"])
    pd.testing.assert_frame_equal(exported, expected[exported.columns.tolist()], check_exact=True)
