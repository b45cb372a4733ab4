"""Ingest: every input row ends in the catalog or in rejects with a reason a person understands."""

import gzip
import json
import uuid

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imagerank.catalog.ingest import CatalogError, check_catalog_files, good_rows, read_raw, rejected_rows, validate_rows
from pipelines.ingest import run_ingest

HEADER = ["identifier", "provider", "url", "foreign_landing_url", "width", "height", "title", "meta_data", "tags"]


def row(**overrides):
    base = {"identifier": str(uuid.uuid4()), "provider": "flickr", "url": "https://live.staticflickr.com/1/a.jpg",
            "foreign_landing_url": "https://www.flickr.com/photos/x/1", "width": "640", "height": "480",
            "title": "harbour", "meta_data": '{"views": "10"}', "tags": '[{"name": "sea"}]'}
    return {**base, **overrides}


def check(rows):
    raw = pd.DataFrame(rows)
    raw["source_file"], raw["source_row"], raw["input_order"], raw["reason"], raw["raw"] = "f.csv", range(1, len(raw) + 1), range(len(raw)), None, None
    from imagerank.catalog.ingest import RAW_META
    for column in RAW_META.columns:
        if column not in raw:
            raw[column] = None
    return validate_rows(raw[RAW_META.columns])


@pytest.mark.parametrize("overrides, reason", [
    ({"identifier": ""}, "missing identifier"),
    ({"identifier": "not-a-uuid"}, "identifier is not a UUID"),
    ({"url": ""}, "missing url"),
    ({"url": "ftp://example.org/a.jpg"}, "url is not an http(s) URL"),
    ({"url": "https://no host/a.jpg"}, "url has no valid host"),
    ({"provider": " "}, "missing provider"),
    ({"width": "wide"}, "width is not a number"),
    ({"height": "12.5"}, "height is not a whole number"),
    ({"width": "0"}, "impossible width"),
    ({"height": "9999999"}, "impossible height"),
    ({"meta_data": '{"views": 12'}, "meta_data is not valid JSON"),
    ({"meta_data": "[1, 2]"}, "meta_data is not a JSON object"),
    ({"tags": '"sea"'}, "tags is not a JSON list"),
    ({"title": "a\x00b"}, "NUL character"),
])
def test_bad_values_are_rejected_with_their_reason(overrides, reason):
    checked = check([row(**overrides), row()])
    assert checked["reason"].iloc[0].startswith(reason), checked["reason"].iloc[0]
    assert pd.isna(checked["reason"].iloc[1])
    rejects = rejected_rows(checked)
    assert len(rejects) == 1 and rejects["stage"].iloc[0] == "ingest" and rejects["raw"].iloc[0]


def test_values_are_typed_and_json_normalized():
    good = good_rows(check([row(url="musee-mccord.qc.ca/ObjView/5344.jpg", tags="{}", width="1024.0",
                                meta_data='{"b": 1, "a": "é"}', provider="Flickr")]))
    assert good["url"].iloc[0] == "https://musee-mccord.qc.ca/ObjView/5344.jpg"
    assert good["width"].iloc[0] == 1024 and good["provider"].iloc[0] == "flickr"
    assert json.loads(good["tags"].iloc[0]) == []
    assert good["meta_data"].iloc[0] == '{"a": "é", "b": 1}'


def test_the_whole_sample_is_accepted(sample_catalog):
    checked = validate_rows(read_raw(str(sample_catalog), 0))
    assert len(checked) == 1899 and checked["reason"].isna().all()


def test_unknown_and_missing_files_are_clear_errors(tmp_path):
    (tmp_path / "catalog.xlsx").write_text("x")
    with pytest.raises(CatalogError, match="unknown catalog format '.xlsx'"):
        check_catalog_files([str(tmp_path / "catalog.xlsx")])
    with pytest.raises(CatalogError, match="no such catalog file"):
        check_catalog_files([str(tmp_path / "missing.csv")])
    with pytest.raises(CatalogError, match="no catalog files"):
        check_catalog_files([])


def write_csv(path, rows, header=HEADER):
    pd.DataFrame(rows, columns=header).to_csv(path, index=False)
    return str(path)


