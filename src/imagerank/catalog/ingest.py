"""Reading and validating catalog files: every input row becomes a typed catalog row or a reject with a reason.

Catalog files are Openverse ``image`` table exports as CSV, TSV (optionally gzip-compressed) or Parquet.
Everything is read as text first so that a malformed value is reported, not silently coerced, and in
blocks of bounded size so that a file of many gigabytes costs a worker no more memory than a small one.
"""

from __future__ import annotations

import codecs
import io
import json
import math
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from imagerank import storage
from imagerank.catalog.fields import MAX_TIME_CHARS, parse_meta_data, parse_tags
from imagerank.catalog.schema import CATALOG_SCHEMA, INT_COLUMNS, REJECTS_SCHEMA, TEXT_COLUMNS, TIME_COLUMNS, to_arrow_frame

FORMATS = {".csv": ",", ".tsv": "\t", ".parquet": None, ".pq": None}
MAX_DIMENSION = 100_000  # pixels; larger widths/heights are data errors, not images
MAX_FIELD_CHARS = 1_000_000  # a single catalog value larger than this is rejected, not stored
RAW_TEXT_CHARS = 2_000  # how much of a rejected row is kept for a person to read
RAW_VALUE_CHARS = 300  # ... and of each of its values
REQUIRED = ("identifier", "url", "provider")


class CatalogError(ValueError):
    """A catalog file that cannot be read at all (unknown format, unreadable, no identifier column)."""


def catalog_format(path: str | Path) -> str:
    """``csv``, ``tsv`` or ``parquet`` from the file name (``.gz``/``.bz2``/``.zst`` allowed for text)."""
    suffixes = [s.lower() for s in Path(str(path).rsplit("/", 1)[-1]).suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".zst"):
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    if ext not in FORMATS:
        raise CatalogError(f"{path}: unknown catalog format {ext or '(no extension)'!r}; "
                           "expected .csv, .tsv (optionally .gz) or .parquet")
    return "parquet" if FORMATS[ext] is None else ext[1:]


def expand_catalog_paths(paths: list[str]) -> list[str]:
    """Files named directly, plus every catalog file inside a named directory or URL prefix (a split export),
    sorted. Local paths or URLs (``s3://bucket/export/``); a location that does not exist stays as given, for
    :func:`check_catalog_files` to report."""
    files: list[str] = []
    for path in paths:
        fs, root = storage.filesystem(path)
        if fs.isdir(root):
            inside = sorted(f for f in fs.find(root) if not f.rstrip("/").rsplit("/", 1)[-1].startswith((".", "_")))
            usable = [_location(path, f) for f in inside if _known_format(f)]
            if not usable:
                raise CatalogError(f"{path}: directory holds no .csv, .tsv or .parquet catalog files")
            files += usable
        else:
            files.append(str(path))
    return files


def _location(given: str, found: str) -> str:
    """A file found under ``given`` as a location of the same kind: a URL stays a URL (``find`` drops the scheme)."""
    if not storage.is_url(given):
        return found
    return f"{str(given).split('://', 1)[0]}://{found.split('://', 1)[-1]}"


def _known_format(path: str) -> bool:
    try:
        catalog_format(path)
        return True
    except CatalogError:
        return False


def check_catalog_files(paths: list[str]) -> None:
    """Fail fast, before any cluster work, on files that are missing, unreadable or of an unknown format."""
    if not paths:
        raise CatalogError("no catalog files given")
    for path in paths:
        catalog_format(path)
        fs, inner = storage.filesystem(path)
        try:
            found = fs.info(inner)["type"]  # an object store's permission or endpoint errors pass through
        except FileNotFoundError:
            found = None
        if found != "file":
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

# --------------------------------------------------------------------------------------------------
# Reading in blocks. A file is planned into blocks (byte ranges of plain text that start at a record
# boundary, Parquet row groups, or a whole compressed file), and each block is read as a stream of
# bounded record batches: memory per task depends on these sizes, never on the size of the file.

