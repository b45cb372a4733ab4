"""Ingest throughput and memory, against pandas on the same files (same run).

    python -m benchmarks.bench_ingest [--quick] [--rows N] [--repeats K]     # per core, one process
    python -m benchmarks.bench_ingest --scale [--quick]                      # the Dask job at two sizes

Per core: the generated demo catalog (Openverse-shaped rows), ingest + metadata features in one process
without Dask. Scale: one big Openverse-shaped CSV per size (sizes 4x apart; rows copied from the Openverse
sample with fresh identifiers, every 100th row re-exporting an earlier image), ingested by ``run_ingest``
on a fresh LocalCluster with an explicit worker memory limit; peak RSS is each process's high-water mark
(VmHWM), the driver and pandas measured in their own child processes. Rows per CPU-second (the workers'
process time) is the figure that holds on a busy machine; rows/s per core is wall time. Both modes print
a table and end with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
import uuid
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


def per_core(args) -> dict:
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
    return figures


# ------------------------------------------------------------------------------------------------ scale

def write_openverse_csv(path: Path, rows: int, template: pd.DataFrame) -> None:
    """``rows`` Openverse rows (template rows with fresh identifiers), written chunk by chunk."""
    written = 0
    with open(path, "w", newline="", encoding="utf-8") as handle:
        while written < rows:
            chunk = template.iloc[: rows - written].copy()
            # every 100th row re-exports the image 50 rows earlier: de-duplication has work to do
            numbers = [n - 50 if n % 100 == 99 else n for n in range(written, written + len(chunk))]
            chunk["identifier"] = [str(uuid.UUID(int=n + 1)) for n in numbers]
            chunk.to_csv(handle, index=False, header=written == 0)
            written += len(chunk)


def _vm_hwm_mb() -> float:
    """Peak resident memory of this process (its high-water mark), in MB."""
    return _vm_hwm_mb_of(Path("/proc/self/status").read_text())


def _vm_hwm_mb_of(status: str) -> float:
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/<pid>/status (Linux only)")


def _ingest_child(path: str, workdir: str, workers: int, memory_limit: str, block_bytes: int,
                  rows_per_partition: int, out) -> None:
    from imagerank.cluster import dask_client
    from pipelines.ingest import run_ingest

    with dask_client(n_workers=workers, memory_limit=memory_limit) as client:
        cpu_before = client.run(time.process_time)  # workers up before the clock starts
        start, driver_cpu = time.perf_counter(), time.process_time()
        counts = run_ingest(client, [path], workdir, block_bytes=block_bytes, rows_per_partition=rows_per_partition)
        seconds, driver_cpu = time.perf_counter() - start, time.process_time() - driver_cpu
        cpu_after = client.run(time.process_time)
        worker_status = client.run(lambda: open("/proc/self/status").read())  # noqa: SIM115
        worker_peaks = {k: _vm_hwm_mb_of(v) for k, v in worker_status.items()}
    out.put({"seconds": seconds, "counts": {k: v for k, v in counts.items() if k != "files"},
             "worker_cpu_seconds": sum(cpu_after[k] - cpu_before[k] for k in cpu_after), "driver_cpu_seconds": driver_cpu,
             "worker_peak_mb": max(worker_peaks.values()), "driver_peak_mb": _vm_hwm_mb()})


def _pandas_child(path: str, out) -> None:
    start, cpu = time.perf_counter(), time.process_time()
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    out.put({"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu, "rows": len(frame),
             "peak_mb": _vm_hwm_mb()})


def _in_child(target, *args) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=target, args=(*args, queue))
    child.start()
    result = queue.get()
    child.join()
    return result


def scale(args) -> dict:
    sizes = [args.rows or (50_000 if args.quick else 1_000_000)]
    sizes.append(sizes[0] * 4)
    workers = args.workers
    block_bytes = (16 if args.quick else 64) << 20
    rows_per_partition = 25_000 if args.quick else 250_000
    from imagerank.testing import SHARED_FIXTURES

    sample = SHARED_FIXTURES / "catalog" / "openverse_sample_images.csv"
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if sample.exists():
            template = pd.read_csv(sample, dtype=str, keep_default_na=False)
        else:
            template = pd.read_csv(generate(Path(tmp) / "demo", rows=2_000, images=False)["catalog"][0], dtype=str,
                                   keep_default_na=False)
        for rows in sizes:
            path = Path(tmp) / f"catalog-{rows}.csv"
            print(f"[bench] writing {rows:,} rows", file=sys.stderr)
            write_openverse_csv(path, rows, template)
            print(f"[bench] ingest {rows:,} rows", file=sys.stderr)
            ours = _in_child(_ingest_child, str(path), str(Path(tmp) / f"w-{rows}"), workers, args.memory_limit,
                             block_bytes, rows_per_partition)
            reference = _in_child(_pandas_child, str(path))
            assert ours["counts"]["input_rows"] == rows == reference["rows"], (ours["counts"], reference["rows"])
            results.append({"rows": rows, "file_mb": path.stat().st_size / 1e6, "seconds": ours["seconds"],
                            "rows_per_s_per_core": rows / ours["seconds"] / workers,
                            "worker_cpu_seconds": ours["worker_cpu_seconds"], "driver_cpu_seconds": ours["driver_cpu_seconds"],
                            "rows_per_cpu_second": rows / ours["worker_cpu_seconds"],
                            "worker_peak_mb": ours["worker_peak_mb"], "driver_peak_mb": ours["driver_peak_mb"],
                            "catalog_rows": ours["counts"]["catalog_rows"], "blocks": ours["counts"]["blocks"],
                            "pandas_seconds": reference["seconds"], "pandas_rows_per_s": rows / reference["seconds"],
                            "pandas_rows_per_cpu_second": rows / reference["cpu_seconds"],
                            "pandas_peak_mb": reference["peak_mb"]})
            path.unlink()
    print(f"{'rows':>9} {'file MB':>8} {'blocks':>6} {'ingest s':>9} {'rows/s/core':>12} {'rows/cpu-s':>11} "
          f"{'worker MB':>10} {'driver MB':>10} {'pandas s':>9} {'pandas rows/s':>14} {'rows/cpu-s':>11} {'pandas MB':>10}")
    for r in results:
        print(f"{r['rows']:>9,} {r['file_mb']:>8.0f} {r['blocks']:>6} {r['seconds']:>9.1f} {r['rows_per_s_per_core']:>12,.0f} "
              f"{r['rows_per_cpu_second']:>11,.0f} {r['worker_peak_mb']:>10.0f} {r['driver_peak_mb']:>10.0f} "
              f"{r['pandas_seconds']:>9.1f} {r['pandas_rows_per_s']:>14,.0f} {r['pandas_rows_per_cpu_second']:>11,.0f} "
              f"{r['pandas_peak_mb']:>10.0f}")
    small, large = results[0], results[-1]
    figures = {"benchmark": "ingest_scale", "workers": workers, "worker_limit": args.memory_limit,
               "block_bytes": block_bytes, "rows_per_partition": rows_per_partition, "sizes": results,
               "worker_peak_ratio": large["worker_peak_mb"] / small["worker_peak_mb"],
               "driver_peak_ratio": large["driver_peak_mb"] / small["driver_peak_mb"],
               "time_per_row_ratio": (large["seconds"] / large["rows"]) / (small["seconds"] / small["rows"]),
               "pandas_peak_ratio": large["pandas_peak_mb"] / small["pandas_peak_mb"]}
    print(f"\n{large['rows'] // small['rows']}x the rows: worker peak x{figures['worker_peak_ratio']:.2f}, "
          f"driver peak x{figures['driver_peak_ratio']:.2f}, time per row x{figures['time_per_row_ratio']:.2f} "
          f"(pandas peak x{figures['pandas_peak_ratio']:.2f})")
    return figures


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--scale", action="store_true", help="the Dask job on one big file at two sizes 4x apart")
    parser.add_argument("--rows", type=int, default=None, help="rows (--scale: the smaller size)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="2GiB", help="per worker (--scale)")
    args = parser.parse_args(argv)
    figures = scale(args) if args.scale else per_core(args)
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
