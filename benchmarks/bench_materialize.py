"""Materialization: Feast's local engine vs imagerank's Dask engine, into SQLite and Redis, same run.

    python -m benchmarks.bench_materialize [--quick] [--rows N] [--repeats N] [--big-rows N] [--skip-big]

Both engines read the same parquet files. Every materialization runs in a fresh subprocess (its own
peak RSS) that first imports and applies the repo, so neither engine pays for imports in the timed part;
the Dask engine's LocalCluster is started and its workers' imports warmed before the timer starts (its
setup time is printed apart). The engines alternate (local first on even repeats, Dask first on odd
ones) and the figures are medians over the repeats, ratios taken from the same run.

Lookups (Feast SDK ``get_online_features``, 1 and 100 entities) alternate between the store written by
the local engine and the one written by the Dask engine in the same loop, so machine noise falls on both.
``--floor`` adds what the machine allows with no engine at all: the same SQLite rows (entities x
features) written by one ``executemany`` of ready tuples and by one ``INSERT ... SELECT`` inside SQLite,
and the same HSETs sent pre-packed to Redis. Ends with one JSON line of all figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import shutil
import sqlite3
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
ENGINES = ("local", "dask")

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
    """A Feast repo; the Dask engine with its default settings (scheduler: a LocalCluster)."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    online = ("online_store:\n  type: sqlite\n  path: online.db\n" if store == "sqlite"
              else f"online_store:\n  type: redis\n  connection_string: \"{redis}\"\n")
    eng = "batch_engine: local\n" if engine == "local" else "batch_engine:\n  type: imagerank.store.engine.DaskEngine\n"
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
    from feast.infra.compute_engines.local.compute import LocalComputeEngine  # noqa: F401  (warm imports)

    apply_repo(repo)
    store = FeatureStore(repo_path=str(repo))
    setup = 0.0
    cfg = store.config.batch_engine
    if type(cfg).__name__ == "DaskEngineConfig":
        from imagerank.store.engine.utils import engine_client

        t = time.perf_counter()
        client, _ = engine_client(cfg.scheduler_address, cfg.n_workers)  # its own LocalCluster, workers' imports done
        setup = time.perf_counter() - t
    t = time.perf_counter()
    store.materialize(T0 - timedelta(days=1), T0 + timedelta(days=2))
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "setup_seconds": setup, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak RSS. Linux's ``ru_maxrss`` also counts the parent's peak from before the
    exec (a 2M-row parent would show through), ``VmHWM`` only this program's memory."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(repo: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_materialize", "--child", str(repo)],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if out.returncode != 0:
        raise RuntimeError(f"child failed for {repo}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def redis_db(server, db: int):
    import redis

    return redis.Redis(host=server.host, port=server.port, db=db)


def load_average() -> float:
    return os.getloadavg()[0]


def sqlite_shape(repo: Path) -> dict:
    """What could make lookups differ between two stores of the same rows."""
    db = repo / "online.db"
    with contextlib.closing(sqlite3.connect(db)) as c:
        return {"journal_mode": c.execute("PRAGMA journal_mode").fetchone()[0],
                "pages": c.execute("PRAGMA page_count").fetchone()[0],
                "free_pages": c.execute("PRAGMA freelist_count").fetchone()[0],
                "analyzed": bool(c.execute("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")
                                 .fetchone()[0]),
                "wal_bytes": os.path.getsize(f"{db}-wal") if os.path.exists(f"{db}-wal") else 0}


def lookup_latency(repos: dict[str, Path], ids: list[str], n: int, reps: int) -> dict[str, tuple[float, float]]:
    """p50/p99 ms of the same lookups on each repo, taken in turns (the order alternates every round)."""
    from feast import FeatureStore

    stores = {k: FeatureStore(repo_path=str(r)) for k, r in repos.items()}
    refs = [f"bench:f{i}" for i in range(N_FEATURES)]
    rnd = random.Random(n)
    times: dict[str, list[float]] = {k: [] for k in stores}
    names = list(stores)
    for r in range(reps + 10):
        rows = [{"image_id": i} for i in rnd.sample(ids, n)]
        for k in (names if r % 2 else names[::-1]):
            t = time.perf_counter()
            stores[k].get_online_features(features=refs, entity_rows=rows).to_dict()
            if r >= 10:  # warm-up rounds not counted
                times[k].append((time.perf_counter() - t) * 1000)
    return {k: (statistics.median(v), sorted(v)[min(len(v) - 1, int(0.99 * len(v)))]) for k, v in times.items()}


def floor_sqlite(work: Path, rows: int) -> dict:
    """Seconds to write the table's rows into Feast's SQLite layout with no engine: ready tuples through
    one ``executemany`` (Python's floor), and one ``INSERT ... SELECT`` from a staged copy (SQLite's)."""
    import struct

    def fresh(path: Path) -> sqlite3.Connection:
        path.unlink(missing_ok=True)
        c = sqlite3.connect(path, isolation_level=None)
        c.execute("CREATE TABLE t (entity_key BLOB, feature_name TEXT, value BLOB, value_text TEXT, "
                  "vector_value BLOB, event_ts timestamp, created_ts timestamp, PRIMARY KEY(entity_key, feature_name))")
        c.execute("CREATE INDEX t_ek ON t (entity_key)")
        return c

    head = struct.pack("<IIII", 1, 2, 8, 0) + b"image_id" + struct.pack("<II", 2, 32)
    rnd = random.Random(0)
    tuples = [(head + f"{i:032x}".encode(), f"f{j}", b"\x29" + struct.pack("<d", x), repr(x), 1704067200, None)
              for i in range(rows) for j, x in enumerate(rnd.random() for _ in range(N_FEATURES))]
    insert = "INSERT INTO t (entity_key, feature_name, value, value_text, event_ts, created_ts) VALUES (?,?,?,?,?,?)"
    out = {}
    with contextlib.closing(fresh(work / "floor.db")) as c:
        t = time.perf_counter()
        c.execute("BEGIN")
        c.executemany(insert, tuples)
        c.execute("COMMIT")
        out["executemany_seconds"] = time.perf_counter() - t
    with contextlib.closing(fresh(work / "floor2.db")) as c:
        c.execute(f"ATTACH '{work / 'floor.db'}' AS src")
        t = time.perf_counter()
        c.execute("BEGIN")
        c.execute("INSERT INTO main.t SELECT * FROM src.t WHERE true")  # WHERE: no raw-copy shortcut
        c.execute("COMMIT")
        out["insert_select_seconds"] = time.perf_counter() - t
    return out


def floor_redis(server, rows: int) -> dict:
    """Seconds for the server to take the table's HSETs, pre-packed, over one connection in 10k rounds."""
    import struct

    def bulk(b: bytes) -> bytes:
        return b"$%d\r\n%b\r\n" % (len(b), b)

    head = struct.pack("<IIII", 1, 2, 8, 0) + b"image_id" + struct.pack("<II", 2, 32)
    fields = [bulk(f"f{j}".encode()) for j in range(N_FEATURES)]
    cmds = [b"*%d\r\n$4\r\nHSET\r\n" % (4 + 2 * N_FEATURES) + bulk(head + f"{i:032x}".encode() + PROJECT.encode())
            + bulk(b"_ts:bench") + bulk(b"\x08\x80\x80\x80\x80\x06") + b"".join(f + bulk(b"\x29" + bytes(8)) for f in fields)
            for i in range(rows)]
    client = server.client()
    conn = client.connection_pool.get_connection()
    t = time.perf_counter()
    for start in range(0, rows, 10_000):
        part = cmds[start:start + 10_000]
        conn.send_packed_command([b"".join(part)])
        for _ in part:
            conn.read_response()
    seconds = time.perf_counter() - t
    client.connection_pool.release(conn)
    client.flushdb()
    return {"hset_seconds": seconds}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20k rows, one repeat, no 2M run")
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lookup-reps", type=int, default=400)
    ap.add_argument("--big-rows", type=int, default=2_000_000)
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--floor", action="store_true", help="also measure the no-engine floors")
    ap.add_argument("--stores", default="sqlite,redis")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(Path(args.child))))
        return 0
    rows = 20_000 if args.quick else args.rows
    repeats = 1 if args.quick else args.repeats
    lookup_reps = 50 if args.quick else args.lookup_reps
    big = None if (args.quick or args.skip_big) else args.big_rows

    from imagerank.store.redis_server import RedisServerUnavailable, start_redis_server

    work = Path(tempfile.mkdtemp(prefix="bench-materialize-"))
    stores = args.stores.split(",")
    server = None
    if "redis" in stores:
        try:
            server = start_redis_server()
        except RedisServerUnavailable as e:
            print(f"note: {e}; Redis runs skipped", file=sys.stderr)
            stores.remove("redis")
    results: dict = {"rows": rows, "features": N_FEATURES, "cores": os.cpu_count(), "repeats": repeats,
                     "load_before": load_average()}
    runs: dict[tuple[str, str], list[dict]] = {}
    try:
        src = make_source(work / "source", rows)
        ids = [f"{i:032x}" for i in range(rows)]
        repos: dict[tuple[str, str], Path] = {}
        for rep in range(repeats):
            for store in stores:
                for k, engine in enumerate(ENGINES if rep % 2 == 0 else ENGINES[::-1]):
                    redis = None
                    if store == "redis":  # one database per engine: both stores stay for the lookups
                        redis = f"{server.connection_string},db={ENGINES.index(engine)}"
                        redis_db(server, ENGINES.index(engine)).flushdb()
                    repo = repos[store, engine] = make_repo(work / f"{store}-{engine}", src, engine, store, redis)
                    res = run_child(repo)
                    res["load"] = load_average()
                    runs.setdefault((store, engine), []).append(res)
                    print(f"  {store:<7}{engine:<6} run {rep + 1}: {rows / res['seconds']:>8.0f} rows/s "
                          f"({res['seconds']:.1f} s, load {res['load']:.1f})", file=sys.stderr, flush=True)
        for store in stores:
            for engine in ENGINES:
                rs = runs[store, engine]
                secs = statistics.median(r["seconds"] for r in rs)
                results[f"{store}_{engine}"] = {
                    "seconds": secs, "rows_per_s": rows / secs, "runs_seconds": [r["seconds"] for r in rs],
                    "setup_seconds": statistics.median(r["setup_seconds"] for r in rs),
                    "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in rs)}
            paired = [lo["seconds"] / da["seconds"] for lo, da in zip(runs[store, "local"], runs[store, "dask"])]
            results[f"{store}_speedup"] = results[f"{store}_local"]["seconds"] / results[f"{store}_dask"]["seconds"]
            results[f"{store}_speedup_per_repeat"] = paired
            if store == "sqlite":
                results["sqlite_shape"] = {e: sqlite_shape(repos[store, e]) for e in ENGINES}
            for n in (1, 100):
                lat = lookup_latency({e: repos[store, e] for e in ENGINES}, ids, n, lookup_reps)
                for e in ENGINES:
                    results[f"{store}_{e}"][f"p50_{n}_ms"], results[f"{store}_{e}"][f"p99_{n}_ms"] = lat[e]
                results[f"{store}_lookup_p50_{n}_ratio"] = lat["dask"][0] / lat["local"][0]
                results[f"{store}_lookup_p99_{n}_ratio"] = lat["dask"][1] / lat["local"][1]
        if big:
            bsrc = make_source(work / "source-big", big)
            res = run_child(make_repo(work / "sqlite-dask-big", bsrc, "dask", "sqlite", None))
            res["rows_per_s"] = big / res["seconds"]
            results["sqlite_dask_big"] = {"rows": big, **res}
        if args.floor:
            results["floor_sqlite"] = floor_sqlite(work, rows)
            if server:
                results["floor_redis"] = floor_redis(server, rows)
    finally:
        if server:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    results["load_after"] = load_average()
    report(results, stores)
    print(json.dumps({"benchmark": "materialize", **results}, default=float))
    return 0


def report(results: dict, stores: list[str]) -> None:
    rows = results["rows"]
    print(f"\nmaterialize {rows} rows x {N_FEATURES} float features on {results['cores']} cores, medians of "
          f"{results['repeats']} alternating runs (load average {results['load_before']:.1f} -> "
          f"{results['load_after']:.1f})")
    print(f"{'store':<8}{'engine':<7}{'seconds':>9}{'rows/s':>10}{'peak MB':>9}"
          f"{'p50 1':>8}{'p99 1':>8}{'p50 100':>9}{'p99 100':>9}")
    for store in stores:
        for engine in ENGINES:
            r = results[f"{store}_{engine}"]
            print(f"{store:<8}{engine:<7}{r['seconds']:>9.1f}{r['rows_per_s']:>10.0f}{r['peak_rss_mb']:>9.0f}"
                  f"{r['p50_1_ms']:>8.2f}{r['p99_1_ms']:>8.2f}{r['p50_100_ms']:>9.2f}{r['p99_100_ms']:>9.2f}")
        print(f"{store}: dask/local rows/s x{results[f'{store}_speedup']:.1f} (per repeat "
              f"{', '.join(f'{x:.1f}' for x in results[f'{store}_speedup_per_repeat'])}); lookup p50 ratio "
              f"{results[f'{store}_lookup_p50_1_ratio']:.2f} (1 id) / {results[f'{store}_lookup_p50_100_ratio']:.2f}"
              f" (100 ids), p99 {results[f'{store}_lookup_p99_1_ratio']:.2f} / "
              f"{results[f'{store}_lookup_p99_100_ratio']:.2f}; Dask cluster setup "
              f"{results[f'{store}_dask']['setup_seconds']:.1f} s (not timed)")
    if "sqlite_dask_big" in results:
        b = results["sqlite_dask_big"]
        print(f"driver peak RSS (Dask engine, SQLite): {results['sqlite_dask']['peak_rss_mb']:.0f} MB at {rows} rows, "
              f"{b['peak_rss_mb']:.0f} MB at {b['rows']} rows ({b['rows_per_s']:.0f} rows/s)")
    if "floor_sqlite" in results:
        f = results["floor_sqlite"]
        print(f"SQLite floor, {rows * N_FEATURES} rows, no engine: executemany of ready tuples "
              f"{rows / f['executemany_seconds']:.0f} entities/s, INSERT ... SELECT inside SQLite "
              f"{rows / f['insert_select_seconds']:.0f} entities/s")
    if "floor_redis" in results:
        print(f"Redis floor: pre-packed HSETs {rows / results['floor_redis']['hset_seconds']:.0f} entities/s")


if __name__ == "__main__":
    sys.exit(main())
