"""The recalculation at two catalog sizes: does the driver's memory stay flat and the time per row constant?

    python -m benchmarks.bench_scale [--quick] [--rows N] [--workers K] [--memory-limit 3.5GiB]

For each size (the smaller one, then 4x it; ``--quick``: 10 k and 40 k rows, else 1 M and 4 M) in its own
process (so each driver peak is its own):

1. an Openverse-shaped CSV: rows of the Openverse sample with fresh identifiers (``image_id`` n is
   ``UUID(int=n + 1)``); every 100th row re-exports an earlier image, so de-duplication has work;
2. on a fresh LocalCluster (``--workers`` single-threaded worker processes, ``--memory-limit`` each), every
   stage of the stage table :data:`pipelines.stages.STAGES` that ``recalculate`` runs for a catalog and an
   image template without crawl, link graph, ranks or Feast materialization (PageRank and materialization
   have their own benchmarks), in the table's order and through each stage's own wiring (so a stage added
   to the table is benchmarked with no change here) — then the run report, on the same cluster, as
   ``recalculate`` writes it. One stage is replaced: instead of decoding images
   (``bench_pixels`` measures that), the image stage's two datasets ``W/features/pixels`` and
   ``W/features/exif`` are written from the catalog on the workers with the image stage's schemas,
   synthetic pixel features and a random 64-bit perceptual hash per image. Planted near-duplicates: image
   ``n`` with ``n % 200 == 1`` gets the hash of image ``n - 1`` with 1-6 bits flipped. Ingest runs its own
   wiring with the benchmark's block and partition sizes (16 MiB and 5,000 rows with ``--quick``, so both
   sizes have several partitions; 64 MiB and 250,000 rows, the run's defaults, otherwise).
3. measured: wall seconds per stage; the driver's peak RSS per stage (a thread samples
   ``/proc/self/status`` every 20 ms); each worker's peak RSS per stage (its high-water mark, reset at
   every stage start through ``/proc/self/clear_refs``); worker restarts (a worker killed at its memory
   limit is replaced by the nanny: the run then says so); the bytes the workers wrote to local disk per
   stage, spilled by Dask's memory manager and written by P2P shuffles (Dask's own per-worker counters);
   the share of planted pairs the visual stage found (both images of the pair have a verified near-duplicate).

Prints a per-stage table and the targets as pass/fail (stderr carries progress), and ends with one JSON
line: ``{"benchmark": "scale", "sizes": [{"rows", "seconds", "driver_peak_mb", "worker_peak_mb",
"worker_limit_mb", "planted_duplicates_found", ...}, ...], ...}``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

#: Planted near-duplicate pairs: image n (n % PAIR_EVERY == 1) copies image n - 1 with 1..6 bits flipped.
PAIR_EVERY = 200
MAX_PLANTED_BITS = 6
TARGETS = {"driver_peak_ratio": 1.3, "time_per_row_ratio": 1.3, "planted_duplicates_found": 0.95}


# --- synthetic image-stage output (pure partition functions) ----------------------------------------------

def image_number(image_ids: pd.Series) -> np.ndarray:
    """n of ``image_id = str(UUID(int=n + 1))`` (the generator's identifiers); -1 for any other id."""
    out = np.full(len(image_ids), -1, dtype="int64")
    for i, value in enumerate(image_ids.astype(str).tolist()):
        try:
            out[i] = uuid.UUID(value).int - 1
        except ValueError:
            pass
    return out


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64: a well-spread 64-bit value per integer (wrapping arithmetic on uint64)."""
    z = (x.astype("uint64") + np.uint64(0x9E3779B97F4A7C15))
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def planted_phash(numbers: np.ndarray) -> np.ndarray:
    """The synthetic perceptual hash of image n (signed int64, as the image stage stores it)."""
    numbers = np.asarray(numbers, dtype="int64")
    copy = (numbers % PAIR_EVERY) == 1
    base = _mix64(np.where(copy, numbers - 1, numbers))
    bits = 1 + (numbers // PAIR_EVERY) % MAX_PLANTED_BITS  # 1..6 bits apart
    mask = np.zeros(len(numbers), dtype="uint64")
    positions = _mix64(numbers * 7919 + 17)
    for k in range(MAX_PLANTED_BITS):  # distinct bit positions: the k-th from a different 6-bit slice
        position = (positions >> np.uint64(6 * k)) & np.uint64(63)
        flip = copy & (bits > k) & ((mask >> position) & np.uint64(1) == 0)
        mask |= np.where(flip, np.uint64(1) << position, np.uint64(0))
    return (base ^ mask).view("int64")


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x = (np.asarray(a, dtype="int64") ^ np.asarray(b, dtype="int64")).view("uint64")
    return np.array([bin(int(v)).count("1") for v in x], dtype="int64")


def synthetic_pixels(catalog: pd.DataFrame, event_timestamp: pd.Timestamp) -> pd.DataFrame:
    """``W/features/pixels`` rows for catalog rows as the image stage writes them (its dtypes and columns):
    plausible feature values drawn from the image number, the planted perceptual hash, no error."""
    from imagerank.features.pixels import PIXELS_META

    numbers = image_number(catalog["image_id"])
    rng = np.random.default_rng(_mix64(numbers).astype("uint64") if len(numbers) else 0)
    n = len(catalog)
    width = rng.integers(320, 4000, n)
    height = (width * rng.uniform(0.5, 1.5, n)).astype("int64")
    size = (width * height * rng.uniform(0.1, 0.6, n)).astype("int64")
    values = {
        "image_id": catalog["image_id"].astype("string").to_numpy(), "format": "JPEG", "mode": "RGB",
        "n_frames": 1, "image_width": width, "image_height": height, "decoded_width": width // 2,
        "decoded_height": height // 2, "file_bytes": size, "bytes_per_pixel": size / (width * height),
        "jpeg_quality": rng.integers(60, 98, n), "brightness": rng.uniform(0.1, 0.9, n),
        "contrast": rng.uniform(0.05, 0.35, n), "colourfulness": rng.uniform(0, 90, n),
        "saturation": rng.uniform(0, 1, n), "entropy": rng.uniform(4, 8, n),
        "highlights_clipped": rng.uniform(0, 0.05, n), "shadows_clipped": rng.uniform(0, 0.05, n),
        "sharpness": rng.gamma(2.0, 200.0, n), "edge_density": rng.uniform(0, 0.4, n),
        "phash": planted_phash(numbers), "pixels_error": None, "pixels_error_message": None,
        "input_digest": [f"synthetic:{i}" for i in numbers], "event_timestamp": event_timestamp,
    }
    frame = pd.DataFrame(values, index=range(n))
    return frame[list(PIXELS_META.columns)].astype(PIXELS_META.dtypes.to_dict())


def synthetic_exif(catalog: pd.DataFrame, event_timestamp: pd.Timestamp) -> pd.DataFrame:
    """``W/features/exif`` rows: images without EXIF (no error), in the image stage's dtypes and columns."""
    from imagerank.features.exif import EXIF_META

    frame = pd.DataFrame({c: pd.Series([None] * len(catalog), dtype=t) for c, t in EXIF_META.dtypes.items()})
    frame["image_id"] = catalog["image_id"].astype("string").to_numpy()
    frame["has_exif"] = pd.array([False] * len(catalog), dtype="boolean")
    frame["input_digest"] = [f"synthetic:{i}" for i in range(len(catalog))]
    frame["event_timestamp"] = pd.Series([event_timestamp] * len(catalog), dtype=EXIF_META["event_timestamp"].dtype)
    return frame.astype(EXIF_META.dtypes.to_dict())


def write_image_stage(client, workdir: Path, event_timestamp: pd.Timestamp) -> dict:
    """The image stage's two datasets from ``W/catalog`` on the workers, written the way it writes them
    (one pass, each into a temporary sibling renamed into place: ``pipelines.images._write_together``)."""
    import dask.dataframe as dd

    from imagerank.features.exif import EXIF_META
    from imagerank.features.pixels import PIXELS_META
    from pipelines.images import ERROR_COUNTS_META, _outcome_counts, _write_together

    catalog = dd.read_parquet(str(workdir / "catalog"), columns=["image_id"])
    frames = {"pixels": catalog.map_partitions(synthetic_pixels, event_timestamp, meta=PIXELS_META),
              "exif": catalog.map_partitions(synthetic_exif, event_timestamp, meta=EXIF_META)}
    outcomes = frames["pixels"][["pixels_error"]].assign(pixels_reused=False, image_fetched=False).map_partitions(
        _outcome_counts, ("pixels",), meta=ERROR_COUNTS_META)  # no image fetched: the bytes are synthetic
    totals = _write_together(client, frames, {f: workdir / "features" / f for f in frames}, outcomes, show=False)
    return {"pixels": {"rows": int(totals["n"].sum()), "synthetic": True}}


def _planted_members(part: pd.DataFrame) -> pd.DataFrame:
    """(pair, found) for every image that belongs to a planted pair, found = it has a verified near-duplicate
    (an image the visual stage has no row or no hash for counts as not found)."""
    numbers = image_number(part["image_id"])
    member = (numbers >= 0) & ((numbers % PAIR_EVERY) <= 1)
    found = part["dup_neighbors"].fillna(0).to_numpy()[member] > 0
    found &= part["has_phash"].astype("boolean").fillna(False).to_numpy(dtype=bool)[member]
    return pd.DataFrame({"pair": numbers[member] // PAIR_EVERY, "found": found})


def planted_recall(workdir: Path) -> dict:
    """Share of planted pairs (both images in the catalog) of which the visual stage found both images.

    The pairs are counted from ``W/catalog``, not from the visual stage's output: a stage that loses images
    (it once lost half the catalog's partitions in a join at 1 M rows) fails this check instead of shrinking
    its denominator."""
    import dask.dataframe as dd

    catalog = dd.read_parquet(str(workdir / "catalog"), columns=["image_id"])
    visual = dd.read_parquet(str(workdir / "features" / "visual"), columns=["image_id", "dup_neighbors",
                                                                            "has_phash"])
    rows = catalog.merge(visual, on="image_id", how="left")
    members = rows.map_partitions(_planted_members, meta=pd.DataFrame({"pair": pd.Series(dtype="int64"),
                                                                       "found": pd.Series(dtype="bool")}))
    per_pair = members.groupby("pair").agg({"found": ["size", "sum"]}).compute()
    per_pair.columns = ["members", "found"]
    complete = per_pair[per_pair["members"] == 2]
    found = int((complete["found"] == 2).sum())
    return {"planted_pairs": int(len(complete)), "planted_pairs_found": found,
            "planted_duplicates_found": found / len(complete) if len(complete) else None}


# --- measuring ----------------------------------------------------------------------------------------------

def _status_mb(status: str, field: str) -> float:
    for line in status.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/<pid>/status (Linux only)")


def _worker_reset_peak() -> int:
    """Reset this process's VmHWM to its current RSS (Linux: write 5 to /proc/self/clear_refs)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    return os.getpid()


def _worker_peak() -> tuple[int, float]:
    with open("/proc/self/status") as handle:
        return os.getpid(), _status_mb(handle.read(), "VmHWM")


def _worker_disk_writes(dask_worker) -> tuple[float, float]:
    """Bytes this worker wrote to its local disk so far: (spilled by the memory manager, P2P shuffle buffers)."""
    spilled = shuffled = 0.0
    for key, value in dask_worker.digests_total.items():
        if isinstance(key, tuple) and key[-2:] == ("disk-write", "bytes"):
            if key[0] == "p2p":
                shuffled += value
            else:
                spilled += value
    return spilled, shuffled


class DriverSampler:
    """A thread that samples this process's resident memory and keeps the peak of the current stage."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.stage, self.peaks = interval, "setup", {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = _status_mb(Path("/proc/self/status").read_text(), "VmRSS")
            self.peaks[self.stage] = max(self.peaks.get(self.stage, 0.0), rss)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class StageClock:
    """Runs stages in order, recording per stage: seconds, driver peak RSS, worker peak RSS, worker restarts."""

    def __init__(self, sampler: DriverSampler):
        self.sampler, self.rows, self.client = sampler, [], None

    def __call__(self, name: str, fn, *args, **kwargs):
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        before = self.client.run(_worker_reset_peak) if self.client is not None else {}
        written = self.client.run(_worker_disk_writes) if self.client is not None else {}
        self.sampler.stage = name
        time.sleep(self.sampler.interval * 2)  # the sampler has seen the stage start
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds = time.perf_counter() - start
        time.sleep(self.sampler.interval * 2)
        row = {"stage": name, "seconds": round(seconds, 2), "driver_peak_mb": round(self.sampler.peaks.get(name, 0), 1)}
        if self.client is not None:
            after = self.client.run(_worker_peak)
            row["worker_peak_mb"] = round(max(mb for _, mb in after.values()), 1)
            row["worker_restarts"] = len({pid for pid in before.values()} - {pid for pid, _ in after.values()})
            now = self.client.run(_worker_disk_writes)
            for i, field in enumerate(("spilled_mb", "shuffle_disk_mb")):  # workers restarted meanwhile count from 0
                row[field] = round(sum(v[i] - written.get(w, (0.0, 0.0))[i] for w, v in now.items()) / 2**20, 1)
        self.rows.append(row)
        print(f"[bench] {name}: {seconds:.1f} s, driver peak {row['driver_peak_mb']:.0f} MB"
              + (f", worker peak {row['worker_peak_mb']:.0f} MB, spilled {row['spilled_mb']:.0f} MB, shuffle disk "
                 f"{row['shuffle_disk_mb']:.0f} MB" if "worker_peak_mb" in row else ""),
              file=sys.stderr, flush=True)
        return result


@contextmanager
def _cluster(workers: int, memory_limit: str):
    from imagerank.cluster import dask_client

    with dask_client(n_workers=workers, memory_limit=memory_limit) as client:
        yield client


#: The stage of :data:`pipelines.stages.STAGES` this benchmark replaces with :func:`write_image_stage`.
IMAGE_STAGE = "features: pixels + exif"
#: The image template the options carry: it only makes ``recalculate`` plan the image stages (never read).
SYNTHETIC_IMAGES = "synthetic://{image_id}"


def benchmark_options(csv: str, workdir: str):
    """The options of the ``recalculate`` this benchmark stands for: a catalog and images, nothing else."""
    from pipelines.recalculate import RecalculateOptions

    return RecalculateOptions(catalog=[csv], workdir=workdir, images=SYNTHETIC_IMAGES, materialize=False)


def planned_stages(options, stages=None) -> list:
    """The stages ``recalculate`` runs for ``options``, in the table's order (default table:
    :data:`pipelines.stages.STAGES`); the image stage must be among them, or there is nothing to replace."""
    if stages is None:
        from pipelines.stages import STAGES as stages
    planned = [stage for stage in stages if stage.runs(options)]
    if IMAGE_STAGE not in {stage.name for stage in planned}:
        raise RuntimeError(f"the stage table has no stage {IMAGE_STAGE!r} for these options: bench_scale replaces "
                           f"it with synthetic output; stages planned: {[stage.name for stage in planned]}")
    return planned


def synthetic_image_stage(ctx) -> dict:
    """Runs in place of the image stage: its datasets, synthetic (see :func:`write_image_stage`)."""
    return write_image_stage(ctx.client, Path(ctx.workdir), ctx.now)


@contextmanager
def ingest_sizes(block_bytes: int, rows_per_partition: int):
    """The ingest stage's own wiring, calling ``pipelines.ingest.run_ingest`` with these block and partition
    sizes (the stage table passes none; this process is the benchmark's own child)."""
    import functools

    import pipelines.ingest as module

    original = module.run_ingest
    module.run_ingest = functools.partial(original, block_bytes=block_bytes, rows_per_partition=rows_per_partition)
    try:
        yield
    finally:
        module.run_ingest = original


def recalculate_once(csv: str, workdir: str, workers: int, memory_limit: str, rows_per_partition: int,
                     block_bytes: int, out) -> None:
    """One size in its own process: every stage recalculate runs, in its order, measured (module docstring)."""
    from dask.utils import parse_bytes

    from imagerank.io import write_json
    from imagerank.report import write_report
    from pipelines.stages import StageContext

    options = benchmark_options(csv, workdir)
    stages = planned_stages(options)
    workdir = Path(workdir)
    now = pd.Timestamp.now(tz="UTC").floor("s")
    run_id = now.strftime("%Y%m%dT%H%M%SZ")
    manifest: dict = {"run_id": run_id, "event_timestamp": now.isoformat(), "workdir": str(workdir)}
    with DriverSampler() as sampler, ingest_sizes(block_bytes, rows_per_partition):
        stage = StageClock(sampler)
        start = time.perf_counter()
        with _cluster(workers, memory_limit) as client:
            stage.client = client
            context = StageContext(client=client, workdir=workdir, now=now, run_id=run_id, catalog=options.catalog,
                                   images=options.images, retrain="always", manifest=manifest)
            for spec in stages:
                if spec.name == IMAGE_STAGE:
                    result = stage(f"{spec.name} (synthetic, no decode)", synthetic_image_stage, context)
                else:
                    result = stage(spec.name, spec.run, context)
                manifest[spec.key] = {spec.manifest_field: result} if spec.manifest_field else result
            manifest["timings_s"] = {row["stage"]: row["seconds"] for row in stage.rows}
            write_json(manifest, workdir / "runs" / f"{run_id}.json")
            stage("report (on the cluster, as recalculate)", write_report, workdir, thumbnails=False)
            seconds = time.perf_counter() - start
            recall = planted_recall(workdir)  # measured, not timed: not part of a run
            stage.client = None
    out.put({"seconds": seconds, "stages": stage.rows, "recall": recall, "visual": manifest["visual"],
             "catalog_rows": manifest["reconciliation"]["catalog_rows"],
             "input_rows": manifest["ingest"]["input_rows"],
             "driver_peak_mb": max(row["driver_peak_mb"] for row in stage.rows),
             "worker_peak_mb": max(row.get("worker_peak_mb", 0) for row in stage.rows),
             "worker_restarts": sum(row.get("worker_restarts", 0) for row in stage.rows),
             "spilled_mb": round(sum(row.get("spilled_mb", 0) for row in stage.rows), 1),
             "shuffle_disk_mb": round(sum(row.get("shuffle_disk_mb", 0) for row in stage.rows), 1),
             "worker_limit_mb": parse_bytes(memory_limit) / 2**20})


def _in_child(target, *args) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=target, args=(*args, queue))
    child.start()
    while child.is_alive() or not queue.empty():
        try:
            result = queue.get(timeout=5)
            child.join()
            return result
        except Exception:  # noqa: BLE001 - queue.Empty: keep waiting while the child runs
            continue
    raise RuntimeError(f"the benchmark child exited with code {child.exitcode} without a result")


def targets(sizes: list[dict]) -> dict:
    """The issue's targets, from the smaller and the larger size."""
    small, large = sizes[0], sizes[-1]
    driver_ratio = large["driver_peak_mb"] / small["driver_peak_mb"]
    time_ratio = (large["seconds"] / large["rows"]) / (small["seconds"] / small["rows"])
    found = large["planted_duplicates_found"]
    return {
        "driver_peak_ratio": {"value": round(driver_ratio, 3), "target": f"<= {TARGETS['driver_peak_ratio']}",
                              "pass": driver_ratio <= TARGETS["driver_peak_ratio"]},
        "time_per_row_ratio": {"value": round(time_ratio, 3), "target": f"<= {TARGETS['time_per_row_ratio']}",
                               "pass": time_ratio <= TARGETS["time_per_row_ratio"]},
        "worker_peak_under_limit": {"value": max(s["worker_peak_mb"] for s in sizes),
                                    "target": f"< {large['worker_limit_mb']:.0f} MB, no worker restarted",
                                    "pass": all(s["worker_peak_mb"] < s["worker_limit_mb"] and not s["worker_restarts"]
                                                for s in sizes)},
        "planted_duplicates_found": {"value": found, "target": f">= {TARGETS['planted_duplicates_found']}",
                                     "pass": found is not None and found >= TARGETS["planted_duplicates_found"]},
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 k and 40 k rows (about 10 minutes on 2 quiet cores)")
    parser.add_argument("--rows", type=int, default=None, help="the smaller size (the larger is 4x)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default=None, help="per worker (default 1.5GiB with --quick, else 3.5GiB)")
    parser.add_argument("--keep", metavar="DIR", default=None,
                        help="write the work directories (w-<rows>/) into DIR and keep them, to study a size's "
                             "datasets or report afterwards (default: a temporary directory, removed)")
    args = parser.parse_args(argv)
    from benchmarks.bench_ingest import write_openverse_csv
    from imagerank.testing import SHARED_FIXTURES

    small = args.rows or (10_000 if args.quick else 1_000_000)
    sizes = [small, small * 4]
    memory_limit = args.memory_limit or ("1.5GiB" if args.quick else "3.5GiB")
    rows_per_partition = 5_000 if args.quick else 250_000  # partitions grow with the rows at both sizes
    block_bytes = (16 if args.quick else 64) << 20
    sample = SHARED_FIXTURES / "catalog" / "openverse_sample_images.csv"
    if not sample.exists():
        raise SystemExit(f"{sample} is missing: the benchmark copies its Openverse rows")
    template = pd.read_csv(sample, dtype=str, keep_default_na=False)
    results = []
    with _work_root(args.keep) as tmp:
        for rows in sizes:
            csv = Path(tmp) / f"catalog-{rows}.csv"
            print(f"[bench] writing {rows:,} Openverse-shaped rows", file=sys.stderr, flush=True)
            write_openverse_csv(csv, rows, template)
            run = _in_child(recalculate_once, str(csv), str(Path(tmp) / f"w-{rows}"), args.workers, memory_limit,
                            rows_per_partition, block_bytes)
            assert run["input_rows"] == rows, (run["input_rows"], rows)
            results.append({"rows": rows, "seconds": round(run["seconds"], 2),
                            "driver_peak_mb": run["driver_peak_mb"], "worker_peak_mb": run["worker_peak_mb"],
                            "worker_limit_mb": run["worker_limit_mb"],
                            "planted_duplicates_found": run["recall"]["planted_duplicates_found"],
                            "planted_pairs": run["recall"]["planted_pairs"], "catalog_rows": run["catalog_rows"],
                            "worker_restarts": run["worker_restarts"], "spilled_mb": run["spilled_mb"],
                            "shuffle_disk_mb": run["shuffle_disk_mb"],
                            "visual_errors": run["visual"].get("errors", {}), "stages": run["stages"]})
            print(f"[bench] {rows:,} rows: {json.dumps(results[-1])}", file=sys.stderr, flush=True)
            csv.unlink()
    print(f"\n{args.workers} workers x {memory_limit}; rows per partition {rows_per_partition:,}")
    print_table(results)
    checks = targets(results)
    print()
    for name, check in checks.items():
        print(f"{'PASS' if check['pass'] else 'FAIL'}  {name}: {check['value']} (target {check['target']})")
    figures = {"benchmark": "scale", "sizes": results, "workers": args.workers, "worker_limit": memory_limit,
               "rows_per_partition": rows_per_partition, "targets": checks}
    print(json.dumps(figures))
    return figures


@contextmanager
def _work_root(keep: str | None) -> Iterator[str]:
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        yield tmp


def print_table(results: list[dict]) -> None:
    """Seconds, driver and worker peak per stage and size; the larger size's time per row and driver peak
    relative to the smaller's."""
    names = [row["stage"] for row in results[0]["stages"]]
    header = f"{'stage':<48}" + "".join(f"{'s @' + format(r['rows'], ','):>14}{'driver MB':>10}{'worker MB':>10}"
                                        for r in results) + f"{'s/row x':>9}{'driver x':>9}"
    print(header)
    for i, name in enumerate(names):
        cells = [r["stages"][i] for r in results]
        line = f"{name[:47]:<48}" + "".join(f"{c['seconds']:>14.1f}{c['driver_peak_mb']:>10.0f}"
                                            f"{c.get('worker_peak_mb', float('nan')):>10.0f}" for c in cells)
        small_c, large_c = cells[0], cells[-1]
        per_row = ((large_c["seconds"] / results[-1]["rows"]) / (small_c["seconds"] / results[0]["rows"])
                   if small_c["seconds"] > 0 else float("nan"))
        line += f"{per_row:>9.2f}{large_c['driver_peak_mb'] / max(small_c['driver_peak_mb'], 1):>9.2f}"
        print(line)
    print(f"{'total':<48}" + "".join(f"{r['seconds']:>14.1f}{r['driver_peak_mb']:>10.0f}{r['worker_peak_mb']:>10.0f}"
                                     for r in results))
    for r in results:
        print(f"{r['rows']:,} rows: workers wrote {r['spilled_mb']:,.0f} MB spilled by Dask's memory manager and "
              f"{r['shuffle_disk_mb']:,.0f} MB of P2P shuffle buffers to local disk")


if __name__ == "__main__":
    main()
