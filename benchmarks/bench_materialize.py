"""Materialization: Feast's local engine vs imagerank's Dask engine, into SQLite and Redis, same run.

    python -m benchmarks.bench_materialize [--quick] [--rows N] [--big-rows N] [--skip-big]

Each materialization runs in its own subprocess so that peak memory (driver RSS, ``ru_maxrss``) is
separate per run. Prints a table and ends with one JSON line of figures (rows/s, ratios, peak MB,
lookup latency p50/p99 for 1 and 100 entities through the Feast SDK).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

N_FEATURES = 10
PROJECT = "bench"
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)

DEFINITIONS = '''
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, String
image = Entity(name="image", join_keys=["image_id"], value_type=ValueType.STRING)
src = FileSource(name="bench_src", path="{source}", timestamp_field="event_timestamp")
bench = FeatureView(name="bench", entities=[image], ttl=timedelta(days=3650), source=src, online=True,
                    schema=[Field(name="image_id", dtype=String)] +
                           [Field(name=f"f{{i}}", dtype=Float64) for i in range({n})])
'''


def make_source(path: Path, rows: int, chunk: int = 200_000) -> Path:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for part, start in enumerate(range(0, rows, chunk)):
        n = min(chunk, rows - start)
        df = pd.DataFrame({"image_id": [f"{i:032x}" for i in range(start, start + n)]})
        for j in range(N_FEATURES):
            df[f"f{j}"] = rng.random(n)
        df["event_timestamp"] = pd.Timestamp(T0) + pd.to_timedelta(rng.integers(0, 86400, n), unit="s")
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path / f"part-{part}.parquet",
                       row_group_size=50_000)
    return path


def make_repo(root: Path, source: Path, engine: str, store: str, redis: str | None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    online = ("online_store:\n  type: sqlite\n  path: online.db\n" if store == "sqlite"
              else f"online_store:\n  type: redis\n  connection_string: \"{redis}\"\n")
    eng = ("batch_engine: local\n" if engine == "local" else
           "batch_engine:\n  type: imagerank.store.engine.DaskEngine\n  partition_rows: 100000\n"
           "  write_batch_size: 100000\n")
    (root / "feature_store.yaml").write_text(
        f"project: {PROJECT}\nregistry: registry.db\nprovider: local\n{online}offline_store:\n  type: file\n"
        f"{eng}entity_key_serialization_version: 3\n")
    (root / "defs.py.txt").write_text(DEFINITIONS.format(source=str(source), n=N_FEATURES))
    return root


def apply_repo(repo: Path) -> None:
    from feast import FeatureStore

    ns: dict = {}
    exec((repo / "defs.py.txt").read_text(), ns)
    FeatureStore(repo_path=str(repo)).apply([ns["image"], ns["bench"]])


def child(repo: Path) -> dict:
    """Run in a subprocess: apply, (start the cluster), materialize; report seconds and peak RSS."""
    from feast import FeatureStore

    apply_repo(repo)
    store = FeatureStore(repo_path=str(repo))
    setup = 0.0
    cfg = store.config.batch_engine
    if cfg is not None and type(cfg).__name__ == "DaskEngineConfig":
        from imagerank.store import engine

        t = time.perf_counter()
        client, _ = engine._get_client(cfg)
        client.run(lambda: __import__("feast.feature_view") and None)  # warm imports on the workers
        setup = time.perf_counter() - t
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    store.materialize(T0 - timedelta(days=1), T0 + timedelta(days=2))
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "setup_seconds": setup, "rss_before_mb": rss_before,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_child(repo: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_materialize", "--child", str(repo)],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if out.returncode != 0:
        raise RuntimeError(f"child failed for {repo}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def lookup_latency(repo: Path, ids: list[str], n: int, reps: int) -> tuple[float, float]:
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    refs = [f"bench:f{i}" for i in range(N_FEATURES)]
    import random

    rnd = random.Random(n)
    times = []
    for r in range(reps + 5):
        rows = [{"image_id": i} for i in rnd.sample(ids, n)]
        t = time.perf_counter()
        store.get_online_features(features=refs, entity_rows=rows).to_dict()
        if r >= 5:
            times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.99 * len(times)))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20k rows, no 2M run")
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--big-rows", type=int, default=2_000_000)
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(Path(args.child))))
        return 0
    rows = 20_000 if args.quick else args.rows
    big = None if (args.quick or args.skip_big) else args.big_rows

    from imagerank.store.redis_server import RedisServerUnavailable, start_redis_server

    work = Path(tempfile.mkdtemp(prefix="bench-materialize-"))
    try:
        server = start_redis_server()
    except RedisServerUnavailable as e:
        print(f"note: {e}; Redis runs skipped", file=sys.stderr)
        server = None
    results: dict = {"rows": rows, "features": N_FEATURES, "cores": os.cpu_count()}
    try:
        src = make_source(work / "source", rows)
        ids = [f"{i:032x}" for i in range(rows)]
        table = []
        stores = ["sqlite"] + (["redis"] if server else [])
        for store in stores:
            for engine in ("local", "dask"):
                if server and store == "redis":
                    server.client().flushall()
                repo = make_repo(work / f"{store}-{engine}", src, engine, store,
                                 server.connection_string if server else None)
                res = run_child(repo)
                res["rows_per_s"] = rows / res["seconds"]
                reps = 100 if not args.quick else 30
                res["p50_1_ms"], res["p99_1_ms"] = lookup_latency(repo, ids, 1, reps)
                res["p50_100_ms"], res["p99_100_ms"] = lookup_latency(repo, ids, 100, reps)
                results[f"{store}_{engine}"] = res
                table.append((store, engine, res))
        if big:
            bsrc = make_source(work / "source-big", big)
            repo = make_repo(work / "sqlite-dask-big", bsrc, "dask", "sqlite", None)
            res = run_child(repo)
            res["rows_per_s"] = big / res["seconds"]
            results["sqlite_dask_big"] = {"rows": big, **res}
            table.append((f"sqlite {big // 1000}k", "dask", res))
    finally:
        if server:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nmaterialize {rows} rows x {N_FEATURES} float features on {os.cpu_count()} cores")
    print(f"{'store':<14}{'engine':<8}{'seconds':>9}{'rows/s':>10}{'peak MB':>9}"
          f"{'p50 1':>8}{'p99 1':>8}{'p50 100':>9}{'p99 100':>9}")
    for store, engine, r in table:
        print(f"{store:<14}{engine:<8}{r['seconds']:>9.1f}{r['rows_per_s']:>10.0f}{r['peak_rss_mb']:>9.0f}"
              f"{r.get('p50_1_ms', float('nan')):>8.2f}{r.get('p99_1_ms', float('nan')):>8.2f}"
              f"{r.get('p50_100_ms', float('nan')):>9.2f}{r.get('p99_100_ms', float('nan')):>9.2f}")
    for store in ("sqlite", "redis"):
        if f"{store}_dask" in results:
            d, l = results[f"{store}_dask"], results[f"{store}_local"]
            results[f"{store}_speedup"] = d["rows_per_s"] / l["rows_per_s"]
            results[f"{store}_peak_ratio"] = d["peak_rss_mb"] / l["peak_rss_mb"]
            results[f"{store}_lookup_p50_1_ratio"] = d["p50_1_ms"] / l["p50_1_ms"]
            results[f"{store}_lookup_p50_100_ratio"] = d["p50_100_ms"] / l["p50_100_ms"]
            print(f"{store}: dask/local rows/s x{results[f'{store}_speedup']:.1f}, "
                  f"peak RSS ratio {results[f'{store}_peak_ratio']:.2f}, lookup p50 ratio "
                  f"{results[f'{store}_lookup_p50_1_ratio']:.2f} (1 id) / "
                  f"{results[f'{store}_lookup_p50_100_ratio']:.2f} (100 ids)")
    if "sqlite_dask_big" in results:
        print(f"driver peak RSS: {results['sqlite_dask']['peak_rss_mb']:.0f} MB at {rows} rows, "
              f"{results['sqlite_dask_big']['peak_rss_mb']:.0f} MB at {big} rows")
    print(json.dumps({"benchmark": "materialize", **results}, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
