"""Reading and validating catalog files: every input row becomes a typed catalog row or a reject with a reason.

Catalog files are Openverse ``image`` table exports as CSV, TSV (optionally gzip-compressed) or Parquet.
Everything is read as text first so that a malformed value is reported, not silently coerced.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from imagerank.catalog.schema import CATALOG_SCHEMA, INT_COLUMNS, REJECTS_SCHEMA, TEXT_COLUMNS, TIME_COLUMNS, to_arrow_frame

FORMATS = {".csv": ",", ".tsv": "\t", ".parquet": None, ".pq": None}
MAX_DIMENSION = 100_000  # pixels; larger widths/heights are data errors, not images
MAX_FIELD_CHARS = 1_000_000  # a single catalog value larger than this is rejected, not stored
RAW_TEXT_CHARS = 2_000  # how much of a rejected row is kept for a person to read
RAW_VALUE_CHARS = 300  # ... and of each of its values
MAX_TIME_CHARS = 64  # a created_on / updated_on text longer than this is not a timestamp (stored as null)
REQUIRED = ("identifier", "url", "provider")


class CatalogError(ValueError):
    """A catalog file that cannot be read at all (unknown format, unreadable, no identifier column)."""


def catalog_format(path: str | Path) -> str:
    """``csv``, ``tsv`` or ``parquet`` from the file name (``.gz``/``.bz2``/``.zst`` allowed for text)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".zst"):
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    if ext not in FORMATS:
        raise CatalogError(f"{path}: unknown catalog format {ext or '(no extension)'!r}; "
                           "expected .csv, .tsv (optionally .gz) or .parquet")
    return "parquet" if FORMATS[ext] is None else ext[1:]


def expand_catalog_paths(paths: list[str]) -> list[str]:
    """Files named directly, plus every catalog file inside a named directory (a split export), sorted."""
    files: list[str] = []
    for path in paths:
        if Path(path).is_dir():
            inside = sorted(str(p) for p in Path(path).rglob("*") if p.is_file() and not p.name.startswith("."))
            usable = [p for p in inside if _known_format(p)]
            if not usable:
                raise CatalogError(f"{path}: directory holds no .csv, .tsv or .parquet catalog files")
            files += usable
        else:
            files.append(str(path))
    return files


def _known_format(path: str) -> bool:
    try:
        catalog_format(path)
        return True
    except CatalogError:
        return False


def check_catalog_files(paths: list[str]) -> None:
    """Fail fast, before any cluster work, on files that are missing or of an unknown format."""
    if not paths:
        raise CatalogError("no catalog files given")
    for path in paths:
        catalog_format(path)
        if not Path(path).is_file():
            raise CatalogError(f"{path}: no such catalog file")


RAW_META = pd.DataFrame({
    **{c: pd.Series(dtype="object") for c in ["identifier", *TEXT_COLUMNS, *INT_COLUMNS, *TIME_COLUMNS,
                                              "meta_data", "tags", "watermarked"]},
    "source_file": pd.Series(dtype="object"),
    "source_row": pd.Series(dtype="Int64"),
    "input_order": pd.Series(dtype="int64"),
    "reason": pd.Series(dtype="object"),
    "raw": pd.Series(dtype="object"),
})


def read_raw(path: str, file_index: int) -> pd.DataFrame:
    """All rows of one file as text (columns of :data:`RAW_META`), undelimitable rows carrying a reason.

    Never raises on bad content: a file that cannot be parsed at all (corrupt Parquet, a CSV pyarrow
    refuses) becomes one reject row ``unreadable file: ...``; a compressed file cut short keeps the rows
    before the cut and adds one ``truncated file: ...`` reject holding the incomplete last line.
    """
    fmt = catalog_format(path)
    broken: list[dict] = []
    try:
        if Path(path).stat().st_size == 0:
            table = None
        elif fmt == "parquet":
            table = pq.read_table(path)
        else:
            table = _read_text_table(path, "," if fmt == "csv" else "\t", broken)
    except Exception as exc:  # noqa: BLE001 - a broken file is reported as a reject, the run goes on
        table = None
        broken = [{"reason": f"unreadable file: {type(exc).__name__}: {exc}"[:RAW_TEXT_CHARS], "raw": None}]
    frame = _table_to_text_frame(table)
    n = len(frame)
    frame["source_file"] = path
    frame["source_row"] = pd.array(np.arange(1, n + 1), dtype="Int64")
    frame["input_order"] = np.arange(n, dtype="int64") + (file_index << 40)
    frame["reason"] = None
    frame["raw"] = None
    if broken:
        bad = pd.DataFrame(broken)
        bad["source_file"] = path
        bad["source_row"] = pd.array([pd.NA] * len(bad), dtype="Int64")
        bad["input_order"] = np.arange(len(bad), dtype="int64") + (file_index << 40) + (1 << 39)
        frame = pd.concat([frame, bad], ignore_index=True)
    for column in RAW_META.columns:
        if column not in frame:
            frame[column] = None
    return frame[RAW_META.columns].astype(RAW_META.dtypes.to_dict())