BLOCK_BYTES = 64 << 20  # plain CSV/TSV is split into byte ranges of about this size
PARSE_BLOCK_BYTES = 16 << 20  # pyarrow's parse block: the batch size, and the largest record that can be read
PARQUET_BATCH_ROWS = 20_000
SCAN_CHUNK_BYTES = 8 << 20  # the boundary scan reads this much at a time
ROW_ORDER_BITS = 40  # input_order = file index << 40 | row number: "last wins" follows files, then rows
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".zst")


@dataclass(frozen=True)
class Block:
    """One task's share of a catalog file; ``first_row`` data rows of the file come before it."""

    path: str
    file_index: int
    block_index: int
    kind: str  # "text", "parquet" or "unreadable"
    first_row: int = 0
    start: int = 0  # byte range of a text block; end None: to the end of the (decompressed) file
    end: int | None = None
    delimiter: str = ","
    names: tuple[str, ...] | None = None  # column names when the block starts after the header line
    row_group: int | None = None
    reason: str | None = None


def plan_file(path: str, file_index: int, block_bytes: int = BLOCK_BYTES) -> list[Block]:
    """The blocks of one file; never raises on bad content (an unreadable file is one ``unreadable`` block).

    Plain text is split only where the quote-aware scan proves a record boundary; compressed text, UTF-16
    and files whose quoting the scan cannot follow stay one block that is streamed from the start.
    """
    path = str(path)
    fmt = catalog_format(path)
    try:
        fs, inner = storage.filesystem(path)
        if fs.size(inner) == 0:
            return []
        if fmt == "parquet":
            with storage.open_file(path) as handle:
                meta = pq.read_metadata(handle)
            blocks, first = [], 0
            for group in range(meta.num_row_groups):
                blocks.append(Block(path, file_index, group, "parquet", first_row=first, row_group=group))
                first += meta.row_group(group).num_rows
            return blocks
        delimiter = "," if fmt == "csv" else "\t"
        whole = [Block(path, file_index, 0, "text", delimiter=delimiter)]
        if path.lower().endswith(COMPRESSED_SUFFIXES):
            return whole
        with storage.open_file(path) as handle:
            head = handle.read(4)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return whole
        skip = len(codecs.BOM_UTF8) if head.startswith(codecs.BOM_UTF8) else 0
        cuts = record_cuts(path, delimiter, skip, block_bytes)
        if cuts is None:
            return whole
        header_end, starts = cuts
        names = tuple(_probe_names(Block(path, file_index, 0, "text", end=header_end, delimiter=delimiter)) or ())
        if not names:
            return whole
        ends = [s for s, _ in starts[1:]] + [None]
        return [Block(path, file_index, i, "text", first_row=rows, start=s, end=e, delimiter=delimiter, names=names)
                for i, ((s, rows), e) in enumerate(zip(starts, ends))]
    except Exception as exc:  # noqa: BLE001 - a broken file is reported as a reject, the run goes on
        return [Block(path, file_index, 0, "unreadable", reason=_unreadable(exc))]


