"""Dask job: catalog files -> ``W/catalog/`` (valid, typed, de-duplicated) and ``W/rejects/``.

Two passes, nothing held in cluster memory between them: (1) one task per block (a byte range of plain
text, a Parquet row group, a whole compressed file) reads, validates and writes its good rows to a
staging dataset and its rejects to ``rejects/``; (2) the staged rows are shuffled on ``image_id`` and
each partition, de-duplicated (the last input row wins), is written to ``catalog/``. The counts come from
the Parquet footers of what was written; the driver holds only the block list and per-block counts.
"""

from __future__ import annotations

import math
import os
import sys
import uuid
from collections import Counter
from pathlib import Path

import dask
import dask.dataframe as dd
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import Client

from imagerank.catalog.ingest import (BLOCK_BYTES, Block, check_catalog_files, expand_catalog_paths, good_rows,
                                      mark_duplicates, plan_file, raw_batches, reason_kind, rejected_rows,
                                      validate_rows)
from imagerank.catalog.postgres import check_rows_read, is_postgres_url, masked, planned_tables
from imagerank.catalog.schema import CATALOG_SCHEMA, REJECTS_SCHEMA, empty_frame
from imagerank.cluster import progress_bar
from imagerank import datasets, io, storage

ROWS_PER_PARTITION = 250_000  # rows per de-duplicated catalog partition (and file)
STAGED_PARTITION_BYTES = 64 << 20  # validated rows read back for the shuffle in partitions of about this size


def run_ingest(client: Client, catalog_files: list[str], workdir: str | Path, *, block_bytes: int = BLOCK_BYTES,
               rows_per_partition: int = ROWS_PER_PARTITION) -> dict:
    """Read, validate and de-duplicate every catalog file; returns the reconciliation counts.

    ``block_bytes`` sizes the byte ranges plain text is split into; ``rows_per_partition`` the
    de-duplicated partitions (the largest piece of data one task holds after the shuffle).
    """
    tables = [str(c) for c in catalog_files if is_postgres_url(c)]  # postgresql://...?table=image
    files = expand_catalog_paths([str(f) for f in catalog_files if not is_postgres_url(f)])
    if files or not tables:
        check_catalog_files(files)
    with datasets.staging(workdir, STAGING) as staging, \
            datasets.publishing(workdir, "rejects") as rejects_dir, \
            datasets.publishing(workdir, "catalog") as catalog_dir, \
            planned_tables(tables, len(files)) as table_plans:
        plans = _run(client, [dask.delayed(plan_file)(f, i, block_bytes) for i, f in enumerate(files)],
                     "ingest: plan blocks")
        blocks = [block for plan in plans for block in plan] + [r for plan in table_plans for r in plan.ranges]
        read = _run(client, [dask.delayed(ingest_block)(b, staging, rejects_dir) for b in blocks],
                    "ingest: read + validate")
        check_rows_read(table_plans, blocks, read)  # rows counted from each table = rows read from it
        n_good = sum(r["good_rows"] for r in read)
        dedup = _deduplicate(client, staging, n_good, rows_per_partition, catalog_dir, rejects_dir)
        if not parquet_files(rejects_dir):
            write_parquet(empty_frame(REJECTS_SCHEMA), storage.join(rejects_dir, "part.empty.parquet"),
                          REJECTS_SCHEMA)
        by_reason = Counter()
        for counts in read + dedup:
            by_reason.update(counts["rejects_by_reason"])
        n_staged = parquet_rows(staging)
        n_catalog = parquet_rows(catalog_dir)
        n_rejected = parquet_rows(rejects_dir)
        n_input = n_staged + sum(r["rejected_rows"] for r in read)
        if n_input != n_catalog + n_rejected or n_staged != n_good:
            raise RuntimeError(f"ingest lost rows: {n_input} read, {n_catalog} catalog + {n_rejected} rejects "
                               f"written ({n_staged} of {n_good} validated rows staged)")
    return {"input_rows": n_input, "catalog_rows": n_catalog, "rejected_rows": n_rejected,
            "rejects_by_reason": {str(k): int(v) for k, v in sorted(by_reason.items())},
            "files": files + [masked(t) for t in tables], "blocks": len(blocks)}


STAGING = "ingest"  # the validated rows are staged in W/.ingest-staging-<id> (imagerank.datasets.staging)


def _deduplicate(client: Client, staging: str, n_good: int, rows_per_partition: int, catalog_dir: str,
                 rejects_dir: str) -> list[dict]:
    """Shuffle the staged rows on image_id and write each partition's winners and superseded rows."""
    if n_good == 0:
        write_parquet(empty_frame(CATALOG_SCHEMA), storage.join(catalog_dir, "part.000000.parquet"), CATALOG_SCHEMA)
        return []
    good = dd.read_parquet(staging, split_row_groups="infer", blocksize=STAGED_PARTITION_BYTES,
                           storage_options=storage.storage_options(staging) or None)
    partitions = max(1, math.ceil(n_good / rows_per_partition))
    shuffled = good.shuffle(on="image_id", npartitions=partitions)
    tasks = [dask.delayed(write_deduplicated)(part, i, catalog_dir, rejects_dir)
             for i, part in enumerate(shuffled.to_delayed())]
    return _run(client, tasks, "ingest: de-duplicate")


