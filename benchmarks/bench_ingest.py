"""Ingest + metadata features per core, against a bare pandas CSV parse of the same file (same run).

    python -m benchmarks.bench_ingest [--quick] [--rows N] [--repeats K]

The catalog is the generated demo catalog (Openverse-shaped rows); one process, no Dask, so the figure
is per core. Prints a table and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from imagerank.catalog.ingest import good_rows, read_raw, validate_rows
from imagerank.demo import generate
from imagerank.features.metadata import metadata_features
from imagerank.popularity import StandardizationConfig, raw_metrics


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke size")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rows = args.rows or (3_000 if args.quick else 30_000)
    with tempfile.TemporaryDirectory() as tmp:
        path = generate(Path(tmp), rows=rows, images=False)["catalog"][0]
        now = pd.Timestamp.now(tz="UTC")
        reference = timed(lambda: pd.read_csv(path, dtype=str, keep_default_na=False), args.repeats)
        read = timed(lambda: read_raw(path, 0), args.repeats)
        raw = read_raw(path, 0)
        validate = timed(lambda: validate_rows(raw), args.repeats)
        catalog = good_rows(validate_rows(raw))
        features = timed(lambda: metadata_features(catalog, now), args.repeats)
        labels = timed(lambda: raw_metrics(catalog, StandardizationConfig()), args.repeats)
    stages = {"pandas read_csv (reference)": reference, "read_raw": read, "validate_rows": validate,
              "metadata_features": features, "raw_metrics": labels}
    print(f"{'stage':<30} {'median s':>9} {'rows/s':>10}")
    for name, seconds in stages.items():
        print(f"{name:<30} {seconds:>9.3f} {rows / seconds:>10,.0f}")
    ours = read + validate + features + labels
    figures = {"benchmark": "ingest", "rows": rows, "repeats": args.repeats,
               "reference_rows_per_s": rows / reference, "ingest_and_metadata_rows_per_s_per_core": rows / ours,
               "ratio_to_reference": (rows / ours) / (rows / reference),
               **{f"{k}_rows_per_s": rows / v for k, v in stages.items() if "reference" not in k}}
    print(f"\ningest + metadata: {rows / ours:,.0f} rows/s per core = {figures['ratio_to_reference']:.2f}x a bare pandas parse")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
