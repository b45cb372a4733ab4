"""Fuzzing the catalog parsers: every input row ends as a typed catalog row or a reject with a reason.

Two levels: ``validate_rows`` on raw text records (fast, many examples) and ``read_raw`` on whole files
written with hostile quoting, delimiters, BOMs, encodings, NULs, compression and giant fields.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import math
import uuid

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from fuzzkit import examples, tried
from imagerank.catalog.ingest import (MAX_DIMENSION, RAW_META, good_rows, mark_duplicates, read_raw, rejected_rows,
                                      validate_rows)
from imagerank.catalog.schema import CATALOG_SCHEMA, INT_COLUMNS, REJECTS_SCHEMA, TEXT_COLUMNS, TIME_COLUMNS

COLUMNS = ["identifier", *TEXT_COLUMNS, *INT_COLUMNS, *TIME_COLUMNS, "meta_data", "tags", "watermarked"]

NUMBERS = st.sampled_from(["640", " 480 ", "0", "-1", "1e3", "1e309", "NaN", "nan", "inf", "-inf", "12.5", "0x10",
                           "1_000", "١٢", "9" * 400, "", "   ", "true", "10.0", str(MAX_DIMENSION + 1)])
DATES = st.sampled_from(["2020-01-02", "2020-01-02 03:04:05", "2020-01-02T03:04:05Z", "2020-01-02 03:04:05+00",
                         "2020-01-02 03:04:05.123456+05:30", "02/03/2020", "March 3, 2020", "1577836800", "0",
                         "0000-00-00 00:00:00", "9999-12-31 23:59:59", "10000-01-01", "-2020-01-01", "1066",
                         "2020-13-45", "yesterday", "", "NaT", "2020-01-02 03:04:05+99:00", "1e20",
                         "2020-02-30", "1677-09-21 00:12:43", "2262-04-11 23:47:17", "1" * 200_000 + "x"])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)
JSON_TEXT = st.one_of(
    JSON_VALUES.map(lambda v: json.dumps(v)),  # floats: NaN / Infinity are what Python writes
    st.dictionaries(st.sampled_from(["views", "global_usage_count", "description", "date_taken", "latitude",
                                     "longitude", "pub_date", "downloads"]),
                    st.one_of(st.integers(-10**20, 10**20), st.floats(), st.text(max_size=12), NUMBERS, DATES),
                    max_size=5).map(json.dumps),
    st.sampled_from(["{", "[" * 5000 + "]" * 5000, '{"a": ' * 3000 + "1" + "}" * 3000, "1" * 5000,
                     '{"views": 1e999}', "{}", "[]", "null", '"text"', "NaN", "\ufeff{}", '{"a":1}{"b":2}']),
    st.text(max_size=30),
)
TAGS_TEXT = st.one_of(
    st.lists(st.one_of(st.text(max_size=10), st.fixed_dictionaries({"name": st.one_of(st.text(max_size=10), st.integers())}),
                       st.integers(), st.none()), max_size=5).map(json.dumps),
    JSON_TEXT)
UUIDS = st.one_of(st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()), st.uuids().map(lambda u: u.hex),
                  st.uuids().map(lambda u: "{" + str(u) + "}"), st.uuids().map(lambda u: f"urn:uuid:{u}"),
                  st.text(max_size=40))
URLS = st.one_of(st.sampled_from([
    "https://live.staticflickr.com/1/a.jpg", "http://x.org/a b.jpg", "musee-mccord.qc.ca/a.jpg", "//cdn.org/a.jpg",
    "javascript:alert(1)", "file:///etc/passwd", "https://user:pw@h.org:99999/", "https://[::1]/a.jpg",
    "https://" + "a" * 9000 + ".org/", "https://xn--zz.org/", "http://localhost/a.jpg", "ftp://h.org/a.jpg",
    "https://h.org/\x00", "HTTPS://H.ORG/A.JPG", "https://h.org:/x", "http://[::1", ""]), st.text(max_size=40))
HOSTILE_TEXT = st.one_of(
    st.none(), st.text(max_size=40), st.sampled_from(["\x00", "a\x00b", "\ufeff", "\u202e", "\r\n", "\"", "'", "\t",
                                                      "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace")]),
    st.just("x" * 1_000_001))


def raw_record(draw) -> dict:
    record = {name: draw(HOSTILE_TEXT) for name in COLUMNS}
    record["identifier"] = draw(st.one_of(UUIDS, HOSTILE_TEXT))
    record["provider"] = draw(st.one_of(st.sampled_from(["flickr", "wikimedia", "Flickr ", "stocksnap"]), HOSTILE_TEXT))
    record["url"] = draw(st.one_of(URLS, HOSTILE_TEXT))
    record["foreign_landing_url"] = draw(st.one_of(URLS, HOSTILE_TEXT))
    for name in INT_COLUMNS:
        record[name] = draw(st.one_of(NUMBERS, HOSTILE_TEXT))
    for name in TIME_COLUMNS:
        record[name] = draw(st.one_of(DATES, HOSTILE_TEXT))
    record["meta_data"] = draw(st.one_of(JSON_TEXT, HOSTILE_TEXT))
    record["tags"] = draw(st.one_of(TAGS_TEXT, HOSTILE_TEXT))
    record["watermarked"] = draw(st.one_of(st.sampled_from(["t", "f", "TRUE", "0", "yes", "2"]), HOSTILE_TEXT))
    return record


@st.composite
def raw_frames(draw):
    records = draw(st.lists(st.composite(lambda d: raw_record(d))(), min_size=0, max_size=5))
    frame = pd.DataFrame(records, columns=COLUMNS)
    n = len(frame)
    frame["source_file"] = "fuzz.csv"
    frame["source_row"] = pd.array(range(1, n + 1), dtype="Int64")
    frame["input_order"] = range(n)
    frame["reason"] = None
    frame["raw"] = None
    return frame[RAW_META.columns].astype(RAW_META.dtypes.to_dict())


def check_validated(raw: pd.DataFrame, checked: pd.DataFrame) -> None:
    """The properties every validated partition must hold."""
    assert len(checked) == len(raw)
    assert list(checked.columns) == [*CATALOG_SCHEMA.names, "reason", "raw"]
    good, bad = good_rows(checked), rejected_rows(checked)
    assert len(good) + len(bad) == len(raw)  # every row accounted for
    assert list(bad.columns) == REJECTS_SCHEMA.names
    assert bad["reason"].notna().all() and (bad["reason"].str.len() > 0).all()
    assert set(bad["source_row"].dropna()) <= set(raw["source_row"].dropna())
    for row in good.to_dict("records"):
        assert str(uuid.UUID(row["image_id"])) == row["image_id"]
        assert row["url"].startswith(("http://", "https://"))
        assert isinstance(json.loads(row["meta_data"]), dict)
        tags = json.loads(row["tags"])
        assert isinstance(tags, list) and all(isinstance(t, str) and t for t in tags)
        for name in ("width", "height"):
            assert pd.isna(row[name]) or 0 < row[name] <= MAX_DIMENSION, row[name]
        assert pd.isna(row["filesize"]) or row["filesize"] > 0, row["filesize"]
        for name in TIME_COLUMNS:
            assert pd.isna(row[name]) or pd.Timestamp(row[name]).tzinfo is not None
        for name, value in row.items():
            if isinstance(value, str):
                assert "\x00" not in value
    if len(good):
        marked = mark_duplicates(good)
        assert len(marked) == len(good)
        assert marked["image_id"].nunique() == (marked["reason"].isna()).sum()


@settings(max_examples=examples(1))
@given(raw_frames())
def test_validate_rows_accounts_for_every_row(raw):
    tried("catalog_rows", raw.to_dict("records"))
    check_validated(raw, validate_rows(raw))


def test_validate_rows_on_an_empty_partition():
    checked = validate_rows(RAW_META)
    assert len(checked) == 0 and list(checked.columns) == [*CATALOG_SCHEMA.names, "reason", "raw"]


# --------------------------------------------------------------------------------------------- files

FIELD_TEXT = st.one_of(st.text(max_size=30), st.sampled_from(['"', '""', ",", "\t", "\n", "\r\n", "\r", "\\", "\x00",
                                                              "a,b", 'say "hi"', "\ufeffx", "é", "\u2028"]))
HEADERS = ["identifier", "provider", "url", "foreign_landing_url", "width", "height", "filesize", "title",
           "meta_data", "tags", "created_on"]


@st.composite
def catalog_files(draw):
    """(file name, bytes, rows written) of a hostile CSV/TSV; ``rows`` is None when the bytes were mangled."""
    delimiter = draw(st.sampled_from([",", "\t"]))
    header = list(HEADERS)
    if draw(st.booleans()):
        header = draw(st.permutations(header))
    if draw(st.booleans()):
        header = header + ["unknown_column"]
    n = draw(st.integers(0, 6))
    rows = []
    for _ in range(n):
        values = {
            "identifier": draw(st.one_of(st.uuids().map(str), FIELD_TEXT)),
            "provider": draw(st.sampled_from(["flickr", "wikimedia", ""])),
            "url": draw(st.one_of(URLS, FIELD_TEXT)),
            "foreign_landing_url": draw(URLS),
            "width": draw(NUMBERS), "height": draw(NUMBERS), "filesize": draw(NUMBERS),
            "title": draw(st.one_of(FIELD_TEXT, st.just("t" * 200_000))),
            "meta_data": draw(JSON_TEXT), "tags": draw(TAGS_TEXT), "created_on": draw(DATES),
        }
        rows.append([values.get(h, "") for h in header])
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]))
    text = io.StringIO()
    terminator = draw(st.sampled_from(["\n", "\r\n"]))
    writer = csv.writer(text, delimiter=delimiter, quoting=quoting, lineterminator=terminator)
    writer.writerow(header)
    writer.writerows(rows)
    body = text.getvalue()
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "cp1252"]))
    data = body.encode(encoding, "replace")
    # csv quotes only the terminator's own characters: a bare CR in a value splits the row for every reader
    expected = None if terminator == "\n" and "\r" in body else n
    mangle = draw(st.sampled_from(["none", "none", "truncate", "flip", "extra_field", "blank_lines"]))
    if mangle == "truncate" and data:
        data = data[: draw(st.integers(0, len(data)))]
        expected = None
    elif mangle == "flip" and data:
        where = draw(st.integers(0, len(data) - 1))
        data = data[:where] + bytes([data[where] ^ (1 << draw(st.integers(0, 7)))]) + data[where + 1:]
        expected = None
    elif mangle == "extra_field" and n:
        data += (delimiter.join(["x"] * (len(header) + 3)) + "\n").encode()
        expected = n + 1
    elif mangle == "blank_lines":
        data = data.replace(b"\n", b"\n\n", 1) + b"\n\n"
    compression = draw(st.sampled_from(["", "", ".gz", ".bz2"]))
    if compression == ".gz":
        data = gzip.compress(data)
    elif compression == ".bz2":
        data = bz2.compress(data)
    name = ("catalog.csv" if delimiter == "," else "catalog.tsv") + compression
    return name, data, expected


def check_file(path, expected_rows):
    raw = read_raw(str(path), 0)
    assert list(raw.columns) == list(RAW_META.columns)
    if expected_rows is not None:
        assert len(raw) == expected_rows, raw[["source_row", "reason"]]
    checked = validate_rows(raw)
    check_validated(raw, checked)
    return raw, checked


@settings(max_examples=examples(1))
@given(catalog_files())
def test_catalog_files_never_crash_and_lose_no_row(tmp_path_factory, spec):
    name, data, expected = spec
    tried("catalog_files", data)
    path = tmp_path_factory.mktemp("cat") / name
    path.write_bytes(data)
    check_file(path, expected)


PARQUET_VALUES = st.one_of(st.none(), st.integers(-2**63, 2**63 - 1), st.floats(), st.text(max_size=20),
                           st.booleans())


@settings(max_examples=examples(0.3))
@given(st.lists(st.tuples(st.uuids().map(str), PARQUET_VALUES, PARQUET_VALUES, PARQUET_VALUES), max_size=5),
       st.sampled_from(["int", "float", "str", "nested"]))
def test_parquet_with_numbers_and_nested_values(tmp_path_factory, rows, kind):
    """Parquet exports type their columns: numbers, NaN/inf, lists and structs all reach validation."""
    def column(values):
        if kind == "int":
            return pa.array([v if isinstance(v, int) and not isinstance(v, bool) else None for v in values], pa.int64())
        if kind == "float":
            return pa.array([float(v) if isinstance(v, (int, float)) and abs(v) < 1e300 else math.nan for v in values],
                            pa.float64())
        if kind == "nested":
            return pa.array([{"name": str(v)} for v in values], pa.struct([("name", pa.string())]))
        return pa.array([None if v is None else str(v) for v in values], pa.string())

    table = pa.table({
        "identifier": pa.array([r[0] for r in rows], pa.string()),
        "provider": pa.array(["flickr"] * len(rows), pa.string()),
        "url": pa.array(["https://h.org/a.jpg"] * len(rows), pa.string()),
        "width": column([r[1] for r in rows]),
        "meta_data": column([r[2] for r in rows]),
        "tags": column([r[3] for r in rows]),
    })
    tried("catalog_parquet", (kind, rows))
    path = tmp_path_factory.mktemp("pq") / "catalog.parquet"
    pq.write_table(table, path)
    check_file(path, len(rows))


# --------------------------------------------------------------------------------------------- regressions
# Failures the properties above found, pinned as plain tests.

def _csv(rows, header=("identifier", "provider", "url", "title")):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _good(i):
    return [str(uuid.UUID(int=i + 1)), "flickr", f"https://h.org/{i}.jpg", f"title {i}"]


def test_truncated_gzip_keeps_rows_before_the_cut(tmp_path):
    """A cut .gz used to kill the whole file (CatalogError); now rows before the cut survive, the cut is a reject."""
    data = gzip.compress(_csv([_good(i) for i in range(200)]).encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(data[: len(data) * 2 // 3])
    raw, checked = check_file(path, None)
    reasons = checked["reason"].dropna()
    assert reasons.str.startswith("truncated file:").sum() == 1
    good = good_rows(checked)
    assert 0 < len(good) < 200 and (good["title"] == [f"title {i}" for i in range(len(good))]).all()


def test_bz2_header_is_read_decompressed(tmp_path):
    """.bz2 catalogs were accepted but their header was read from the compressed bytes: every row rejected."""
    path = tmp_path / "c.csv.bz2"
    path.write_bytes(bz2.compress(_csv([_good(i) for i in range(3)]).encode()))
    _, checked = check_file(path, 3)
    assert checked["reason"].isna().all()


def test_malformed_line_with_non_utf8_bytes_is_one_reject(tmp_path):
    """pyarrow's invalid-row handler failed on non-UTF-8 text and the whole file was refused."""
    text = _csv([_good(0), _good(1)]) + "\xe9,\xe9,\xe9,\xe9,\xe9,\xe9\n" + _csv([_good(2)]).split("\n", 1)[1]
    path = tmp_path / "latin.csv"
    path.write_bytes(text.encode("latin-1"))
    _, checked = check_file(path, 4)
    assert checked["reason"].dropna().str.startswith("malformed line").sum() == 1
    assert len(good_rows(checked)) == 3


