"""Dask job: ``W/scores/`` -> a PostgreSQL table the API reads (``imagerank export --to postgresql://...``).

Each partition is upserted by its own task on a worker, in one transaction: COPY into a temporary table,
then ``INSERT ... ON CONFLICT (identifier) DO UPDATE`` only where a value differs. Running it again with
the same scores changes nothing (idempotent); a retried task redoes its own partition. No row passes
through the driver, which only creates the table and adds up the counts.
"""

from __future__ import annotations

import io
from pathlib import Path

import dask
import dask.dataframe as dd
import pandas as pd
from distributed import Client

from imagerank import datasets
from imagerank.catalog.postgres import TableError, TableSource, quote, scrub
from imagerank.cluster import progress_bar

#: W/scores column -> table column, and the table's SQL type.
COLUMNS = {
    "image_id": ("identifier", "uuid PRIMARY KEY"),
    "popularity": ("popularity", "double precision NOT NULL"),
    "authority": ("authority", "double precision NOT NULL"),
    "popularity_source": ("popularity_source", "text"),
    "authority_source": ("authority_source", "text"),
    "model_version": ("model_version", "text"),
    "event_timestamp": ("event_timestamp", "timestamp with time zone"),
}


def read_scores(workdir: str | Path) -> dd.DataFrame:
    """The committed scores as a Dask frame (local or URL work directory)."""
    return datasets.read_ddf(workdir, "scores", columns=list(COLUMNS))


def run_export(client: Client, workdir: str | Path, to: str) -> dict:
    """Upsert every score row of ``W/scores`` into the table named by ``to``; returns the counts."""
    target = TableSource.parse(to)
    prepare_table(target)
    scores = read_scores(workdir)
    tasks = [dask.delayed(upsert_scores)(part, target) for part in scores.to_delayed()]
    futures = client.compute(tasks)
    progress_bar(futures, "export: upsert")
    counts = client.gather(futures)
    total = {key: sum(c[key] for c in counts) for key in ("rows", "inserted", "updated", "unchanged")}
    return {"table": target.name, "partitions": len(tasks), **total}


def prepare_table(target: TableSource) -> None:
    """Create the table when missing; refuse one that lacks a score column or a unique identifier."""
    import psycopg

    ddl = ", ".join(f"{quote(name)} {kind}" for name, kind in COLUMNS.values())
    try:
        with psycopg.connect(target.connection_url, connect_timeout=30, autocommit=True) as connection:
            connection.execute(f"CREATE TABLE IF NOT EXISTS {quote(target.table)} ({ddl})")
            schema, _, table = target.table.rpartition(".")
            have = {row[0] for row in connection.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                "AND table_schema = COALESCE(NULLIF(%s, ''), current_schema())", (table, schema))}
    except psycopg.Error as exc:
        raise TableError(f"{target.name}: {scrub(str(exc).strip(), target)}") from None
    missing = [name for name, _ in COLUMNS.values() if name not in have]
    if missing:
        raise TableError(f"{target.name}: table {target.table!r} exists without the score columns {', '.join(missing)}")


def upsert_scores(scores: pd.DataFrame, target: TableSource) -> dict:
    """One partition in one transaction: COPY into a temporary table, then insert new identifiers and update
    those whose values changed (unchanged rows are not rewritten)."""
    import psycopg

    names = [name for name, _ in COLUMNS.values()]
    frame = scores[list(COLUMNS)].rename(columns={k: v for k, (v, _) in COLUMNS.items()})
    text = io.StringIO()
    frame.to_csv(text, header=False, index=False, date_format="%Y-%m-%d %H:%M:%S.%f%z")
    columns = ", ".join(quote(n) for n in names)
    values = ", ".join(f"{quote(n)} = EXCLUDED.{quote(n)}" for n in names[1:])
    changed = " OR ".join(f"{quote(target.table)}.{quote(n)} IS DISTINCT FROM EXCLUDED.{quote(n)}" for n in names[1:])
    try:
        with psycopg.connect(target.connection_url, connect_timeout=30) as connection:
            connection.execute(f"CREATE TEMP TABLE imagerank_scores (LIKE {quote(target.table)}) ON COMMIT DROP")
            with connection.cursor() as cursor:
                with cursor.copy(f"COPY imagerank_scores ({columns}) FROM STDIN WITH (FORMAT csv)") as copy:
                    copy.write(text.getvalue())
                cursor.execute(f"INSERT INTO {quote(target.table)} ({columns}) SELECT {columns} FROM imagerank_scores "
                               f"ON CONFLICT (identifier) DO UPDATE SET {values} WHERE {changed} "
                               "RETURNING (xmax = 0) AS inserted")
                written = [row[0] for row in cursor.fetchall()]
    except psycopg.Error as exc:
        raise TableError(f"{target.name}: upserting {len(frame)} scores: {scrub(str(exc).strip(), target)}") from None
    inserted = sum(written)
    return {"rows": len(frame), "inserted": inserted, "updated": len(written) - inserted,
            "unchanged": len(frame) - len(written)}
