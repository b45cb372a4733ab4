"""Scheduler memory and time for the task count: what a graph of N tasks costs the Dask scheduler.

    python -m benchmarks.bench_scheduler [--quick] [--partitions N ...] [--repeat R] [--shapes map join]
                                         [--run-repeat R] [--run-max-partitions N] [--memory-limit 1GiB]

A 500 M-row recalculation plans tens of thousands of tasks per stage; the scheduler keeps a record of every
task of a submitted graph until its result is released. This measures what one task costs it, on graphs
shaped like the recalculation's, with partitions so small that the workers' work does not matter:

- ``map``: ``dd.from_map`` of N partitions (a catalog slice read), two ``map_partitions`` (features, then
  per-partition outcome counts) and the counts gathered to the client (as the stages do with their counts);
- ``join``: two ``dd.from_map`` frames of N partitions hash-joined on a key into N partitions (the image
  stage's listing join, the visual stage's index: Dask's default P2P shuffle), then counted per partition.

Each run gets a fresh LocalCluster (2 single-threaded worker processes) whose scheduler runs in a child
process, so that process holds the scheduler only (the graph is built here, in the client), warmed up by a
tiny join. In the scheduler (``client.run_on_scheduler``), psutil's RSS before the graph (after
``gc.collect``), its peak (a thread samples every 5 ms, with the largest number of tasks held), and after
every task was released (``gc.collect``):

- memory, ``--repeat`` runs on fresh clusters: the graph submitted with every task restricted to a worker
  that does not exist, so the scheduler holds all of it at once (waiting / no-worker) and runs none of it,
  then cancelled: bytes per task = peak growth / tasks held;
- time, ``--run-repeat`` runs up to ``--run-max-partitions``: the same graph computed on the workers,
  seconds per task (the tasks are tiny: this is the scheduler's and workers' per-task overhead).

Reported per shape and size (medians), with the marginal bytes per task between the smallest and the
largest size (the slope: the fixed overhead drops out). Progress on stderr; a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import threading
import time
from contextlib import contextmanager

import numpy as np
import pandas as pd

ROWS_PER_PARTITION = 10
SHAPES = ("map", "join")
#: what one partition holds (ids and a join key)
PART_META = pd.DataFrame({"image_id": pd.Series(dtype="int64"), "key": pd.Series(dtype="int64"),
                          "value": pd.Series(dtype="float64")})
COUNTS_META = pd.DataFrame({"rows": pd.Series(dtype="int64"), "total": pd.Series(dtype="float64")})


# --- the graphs (pure partition functions) ------------------------------------------------------------------

def make_partition(index: int, rows: int = ROWS_PER_PARTITION) -> pd.DataFrame:
    """Partition ``index``: ``rows`` rows with consecutive ids, a join key and a value."""
    ids = np.arange(index * rows, (index + 1) * rows, dtype="int64")
    return pd.DataFrame({"image_id": ids, "key": ids * 7919 % 1_000_003, "value": ids.astype("float64")})


def add_feature(part: pd.DataFrame) -> pd.DataFrame:
    return part.assign(value=part["value"] * 0.5 + 1.0)


def outcome_counts(part: pd.DataFrame) -> pd.DataFrame:
    """One row per partition: what a stage gathers to the driver."""
    return pd.DataFrame({"rows": [len(part)], "total": [float(part["value"].sum())]})


def build_graph(shape: str, partitions: int):
    """The Dask frame of counts for ``shape`` over ``partitions`` partitions (not computed)."""
    import dask.dataframe as dd

    left = dd.from_map(make_partition, range(partitions), meta=PART_META, enforce_metadata=False)
    if shape == "map":
        frame = left.map_partitions(add_feature, meta=PART_META)
    elif shape == "join":
        right = dd.from_map(make_partition, range(partitions), meta=PART_META, enforce_metadata=False)
        frame = left.merge(right[["key", "value"]].rename(columns={"value": "other"}), on="key", how="left",
                           npartitions=partitions).map_partitions(add_feature, meta=PART_META.assign(
                               other=pd.Series(dtype="float64")))
    else:
        raise ValueError(f"shape must be one of {SHAPES}, not {shape!r}")
    return frame.map_partitions(outcome_counts, meta=COUNTS_META)


def per_task(held: list[dict], executed: list[dict]) -> dict:
    """Medians over the runs of one shape and size: tasks and scheduler RSS growth (held graphs), seconds
    (executed graphs), and each per task."""
    tasks = statistics.median(r["tasks"] for r in held)
    growth = statistics.median(r["peak_rss"] - r["before_rss"] for r in held)
    left = statistics.median(r["after_rss"] - r["before_rss"] for r in held)
    out = {"tasks": int(tasks), "peak_growth_mb": round(growth / 2**20, 2), "bytes_per_task": round(growth / tasks),
           "after_growth_mb": round(left / 2**20, 2), "held_runs": len(held),
           "submit_seconds": round(statistics.median(r["submit_seconds"] for r in held), 3)}
    if executed:
        seconds = statistics.median(r["seconds"] for r in executed)
        ran = statistics.median(r["tasks"] for r in executed)
        out.update(executed_runs=len(executed), seconds=round(seconds, 3), ms_per_task=round(1000 * seconds / ran, 4),
                   executed_peak_growth_mb=round(statistics.median(r["peak_rss"] - r["before_rss"]
                                                                   for r in executed) / 2**20, 2))
    return out


def marginal_bytes_per_task(sizes: list[dict]) -> float | None:
    """Bytes per additional task between the smallest and the largest graph (the fixed overhead drops out)."""
    small, large = sizes[0], sizes[-1]
    if large["tasks"] <= small["tasks"]:
        return None
    return round((large["peak_growth_mb"] - small["peak_growth_mb"]) * 2**20 / (large["tasks"] - small["tasks"]))


# --- the scheduler's side ---------------------------------------------------------------------------------

def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def scheduler_start_sampler(dask_scheduler=None, interval: float = 0.005) -> int:
    """In the scheduler: collect garbage, note RSS, and sample the peak RSS and task count until stopped."""
    import gc

    gc.collect()
    stop = threading.Event()
    state = {"before": _rss(), "peak": 0, "tasks": 0, "stop": stop}
    state["peak"] = state["before"]

    def sample() -> None:
        while True:
            state["peak"] = max(state["peak"], _rss())
            state["tasks"] = max(state["tasks"], len(dask_scheduler.tasks))
            if stop.wait(interval):
                return

    state["thread"] = threading.Thread(target=sample, daemon=True)
    state["thread"].start()
    dask_scheduler.bench_scheduler_sampler = state  # on the scheduler: this function may arrive pickled by value
    return state["before"]


def scheduler_stop_sampler(dask_scheduler=None) -> dict:
    """In the scheduler: stop sampling; RSS after ``gc.collect`` (once every task is released)."""
    import gc

    state = dask_scheduler.bench_scheduler_sampler
    state["stop"].set()
    state["thread"].join()
    gc.collect()
    return {"before_rss": state["before"], "peak_rss": state["peak"], "after_rss": _rss(),
            "tasks": state["tasks"], "tasks_left": len(dask_scheduler.tasks)}


def _cluster_in_child(memory_limit: str, queue, stop) -> None:
    """A LocalCluster whose scheduler lives in this process until ``stop`` is set."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit=memory_limit,
                      dashboard_address=None, silence_logs=40) as cluster:
        queue.put(cluster.scheduler_address)
        stop.wait()