def record_cuts(path: str, delimiter: str, skip: int, block_bytes: int) -> tuple[int, list[tuple[int, int]]] | None:
    """Where blocks of about ``block_bytes`` may start: ``(header end, [(offset, data rows before), ...])``.

    A newline ends a record when an even number of quotes precede it. That parity rule is exactly how
    pyarrow (and Python's csv) read a file only when every quote that opens a quoted section stands at the
    start of a field (or right after a closing quote: an escaped ``""``); the scan checks that for every
    quote and gives up (None) otherwise, or on a lone CR line end, or when the file has no data line.
    Records are counted as pyarrow counts them: blank lines are not records. Memory: one scan chunk.
    """
    quote, newline, cr, sep = ord('"'), ord("\n"), ord("\r"), ord(delimiter)
    quotes = 0  # quotes seen before the current chunk
    last_quote = -2  # absolute position of the last quote seen
    last_byte = -1  # byte before the current chunk (-1: start of the file, a field start)
    last_end = skip - 1  # absolute position of the last record-ending newline
    cr_at_chunk_end = False
    records = 0  # non-blank records ended so far, the header included
    header_end = None
    starts: list[tuple[int, int]] = []
    offset = skip
    with storage.open_file(path) as handle:
        handle.seek(skip)
        while chunk := handle.read(SCAN_CHUNK_BYTES):
            a = np.frombuffer(chunk, dtype=np.uint8)
            if cr_at_chunk_end and a[0] != newline:
                return None
            q = np.flatnonzero(a == quote)
            openers = q[(np.arange(len(q)) + quotes) % 2 == 0]
            if len(openers):
                before = np.where(openers > 0, a[np.maximum(openers - 1, 0)], last_byte)
                previous_quote = np.full(len(openers), last_quote, dtype=np.int64)
                index = np.searchsorted(q, openers)
                has_previous = index > 0
                previous_quote[has_previous] = q[index[has_previous] - 1] + offset
                field_start = (before == sep) | (before == newline) | (before == cr) | (before == -1)
                escaped = previous_quote == openers + offset - 1
                if not (field_start | escaped).all():
                    return None
            outside = lambda positions: (np.searchsorted(q, positions) + quotes) % 2 == 0  # noqa: E731
            crs = np.flatnonzero(a == cr)
            crs = crs[outside(crs)]
            inner = crs[crs + 1 < len(a)]
            if len(inner) and (a[inner + 1] != newline).any():
                return None
            cr_at_chunk_end = bool(len(crs)) and crs[-1] == len(a) - 1
            ends = np.flatnonzero(a == newline)
            ends = ends[outside(ends)]
            if len(ends):
                absolute = ends + offset
                previous = np.concatenate([[last_end], absolute[:-1]])
                length = absolute - previous - 1
                byte_before = np.where(ends > 0, a[np.maximum(ends - 1, 0)], last_byte)
                blank = (length == 0) | ((length == 1) & (byte_before == cr))
                counted = records + np.cumsum(~blank)
                if header_end is None and counted[-1] > 0:
                    first = int(np.argmax(counted > 0))
                    header_end = int(absolute[first]) + 1
                    starts.append((header_end, 0))
                while header_end is not None:
                    target = starts[-1][0] + block_bytes - 1
                    at = int(np.searchsorted(absolute, target))
                    if at >= len(absolute):
                        break
                    starts.append((int(absolute[at]) + 1, int(counted[at]) - 1))
                records = int(counted[-1])
                last_end = int(absolute[-1])
            if len(q):
                last_quote = int(q[-1]) + offset
            quotes += len(q)
            last_byte = int(a[-1])
            offset += len(a)
    if header_end is None or header_end >= offset:
        return None
    if starts[-1][0] >= offset:  # the last cut fell at the very end of the file
        starts.pop()
    return header_end, starts


def raw_batches(block: Block) -> Iterator[pd.DataFrame]:
    """The rows of one block as text frames (columns of :data:`RAW_META`) of bounded size.

    Never raises on bad content: rows pyarrow cannot delimit are ``malformed line`` rejects that keep
    their row number; a file or block that cannot be parsed further ends with one ``unreadable file``
    reject; a compressed file cut short keeps the rows before the cut and adds one ``truncated file``
    reject holding the incomplete last line.
    """
    if block.kind == "unreadable":
        yield _file_reject(block, block.reason)
    elif block.kind == "postgres":  # a key range of a PostgreSQL table (imagerank.catalog.postgres)
        from imagerank.catalog.postgres import table_batches

        yield from table_batches(block)
    elif block.kind == "parquet":
        yield from _parquet_batches(block)
    else:
        yield from _text_batches(block)