def _read_text_table(path: str, delimiter: str, broken: list[dict]) -> pa.Table | None:
    def on_invalid(row) -> str:
        broken.append({"reason": f"malformed line: line {row.number} has {row.actual_columns} fields, "
                                 f"expected {row.expected_columns}",
                       "raw": (row.text or "")[:RAW_TEXT_CHARS]})
        return "skip"

    data, text, problem = _text_bytes(path)
    if problem:
        tail = text[text.rfind("\n") + 1:] if "\n" in text else text
        text = text[: len(text) - len(tail)]
        data = text.encode("utf-8")
        broken.append({"reason": f"truncated file: {problem}"[:RAW_TEXT_CHARS], "raw": tail[:RAW_TEXT_CHARS]})
    names = _header(text, delimiter)
    del text
    if not names:
        return None
    read = pacsv.ReadOptions(use_threads=False, block_size=1 << 24)
    parse = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=on_invalid)
    convert = pacsv.ConvertOptions(column_types={name: pa.string() for name in names},
                                   strings_can_be_null=False, quoted_strings_can_be_null=False)
    try:
        return pacsv.read_csv(pa.BufferReader(data), read_options=read, parse_options=parse,
                              convert_options=convert)
    except pa.ArrowInvalid as exc:
        raise CatalogError(f"{path}: cannot be parsed as {delimiter!r}-separated text: {exc}") from exc


def _text_bytes(path: str) -> tuple[bytes, str, str | None]:
    """UTF-8 bytes and text of a (possibly compressed) text file, and why it ended early (None: it did not).

    A UTF-8 BOM is dropped, UTF-16 (with BOM) is decoded, other undecodable bytes become U+FFFD, so that
    pyarrow always sees valid UTF-8 and a bad byte costs one value, not the file.
    """
    chunks: list[bytes] = []
    problem = _read_decompressed(str(path), chunks)
    data = b"".join(chunks)
    del chunks
    if data.startswith(codecs.BOM_UTF8):
        data = data[3:]
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = data.decode("utf-16", "replace")
        return text.encode("utf-8"), text, problem
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", "replace")
        data = text.encode("utf-8")
    return data, text, problem


def _read_decompressed(path: str, chunks: list[bytes]) -> str | None:
    """Append the (decompressed) bytes of ``path`` to ``chunks``; a cut or corrupt stream keeps what came
    before and returns why it stopped (None when the whole file was read)."""
    import bz2
    import zlib

    lower = path.lower()
    factory = (lambda: zlib.decompressobj(16 + zlib.MAX_WBITS)) if lower.endswith(".gz") else \
        bz2.BZ2Decompressor if lower.endswith(".bz2") else None
    try:
        if lower.endswith(".zst"):
            with pa.input_stream(path, compression="zstd") as stream:
                while chunk := stream.read(1 << 20):
                    chunks.append(chunk)
            return None
        with open(path, "rb") as handle:
            if factory is None:
                while chunk := handle.read(1 << 24):
                    chunks.append(chunk)
                return None
            decoder = factory()
            while block := handle.read(1 << 20):
                while block:
                    chunks.append(decoder.decompress(block))
                    block = decoder.unused_data if decoder.eof else b""
                    if block:  # a concatenated member starts here
                        decoder = factory()
        if not decoder.eof:
            return "compressed stream ends before its end marker"
    except (OSError, EOFError, ValueError, zlib.error, pa.ArrowException) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _header(text: str, delimiter: str) -> list[str]:
    first = next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), [])
    return [name.strip().lstrip("\ufeff") for name in first]


def _table_to_text_frame(table: pa.Table | None) -> pd.DataFrame:
    if table is None:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in RAW_META.columns[:-5]})
    columns = {}
    for name in table.column_names:
        clean = name.strip().lstrip("\ufeff")
        values = table[name].to_pylist()
        columns[clean] = [_as_text(v) for v in values]
    return pd.DataFrame(columns)