#: a worker address nothing listens on: tasks restricted to it stay in the scheduler, waiting
ABSENT_WORKER = "tcp://127.0.0.1:9"


def _held_tasks(dask_scheduler=None) -> tuple[int, int]:
    """(tasks the scheduler holds, of which still ``released``: not yet through ``update_graph``)."""
    states = [ts.state for ts in dask_scheduler.tasks.values()]
    return len(states), states.count("released")


def _wait_for(client, done, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done(client.run_on_scheduler(_held_tasks)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


@contextmanager
def fresh_cluster(memory_limit: str):
    """A Client of a new LocalCluster whose scheduler runs in a child process (so it holds the scheduler only)."""
    from distributed import Client

    context = multiprocessing.get_context("spawn")
    queue, stop = context.Queue(), context.Event()
    child = context.Process(target=_cluster_in_child, args=(memory_limit, queue, stop), daemon=False)
    child.start()
    try:
        with Client(queue.get(timeout=300)) as client:
            client.wait_for_workers(2, timeout=300)
            build_graph("join", 4).compute()  # warm-up: the scheduler imports what the graphs need once
            _wait_for(client, lambda held: held[0] == 0, 120, "the warm-up's tasks to be released")
            yield client
    finally:
        stop.set()
        child.join(timeout=60)
        if child.is_alive():
            child.terminate()
            child.join()


def held_run(client, shape: str, partitions: int) -> dict:
    """Memory: the graph submitted with every task restricted to a worker that does not exist, so the
    scheduler holds all of it at once (waiting / no-worker) without running any; then cancelled."""
    client.run_on_scheduler(scheduler_start_sampler)
    start = time.perf_counter()
    future = client.compute(build_graph(shape, partitions), workers=[ABSENT_WORKER], allow_other_workers=False)
    last = [-1]

    def settled(held: tuple[int, int]) -> bool:  # every task through update_graph, and no more arriving
        steady = held[0] > 0 and held[1] == 0 and held[0] == last[0]
        last[0] = held[0]
        return steady

    _wait_for(client, settled, 1800, f"the {shape} graph of {partitions:,} partitions to reach the scheduler")
    seconds = time.perf_counter() - start
    client.cancel(future)
    del future
    _wait_for(client, lambda held: held[0] == 0, 600, "the cancelled tasks to be released")
    return {**client.run_on_scheduler(scheduler_stop_sampler), "submit_seconds": seconds}


def executed_run(client, shape: str, partitions: int) -> dict:
    """Time: the same graph computed on the two workers (scheduler RSS sampled too; it reuses memory the
    held run freed, so its peak growth is a floor)."""
    client.run_on_scheduler(scheduler_start_sampler)
    start = time.perf_counter()
    counts = build_graph(shape, partitions).compute()
    seconds = time.perf_counter() - start
    _wait_for(client, lambda held: held[0] == 0, 600, "the computed tasks to be released")
    expected = partitions * ROWS_PER_PARTITION
    if int(counts["rows"].sum()) != expected:
        raise RuntimeError(f"{shape} over {partitions} partitions counted {int(counts['rows'].sum())} rows, "
                           f"not {expected}")
    return {**client.run_on_scheduler(scheduler_stop_sampler), "seconds": seconds}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="1 k, 4 k and 16 k partitions held; executed up to 4 k partitions, once")
    parser.add_argument("--partitions", type=int, nargs="+", default=None,
                        help="graph sizes in partitions (default 1k 4k 16k 64k; --quick 1k 4k 16k)")
    parser.add_argument("--repeat", type=int, default=3, help="held runs per shape and size, each on a fresh cluster")
    parser.add_argument("--run-repeat", type=int, default=None, help="executed runs per shape and size (default 3; "
                        "--quick 1)")
    parser.add_argument("--run-max-partitions", type=int, default=None,
                        help="execute graphs up to this many partitions (default 16k; --quick 4k)")
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    parser.add_argument("--memory-limit", default="1GiB", help="per worker")
    args = parser.parse_args(argv)
    sizes = sorted(args.partitions or ([1_000, 4_000, 16_000] if args.quick else [1_000, 4_000, 16_000, 64_000]))
    run_repeat = args.run_repeat or (1 if args.quick else 3)
    run_max = args.run_max_partitions or (4_000 if args.quick else 16_000)
    load_before = [round(x, 2) for x in os.getloadavg()]
    results: dict[str, list[dict]] = {}
    for shape in args.shapes:
        results[shape] = []
        for partitions in sizes:
            held, executed = [], []
            for r in range(max(args.repeat, run_repeat if partitions <= run_max else 0)):
                with fresh_cluster(args.memory_limit) as client:
                    if r < args.repeat:
                        run = held_run(client, shape, partitions)
                        held.append(run)
                        print(f"[bench_scheduler] {shape} {partitions:,} partitions held {r + 1}: {run['tasks']:,} "
                              f"tasks, "
                              f"scheduler RSS {run['before_rss'] / 2**20:.0f} -> peak {run['peak_rss'] / 2**20:.0f} "
                              f"-> after {run['after_rss'] / 2**20:.0f} MB", file=sys.stderr, flush=True)
                    if partitions <= run_max and r < run_repeat:
                        run = executed_run(client, shape, partitions)
                        executed.append(run)
                        print(f"[bench_scheduler] {shape} {partitions:,} partitions executed {r + 1}: {run['tasks']:,} "
                              f"tasks in {run['seconds']:.1f} s (load {os.getloadavg()[0]:.1f})",
                              file=sys.stderr, flush=True)
            results[shape].append({"partitions": partitions, **per_task(held, executed)})
    print(f"{'shape':<6} {'partitions':>10} {'tasks':>8} {'peak +MB':>9} {'B/task':>8} {'after +MB':>10} "
          f"{'run s':>8} {'ms/task':>8}")
    for shape, rows in results.items():
        for row in rows:
            print(f"{shape:<6} {row['partitions']:>10,} {row['tasks']:>8,} {row['peak_growth_mb']:>9.1f} "
                  f"{row['bytes_per_task']:>8,} {row['after_growth_mb']:>10.1f} "
                  f"{row.get('seconds', float('nan')):>8.2f} "
                  f"{row.get('ms_per_task', float('nan')):>8.3f}")
    marginal = {shape: marginal_bytes_per_task(rows) for shape, rows in results.items()}
    for shape, value in marginal.items():
        print(f"{shape}: {value:,} bytes per additional task ({results[shape][0]['tasks']:,} -> "
              f"{results[shape][-1]['tasks']:,} tasks)" if value is not None else f"{shape}: no slope")
    figures = {"benchmark": "scheduler", "quick": args.quick, "repeat": args.repeat, "run_repeat": run_repeat,
               "workers": 2, "rows_per_partition": ROWS_PER_PARTITION, "shapes": results,
               "marginal_bytes_per_task": marginal, "tasks_per_partition": {
                   shape: round(rows[-1]["tasks"] / rows[-1]["partitions"], 2) for shape, rows in results.items()},
               "load_average_before": load_before, "load_average_after": [round(x, 2) for x in os.getloadavg()]}
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
