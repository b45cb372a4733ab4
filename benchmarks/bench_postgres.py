"""Reading the catalog's PostgreSQL ``image`` table in id-range partitions: Dask ``read_sql_table`` (SQLAlchemy +
psycopg, the reference), ADBC (``adbc_driver_postgresql``, Arrow) and ConnectorX, on the same table in one run.

    python -m benchmarks.bench_postgres [--quick] [--replicate K] [--partitions N] [--repeats R]

The real 1,899-row Openverse sample is loaded into a throwaway PostgreSQL server (Openverse's DDL: ``jsonb``
meta_data and tags, numeric key ``id``) and copied K times with fresh identifiers. Each method reads the whole
table as N id ranges (bounds from one min/max query) into pandas frames, one partition after another in this
process (the Dask job runs one such task per range on its workers): wall time per read, median over R repeats.
"native" reads each column in the driver's own type (jsonb parsed to Python objects by psycopg; JSON text from
ADBC and ConnectorX); "text" casts every column to text in the query (what the ingest validates: the same text
a CSV export of the table holds). "imagerank reader" is the project's own (ADBC, text, every range in one
exported snapshot), followed by validate_rows on its rows: the work each ingest task does next. Prints a table
and ends with one JSON line (rows/s and ratios to Dask).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import pandas as pd

from imagerank.catalog.postgres import read_columns, range_query
from imagerank.store.postgres_server import load_image_table, postgres_server
from imagerank.testing import SHARED_FIXTURES

NATIVE = ["identifier", "provider", "source", "foreign_identifier", "foreign_landing_url", "url", "thumbnail",
          "license", "license_version", "creator", "creator_url", "title", "category", "filetype", "width",
          "height", "filesize", "created_on", "updated_on", "meta_data", "tags", "watermarked"]


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def id_ranges(lo: int, hi: int, partitions: int) -> list[tuple[int, int]]:
    step = -(-(hi - lo + 1) // partitions)
    return [(start, min(start + step - 1, hi)) for start in range(lo, hi + 1, step)]


def read_dask(sqlalchemy_url: str, partitions: int) -> int:
    import dask
    import dask.dataframe as dd

    # object columns: dtypes inferred from the first rows break on later NULLs (an integer width, then NULL)
    meta = pd.DataFrame({c: pd.Series(dtype=object) for c in NATIVE}, index=pd.Index([], dtype="int64", name="id"))
    frame = dd.read_sql_table("image", sqlalchemy_url, index_col="id", columns=NATIVE, npartitions=partitions,
                              meta=meta)
    with dask.config.set(scheduler="synchronous"):
        return sum(len(part) for part in dask.compute(*frame.to_delayed()))


def read_adbc(url: str, ranges, query) -> int:
    import adbc_driver_postgresql.dbapi as adbc

    rows = 0
    for lo, hi in ranges:  # one connection per partition, as one task per range does on a worker
        with adbc.connect(url) as connection, connection.cursor() as cursor:
            cursor.execute(query(lo, hi))
            rows += len(cursor.fetch_arrow_table().to_pandas())
    return rows


def read_connectorx(url: str, ranges, query) -> int:
    import connectorx as cx

    return sum(len(cx.read_sql(url, query(lo, hi), return_type="arrow").to_pandas()) for lo, hi in ranges)


def read_imagerank(url: str, partitions: int, rows: int) -> list:
    """The project's reader as the ingest runs it: planned ranges of one exported snapshot, text frames."""
    from imagerank.catalog.postgres import planned_tables, table_batches

    with planned_tables([f"{url}?table=image"], rows_per_task=-(-rows // partitions)) as (plan,):
        return [frame for part in plan.ranges for frame in table_batches(part)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--replicate", type=int, default=None, help="copies of the sample (default 105: ~200k rows)")
    parser.add_argument("--partitions", type=int, default=8, help="id ranges (default 8)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per method (median; default 3)")
    args = parser.parse_args(argv)
    replicate = args.replicate or (5 if args.quick else 105)
    repeats = args.repeats or (1 if args.quick else 3)
    sample = SHARED_FIXTURES / "catalog" / "openverse_sample_images.csv"
    if not sample.is_file():
        raise SystemExit(f"the Openverse sample is missing: expected at {sample} (set IMAGERANK_SHARED_FIXTURES)")
    with postgres_server() as server:
        with server.connect() as connection:
            rows = load_image_table(connection, sample, "image", replicate=replicate)
            lo, hi = connection.execute("SELECT min(id), max(id) FROM image").fetchone()
        print(f"table image: {rows:,} rows (sample x {replicate}), ids {lo}..{hi}, {args.partitions} partitions, "
              f"median of {repeats}", file=sys.stderr)
        url = server.url()
        sqlalchemy_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
        ranges = id_ranges(lo, hi, args.partitions)
        columns = read_columns(NATIVE + ["id"])
        native = lambda a, b: f"SELECT id, {', '.join(NATIVE)} FROM image WHERE id BETWEEN {a} AND {b}"  # noqa: E731
        text = lambda a, b: range_query("image", columns, a, b)  # noqa: E731
        methods = {
            "dask read_sql_table (native)": lambda: read_dask(sqlalchemy_url, args.partitions),
            "adbc (native)": lambda: read_adbc(url, ranges, native),
            "connectorx (native)": lambda: read_connectorx(url, ranges, native),
            "adbc (text)": lambda: read_adbc(url, ranges, text),
            "connectorx (text)": lambda: read_connectorx(url, ranges, text),
            "imagerank reader (adbc text, snapshot)": lambda: read_imagerank(url, args.partitions, rows),
        }
        results = {}
        for name, fn in methods.items():
            seconds, count = timed(fn, repeats)
            if isinstance(count, list):  # the project's reader returns its frames: validate them next
                from imagerank.catalog.ingest import validate_rows

                frames, count = count, sum(len(f) for f in count)
                validate_s, _ = timed(lambda: [validate_rows(f) for f in frames], repeats)
            if count != rows:
                raise RuntimeError(f"{name} read {count} rows of {rows}")
            results[name] = seconds
            print(f"  {name}: {seconds:.3f} s", file=sys.stderr, flush=True)
    reference = results["dask read_sql_table (native)"]
    print(f"{'method':<40} {'median s':>9} {'rows/s':>10} {'x dask':>7}")
    for name, seconds in results.items():
        print(f"{name:<40} {seconds:>9.3f} {rows / seconds:>10,.0f} {reference / seconds:>7.2f}")
    print(f"{'(next step) validate_rows on those rows':<40} {validate_s:>9.3f} {rows / validate_s:>10,.0f}")
    figures = {"benchmark": "postgres_read", "rows": rows, "partitions": args.partitions, "repeats": repeats,
               "rows_per_s": {k: round(rows / v) for k, v in results.items()},
               "ratio_to_dask_read_sql_table": {k: round(reference / v, 2) for k, v in results.items()},
               "validate_rows_per_s": round(rows / validate_s)}
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
