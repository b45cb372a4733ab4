"""PageRank: the project's implementation vs scipy power iteration written plainly vs networkx, same run,
and the memory each edge costs on the driver and on the workers.

    python -m benchmarks.bench_pagerank [--quick] [--no-memory]

Graph: random directed graph, ~10 % dangling nodes, Zipf-skewed in-degrees. Project and plain scipy run on the
full graph (times include building the sparse matrix); networkx runs on a smaller graph (sizes printed) and is
compared per edge.

Memory (tracemalloc, which sees numpy's buffers; peaks above the level before the step):
- in memory, on the driver: the pipeline's path from a Dask frame of edge ids on a LocalCluster
  (``build._rank``: edge ids gathered one partition at a time, CSR built, ids dropped, ``pagerank``): peak
  bytes per edge, and the CSR's bytes per edge (what the iteration holds);
- blocked (``pagerank_blocked``, the path past one machine): the driver's peak bytes per edge, the tiles' CSR
  bytes per edge held by the workers, the workers' peak RSS, and the L1 distance to the in-memory scores.
Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tracemalloc

import numpy as np
import scipy.sparse as sp

from imagerank.graph.pagerank import pagerank


def make_graph(n: int, e: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    src = rng.integers(0, int(n * 0.9), e).astype(np.int32)  # the last 10 % have no out-links
    dst = ((rng.zipf(1.3, e) * 7919 + rng.integers(0, n, e)) % n).astype(np.int32)
    keys = np.unique(src.astype(np.int64) * n + dst)
    return (keys // n).astype(np.int32), (keys % n).astype(np.int32), n


def plain_scipy(src, dst, n, d=0.85, tol=1e-10, max_iter=200):
    """PageRank as anyone would write it with scipy.sparse, for reference."""
    out = np.bincount(src, minlength=n).astype(float)
    m = sp.csr_matrix((1.0 / out[src], (dst, src)), shape=(n, n))
    dang = out == 0
    x = np.full(n, 1.0 / n)
    for _ in range(max_iter):
        x_new = d * (m @ x) + (d * x[dang].sum() + 1 - d) / n
        err = np.abs(x_new - x).sum()
        x = x_new
        if err < n * tol:
            break
    return x


def timed(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Traced:
    """Peak and final traced bytes of a block, above the level at entry."""

    def __enter__(self):
        import gc

        gc.collect()
        tracemalloc.start()
        tracemalloc.reset_peak()
        self.base = tracemalloc.get_traced_memory()[0]
        return self

    def __exit__(self, *exc):
        current, peak = tracemalloc.get_traced_memory()
        self.peak, self.resident = peak - self.base, current - self.base
        tracemalloc.stop()


def memory_figures(src: np.ndarray, dst: np.ndarray, n: int, n_blocks: int) -> dict:
    """Bytes per edge of the in-memory path (driver) and of the blocked path (driver, workers)."""
    import dask.dataframe as dd
    import pandas as pd
    from distributed import Client, LocalCluster

    from imagerank.graph import build
    from imagerank.graph.pagerank import pagerank_blocked

    e = len(src)
    frame = pd.DataFrame({"src_id": src.astype(np.int64), "dst_id": dst.astype(np.int64)})
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="3GiB",
                      dashboard_address=None, silence_logs=40) as cluster, Client(cluster) as client:
        joined = client.persist(dd.from_pandas(frame, npartitions=16))
        del frame
        print("[bench_pagerank] in-memory path: gather edge ids, build, iterate", file=sys.stderr)
        with Traced() as driver:  # the pipeline's own path (page_graph / host_graph below the edge limit)
            res, vectors, _ = build._rank(joined, n, client, False, "bench")
            scores = res.scores
            del res, vectors
        with Traced() as matrix_only:
            from imagerank.graph.pagerank import transition_matrix

            m, _ = transition_matrix(src, dst, n)
        csr_bytes = m.data.nbytes + m.indices.nbytes + m.indptr.nbytes
        del m
        rss_before = max(client.run(_peak_rss_mb).values())
        print(f"[bench_pagerank] blocked path: {n_blocks} x {n_blocks} tiles", file=sys.stderr)
        t0 = time.perf_counter()
        with Traced() as blocked_driver:
            b = pagerank_blocked(client, joined, n, src="src_id", dst="dst_id", n_blocks=n_blocks)
        blocked_s = time.perf_counter() - t0
        worker_peak = max(client.run(_peak_rss_mb).values())
        l1 = float(np.abs(b.scores.gather() - scores).sum())
    return {
        "driver_in_memory_peak_bytes_per_edge": round(driver.peak / e, 1),
        "driver_in_memory_resident_bytes_per_edge": round(driver.resident / e, 1),
        "matrix_build_peak_bytes_per_edge": round(matrix_only.peak / e, 1),
        "csr_bytes_per_edge": round(csr_bytes / e, 1),
        "blocked_s": round(blocked_s, 2), "blocked_iterations": b.iterations, "blocked_tiles": b.tiles,
        "blocked_driver_peak_bytes_per_edge": round(blocked_driver.peak / e, 2),
        "blocked_driver_peak_mb": round(blocked_driver.peak / 2**20, 1),
        "blocked_worker_tile_bytes_per_edge": round(b.tile_bytes / e, 1),
        "blocked_worker_peak_rss_mb": round(worker_peak), "worker_peak_rss_mb_before_blocked": round(rss_before),
        "blocked_l1_vs_in_memory": l1,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory figures (LocalCluster runs)")
    args = ap.parse_args(argv)
    n, e = (100_000, 1_000_000) if args.quick else (1_000_000, 10_000_000)
    nx_n, nx_e = (5_000, 50_000) if args.quick else (20_000, 200_000)
    repeat = 3
    src, dst, n = make_graph(n, e)
    t_proj, res = timed(lambda: pagerank(src, dst, n), repeat)
    t_plain, ref = timed(lambda: plain_scipy(src, dst, n), repeat)
    l1 = float(np.abs(res.scores - ref).sum())

    import networkx as nx

    s2, d2, n2 = make_graph(nx_n, nx_e, seed=1)
    g = nx.DiGraph()
    g.add_nodes_from(range(n2))
    g.add_edges_from(zip(s2.tolist(), d2.tolist()))
    t_nx, nxr = timed(lambda: nx.pagerank(g, tol=1e-10), 1)
    t_proj_small, small = timed(lambda: pagerank(s2, d2, n2), repeat)
    l1_nx = float(np.abs(small.scores - np.array([nxr[i] for i in range(n2)])).sum())
    edges, edges_small = len(src), len(s2)
    rows = [
        ("project (imagerank)", n, edges, t_proj, edges / t_proj),
        ("plain scipy", n, edges, t_plain, edges / t_plain),
        ("project, small graph", n2, edges_small, t_proj_small, edges_small / t_proj_small),
        ("networkx, small graph", n2, edges_small, t_nx, edges_small / t_nx),
    ]
    print(f"{'implementation':24} {'nodes':>10} {'edges':>11} {'median s':>9} {'edges/s':>12}")
    for name, nn, ee, t, r in rows:
        print(f"{name:24} {nn:>10,} {ee:>11,} {t:>9.3f} {r:>12,.0f}")
    print(f"iterations {res.iterations}; L1(project, plain scipy) {l1:.2e}; L1(project, networkx) {l1_nx:.2e}")
    figures = {
        "benchmark": "pagerank", "quick": args.quick, "nodes": n, "edges": edges,
        "project_s": round(t_proj, 4), "plain_scipy_s": round(t_plain, 4),
        "ratio_project_to_plain_scipy": round(t_proj / t_plain, 3),
        "project_edges_per_s": round(edges / t_proj), "networkx_nodes": n2, "networkx_edges": edges_small,
        "networkx_s": round(t_nx, 4), "project_small_s": round(t_proj_small, 4),
        "speedup_vs_networkx_per_edge": round((t_nx / edges_small) / (t_proj / edges), 1),
        "speedup_vs_networkx_same_graph": round(t_nx / t_proj_small, 1),
        "l1_vs_plain_scipy": l1, "l1_vs_networkx": l1_nx,
    }
    if not args.no_memory:
        mem = memory_figures(src, dst, n, n_blocks=4 if args.quick else 8)
        figures.update(mem)
        print(f"in memory (driver): peak {mem['driver_in_memory_peak_bytes_per_edge']} B/edge while gathering ids, "
              f"building and iterating; {mem['driver_in_memory_resident_bytes_per_edge']} B/edge resident after; "
              f"matrix build alone {mem['matrix_build_peak_bytes_per_edge']} B/edge, "
              f"CSR {mem['csr_bytes_per_edge']} B/edge")
        print(f"blocked ({mem['blocked_tiles']} tiles, {mem['blocked_iterations']} iterations, {mem['blocked_s']} s): "
              f"driver peak {mem['blocked_driver_peak_mb']} MB ({mem['blocked_driver_peak_bytes_per_edge']} B/edge), "
              f"workers hold {mem['blocked_worker_tile_bytes_per_edge']} B/edge of tiles, worker peak RSS "
              f"{mem['blocked_worker_peak_rss_mb']} MB; L1 to in-memory scores {mem['blocked_l1_vs_in_memory']:.2e}")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
