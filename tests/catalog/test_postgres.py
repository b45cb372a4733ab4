"""The catalog from its PostgreSQL table (a real server): the same catalog, rejects and counts as its CSV export."""

from __future__ import annotations

import json
import uuid

import pandas as pd
import pytest

from imagerank.catalog.postgres import TableError, TableRange, TableSource, check_table, masked, planned_tables
from imagerank.inputs import InputError, check_catalog
from imagerank.store.postgres_server import PASSWORD, load_image_table
from pipelines.ingest import run_ingest


def read(path) -> pd.DataFrame:
    return pd.read_parquet(path)


@pytest.mark.slow
def test_the_table_gives_the_same_catalog_and_rejects_as_the_csv(tmp_path, dask_client, sample_table, sample_catalog):
    from_table = run_ingest(dask_client, [sample_table], tmp_path / "pg", rows_per_partition=1000)
    from_csv = run_ingest(dask_client, [str(sample_catalog)], tmp_path / "csv", rows_per_partition=1000)
    for key in ("input_rows", "catalog_rows", "rejected_rows", "rejects_by_reason"):
        assert from_table[key] == from_csv[key], key
    assert from_table["input_rows"] == 1899
    pg = read(tmp_path / "pg" / "catalog").sort_values("image_id", ignore_index=True)
    csv = read(tmp_path / "csv" / "catalog").sort_values("image_id", ignore_index=True)
    assert (pg["source_file"] == masked(sample_table)).all()
    # id follows the file's row order, so even row numbers and input order agree; only the source's name differs
    pd.testing.assert_frame_equal(pg.drop(columns="source_file"), csv.drop(columns="source_file"))
    columns = ["source_row", "image_id", "stage", "reason"]
    assert read(tmp_path / "pg" / "rejects")[columns].sort_values("source_row").equals(
        read(tmp_path / "csv" / "rejects")[columns].sort_values("source_row"))


@pytest.mark.slow
def test_jsonb_reaches_the_catalog_as_the_files_json(tmp_path, dask_client, sample_table, sample_catalog):
    run_ingest(dask_client, [sample_table], tmp_path, rows_per_partition=1000)
    catalog = read(tmp_path / "catalog").set_index("image_id")
    source = pd.read_csv(sample_catalog, dtype=str, keep_default_na=False).set_index("identifier")
    with_tags = source[source["tags"].str.len() > 2].index[:20]
    assert len(with_tags) == 20
    for image_id in with_tags:
        assert json.loads(catalog.at[image_id, "meta_data"]) == json.loads(source.at[image_id, "meta_data"] or "{}")
        names = [t["name"] for t in json.loads(source.at[image_id, "tags"])]
        assert json.loads(catalog.at[image_id, "tags"]) == names


BAD_ROWS = [  # (column values, expected reason prefix)
    ({"width": -5}, "impossible width"),
    ({"url": "ftp://example.org/a.jpg"}, "url is not an http(s) URL"),
    ({"meta_data": '"just text"'}, "meta_data is not a JSON object"),
    ({"tags": "42"}, "tags is not a JSON list"),
    ({"identifier": None}, "missing identifier"),
    ({"provider": " "}, "missing provider"),
]


@pytest.fixture(scope="module")
def table_with_bad_rows(postgres, sample_catalog) -> tuple[str, dict[int, str], int]:
    """The sample plus malformed rows and one re-export of an image; returns (URL, {id: reason}, duplicate id)."""
    with postgres.connect() as connection:
        load_image_table(connection, sample_catalog, "image_bad")
        expected = {}
        for values, reason in BAD_ROWS:
            row = {"identifier": str(uuid.uuid4()), "provider": "flickr", "url": "https://example.org/a.jpg",
                   "created_on": "2020-01-01 00:00:00+00", "updated_on": "2020-01-01 00:00:00+00", "license": "by",
                   "removed_from_source": False, **values}
            casts = {"meta_data": "::jsonb", "tags": "::jsonb"}
            names = list(row)
            placeholders = ", ".join(f"%s{casts.get(n, '')}" for n in names)
            new_id = connection.execute(f"INSERT INTO image_bad ({', '.join(names)}) VALUES ({placeholders}) "
                                        "RETURNING id", [row[n] for n in names]).fetchone()[0]
            expected[new_id] = reason
        first = connection.execute("SELECT id, identifier FROM image_bad WHERE id = 1").fetchone()
        copy = connection.execute(
            "INSERT INTO image_bad (created_on, updated_on, identifier, url, provider, license, removed_from_source, "
            "title) SELECT created_on, updated_on, identifier, url, provider, license, removed_from_source, 'again' "
            "FROM image_bad WHERE id = 1 RETURNING id").fetchone()[0]
        connection.commit()
    assert first[0] == 1
    return postgres.url("image_bad"), expected, copy


