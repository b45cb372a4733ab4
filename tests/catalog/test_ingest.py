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