def test_utf16_catalog_and_corrupt_parquet(tmp_path):
    path = tmp_path / "u16.csv"
    path.write_bytes(_csv([_good(0)]).encode("utf-16"))
    _, checked = check_file(path, 1)
    assert checked["reason"].isna().all()
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"PAR1" + b"\x00" * 100)
    _, checked = check_file(bad, 1)
    assert checked["reason"].iloc[0].startswith("unreadable file:")


def test_giant_header_field_is_a_file_reject(tmp_path):
    path = tmp_path / "giant.csv"
    path.write_text("identifier," + "h" * 300_000 + "\n" + ",".join(_good(0)[:2]) + "\n")
    _, checked = check_file(path, None)
    assert len(checked) >= 1 and checked["reason"].notna().all()


def test_reject_raw_text_of_giant_fields_is_bounded_and_keeps_every_column():
    """_raw_text JSON-encoded whole megabyte values and then cut the text: slow, and the columns after the
    first giant value (the identifier, the url) vanished from the reject."""
    from imagerank.catalog.ingest import RAW_TEXT_CHARS, _raw_text

    text = _raw_text({"title": "x" * 900_000, "identifier": "id-1", "url": "https://h.org/a.jpg", "reason": None,
                      "raw": None, "input_order": 1, "source_file": "f.csv", "source_row": 3})
    assert len(text) <= RAW_TEXT_CHARS
    assert "id-1" in text and "https://h.org/a.jpg" in text


