"""The catalog read from its own PostgreSQL table (Openverse's ``image``), in parallel on the Dask workers.

``--catalog 'postgresql://USER[:PASS]@HOST:PORT/DB?table=image[&key=id]'``: the driver asks one question
(``min``, ``max`` and ``count`` of the numeric key, in a repeatable-read transaction whose snapshot it
exports) and plans one task per key range; each task imports that snapshot, so every range sees the same
table state the count was taken from, and streams its rows as Arrow batches through ADBC (the fastest of
the readers measured in ``benchmarks/bench_postgres.py``, and the only one that can import a snapshot).
No row passes through the driver.

Every column is cast to text in the query: a row then reaches validation as exactly the text a CSV export
of the table holds (``jsonb`` as its JSON text, timestamps with their offset), so typing, JSON parsing and
rejects are those of catalog files. A row's ``source_row`` is its key (a person finds it with
``WHERE id = ...``). The password never leaves this module: rows, rejects, run records and error messages
name the table by :func:`masked` URL.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import pandas as pd
import pyarrow as pa

from imagerank.catalog.schema import INT_COLUMNS, TEXT_COLUMNS, TIME_COLUMNS

SCHEMES = ("postgresql", "postgres")
CATALOG_COLUMNS = ["identifier", *TEXT_COLUMNS, *INT_COLUMNS, *TIME_COLUMNS, "meta_data", "tags", "watermarked"]
ROWS_PER_TASK = 200_000  # rows one task reads (streamed in batches: memory depends on the batch, not this)
BATCH_BYTES = 16 << 20  # ADBC's batch size hint
ROW_ORDER_BITS = 40  # as for files: input_order = source index << 40 | key
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_INTEGER_TYPES = ("smallint", "integer", "bigint")


class TableError(ValueError):
    """A PostgreSQL catalog that cannot be read (bad URL, unreachable server, no such table or key)."""


def is_postgres_url(location) -> bool:
    return str(location).split("://", 1)[0].lower() in SCHEMES and "://" in str(location)


@dataclass(frozen=True, repr=False)
class TableSource:
    """A parsed ``postgresql://...?table=T[&key=id]`` location; its repr (in Dask's logs of a failed task's
    arguments, for one) shows the masked name only."""

    connection_url: str  # libpq URL without imagerank's parameters (holds the password: never print it)
    table: str
    key: str
    name: str  # the URL with the password masked: what rows, rejects and records show

    @classmethod
    def parse(cls, location: str) -> "TableSource":
        parts = urlsplit(str(location))
        if parts.scheme.lower() not in SCHEMES:
            raise TableError(f"{masked(location)}: not a postgresql:// URL")
        params = parse_qsl(parts.query, keep_blank_values=True)
        ours = {k: v for k, v in params if k in ("table", "key")}
        table, key = ours.get("table", ""), ours.get("key", "id")
        if not table:
            raise TableError(f"{masked(location)}: name the table, e.g. {masked(location).split('?')[0]}?table=image")
        if not all(_NAME.match(p) for p in table.split(".")) or table.count(".") > 1 or not _NAME.match(key):
            raise TableError(f"{masked(location)}: table and key must be plain SQL names, not {table!r} / {key!r}")
        rest = urlencode([(k, v) for k, v in params if k not in ("table", "key")])
        connection = urlunsplit(("postgresql", parts.netloc, parts.path, rest, ""))
        return cls(connection, table, key, masked(location))

    def __repr__(self) -> str:
        return f"TableSource({self.name!r})"


def masked(location: str) -> str:
    """The URL with its password replaced by ``***`` (and nothing else changed)."""
    text = str(location)
    parts = urlsplit(text) if "://" in text else None
    if parts is None or parts.password is None:
        return text
    user, _, host = parts.netloc.rpartition("@")
    user = user.split(":", 1)[0]
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


def scrub(text: str, source: TableSource) -> str:
    """``text`` (an error message) with the source's password and full URL masked wherever they appear."""
    password = urlsplit(source.connection_url).password
    text = str(text).replace(source.connection_url, masked(source.connection_url))
    return text.replace(password, "***") if password else text