def _as_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


# --------------------------------------------------------------------------------------------------
# Validation: a pure partition function.

def validate_rows(raw: pd.DataFrame) -> pd.DataFrame:
    """Type and check raw rows; rows that cannot be used keep their reason (and raw text) instead.

    Returns the catalog columns plus ``reason`` and ``raw``; ``reason`` is null for good rows.
    """
    out = {name: [] for name in CATALOG_SCHEMA.names}
    reasons: list[str | None] = []
    raws: list[str | None] = []
    records = raw.to_dict("records")
    field_problems = _field_problems(raw)
    for record, problem in zip(records, field_problems):
        if record["reason"] is not None:
            row, reason = None, record["reason"]
        elif problem is not None:
            row, reason = None, problem
        else:
            row, reason = _validate_record(record)
        reasons.append(reason)
        if reason is None:
            raws.append(None)
            for name in CATALOG_SCHEMA.names:
                out[name].append(row[name])
        else:
            raws.append(record["raw"] if record["raw"] is not None else _raw_text(record))
            for name in CATALOG_SCHEMA.names:
                out[name].append(_fallback(record, name))
    frame = pd.DataFrame(out)
    for column in TIME_COLUMNS:
        frame[column] = pd.to_datetime(frame[column], utc=True, errors="coerce", format="mixed").dt.floor("us")
    frame = to_arrow_frame(frame, CATALOG_SCHEMA)
    frame["reason"] = pd.array(reasons, dtype="string")
    frame["raw"] = pd.array(raws, dtype="string")
    return frame


def _fallback(record: dict, name: str):
    if name == "image_id":
        ident = record.get("identifier")
        return ident.strip()[:64] if isinstance(ident, str) and ident.strip() else None
    if name in ("source_file", "source_row", "input_order"):
        return record[name]
    return None


def _raw_text(record: dict) -> str:
    # values are cut before encoding: a row of giant fields costs RAW_TEXT_CHARS per field, not its size
    keep = {k: v[:RAW_VALUE_CHARS] if isinstance(v, str) else v for k, v in record.items()
            if k not in ("reason", "raw", "input_order") and v is not None and not (isinstance(v, str) and not v)}
    return json.dumps(keep, ensure_ascii=False, default=str)[:RAW_TEXT_CHARS]


def _field_problems(raw: pd.DataFrame) -> list[str | None]:
    """Per row, the first oversized or NUL-carrying text field (checked column-wise, which is fast)."""
    problems: list[str | None] = [None] * len(raw)
    for name in raw.columns:
        # object or pandas string dtype: Dask hands partitions over with string[pyarrow] columns
        if name in ("reason", "raw") or not (raw[name].dtype == object or isinstance(raw[name].dtype, pd.StringDtype)):
            continue
        text = raw[name].astype("string")
        lengths = text.str.len().fillna(0).to_numpy()
        too_long = lengths > MAX_FIELD_CHARS
        has_nul = text.str.contains("\x00", regex=False).fillna(False).to_numpy(dtype=bool)
        for i in (too_long | has_nul).nonzero()[0]:
            if problems[i] is None:
                problems[i] = (f"field too long: {name} has {int(lengths[i]):,} characters (limit {MAX_FIELD_CHARS:,})"
                               if too_long[i] else f"NUL character: in {name}")
    return problems


def _validate_record(record: dict) -> tuple[dict | None, str | None]:
    for name in REQUIRED:
        if not (record.get(name) or "").strip():
            return None, f"missing {name}"
    ident = record["identifier"].strip()
    try:
        image_id = str(uuid.UUID(ident))
    except ValueError:
        return None, f"identifier is not a UUID: {ident[:80]!r}"
    url, reason = _parse_url(record["url"])
    if reason:
        return None, reason
    row = {"image_id": image_id}
    for name in TEXT_COLUMNS:
        value = record.get(name)
        row[name] = value.strip() if isinstance(value, str) and value.strip() else None
    row["provider"] = row["provider"].lower()
    row["url"] = url
    for name in INT_COLUMNS:
        value, reason = _parse_count(name, record.get(name))
        if reason:
            return None, reason
        row[name] = value
    meta, reason = _parse_json_object(record.get("meta_data"))
    if reason:
        return None, f"meta_data {reason}"
    tags, reason = _parse_tags(record.get("tags"))
    if reason:
        return None, f"tags {reason}"
    row["meta_data"] = json.dumps(meta, ensure_ascii=False, sort_keys=True)
    row["tags"] = json.dumps(tags, ensure_ascii=False)
    for name in TIME_COLUMNS:
        text = (record.get(name) or "").strip()
        # no timestamp is longer than this; dateutil takes minutes over a megabyte of text (then gives NaT)
        row[name] = text if text and len(text) <= MAX_TIME_CHARS else None
    row["watermarked"] = {"t": True, "true": True, "1": True, "f": False, "false": False, "0": False}.get(
        (record.get("watermarked") or "").strip().lower())
    for name in ("source_file", "source_row", "input_order"):
        row[name] = record[name]
    return row, None


