"""Visual near-duplicates by perceptual hash: LSH banding, exact Hamming verification, clusters, VisualRank.

Two images are near-duplicates when the Hamming distance of their 64-bit ``phash`` is ``<= threshold``
(default 10). Candidates come from LSH banding, never from all pairs: the 64 bits are split into ``n_bands``
disjoint bands (``n_tables`` times, each table after a fixed random bit permutation); images sharing a band
value in a table land in one bucket (a Dask shuffle on the band key), and only pairs inside a bucket are
verified by exact Hamming distance.

Recall (``band_recall``; differing bits placed uniformly at random): a pair at distance d is found when one of
its bands has no differing bit. With the default 8 bands x 8 bits x 1 table, every pair with d <= 7 is found
(pigeonhole) and d = 8 / 9 / 10 with probability 0.996 / 0.983 / 0.956; 8 shuffle rows per image. 2 tables
give 0.998 at d = 10 for 16 rows per image. Fewer, wider bands cut candidate traffic: 4 x 16 bits finds d <= 3
surely but only 17 % of d = 10 pairs, which is why it is not the default. A bucket larger than
``max_bucket`` (degenerate hashes: blank or single-colour images share one phash) is not expanded into pairs;
it is counted in ``oversize_buckets``.

Per image (``VISUAL_META``): ``dup_neighbors`` (verified near-duplicates), ``dup_cluster_size`` (connected
component of the near-duplicate graph, 1 = unique), ``dup_hosts`` / ``dup_providers`` (distinct landing-page
hosts / providers within the cluster), ``visualrank`` (PageRank on the similarity graph, edge weight
``1 - d / (threshold + 1)``, scaled so that 1.0 = the average image; isolated images get the teleport share).
"""

from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np
import pandas as pd

DEFAULT_THRESHOLD = 10
DEFAULT_BANDS = 8
DEFAULT_TABLES = 1
DEFAULT_MAX_BUCKET = 2000

VISUAL_META = pd.DataFrame({
    "image_id": pd.Series(dtype="string"),
    "has_phash": pd.Series(dtype="bool"),
    "dup_neighbors": pd.Series(dtype="int64"),
    "dup_cluster_size": pd.Series(dtype="int64"),
    "dup_hosts": pd.Series(dtype="int64"),
    "dup_providers": pd.Series(dtype="int64"),
    "visualrank": pd.Series(dtype="float64"),
})
BAND_META = pd.DataFrame({"band_key": pd.Series(dtype="int64"), "node_id": pd.Series(dtype="int64"),
                          "phash": pd.Series(dtype="int64")})
PAIRS_META = pd.DataFrame({"a": pd.Series(dtype="int64"), "b": pd.Series(dtype="int64"),
                           "distance": pd.Series(dtype="int64")})


def band_recall(d: int, n_bands: int = DEFAULT_BANDS, n_tables: int = DEFAULT_TABLES) -> float:
    """Probability that a pair at Hamming distance ``d`` shares a band in at least one table."""
    widths = _widths(n_bands)
    p = 0.0
    for k in range(1, n_bands + 1):
        for subset in combinations(widths, k):
            w = sum(subset)
            p += (-1) ** (k + 1) * (comb(64 - w, d) / comb(64, d) if 64 - w >= d else 0.0)
    p = min(max(p, 0.0), 1.0)
    return 1.0 - (1.0 - p) ** n_tables


def _widths(n_bands: int) -> list[int]:
    if not 2 <= n_bands <= 64:
        raise ValueError("n_bands must be in 2..64 (a band value must fit in 32 bits)")
    return [64 // n_bands + (1 if i < 64 % n_bands else 0) for i in range(n_bands)]


def _permutations(n_tables: int, seed: int = 20080421) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.arange(64)] + [rng.permutation(64) for _ in range(n_tables - 1)]


def _bits(phash: np.ndarray) -> np.ndarray:
    """(n, 64) uint8 bits, most significant first."""
    u = phash.astype(np.int64).view(np.uint64)
    return np.unpackbits(u.astype(">u8").view(np.uint8).reshape(-1, 8), axis=1)