def quote(name: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


def read_columns(available: list[str]) -> list[str]:
    """The catalog columns the table has, in catalog order."""
    have = set(available)
    return [c for c in CATALOG_COLUMNS if c in have]


def range_query(table: str, columns: list[str], low: int, high: int, key: str = "id") -> str:
    """One key range's rows, every catalog column as text (what a CSV export of the table holds)."""
    selected = ", ".join(f"{quote(c)}::text AS {quote(c)}" for c in columns)
    return (f"SELECT {quote(key)}::bigint AS __key, {selected} FROM {quote(table)} "
            f"WHERE {quote(key)} BETWEEN {int(low)} AND {int(high)}")


# --------------------------------------------------------------------------------------------------
# Planning (on the driver: metadata and one aggregate query, never rows).

@dataclass(frozen=True)
class TableRange:
    """One task's share of a table: the rows whose key lies in [low, high], as of ``snapshot``."""

    source: TableSource
    columns: tuple[str, ...]
    file_index: int
    block_index: int
    low: int
    high: int
    snapshot: str | None = None
    kind: str = "postgres"

    @property
    def path(self) -> str:
        return self.source.name


@dataclass
class TablePlan:
    ranges: list[TableRange]
    rows: int  # count(*) of the table in the exported snapshot: the rows the ingest must account for


def _connect(source: TableSource):
    import psycopg

    try:
        return psycopg.connect(source.connection_url, connect_timeout=30, autocommit=True)
    except psycopg.Error as exc:
        raise TableError(f"{source.name}: cannot connect: {scrub(str(exc).strip(), source)}") from None


def table_columns(connection, source: TableSource) -> dict[str, str]:
    """Column name -> data type of the table (an empty dict when there is no such table)."""
    schema, _, table = source.table.rpartition(".")
    rows = connection.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s "
        "AND table_schema = COALESCE(NULLIF(%s, ''), current_schema()) ORDER BY ordinal_position",
        (table, schema)).fetchall()
    return dict(rows)


def check_table(location: str) -> str:
    """Fail fast (before any cluster work) on an unreachable server, a missing table, key or identifier column.
    Returns the location unchanged."""
    source = TableSource.parse(location)
    with _connect(source) as connection:
        _checked_columns(connection, source)
    return location


def _checked_columns(connection, source: TableSource) -> list[str]:
    types = table_columns(connection, source)
    if not types:
        raise TableError(f"{source.name}: no table {source.table!r} in this database")
    if types.get(source.key) not in _INTEGER_TYPES:
        raise TableError(f"{source.name}: the key column {source.key!r} must be an integer column "
                         f"(found {types.get(source.key) or 'no such column'}; choose one with &key=NAME)")
    columns = read_columns(list(types))
    if "identifier" not in columns:
        raise TableError(f"{source.name}: table {source.table!r} has no identifier column")
    return columns