def _run(client: Client, tasks: list, label: str) -> list:
    """Compute small results (counts, block lists) on the cluster, with a progress bar on a terminal."""
    if not tasks:
        return []
    futures = client.compute(tasks)
    progress_bar(futures, label)
    return client.gather(futures)


# --------------------------------------------------------------------------------------------------
# Task functions: each reads and writes its own files and returns only counts.

def ingest_block(block: Block, staging_dir: str, rejects_dir: str) -> dict:
    """Validate one block batch by batch: good rows to the staging dataset, rejects to ``rejects/``."""
    name = f"{block.file_index:06d}-{block.block_index:06d}"
    counts = {"good_rows": 0, "rejected_rows": 0, "rejects_by_reason": Counter()}
    with BatchWriter(storage.join(staging_dir, f"part.{name}.parquet"), CATALOG_SCHEMA) as good_out, \
            BatchWriter(storage.join(rejects_dir, f"part.ingest-{name}.parquet"), REJECTS_SCHEMA) as rejects_out:
        for raw in raw_batches(block):
            checked = validate_rows(raw)
            good, bad = good_rows(checked), rejected_rows(checked)
            good_out.write(good)
            rejects_out.write(bad)
            counts["good_rows"] += len(good)
            counts["rejected_rows"] += len(bad)
            counts["rejects_by_reason"].update(bad["reason"].map(reason_kind))
    counts["rejects_by_reason"] = dict(counts["rejects_by_reason"])
    return counts


def write_deduplicated(rows: pd.DataFrame, index: int, catalog_dir: str, rejects_dir: str) -> dict:
    """One shuffled partition (every row of its image_ids): winners to ``catalog/``, the rest to ``rejects/``."""
    marked = mark_duplicates(rows)
    write_parquet(good_rows(marked), storage.join(catalog_dir, f"part.{index:06d}.parquet"), CATALOG_SCHEMA)
    superseded = rejected_rows(marked)
    if len(superseded):
        write_parquet(superseded, storage.join(rejects_dir, f"part.duplicates-{index:06d}.parquet"), REJECTS_SCHEMA)
    return {"rejects_by_reason": dict(Counter(superseded["reason"].map(reason_kind)))}


class BatchWriter:
    """A Parquet file written one batch (row group) at a time; created only if a batch has rows.

    Locally the file is moved into place only when complete; on object storage the object appears only
    when its upload completes. Either way a retried task overwrites, and the file sits in an unpublished
    version until the whole ingest succeeds.
    """

    def __init__(self, path: str | Path, schema: pa.Schema):
        self.path, self.schema, self.writer, self.handle = str(path), schema, None, None
        self.remote = storage.is_url(self.path)
        self.tmp = self.path if self.remote else str(Path(self.path).with_name(
            f".{Path(self.path).name}.tmp-{uuid.uuid4().hex[:8]}"))

    def write(self, frame: pd.DataFrame) -> None:
        if not len(frame):
            return
        table = pa.Table.from_pandas(frame[self.schema.names], schema=self.schema, preserve_index=False)
        if self.writer is None:
            self.handle = storage.open_file(self.tmp, "wb")
            self.writer = pq.ParquetWriter(self.handle, table.schema)
        self.writer.write_table(table)

    def __enter__(self):
        return self

    def __exit__(self, kind, *_):
        if self.writer is not None:
            self.writer.close()
            self.handle.close()
            if self.remote:
                if kind is not None:
                    io._remove(self.tmp)
            elif kind is None:
                os.replace(self.tmp, self.path)
            else:
                Path(self.tmp).unlink(missing_ok=True)
        return False


def write_parquet(frame: pd.DataFrame, path: str | Path, schema: pa.Schema) -> None:
    with BatchWriter(path, schema) as out:
        out.write(frame)
    if not storage.exists(path):  # no rows: still a file, so that the dataset has a schema
        fs, inner = storage.filesystem(path)
        pq.write_table(pa.Table.from_pandas(empty_frame(schema), schema=schema, preserve_index=False), inner,
                       filesystem=fs)


def parquet_files(directory: str | Path) -> list[str]:
    fs, path = storage.filesystem(directory)
    return sorted(fs.glob(f"{path.rstrip('/')}/*.parquet"))


def parquet_rows(directory: str | Path) -> int:
    """Rows of a Parquet dataset directory, from its files' footers (no data is read; the footers of all
    files fetched together: :func:`imagerank.io.parquet_row_groups`)."""
    fs, _ = storage.filesystem(directory)
    return sum(sum(groups) for groups in io.parquet_row_groups(fs, parquet_files(directory)))