def band_keys(frame: pd.DataFrame, n_bands: int = DEFAULT_BANDS, n_tables: int = DEFAULT_TABLES) -> pd.DataFrame:
    """One row per (image, table, band): ``band_key`` = table/band index in the high 32 bits, band value in the
    low bits. ``frame``: node_id, phash (nulls dropped). Pure."""
    f = frame[frame["phash"].notna()]
    if f.empty:
        return BAND_META.copy()
    ph = f["phash"].to_numpy(np.int64)
    ids = f["node_id"].to_numpy(np.int64)
    bits = _bits(ph)
    widths = _widths(n_bands)
    out = []
    for t, perm in enumerate(_permutations(n_tables)):
        pb = bits[:, perm].astype(np.int64)
        start = 0
        for b, w in enumerate(widths):
            weights = 1 << np.arange(w - 1, -1, -1, dtype=np.int64)
            value = pb[:, start:start + w] @ weights
            start += w
            key = (np.int64(t * n_bands + b) << np.int64(32)) | value
            out.append(pd.DataFrame({"band_key": key, "node_id": ids, "phash": ph}))
    return pd.concat(out, ignore_index=True).astype(BAND_META.dtypes.to_dict())


def bucket_pairs(frame: pd.DataFrame, threshold: int = DEFAULT_THRESHOLD,
                 max_bucket: int = DEFAULT_MAX_BUCKET) -> pd.DataFrame:
    """Verified pairs (a < b, distance <= threshold) inside each band bucket of a partition (all rows of a
    bucket must be in the partition: shuffle on band_key first). Buckets over ``max_bucket`` are skipped. Pure."""
    if frame.empty:
        return PAIRS_META.copy()
    f = frame.sort_values(["band_key", "node_id"], kind="stable")
    keys = f["band_key"].to_numpy()
    ids = f["node_id"].to_numpy(np.int64)
    ph = f["phash"].to_numpy(np.int64).view(np.uint64)
    bounds = np.flatnonzero(np.diff(keys)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(keys)]])
    a_out, b_out, d_out = [], [], []
    for s, e in zip(starts, ends):
        size = e - s
        if size < 2 or size > max_bucket:
            continue
        i, j = np.triu_indices(size, k=1)
        d = np.bitwise_count(ph[s + i] ^ ph[s + j]).astype(np.int64)
        keep = d <= threshold
        if keep.any():
            a, b = ids[s + i[keep]], ids[s + j[keep]]
            a_out.append(np.minimum(a, b))
            b_out.append(np.maximum(a, b))
            d_out.append(d[keep])
    if not a_out:
        return PAIRS_META.copy()
    out = pd.DataFrame({"a": np.concatenate(a_out), "b": np.concatenate(b_out), "distance": np.concatenate(d_out)})
    out = out[out["a"] != out["b"]].drop_duplicates(["a", "b"])
    return out.astype(PAIRS_META.dtypes.to_dict())


def oversize_buckets(frame: pd.DataFrame, max_bucket: int = DEFAULT_MAX_BUCKET) -> pd.DataFrame:
    """(band_key, size) of buckets too large to expand, for the run summary. Pure."""
    sizes = frame.groupby("band_key").size()
    return sizes[sizes > max_bucket].rename("size").reset_index()