@pytest.mark.slow
def test_ingest_job_reconciles_broken_files(tmp_path, dask_client):
    first, second = row(), row()
    duplicate = dict(first, title="re-exported")
    good_csv = write_csv(tmp_path / "good.csv", [first, second, row(meta_data="{bad")])
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header_only.tsv").write_text("\t".join(HEADER) + "\n")
    with gzip.open(tmp_path / "later.csv.gz", "wt") as handle:
        pd.DataFrame([duplicate, row(identifier="")], columns=HEADER).to_csv(handle, index=False)
        handle.write('"unterminated,row\n')
    broken_lines = tmp_path / "ragged.csv"
    broken_lines.write_text(",".join(HEADER) + "\n" + ",".join(row().values()).replace('"', "") + ",extra,fields\n")
    table = pa.table({k: [v] for k, v in row(meta_data={"views": 3}).items() if k != "meta_data"} | {"meta_data": [json.dumps({"views": 3})]})
    pq.write_table(table, tmp_path / "part.parquet")
    files = [good_csv, str(tmp_path / "empty.csv"), str(tmp_path / "header_only.tsv"), str(tmp_path / "later.csv.gz"),
             str(broken_lines), str(tmp_path / "part.parquet")]

    counts = run_ingest(dask_client, files, tmp_path / "w")

    catalog = pd.read_parquet(tmp_path / "w" / "catalog")
    rejects = pd.read_parquet(tmp_path / "w" / "rejects")
    assert counts["input_rows"] == len(catalog) + len(rejects)
    assert len(catalog) == 3  # first (as re-exported), second, the parquet row
    assert catalog.set_index("image_id").loc[first["identifier"], "title"] == "re-exported"  # last wins
    reasons = rejects["reason"].tolist()
    assert any(r.startswith("duplicate identifier: superseded by") and "later.csv.gz" in r for r in reasons)
    assert any(r.startswith("meta_data is not valid JSON") for r in reasons)
    assert any(r.startswith("missing identifier") for r in reasons)
    assert sum(r.startswith("malformed line") for r in reasons) >= 1
    assert set(rejects["source_file"]) <= set(files)
    assert counts["rejects_by_reason"]["duplicate identifier"] == 1


def test_a_directory_stands_for_the_catalog_files_inside(tmp_path):
    from imagerank.catalog.ingest import expand_catalog_paths

    (tmp_path / "export").mkdir()
    for name in ("b.csv", "a.parquet", "notes.txt", ".hidden.csv"):
        (tmp_path / "export" / name).write_text("x")
    assert expand_catalog_paths([str(tmp_path / "export")]) == [str(tmp_path / "export" / "a.parquet"),
                                                                 str(tmp_path / "export" / "b.csv")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(CatalogError, match="holds no .csv"):
        expand_catalog_paths([str(tmp_path / "empty")])


@pytest.mark.slow
def test_ingest_job_in_many_blocks_keeps_rows_numbers_and_last_wins(tmp_path, dask_client):
    """Small blocks and partitions: a duplicate in a later block and a later file still wins, every reject
    names its file and exact row, and the counts (from the written files' footers) reconcile."""
    rows = [row(title=f'line one, "{i}"\nline two') for i in range(120)]
    rows[50] = row(width="wide")  # data row 51
    rows[90] = dict(rows[10], title="later in the same file")  # row 91 supersedes row 11
    big = write_csv(tmp_path / "big.csv", rows)
    later = rows[20] | {"title": "from the next file"}
    with gzip.open(tmp_path / "next.csv.gz", "wt") as handle:
        pd.DataFrame([row(), later, row(url="")], columns=HEADER).to_csv(handle, index=False)

    counts = run_ingest(dask_client, [big, str(tmp_path / "next.csv.gz")], tmp_path / "w", block_bytes=2_000,
                        rows_per_partition=40)

    assert counts["blocks"] > 10
    catalog = pd.read_parquet(tmp_path / "w" / "catalog")
    rejects = pd.read_parquet(tmp_path / "w" / "rejects")
    assert counts["input_rows"] == 123 == len(catalog) + len(rejects)
    assert counts["catalog_rows"] == len(catalog) == 119 and counts["rejected_rows"] == len(rejects) == 4
    assert catalog["image_id"].is_unique
    titles = catalog.set_index("image_id")["title"]
    assert titles[rows[10]["identifier"]] == "later in the same file"
    assert titles[rows[20]["identifier"]] == "from the next file"
    assert titles[rows[5]["identifier"]] == 'line one, "5"\nline two'
    found = {(r.source_file.rsplit("/", 1)[-1], r.source_row, r.reason.split(":")[0]) for r in rejects.itertuples()}
    assert found == {("big.csv", 51, "width is not a number"), ("big.csv", 11, "duplicate identifier"),
                     ("big.csv", 21, "duplicate identifier"), ("next.csv.gz", 3, "missing url")}
    assert counts["rejects_by_reason"] == {"duplicate identifier": 2, "missing url": 1, "width is not a number": 1}
    superseded = rejects.loc[rejects["source_row"] == 21, "reason"].iloc[0]
    assert superseded.endswith("next.csv.gz row 2")
    assert len(list((tmp_path / "w" / "catalog").glob("*.parquet"))) == 4  # ceil(121 validated / 40)
    assert not list((tmp_path / "w").glob(".ingest-staging-*"))