def read_raw(path: str, file_index: int, block_bytes: int = BLOCK_BYTES) -> pd.DataFrame:
    """All rows of one file as one text frame: for small files, tests and benchmarks (the job reads blocks)."""
    frames = [frame for block in plan_file(path, file_index, block_bytes) for frame in raw_batches(block)]
    return pd.concat([RAW_META, *frames], ignore_index=True).astype(RAW_META.dtypes.to_dict()) if frames else RAW_META.copy()


def _parquet_batches(block: Block) -> Iterator[pd.DataFrame]:
    """The rows of one row group; a read error ends it with one reject (the rows before it stay)."""
    try:
        with storage.open_file(block.path) as handle:
            yield from _parquet_frames(block, handle)
    except Exception as exc:  # noqa: BLE001
        yield _file_reject(block, f"unreadable row group {block.row_group}: {_unreadable(exc)}")


def _parquet_frames(block: Block, handle) -> Iterator[pd.DataFrame]:
    done = 0
    batches = pq.ParquetFile(handle).iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=[block.row_group],
                                                  use_threads=False)
    for batch in batches:
        frame = _table_to_text_frame(pa.Table.from_batches([batch]))
        rows = np.arange(block.first_row + done + 1, block.first_row + done + len(frame) + 1)
        done += len(frame)
        yield _numbered(frame, block, rows)


def _text_batches(block: Block) -> Iterator[pd.DataFrame]:
    ended_early: list[tuple[str, str]] = []  # (why, incomplete last line) when a compressed stream is cut
    try:
        names = list(block.names) if block.names else _probe_names(block)
    except Exception as exc:  # noqa: BLE001
        yield _file_reject(block, _unreadable(exc))
        return
    if not names:  # nothing but blank text: no rows; still report a cut stream
        for _ in _utf8_chunks(block, ended_early):
            pass
    else:
        yield from _parse_text(block, names, ended_early)
    for why, tail in ended_early:
        yield _file_reject(block, f"truncated file: {why}", raw=tail)


def _parse_text(block: Block, names: list[str], ended_early: list) -> Iterator[pd.DataFrame]:
    has_header = block.names is None
    invalid: list[dict] = []

    def on_invalid(row) -> str:
        number = row.number - (1 if has_header else 0) if row.number > 0 else None
        invalid.append({"number": number, "raw": (row.text or "")[:RAW_TEXT_CHARS],
                        "reason": f"malformed line: data row {block.first_row + number if number else '?'} has "
                                  f"{row.actual_columns} fields, expected {row.expected_columns}"})
        return "skip"

    read = pacsv.ReadOptions(use_threads=False, block_size=PARSE_BLOCK_BYTES,
                             column_names=None if has_header else names)
    parse = pacsv.ParseOptions(delimiter=block.delimiter, newlines_in_values=True, invalid_row_handler=on_invalid)
    convert = pacsv.ConvertOptions(column_types={name: pa.string() for name in names},
                                   strings_can_be_null=False, quoted_strings_can_be_null=False)
    numbering = _RowNumbers()
    try:
        reader = pacsv.open_csv(pa.PythonFile(_ByteStream(_utf8_chunks(block, ended_early)), mode="r"),
                                read_options=read, parse_options=parse, convert_options=convert)
        for batch in reader:
            numbering.skip([bad["number"] for bad in invalid])
            yield from _invalid_frames(block, invalid)
            frame = _table_to_text_frame(pa.Table.from_batches([batch]))
            yield _numbered(frame, block, block.first_row + numbering.take(len(frame)))
    except Exception as exc:  # noqa: BLE001 - the rest of the block is one reject, the rows before it stay
        yield from _invalid_frames(block, invalid)
        yield _file_reject(block, _unreadable(exc))
        return
    yield from _invalid_frames(block, invalid)