def _parse_url(text: str) -> tuple[str | None, str | None]:
    """An http(s) URL; scheme-less catalog URLs (``musee-mccord.qc.ca/x.jpg``) get https, as providers mean."""
    url = text.strip()
    if "://" not in url[:12]:
        url = "https://" + url.lstrip("/")
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].split("@")[-1].split(":")[0]
    if scheme.lower() not in ("http", "https"):
        return None, f"url is not an http(s) URL: {text.strip()[:80]!r}"
    if "." not in host or any(ch.isspace() for ch in url) or len(url) > 8192:
        return None, f"url has no valid host: {text.strip()[:80]!r}"
    return url, None


def _parse_count(name: str, text: str | None) -> tuple[int | None, str | None]:
    text = (text or "").strip()
    if not text:
        return None, None
    try:
        number = float(text)
    except ValueError:
        return None, f"{name} is not a number: {text[:40]!r}"
    if not math.isfinite(number) or number != int(number):
        return None, f"{name} is not a whole number: {text[:40]!r}"
    number = int(number)
    limit = MAX_DIMENSION if name in ("width", "height") else 1 << 40
    if number <= 0 or number > limit:
        return None, f"impossible {name}: {number}"
    return number, None


def _parse_json_object(text: str | None) -> tuple[dict | None, str | None]:
    text = (text or "").strip()
    if not text or text == "null":
        return {}, None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return None, f"is not valid JSON: {str(exc)[:80]}"
    if not isinstance(value, dict):
        return None, f"is not a JSON object: got {type(value).__name__}"
    return value, None


def _parse_tags(text: str | None) -> tuple[list | None, str | None]:
    text = (text or "").strip()
    if not text or text == "null":
        return [], None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return None, f"is not valid JSON: {str(exc)[:80]}"
    if value == {}:  # Openverse exports an empty tag set as {}
        return [], None
    if not isinstance(value, list):
        return None, f"is not a JSON list: got {type(value).__name__}"
    names = []
    for tag in value:
        name = tag.get("name") if isinstance(tag, dict) else tag if isinstance(tag, str) else None
        if isinstance(name, str) and name.strip():
            names.append(name.strip())
    return names, None


# --------------------------------------------------------------------------------------------------
# Splitting and de-duplication (pure partition functions).

def reason_kind(reason: str) -> str:
    """The part of a reject reason before its details, for counting rejects by kind."""
    return reason.split(": ", 1)[0]


def good_rows(checked: pd.DataFrame) -> pd.DataFrame:
    return checked.loc[checked["reason"].isna(), CATALOG_SCHEMA.names]


def rejected_rows(checked: pd.DataFrame, stage: str = "ingest") -> pd.DataFrame:
    bad = checked.loc[checked["reason"].notna()]
    return to_arrow_frame(pd.DataFrame({
        "source_file": bad["source_file"], "source_row": bad["source_row"], "image_id": bad["image_id"],
        "stage": stage, "reason": bad["reason"], "raw": bad["raw"],
    }), REJECTS_SCHEMA)


def mark_duplicates(rows: pd.DataFrame) -> pd.DataFrame:
    """Within a partition holding every row of its image_ids: the last input row wins, earlier ones get a reason."""
    rows = rows.sort_values("input_order", kind="stable")
    later = rows.duplicated("image_id", keep="last").to_numpy()
    out = rows.copy()
    out["reason"] = pd.array([None] * len(out), dtype="string")
    out["raw"] = pd.array([None] * len(out), dtype="string")
    if later.any():
        winners = rows.drop_duplicates("image_id", keep="last").set_index("image_id")
        where = (winners["source_file"].astype(str) + " row " + winners["source_row"].astype(str)).to_dict()
        losers = rows[later]
        out.loc[later, "reason"] = [f"duplicate identifier: superseded by {where[i]}" for i in losers["image_id"]]
        out.loc[later, "raw"] = [_raw_text(r) for r in losers.to_dict("records")]
    return out
