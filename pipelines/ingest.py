"""Dask job: catalog files -> ``W/catalog/`` (valid, typed, de-duplicated) and ``W/rejects/``."""

from __future__ import annotations

import math
from pathlib import Path

import dask
import dask.dataframe as dd
from distributed import Client

from imagerank.catalog.ingest import RAW_META, check_catalog_files, expand_catalog_paths, good_rows, mark_duplicates, read_raw, reason_kind, rejected_rows, validate_rows
from imagerank.catalog.schema import CATALOG_SCHEMA, REJECTS_SCHEMA
from imagerank.cluster import persist
from imagerank.io import write_ddf

ROWS_PER_PARTITION = 250_000


def run_ingest(client: Client, catalog_files: list[str], workdir: str | Path) -> dict:
    """Read, validate and de-duplicate every catalog file; returns the reconciliation counts."""
    files = expand_catalog_paths([str(f) for f in catalog_files])
    check_catalog_files(files)
    workdir = Path(workdir)
    raw = dd.from_delayed([dask.delayed(read_raw)(f, i) for i, f in enumerate(files)], meta=RAW_META,
                          verify_meta=False)
    checked = persist(client, raw.map_partitions(validate_rows, meta=validate_rows(RAW_META)), "ingest: validate")
    n_input = int(checked.map_partitions(len).sum().compute())
    good = checked.map_partitions(good_rows, meta=good_rows(checked._meta))
    n_good = int(good.map_partitions(len).sum().compute())
    partitions = max(1, math.ceil(n_good / ROWS_PER_PARTITION))
    marked = good.shuffle(on="image_id", npartitions=partitions)
    marked = persist(client, marked.map_partitions(mark_duplicates, meta=mark_duplicates(good._meta)),
                     "ingest: de-duplicate")
    catalog = marked.map_partitions(good_rows, meta=good._meta)
    rejects = dd.concat([checked.map_partitions(rejected_rows, meta=rejected_rows(checked._meta)),
                         marked.map_partitions(rejected_rows, meta=rejected_rows(checked._meta))])
    write_ddf(catalog, workdir / "catalog", schema=CATALOG_SCHEMA)
    write_ddf(rejects, workdir / "rejects", schema=REJECTS_SCHEMA)
    by_reason = rejects["reason"].map(reason_kind, meta=("reason", "object")).value_counts().compute().to_dict()
    n_catalog = int(catalog.map_partitions(len).sum().compute())
    return {"input_rows": n_input, "catalog_rows": n_catalog, "rejected_rows": n_input - n_catalog,
            "rejects_by_reason": {str(k): int(v) for k, v in by_reason.items()}, "files": files}
