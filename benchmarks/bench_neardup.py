"""Near-duplicate search at catalog scale: the substring index vs brute force and vs the earlier banding.

    python -m benchmarks.bench_neardup [--quick] [--sizes 1000000] [--dask-max 1000000]

Data: uniformly random 64-bit hashes, 1 % of them planted near-duplicate pairs 0..6 bits apart (a resized,
re-encoded copy), 0.5 % pairs 7..10 bits apart (found with the probability ``SubstringIndex.recall``), and
2,500 identical blank-image hashes (one bucket per key over ``max_bucket``: counted, never expanded).
Sizes: 1 M and 10 M hashes (``--quick``: 100 k and 400 k).

Per size, the index ``visual.index_for`` picks for that many images runs
- ``local``: the stage's pure functions in this process, one key combination at a time (its buckets are
  independent), i.e. one core's throughput and the memory of one combination;
- ``dask``: the stage's own code path (``pipelines.graph.near_duplicate_pairs``: keys shuffled on a
  LocalCluster of 2 single-threaded workers, 3 GiB each), for sizes up to ``--dask-max``;
and in the same run two references: brute-force Hamming distance of a random subsample of hashes against
all of them (every pair <= 10 bits touching the subsample), and the earlier 8 x 8-bit banding with
``max_bucket`` 2,000 (which share of planted pairs it can find at that size). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import pandas as pd

from imagerank.features import visual as V

THRESHOLD = V.DEFAULT_THRESHOLD
GUARANTEE = V.GUARANTEED_DISTANCE
N_BLANK = 2_500


def log(msg: str) -> None:
    print(f"[bench_neardup] {msg}", file=sys.stderr, flush=True)


def flip_bits(h: np.ndarray, d: np.ndarray, rng) -> np.ndarray:
    """Each hash with ``d[i]`` distinct random bits flipped (vectorized: the d smallest of 64 random keys)."""
    order = np.argsort(rng.random((len(h), 64)), axis=1)
    take = np.arange(64)[None, :] < d[:, None]
    masks = np.zeros(len(h), dtype=np.uint64)
    rows, cols = np.nonzero(take)
    np.bitwise_or.at(masks, rows, np.uint64(1) << order[rows, cols].astype(np.uint64))
    return (h.view(np.uint64) ^ masks).view(np.int64)


def make_hashes(n: int, seed: int = 0):
    """(frame node_id/phash, planted pairs frame a/b/distance, blank node ids), ids shuffled so copies spread."""
    rng = np.random.default_rng(seed)
    close, far = n // 200, n // 400  # pairs: 1 % and 0.5 % of the hashes
    d_close = rng.integers(0, GUARANTEE + 1, close)
    d_far = rng.integers(GUARANTEE + 1, THRESHOLD + 1, far)
    base = rng.integers(-2**63, 2**63 - 1, close + far, dtype=np.int64)
    copies = flip_bits(base, np.concatenate([d_close, d_far]), rng)
    n_random = n - 2 * (close + far) - N_BLANK
    ph = np.concatenate([base, copies, np.zeros(N_BLANK, np.int64),
                         rng.integers(-2**63, 2**63 - 1, n_random, dtype=np.int64)])
    node = rng.permutation(n).astype(np.int64)
    k = close + far
    a, b = node[:k], node[k:2 * k]
    planted = pd.DataFrame({"a": np.minimum(a, b), "b": np.maximum(a, b),
                            "distance": np.concatenate([d_close, d_far])})
    frame = pd.DataFrame({"node_id": node, "phash": ph}).sort_values("node_id", ignore_index=True)
    return frame, planted, node[2 * k:2 * k + N_BLANK]



def local_index(frame: pd.DataFrame, index: V.SubstringIndex):
    """All pairs with the pure functions, one combination at a time: (pairs, skipped, seconds, max bucket)."""
    t0 = time.perf_counter()
    pairs, oversize, largest = [], [], 0
    for c in range(index.keys_per_image):
        keys = V.index_keys(frame, index, combos=[c])
        pairs.append(V.index_pairs(keys, index, THRESHOLD, V.DEFAULT_MAX_BUCKET))
        sizes = np.unique(keys["band_key"].to_numpy(), return_counts=True)[1]
        largest = max(largest, int(np.sort(sizes)[-2]) if len(sizes) > 1 else 0)  # the largest but the blanks'
        oversize.append(V.oversize_buckets(keys, V.DEFAULT_MAX_BUCKET))
    seconds = time.perf_counter() - t0
    return (pd.concat(pairs, ignore_index=True), V.skipped_summary(pd.concat(oversize, ignore_index=True)),
            seconds, largest)


def dask_index(frame: pd.DataFrame, index: V.SubstringIndex):
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    from pipelines.visual import near_duplicate_pairs

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="3GiB",
                      dashboard_address=None, silence_logs=40) as cluster, Client(cluster) as client:
        hashes = dd.from_pandas(frame, npartitions=max(1, len(frame) // 250_000))
        hashes = hashes.persist()
        client.wait_for_workers(2)
        t0 = time.perf_counter()
        pairs, skipped = near_duplicate_pairs(client, hashes, len(frame), index, threshold=THRESHOLD,
                                              max_bucket=V.DEFAULT_MAX_BUCKET, label="bench")
        seconds = time.perf_counter() - t0
        peak = max(client.run(_peak_rss_mb).values())
    return pairs, skipped, seconds, peak


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def brute_force(frame: pd.DataFrame, queries: np.ndarray) -> pd.DataFrame:
    """Every pair (a < b, distance <= THRESHOLD) with at least one end among ``queries`` (node ids)."""
    h = frame["phash"].to_numpy(np.int64).view(np.uint64)
    ids = frame["node_id"].to_numpy(np.int64)
    out = []
    for q in queries:
        d = np.bitwise_count(h ^ h[q])
        hit = np.flatnonzero(d <= THRESHOLD)
        hit = hit[ids[hit] != q]
        out.append(pd.DataFrame({"a": np.minimum(q, ids[hit]), "b": np.maximum(q, ids[hit]),
                                 "distance": d[hit].astype(np.int64)}))
    return pd.concat(out, ignore_index=True).drop_duplicates(["a", "b"])


def old_banding(frame: pd.DataFrame, planted: pd.DataFrame) -> dict:
    """What the earlier 8 x 8-bit banding (max_bucket 2,000) can find: a planted pair is found when it shares
    a band bucket that is expanded (size <= max_bucket); candidate pairs = the work it would do."""
    ph = frame["phash"].to_numpy(np.int64)  # frame is sorted by node_id, and node ids are 0..n-1
    chunk = 250_000
    keys = np.empty((V.DEFAULT_BANDS, len(ph)), dtype=np.int64)
    for lo in range(0, len(ph), chunk):
        part = pd.DataFrame({"node_id": np.arange(lo, min(lo + chunk, len(ph))), "phash": ph[lo:lo + chunk]})
        keys[:, lo:lo + chunk] = V.band_keys(part)["band_key"].to_numpy().reshape(V.DEFAULT_BANDS, -1)
    hit = np.zeros(len(planted), dtype=bool)
    compared_rows, candidates = 0, 0
    a, b = planted["a"].to_numpy(), planted["b"].to_numpy()
    for band in range(V.DEFAULT_BANDS):
        _, inverse, counts = np.unique(keys[band], return_inverse=True, return_counts=True)
        size = counts[inverse]
        ok = counts <= V.DEFAULT_MAX_BUCKET
        compared_rows += int(counts[ok].sum())
        candidates += int((counts[ok] * (counts[ok] - 1) // 2).sum())
        hit |= (keys[band, a] == keys[band, b]) & (size[a] <= V.DEFAULT_MAX_BUCKET)
    close = planted["distance"].to_numpy() <= GUARANTEE
    return {"mean_bucket": round(len(frame) / 256, 1), "rows_in_compared_buckets": round(
        compared_rows / (V.DEFAULT_BANDS * len(frame)), 4), "candidate_pairs": candidates,
        "planted_found": round(float(hit[close].mean()), 4),
        "planted_found_7_to_10": round(float(hit[~close].mean()), 4)}


def found(planted: pd.DataFrame, pairs: pd.DataFrame) -> np.ndarray:
    """Per planted pair: found by ``pairs``."""
    hit = planted[["a", "b"]].merge(pairs[["a", "b"]].assign(hit=True), on=["a", "b"], how="left")["hit"]
    return hit.astype("boolean").fillna(False).to_numpy(bool)


def run_size(n: int, use_dask: bool, n_queries: int, seed: int) -> dict:
    log(f"{n:,} hashes: generating")
    frame, planted, blank = make_hashes(n, seed)
    index = V.index_for(n)
    log(f"index {index.n_substrings}/{index.match}: {index.keys_per_image} keys per image, "
        f"mean bucket {index.mean_bucket(n):.1f}")
    pairs, skipped, seconds, largest = local_index(frame, index)
    hit = found(planted, pairs)
    by_d = pd.Series(hit).groupby(planted["distance"].to_numpy()).mean()
    close = (planted["distance"] <= GUARANTEE).to_numpy()
    hit_close = float(hit[close].mean())
    rng = np.random.default_rng(seed + 1)
    others = np.setdiff1d(np.arange(n), np.concatenate([blank, planted["a"], planted["b"]]))
    queries = np.concatenate([planted["a"].to_numpy()[rng.choice(len(planted), n_queries // 2, replace=False)],
                              rng.choice(others, n_queries // 2, replace=False)])  # blanks: skipped on purpose
    log(f"brute force: {len(queries)} queries x {n:,} hashes")
    truth = brute_force(frame, queries)
    truth = truth.merge(pairs.assign(found=True)[["a", "b", "found", "distance"]].rename(
        columns={"distance": "found_distance"}), on=["a", "b"], how="left")
    truth["found"] = truth["found"].astype("boolean").fillna(False).astype(bool)
    qset = set(queries.tolist())
    touching = pairs[pairs["a"].isin(qset) | pairs["b"].isin(qset)]
    false_pairs = len(touching) - int(truth["found"].sum())
    wrong_distance = int((truth["found"] & (truth["found_distance"] != truth["distance"])).sum())
    le6 = truth["distance"] <= GUARANTEE
    row = {
        "hashes": n, "index": f"{index.n_substrings}/{index.match}", "keys_per_image": index.keys_per_image,
        "mean_bucket": round(index.mean_bucket(n), 2), "largest_bucket": largest,
        "planted_pairs_le6": int(close.sum()), "planted_found": round(hit_close, 4),
        "planted_found_by_distance": {int(k): round(float(v), 4) for k, v in by_d.items()},
        "recall_formula_by_distance": {d: round(index.recall(d), 4) for d in range(GUARANTEE + 1, THRESHOLD + 1)},
        "pairs": int(len(pairs)), "seconds_local": round(seconds, 2), "hashes_per_s_local": round(n / seconds),
        **skipped,
        "brute_force_queries": int(len(queries)), "brute_force_pairs": int(len(truth)),
        "recall_vs_brute_force_le6": round(float(truth.loc[le6, "found"].mean()), 4) if le6.any() else None,
        "recall_vs_brute_force_7_to_10": round(float(truth.loc[~le6, "found"].mean()), 4) if (~le6).any() else None,
        "false_pairs": int(false_pairs), "wrong_distances": wrong_distance,
    }
    log("earlier banding reference")
    row["old_banding"] = old_banding(frame, planted)
    if use_dask:
        log("dask: the stage's near_duplicate_pairs on a 2-worker LocalCluster")
        dpairs, dskipped, dseconds, peak = dask_index(frame, index)
        row.update({"seconds_dask": round(dseconds, 2), "hashes_per_s_dask": round(n / dseconds),
                    "dask_worker_peak_rss_mb": round(peak), "dask_same_pairs": bool(
                        len(dpairs) == len(pairs) and dpairs.merge(pairs, on=["a", "b", "distance"]).shape[0]
                        == len(pairs) and dskipped == skipped)})
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=None,
                    help="comma-separated hash counts (default 1M,10M; --quick 100k,400k)")
    ap.add_argument("--dask-max", type=int, default=None,
                    help="run the Dask path for sizes up to this (default: 1M; --quick: all)")
    ap.add_argument("--queries", type=int, default=None, help="brute-force subsample (default 1000; quick 400)")
    args = ap.parse_args(argv)
    sizes = args.sizes or ([100_000, 400_000] if args.quick else [1_000_000, 10_000_000])
    dask_max = args.dask_max if args.dask_max is not None else (max(sizes) if args.quick else 1_000_000)
    queries = args.queries or (400 if args.quick else 1000)
    rows = [run_size(n, n <= dask_max, queries, seed=i) for i, n in enumerate(sizes)]

    print(f"{'hashes':>11} {'index':>6} {'keys/img':>8} {'mean bkt':>8} {'planted<=6':>10} {'vs brute<=6':>11} "
          f"{'vs brute 7-10':>13} {'false':>5} {'local h/s':>10} {'dask h/s':>9} {'skipped bkts':>12} "
          f"{'old banding<=6':>14}")
    for r in rows:
        print(f"{r['hashes']:>11,} {r['index']:>6} {r['keys_per_image']:>8} {r['mean_bucket']:>8.1f} "
              f"{r['planted_found']:>10.4f} {r['recall_vs_brute_force_le6'] or 0:>11.4f} "
              f"{r['recall_vs_brute_force_7_to_10'] or 0:>13.4f} {r['false_pairs']:>5} "
              f"{r['hashes_per_s_local']:>10,} {r.get('hashes_per_s_dask', 0):>9,} {r['oversize_buckets']:>12} "
              f"{r['old_banding']['planted_found']:>14.4f}")
    print(json.dumps({"benchmark": "neardup", "quick": args.quick, "threshold": THRESHOLD,
                      "max_bucket": V.DEFAULT_MAX_BUCKET, "sizes": rows}))
    return rows


if __name__ == "__main__":
    main()