@pytest.mark.slow
def test_malformed_rows_become_rejects_with_their_reason_and_key(tmp_path, dask_client, table_with_bad_rows):
    url, expected, duplicate = table_with_bad_rows
    counts = run_ingest(dask_client, [url], tmp_path, rows_per_partition=1000)
    rejects = read(tmp_path / "rejects").set_index("source_row")
    for key, reason in expected.items():
        assert rejects.at[key, "reason"].startswith(reason), (key, rejects.at[key, "reason"])
        assert rejects.at[key, "source_file"] == masked(url)
    # the later row (higher id) of a re-exported identifier wins; the earlier one is superseded, naming the winner
    assert rejects.at[1, "reason"] == f"duplicate identifier: superseded by {masked(url)} row {duplicate}"
    catalog = read(tmp_path / "catalog")
    winner = catalog[catalog["source_row"] == duplicate]
    assert len(winner) == 1 and winner["title"].iloc[0] == "again"
    n_rows = 1899 + len(BAD_ROWS) + 1
    assert counts["input_rows"] == n_rows == counts["catalog_rows"] + counts["rejected_rows"]
    assert counts["rejected_rows"] == len(BAD_ROWS) + 1 == len(rejects)


def test_ranges_cover_the_table_and_read_one_snapshot(postgres, table_with_bad_rows):
    url, _, _ = table_with_bad_rows
    with postgres.connect() as connection:
        total, low, high = connection.execute("SELECT count(*), min(id), max(id) FROM image_bad").fetchone()
    with planned_tables([url], rows_per_task=500) as (plan,):
        assert plan.rows == total and len(plan.ranges) == -(-total // 500)
        assert plan.ranges[0].low == low and plan.ranges[-1].high == high
        assert all(a.high + 1 == b.low for a, b in zip(plan.ranges, plan.ranges[1:]))
        with postgres.connect() as connection:  # a row added after planning is not part of this ingest
            connection.execute("INSERT INTO image_bad (created_on, updated_on, license, removed_from_source) "
                               "SELECT created_on, updated_on, license, removed_from_source FROM image_bad WHERE id = 2")
            connection.commit()
        from imagerank.catalog.postgres import table_batches

        read_rows = sum(len(frame) for part in plan.ranges for frame in table_batches(part))
        assert read_rows == total
    with postgres.connect() as connection:
        connection.execute("DELETE FROM image_bad WHERE id > %s", (high,))
        connection.commit()


@pytest.mark.slow
def test_the_password_never_appears_in_outputs_or_errors(tmp_path, dask_client, postgres, sample_table):
    counts = run_ingest(dask_client, [sample_table], tmp_path, rows_per_partition=1000)
    assert PASSWORD in sample_table and PASSWORD not in json.dumps(counts)
    for dataset in ("catalog", "rejects"):
        frame = read(tmp_path / dataset)
        assert not frame.astype(str).apply(lambda c: c.str.contains(PASSWORD, regex=False)).any().any()
    assert masked(sample_table) == sample_table.replace(PASSWORD, "***")
    wrong = sample_table.replace(PASSWORD, "not-" + PASSWORD)
    with pytest.raises(InputError) as error:
        check_catalog([wrong])
    assert "password authentication failed" in str(error.value) and PASSWORD not in str(error.value)
    with pytest.raises(TableError) as error:
        check_table(postgres.url("no_such_table"))
    assert "no table 'no_such_table'" in str(error.value) and PASSWORD not in str(error.value)
    with pytest.raises(TableError) as error:
        TableSource.parse(postgres.url())
    assert "?table=image" in str(error.value) and PASSWORD not in str(error.value)


def test_a_table_without_an_integer_key_is_refused_before_any_work(postgres):
    with postgres.connect() as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS image_textkey (id text, identifier uuid)")
        connection.commit()
    with pytest.raises(InputError, match="key column 'id' must be an integer column"):
        check_catalog([postgres.url("image_textkey")])
    with pytest.raises(TableError, match="plain SQL names"):
        TableSource.parse(postgres.url("image; DROP TABLE image"))


def test_names_and_reprs_mask_the_password():
    url = "postgresql://reader:s3cret@db.example.org:5432/openverse?table=public.image&sslmode=require"
    source = TableSource.parse(url)
    assert source.name == "postgresql://reader:***@db.example.org:5432/openverse?table=public.image&sslmode=require"
    assert source.connection_url == "postgresql://reader:s3cret@db.example.org:5432/openverse?sslmode=require"
    assert (source.table, source.key) == ("public.image", "id")
    part = TableRange(source, ("identifier",), 0, 0, 1, 10)
    assert "s3cret" not in repr(source) + repr(part) + str(part)  # Dask logs a failed task's arguments
    assert masked("postgresql://reader@db/openverse?table=image") == "postgresql://reader@db/openverse?table=image"