class _RowNumbers:
    """Row numbers within a block for the rows pyarrow returns, skipping those it reported as malformed."""

    def __init__(self):
        self.next = 1
        self.taken: list[int] = []  # malformed rows' numbers not yet passed

    def skip(self, numbers: list[int | None]) -> None:
        self.taken = sorted({*self.taken, *(n for n in numbers if n is not None and n >= self.next)})

    def take(self, count: int) -> np.ndarray:
        candidates = np.arange(self.next, self.next + count + len(self.taken), dtype=np.int64)
        chosen = candidates[~np.isin(candidates, self.taken)][:count]
        if count:
            self.next = int(chosen[-1]) + 1
            self.taken = [n for n in self.taken if n >= self.next]
        return chosen


def _invalid_frames(block: Block, invalid: list[dict]) -> Iterator[pd.DataFrame]:
    if not invalid:
        return
    bad = pd.DataFrame(invalid)
    invalid.clear()
    rows = bad["number"].map(lambda n: block.first_row + n if n is not None and not pd.isna(n) else None)
    frame = pd.DataFrame({"reason": bad["reason"], "raw": bad["raw"]})
    yield _numbered(frame, block, rows.to_numpy(dtype=object), keep_reason=True)


def _numbered(frame: pd.DataFrame, block: Block, rows, keep_reason: bool = False) -> pd.DataFrame:
    """Attach file, row number and input order; rows without a number (they could not be delimited) order last."""
    frame["source_file"] = block.path
    numbers = pd.array(rows, dtype="Int64")
    frame["source_row"] = numbers
    order = numbers.to_numpy(dtype="int64", na_value=1 << (ROW_ORDER_BITS - 1))
    frame["input_order"] = order + (block.file_index << ROW_ORDER_BITS)
    if not keep_reason:
        frame["reason"] = None
        frame["raw"] = None
    for column in RAW_META.columns:
        if column not in frame:
            frame[column] = None
    return frame[RAW_META.columns].astype(RAW_META.dtypes.to_dict())


def _file_reject(block: Block, reason: str, raw: str | None = None) -> pd.DataFrame:
    """One reject for what could not be read as rows (no row number: it could not be delimited)."""
    frame = pd.DataFrame({"reason": [reason[:RAW_TEXT_CHARS]], "raw": [None if raw is None else raw[:RAW_TEXT_CHARS]]})
    return _numbered(frame, block, [None], keep_reason=True)


def _unreadable(exc: Exception) -> str:
    return f"unreadable file: {type(exc).__name__}: {exc}"[:RAW_TEXT_CHARS]


def _probe_names(block: Block) -> list[str]:
    """Header names of a text block that starts at the beginning of its file ([] for blank text)."""
    read = pacsv.ReadOptions(use_threads=False, block_size=PARSE_BLOCK_BYTES)
    parse = pacsv.ParseOptions(delimiter=block.delimiter, newlines_in_values=True,
                               invalid_row_handler=lambda row: "skip")
    try:
        reader = pacsv.open_csv(pa.PythonFile(_ByteStream(_utf8_chunks(block, [])), mode="r"),
                                read_options=read, parse_options=parse)
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            return []
        raise CatalogError(f"{block.path}: cannot be parsed as {block.delimiter!r}-separated text: {exc}") from exc
    names = list(reader.schema.names)
    reader.close()
    return names


class _ByteStream(io.RawIOBase):
    """A readable file over an iterator of byte chunks, for pyarrow's streaming CSV reader."""

    def __init__(self, chunks: Iterator[bytes]):
        self.chunks = chunks
        self.buffer = bytearray()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buffer) < size:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            self.buffer += chunk
        size = len(self.buffer) if size < 0 else min(size, len(self.buffer))
        out = bytes(self.buffer[:size])
        del self.buffer[:size]
        return out

    def readinto(self, target) -> int:
        data = self.read(len(target))
        target[:len(data)] = data
        return len(data)