def test_giant_date_text_is_null_without_being_parsed():
    """A created_on of ~1 MB (under MAX_FIELD_CHARS) went to pandas' mixed-format parser, which spends minutes in
    dateutil on it before giving NaT: one row could stall an ingest worker. Such text is now null at once."""
    from imagerank.catalog.ingest import MAX_TIME_CHARS, _validate_record

    record = {name: None for name in RAW_META.columns}
    record.update(identifier=str(uuid.UUID(int=5)), provider="flickr", url="https://h.org/a.jpg",
                  created_on="1" * 999_999, updated_on=" 2020-01-02 03:04:05 ", source_file="f.csv", source_row=1,
                  input_order=0)
    row, reason = _validate_record(record)
    assert reason is None and row["created_on"] is None and row["updated_on"] == "2020-01-02 03:04:05"
    assert len("2020-01-02T03:04:05.123456789+05:30") <= MAX_TIME_CHARS


def test_field_checks_apply_to_string_dtype_partitions():
    """The column-wise size / NUL check skipped every column whose dtype was not object, and Dask hands
    validate_rows partitions with string[pyarrow] columns: in a real run a 1 MB title or a NUL was accepted
    (found by the corpus test: 62 catalog rows for 60 good ones)."""
    good = dict.fromkeys(RAW_META.columns)
    good.update(identifier=str(uuid.UUID(int=7)), provider="flickr", url="https://h.org/a.jpg", source_file="f.csv",
                source_row=1, input_order=0)
    rows = [dict(good, title="x" * 1_000_001), dict(good, title="nul\x00inside", source_row=2, input_order=1)]
    raw = pd.DataFrame(rows)[RAW_META.columns].astype(RAW_META.dtypes.to_dict())
    for name in ("identifier", "provider", "url", "title", "reason", "raw"):
        raw[name] = raw[name].astype("string[pyarrow]")
    reasons = list(validate_rows(raw)["reason"])
    assert reasons[0].startswith("field too long: title") and reasons[1].startswith("NUL character: in title")
