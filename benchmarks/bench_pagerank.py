"""PageRank: the project's implementation vs scipy power iteration written plainly vs networkx, same run.

    python -m benchmarks.bench_pagerank [--quick]

Graph: random directed graph, ~10 % dangling nodes, Zipf-skewed in-degrees. Project and plain scipy run on the
full graph (times include building the sparse matrix); networkx runs on a smaller graph (sizes printed) and is
compared per edge. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
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
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