def _utf8_chunks(block: Block, ended_early: list) -> Iterator[bytes]:
    """The block's bytes as valid UTF-8: a UTF-8 BOM dropped, UTF-16 (with BOM) decoded, other undecodable
    bytes as U+FFFD, so that pyarrow always sees UTF-8 and a bad byte costs one value, not the file.

    Blocks of plain text start after a newline, which never falls inside a UTF-8 sequence: decoding a
    block alone gives the same text as decoding the whole file. A compressed stream that ends early
    appends (why, incomplete last line) to ``ended_early`` and holds that line back from the parser.
    """
    compressed = block.path.lower().endswith(COMPRESSED_SUFFIXES)
    problem: list[str] = []
    source = _decompressed_chunks(block.path, problem) if compressed else _byte_range(block.path, block.start, block.end)
    decoder = None
    held = b""
    for chunk in _at_least(source, 3):
        if decoder is None:
            encoding = "utf-8"
            if block.start == 0 and chunk.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                encoding = "utf-16"
            elif block.start == 0 and chunk.startswith(codecs.BOM_UTF8):
                chunk = chunk[len(codecs.BOM_UTF8):]
            decoder = codecs.getincrementaldecoder(encoding)("replace")
        data = held + decoder.decode(chunk).encode("utf-8")
        if compressed:  # hold the last, maybe incomplete, line until the stream goes on
            cut = data.rfind(b"\n") + 1
            data, held = data[:cut], data[cut:]
        if data:
            yield data
    tail = held + (decoder.decode(b"", final=True).encode("utf-8") if decoder else b"")
    if problem:
        ended_early.append((problem[0], tail.decode("utf-8", "replace")))
    elif tail:
        yield tail


def _at_least(chunks: Iterator[bytes], size: int) -> Iterator[bytes]:
    """The same bytes, the first chunk holding at least ``size`` of them (for looking at a BOM)."""
    head, started = b"", False
    for chunk in chunks:
        if not started:
            head += chunk
            if len(head) < size:
                continue
            chunk, head, started = head, b"", True
        yield chunk
    if head:
        yield head


def _byte_range(path: str, start: int, end: int | None) -> Iterator[bytes]:
    with storage.open_file(path) as handle:
        handle.seek(start)
        left = None if end is None else end - start
        while left is None or left > 0:
            chunk = handle.read(1 << 20 if left is None else min(1 << 20, left))
            if not chunk:
                return
            if left is not None:
                left -= len(chunk)
            yield chunk


def _decompressed_chunks(path: str, problem: list[str]) -> Iterator[bytes]:
    """The decompressed bytes of ``path``; a cut or corrupt stream ends after what came before the damage
    and appends why to ``problem``. Concatenated gzip members and bz2 streams are read one after another."""
    import bz2
    import zlib

    lower = path.lower()
    factory = (lambda: zlib.decompressobj(16 + zlib.MAX_WBITS)) if lower.endswith(".gz") else bz2.BZ2Decompressor
    try:
        if lower.endswith(".zst"):
            with storage.open_file(path) as handle, pa.input_stream(handle, compression="zstd") as stream:
                while chunk := stream.read(1 << 20):
                    yield chunk
            return
        with storage.open_file(path) as handle:
            decoder = factory()
            while block := handle.read(1 << 20):
                while block:
                    yield decoder.decompress(block)
                    block = decoder.unused_data if decoder.eof else b""
                    if block:  # a concatenated member starts here
                        decoder = factory()
        if not decoder.eof:
            problem.append("compressed stream ends before its end marker")
    except (OSError, EOFError, ValueError, zlib.error, pa.ArrowException) as exc:
        problem.append(f"{type(exc).__name__}: {exc}")


def _table_to_text_frame(table: pa.Table | None) -> pd.DataFrame:
    columns = {}
    for name in table.column_names:
        clean = name.strip().lstrip("\ufeff")
        column = table[name]
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            columns[clean] = column.to_pandas(types_mapper=None).astype(object).to_numpy()
        else:
            columns[clean] = [_as_text(v) for v in column.to_pylist()]
    return pd.DataFrame(columns, index=pd.RangeIndex(table.num_rows))


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
    meta, reason = parse_meta_data(record.get("meta_data") or "")
    if reason:
        return None, f"meta_data {reason}"
    tags, reason = parse_tags(record.get("tags") or "")
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
