"""Reading catalog files in blocks: splitting a file never changes, loses or renumbers a row."""

from __future__ import annotations

import csv
import gzip
import io
import json
import uuid

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagerank.catalog import ingest
from imagerank.catalog.ingest import plan_file, raw_batches, read_raw, record_cuts, validate_rows

HEADER = ["identifier", "provider", "url", "title", "meta_data", "tags"]
UNSPLIT = 1 << 40


def openverse_row(i: int, title: str | None = None) -> list[str]:
    """A row shaped like the export: JSON with quotes, titles with commas, quotes and newlines."""
    meta = {"description": f'A "quoted", multi-line\ndescription {i}', "views": str(i), "license_url": "https://c.org/x"}
    return [str(uuid.UUID(int=i + 1)), "flickr", f"https://live.staticflickr.com/{i}/a.jpg",
            title if title is not None else f'Harbour, "dawn" {i}\nsecond line',
            json.dumps(meta), json.dumps([{"name": "sea"}, {"name": f"t{i}"}])]


def csv_text(rows, header=HEADER, delimiter=",", terminator="\n", quoting=csv.QUOTE_MINIMAL) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=terminator, quoting=quoting)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def test_blocks_start_at_record_boundaries_despite_quoted_newlines(tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text(csv_text([openverse_row(i) for i in range(150)]))
    blocks = plan_file(str(path), 0, block_bytes=3_000)
    assert len(blocks) > 10
    reference = pd.read_csv(path, dtype=str, keep_default_na=False)
    for block in blocks:  # every block on its own parses into whole, correctly numbered rows
        rows = pd.concat(list(raw_batches(block)), ignore_index=True)
        assert rows["reason"].isna().all()
        expected = reference.iloc[block.first_row: block.first_row + len(rows)]
        assert rows["identifier"].tolist() == expected["identifier"].tolist()
        assert rows["title"].tolist() == expected["title"].tolist()
        assert rows["source_row"].tolist() == list(range(block.first_row + 1, block.first_row + len(rows) + 1))
    assert sum(len(pd.concat(list(raw_batches(b)))) for b in blocks) == 150


def test_the_openverse_sample_reads_the_same_in_blocks(sample_catalog, monkeypatch):
    whole = read_raw(str(sample_catalog), 0, block_bytes=UNSPLIT)
    split = read_raw(str(sample_catalog), 0, block_bytes=50_000)
    blocks = plan_file(str(sample_catalog), 0, 50_000)
    assert len(blocks) > 20
    monkeypatch.setattr(ingest, "SCAN_CHUNK_BYTES", 4_093)  # the scan's reads end inside quoted JSON
    assert plan_file(str(sample_catalog), 0, 50_000) == blocks
    pd.testing.assert_frame_equal(whole, split)
    reference = pd.read_csv(sample_catalog, dtype=str, keep_default_na=False)
    assert split["meta_data"].tolist() == reference["meta_data"].tolist()
    assert split["source_row"].tolist() == list(range(1, len(reference) + 1))


def test_a_malformed_line_keeps_its_row_number_in_every_block(tmp_path):
    rows = [openverse_row(i) for i in range(40)]
    text = csv_text(rows[:25]) + "just,three,fields\n" + csv_text(rows[25:]).split("\n", 1)[1]
    path = tmp_path / "ragged.csv"
    path.write_text(text)
    for block_bytes in (UNSPLIT, 500, 3_000):
        raw = read_raw(str(path), 0, block_bytes=block_bytes).sort_values("source_row")
        assert raw["source_row"].tolist() == list(range(1, 42))
        bad = raw[raw["reason"].notna()]
        assert bad["source_row"].tolist() == [26]
        assert bad["reason"].iloc[0] == "malformed line: data row 26 has 3 fields, expected 6"
        assert bad["raw"].iloc[0] == "just,three,fields"
        assert raw.loc[raw["source_row"] == 27, "identifier"].iloc[0] == rows[25][0]


def test_literal_quotes_inside_unquoted_fields_keep_the_file_in_one_block(tmp_path):
    """``5" tall`` in an unquoted field is a literal quote for pyarrow: quote parity no longer marks
    record ends, so the scan must refuse to split rather than cut a record in two."""
    lines = [",".join(HEADER)] + [f"{uuid.UUID(int=i + 1)},flickr,https://h.org/{i}.jpg,a 5\" tall vase {i},{{}},[]"
                                  for i in range(200)]
    path = tmp_path / "literal.csv"
    path.write_text("\n".join(lines) + "\n")
    assert record_cuts(str(path), ",", 0, 500) is None
    assert len(plan_file(str(path), 0, 500)) == 1
    raw = read_raw(str(path), 0, block_bytes=500)
    assert len(raw) == 200 and raw["reason"].isna().all()
    assert raw["title"].iloc[7] == 'a 5" tall vase 7'


def test_a_gzip_file_is_streamed_in_bounded_batches(tmp_path, monkeypatch):
    rows = [openverse_row(i) for i in range(400)]
    plain = tmp_path / "catalog.csv"
    plain.write_text(csv_text(rows))
    packed = tmp_path / "catalog.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    monkeypatch.setattr(ingest, "PARSE_BLOCK_BYTES", 8_000)
    (block,) = plan_file(str(packed), 3)
    batches = list(raw_batches(block))
    assert len(batches) > 10 and max(len(b) for b in batches) < 60  # ~8 kB of text per batch, not the file
    streamed = pd.concat(batches, ignore_index=True)
    whole = read_raw(str(plain), 3, block_bytes=UNSPLIT)
    assert streamed.drop(columns="source_file").equals(whole.drop(columns="source_file"))


def test_parquet_is_read_by_row_group_with_file_row_numbers(tmp_path):
    rows = [openverse_row(i) for i in range(50)]
    table = pa.table({name: [r[j] for r in rows] for j, name in enumerate(HEADER)})
    path = tmp_path / "catalog.parquet"
    pq.write_table(table, path, row_group_size=12)
    blocks = plan_file(str(path), 1)
    assert [b.row_group for b in blocks] == [0, 1, 2, 3, 4] and [b.first_row for b in blocks] == [0, 12, 24, 36, 48]
    raw = pd.concat([frame for b in blocks for frame in raw_batches(b)], ignore_index=True)
    assert raw["source_row"].tolist() == list(range(1, 51))
    assert raw["identifier"].tolist() == [r[0] for r in rows]
    assert (raw["input_order"].to_numpy() >> 40 == 1).all()


# ------------------------------------------------------------------------------------------ property

FIELDS = st.one_of(st.text(max_size=12), st.sampled_from(['"', '""', ",", "\t", "\n", "\r\n", "a,b", 'say "hi"',
                                                         "é", "\u2028", "{\"a\": \"b,\\nc\"}", " ", ""]))


@st.composite
def catalog_text(draw):
    """A CSV/TSV file, sometimes with blank lines, ragged lines, a BOM or lone literal quotes added."""
    delimiter = draw(st.sampled_from([",", "\t"]))
    terminator = draw(st.sampled_from(["\n", "\r\n"]))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    n = draw(st.integers(0, 25))
    rows = [[draw(st.one_of(st.uuids().map(str), FIELDS)), "flickr", draw(st.sampled_from(["https://h.org/a.jpg", ""])),
             draw(FIELDS), draw(FIELDS), draw(FIELDS)] for _ in range(n)]
    lines = csv_text(rows, delimiter=delimiter, terminator=terminator, quoting=quoting)
    inserts = draw(st.lists(st.tuples(st.integers(0, max(len(lines) - 1, 0)),
                                      st.sampled_from(["\n", "\n\n", f"x{delimiter}y\n", 'a"b\n', "\r\n", "a\rb\n"])), max_size=3))
    for at, piece in sorted(inserts, reverse=True):
        at = lines.rfind("\n", 0, at) + 1  # at a line start (perhaps inside a quoted value: hostile on purpose)
        lines = lines[:at] + piece + lines[at:]
    data = lines.encode("utf-8")
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    return ("catalog.csv" if delimiter == "," else "catalog.tsv"), data, draw(st.integers(1, 400))


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(catalog_text(), st.integers(1, 50))
def test_splitting_never_changes_what_is_read(tmp_path_factory, spec, scan_chunk):
    """Whatever the block size, and however the boundary scan's reads fall (chunks of a few bytes cut
    quotes, CRLF pairs and the header apart), the rows read are the rows of the unsplit file."""
    name, data, block_bytes = spec
    path = tmp_path_factory.mktemp("blocks") / name
    path.write_bytes(data)
    whole = read_raw(str(path), 0, block_bytes=UNSPLIT)
    delimiter = "," if name.endswith(".csv") else "\t"
    skip = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    cuts = record_cuts(str(path), delimiter, skip, block_bytes)
    default_chunk = ingest.SCAN_CHUNK_BYTES
    try:
        ingest.SCAN_CHUNK_BYTES = scan_chunk
        assert record_cuts(str(path), delimiter, skip, block_bytes) == cuts
        split = read_raw(str(path), 0, block_bytes=block_bytes)
    finally:
        ingest.SCAN_CHUNK_BYTES = default_chunk
    key = ["source_row", "reason", "raw"]
    pd.testing.assert_frame_equal(whole.sort_values(key, na_position="last").reset_index(drop=True),
                                  split.sort_values(key, na_position="last").reset_index(drop=True))
    numbered = whole["source_row"].dropna()
    assert numbered.is_unique and (numbered >= 1).all()
    checked = validate_rows(split)
    assert len(checked) == len(split)


def test_a_lone_carriage_return_line_end_keeps_the_file_in_one_block(tmp_path):
    """pyarrow ends a line at a bare CR too; the scan counts only LF line ends, so it must not split."""
    text = csv_text([openverse_row(i) for i in range(30)])
    at = text.index("\n" + str(uuid.UUID(int=16))) + 1  # at the start of a record
    path = tmp_path / "cr.csv"
    path.write_text(text[:at] + "x,y\ry,z\n" + text[at:], newline="")
    assert record_cuts(str(path), ",", 0, 400) is None
    whole = read_raw(str(path), 0, block_bytes=UNSPLIT)
    pd.testing.assert_frame_equal(whole, read_raw(str(path), 0, block_bytes=400))
    assert whole["reason"].str.startswith("malformed line").sum() == 2 and len(whole) == 32