def cluster_and_rank(n: int, a: np.ndarray, b: np.ndarray, distance: np.ndarray,
                     threshold: int = DEFAULT_THRESHOLD, damping: float = 0.85):
    """Connected components and VisualRank of the near-duplicate graph on nodes 0..n-1.

    Returns (component labels, degrees, visualrank scaled so that the mean is 1)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    from imagerank.graph.pagerank import pagerank

    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    g = sp.coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    _, labels = connected_components(g, directed=False)
    degree = np.bincount(a, minlength=n) + np.bincount(b, minlength=n)
    w = 1.0 - np.asarray(distance, np.float64) / (threshold + 1.0)
    res = pagerank(np.concatenate([a, b]), np.concatenate([b, a]), n, damping=damping,
                   weights=np.concatenate([w, w]))
    return labels.astype(np.int64), degree.astype(np.int64), res.scores * n


def finalize_visual(frame: pd.DataFrame) -> pd.DataFrame:
    """``VISUAL_META`` rows from image_id + (possibly null) per-image columns; images without phash get zeros
    and visualrank 0. Pure."""
    has = frame["has_phash"].astype("boolean").fillna(False).astype(bool) if "has_phash" in frame else \
        pd.Series(False, index=frame.index)

    def col(name, dtype, fill):
        return pd.to_numeric(frame[name], errors="coerce").fillna(fill).astype(dtype) if name in frame else \
            pd.Series(fill, index=frame.index, dtype=dtype)

    out = pd.DataFrame({
        "image_id": frame["image_id"].astype("string"),
        "has_phash": has,
        "dup_neighbors": col("dup_neighbors", "int64", 0),
        "dup_cluster_size": col("dup_cluster_size", "int64", 0),
        "dup_hosts": col("dup_hosts", "int64", 0),
        "dup_providers": col("dup_providers", "int64", 0),
        "visualrank": col("visualrank", "float64", 0.0),
    })
    return out.astype(VISUAL_META.dtypes.to_dict()).reset_index(drop=True)


def cluster_frame(images: pd.DataFrame, labels: np.ndarray, degree: np.ndarray, rank: np.ndarray) -> pd.DataFrame:
    """Per-image cluster columns from images (image_id, node_id, provider, host) and per-node arrays. Pure."""
    ids = images["node_id"].to_numpy(np.int64)
    return images.assign(component=labels[ids], dup_neighbors=degree[ids], visualrank=rank[ids])


def cluster_stats(rows: pd.DataFrame) -> pd.DataFrame:
    """Per-component size and distinct hosts / providers (rows of a component in one partition). Pure."""
    g = rows.groupby("component", sort=False)
    return pd.DataFrame({"dup_cluster_size": g.size(), "dup_hosts": g["host"].nunique(),
                         "dup_providers": g["provider"].nunique()}).reset_index()


def visual_features_frame(catalog: pd.DataFrame, pixels: pd.DataFrame, *, threshold: int = DEFAULT_THRESHOLD,
                          n_bands: int = DEFAULT_BANDS, n_tables: int = DEFAULT_TABLES,
                          max_bucket: int = DEFAULT_MAX_BUCKET) -> pd.DataFrame:
    """The whole computation in pandas (tests, demo); ``pipelines.graph.run_visual_features`` runs it on Dask."""
    imgs = image_rows(catalog, pixels)
    bands = band_keys(imgs, n_bands, n_tables)
    pairs = bucket_pairs(bands, threshold, max_bucket).drop_duplicates(["a", "b"])
    labels, degree, rank = cluster_and_rank(len(imgs), pairs["a"].to_numpy(), pairs["b"].to_numpy(),
                                            pairs["distance"].to_numpy(), threshold)
    rows = cluster_frame(imgs, labels, degree, rank)
    stats = cluster_stats(rows)
    rows = rows.merge(stats, on="component", how="left").assign(has_phash=True)
    frame = catalog[["image_id"]].merge(rows.drop(columns=["node_id", "phash", "provider", "host", "component"]),
                                        on="image_id", how="left")
    return finalize_visual(frame)


def image_rows(catalog: pd.DataFrame, pixels: pd.DataFrame) -> pd.DataFrame:
    """(image_id, phash, provider, host, node_id) of catalog images with a phash (pandas; dense node ids)."""
    from imagerank.urls import host_of

    px = pixels[["image_id", "phash"]].dropna().drop_duplicates("image_id")
    cols = ["image_id", "provider", "foreign_landing_url"]
    m = px.merge(catalog[[c for c in cols if c in catalog.columns]], on="image_id", how="inner")
    m = m.reset_index(drop=True)
    return pd.DataFrame({
        "image_id": m["image_id"].astype("string"),
        "phash": m["phash"].astype("int64"),
        "provider": m["provider"].astype("string") if "provider" in m else pd.Series(pd.NA, index=m.index, dtype="string"),
        "host": pd.array([host_of(u) if isinstance(u, str) else None
                          for u in m.get("foreign_landing_url", pd.Series([None] * len(m))).tolist()], dtype="string"),
        "node_id": np.arange(len(m), dtype=np.int64),
    })