@contextmanager
def planned_tables(locations: list[str], first_index: int = 0, rows_per_task: int = ROWS_PER_TASK
                   ) -> Iterator[list[TablePlan]]:
    """Plan each table into key ranges, holding (for the block) the exported snapshot every range reads.

    The driver's repeatable-read transaction stays open while the tasks run: closing it would free the
    snapshot, so the ranges must be read inside the ``with`` block.
    """
    connections, plans = [], []
    try:
        for offset, location in enumerate(locations):
            source = TableSource.parse(location)
            connection = _connect(source)
            connections.append(connection)
            try:
                columns = _checked_columns(connection, source)
                connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                snapshot = connection.execute("SELECT pg_export_snapshot()").fetchone()[0]
                low, high, rows = connection.execute(
                    f"SELECT min({quote(source.key)}), max({quote(source.key)}), count(*) FROM {quote(source.table)}"
                ).fetchone()
            except Exception as exc:  # noqa: BLE001 - any driver error, with the password masked
                if isinstance(exc, TableError):
                    raise
                raise TableError(f"{source.name}: {scrub(str(exc).strip(), source)}") from None
            ranges = []
            if rows:
                tasks = max(1, -(-int(rows) // rows_per_task))
                step = -(-(int(high) - int(low) + 1) // tasks)
                for i, start in enumerate(range(int(low), int(high) + 1, step)):
                    ranges.append(TableRange(source, tuple(columns), first_index + offset, i, start,
                                             min(start + step - 1, int(high)), snapshot))
            plans.append(TablePlan(ranges, int(rows)))
        yield plans
    finally:
        for connection in connections:
            connection.close()


# --------------------------------------------------------------------------------------------------
# Reading one range (on a worker).

def table_batches(part: TableRange) -> Iterator[pd.DataFrame]:
    """The range's rows as text frames (columns of ``RAW_META``), streamed batch by batch.

    A failure part-way raises (with the password masked): the task is retried or the ingest fails, but rows
    are never silently missing, and the driver checks the rows read against the table's count.
    """
    import adbc_driver_postgresql.dbapi as adbc

    from imagerank.catalog.ingest import RAW_META, _table_to_text_frame

    source = part.source
    try:
        with adbc.connect(source.connection_url, autocommit=True) as connection, connection.cursor() as cursor:
            cursor.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(BATCH_BYTES)})
            if part.snapshot:
                cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                cursor.execute(f"SET TRANSACTION SNAPSHOT '{part.snapshot}'")
            cursor.execute(range_query(source.table, list(part.columns), part.low, part.high, source.key))
            for batch in cursor.fetch_record_batch():
                yield _rows(pa.Table.from_batches([batch]), part, RAW_META, _table_to_text_frame)
            if part.snapshot:
                cursor.execute("COMMIT")
    except Exception as exc:  # noqa: BLE001 - re-raised with the password masked
        raise TableError(f"{source.name}: reading {source.key} {part.low}..{part.high}: "
                         f"{scrub(f'{type(exc).__name__}: {exc}', source)}") from None


def _rows(table: pa.Table, part: TableRange, raw_meta: pd.DataFrame, to_text) -> pd.DataFrame:
    keys = table.column("__key").to_numpy()
    frame = to_text(table.drop_columns(["__key"]))
    frame["source_file"] = part.source.name
    frame["source_row"] = pd.array(keys, dtype="Int64")
    frame["input_order"] = keys.astype(np.int64) + (part.file_index << ROW_ORDER_BITS)
    frame["reason"] = None
    frame["raw"] = None
    for column in raw_meta.columns:
        if column not in frame:
            frame[column] = None
    return frame[raw_meta.columns].astype(raw_meta.dtypes.to_dict())


def table_fingerprint(location: str) -> dict:
    """What a run records of a table (never the password): the masked URL, key bounds, row count, and the
    table's insert/update/delete counters, so that an unchanged table is recognised without reading rows."""
    source = TableSource.parse(location)
    with _connect(source) as connection:
        _checked_columns(connection, source)
        key, table = quote(source.key), quote(source.table)
        low, high, rows = connection.execute(f"SELECT min({key}), max({key}), count(*) FROM {table}").fetchone()
        changes = connection.execute(
            "SELECT n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_all_tables WHERE relid = %s::regclass",
            (quote(source.table),)).fetchone()
    return {"path": source.name, "table": source.table, "key": source.key, "min_key": low, "max_key": high,
            "rows": int(rows), "modifications": int(changes[0]) if changes and changes[0] is not None else None}


def check_rows_read(plans: list[TablePlan], blocks: list, counts: list[dict]) -> None:
    """Every table's rows were read: the rows its ranges returned (good and rejected) equal its count(*)."""
    for plan in plans:
        ranges = {id(r) for r in plan.ranges}
        read = sum(c["good_rows"] + c["rejected_rows"] for block, c in zip(blocks, counts) if id(block) in ranges)
        if read != plan.rows:
            name = plan.ranges[0].source.name if plan.ranges else "a table"
            raise RuntimeError(f"ingest lost rows: {name} holds {plan.rows} rows, {read} were read")
