"""Visual near-duplicates by perceptual hash: a substring index, exact Hamming verification, clusters, VisualRank.

Two images are near-duplicates when the Hamming distance of their 64-bit ``phash`` is ``<= threshold``
(default 10). Candidates come from an index, never from all pairs.

The index (``SubstringIndex``, multi-index hashing generalized): the 64 bits are split into ``m`` disjoint
substrings; a pair ``d`` bits apart has at least ``m - d`` substrings without a differing bit, so keying every
image once per combination of ``k`` substrings (``C(m, k)`` keys, each ``~64 k / m`` bits wide) finds every pair
with ``d <= m - k`` (the guarantee), and pairs up to ``threshold`` with the probability ``SubstringIndex.recall``.
Images sharing a key land in one bucket (a Dask shuffle on the key, so buckets are built on the workers); only
pairs inside a bucket are verified by exact Hamming distance, and a pair is kept only in the bucket of its first
matching combination, so each pair comes out once without a global de-duplication. Keys widen with the catalog
(``index_for``): (8, 2) gives 16-bit keys, 28 keys per image, a mean bucket of n / 65,536; (9, 3) 21-bit keys,
84 per image; (10, 4) 24-bit keys, 210 per image; each guarantees ``d <= 6`` (a resized, re-encoded copy).
A bucket larger than ``max_bucket`` (degenerate hashes: blank or single-colour images share one phash) is not
expanded into pairs; it is counted (``oversize_buckets``) and reported as an error by the stage.

The earlier fixed banding (``band_keys`` / ``bucket_pairs``: 8 bands x 8 bits, 256 buckets per band, recall
``band_recall``) is kept as the reference ``benchmarks.bench_neardup`` compares against: its mean bucket is
n / 256, so at 1 M images every bucket is over ``max_bucket`` and nothing is compared.

Per image (``VISUAL_META``): ``dup_neighbors`` (verified near-duplicates), ``dup_cluster_size`` (connected
component of the near-duplicate graph, 1 = unique), ``dup_hosts`` / ``dup_providers`` (distinct landing-page
hosts / providers within the cluster), ``visualrank`` (PageRank on the similarity graph, edge weight
``1 - d / (threshold + 1)``, scaled so that 1.0 = the average image; isolated images get the teleport share).
Only images with a near-duplicate take part in the rank computation (``pair_graph_ranks``); the share of the
isolated ones follows in closed form, so the driver holds the pairs, never a catalog-sized array.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from itertools import combinations
from math import comb

import numpy as np
import pandas as pd
import pyarrow as pa

from imagerank.schemas import empty_frame
from imagerank.settings import PAGERANK

DEFAULT_THRESHOLD = 10
DEFAULT_BANDS = 8
DEFAULT_TABLES = 1
DEFAULT_MAX_BUCKET = 2000
GUARANTEED_DISTANCE = 6  # a resized, re-encoded copy; every index ``index_for`` picks finds all pairs this close
DEFAULT_MEAN_BUCKET = 64
KEY_SHIFT = 40  # combination id above, concatenated substring values (at most 40 bits) below

#: One row per catalog image; ``W/features/visual/`` adds the run's event time.
VISUAL_SCHEMA = pa.schema([
    pa.field("image_id", pa.string()),
    pa.field("has_phash", pa.bool_(), nullable=False),
    pa.field("dup_neighbors", pa.int64(), nullable=False),
    pa.field("dup_cluster_size", pa.int64(), nullable=False),
    pa.field("dup_hosts", pa.int64(), nullable=False),
    pa.field("dup_providers", pa.int64(), nullable=False),
    pa.field("visualrank", pa.float64()),
])
VISUAL_META = empty_frame(VISUAL_SCHEMA)
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


# ------------------------------------------------------------------------------------- the substring index

@dataclass(frozen=True)
class SubstringIndex:
    """``n_substrings`` disjoint substrings of the 64 bits; a key per combination of ``match`` of them.

    Every pair at distance ``<= guaranteed`` (= n_substrings - match) shares at least one key."""

    n_substrings: int = 8
    match: int = 2

    def __post_init__(self):
        if not 2 <= self.n_substrings <= 16 or not 1 <= self.match < self.n_substrings:
            raise ValueError("need 2 <= n_substrings <= 16 and 1 <= match < n_substrings")
        if max(sum(w for w in sorted(self.widths)[-self.match:]), 0) > KEY_SHIFT:
            raise ValueError(f"a key of {self.match} substrings must fit in {KEY_SHIFT} bits")

    @property
    def widths(self) -> list[int]:
        return _widths(self.n_substrings)

    @property
    def shifts(self) -> list[int]:
        """Right shift of each substring (substring 0 = the most significant bits)."""
        ends = np.cumsum(self.widths)
        return [64 - int(e) for e in ends]

    @cached_property
    def combos(self) -> list[tuple[int, ...]]:
        return list(combinations(range(self.n_substrings), self.match))

    @property
    def guaranteed(self) -> int:
        return self.n_substrings - self.match

    @property
    def keys_per_image(self) -> int:
        return comb(self.n_substrings, self.match)

    @property
    def min_key_bits(self) -> int:
        return sum(sorted(self.widths)[: self.match])

    def mean_bucket(self, n: int) -> float:
        """Expected bucket size for ``n`` uniformly random hashes (averaged over the combinations)."""
        return float(np.mean([n / 2.0 ** sum(self.widths[j] for j in c) for c in self.combos]))

    def recall(self, d: int) -> float:
        """Probability that a pair ``d`` bits apart (bits uniformly placed) shares a key: at least ``match``
        substrings without a differing bit."""
        if d <= self.guaranteed:
            return 1.0
        # ways[u][c]: placements of u differing bits over the substrings seen so far, c of them clean
        ways = {(0, 0): 1}
        for w in self.widths:
            nxt: dict[tuple[int, int], int] = {}
            for (u, c), v in ways.items():
                for k in range(0, min(w, d - u) + 1):
                    key = (u + k, c + (k == 0))
                    nxt[key] = nxt.get(key, 0) + v * comb(w, k)
            ways = nxt
        good = sum(v for (u, c), v in ways.items() if u == d and c >= self.match)
        return good / comb(64, d)

    @cached_property
    def first_combo(self) -> np.ndarray:
        """Matching-substring bit mask (bit j = substring j equal) -> id of the combination of its ``match``
        lowest substrings, -1 when fewer match: the one bucket that keeps the pair."""
        ids = {c: i for i, c in enumerate(self.combos)}
        lut = np.full(1 << self.n_substrings, -1, dtype=np.int64)
        for mask in range(1 << self.n_substrings):
            bits = [j for j in range(self.n_substrings) if mask >> j & 1]
            if len(bits) >= self.match:
                lut[mask] = ids[tuple(bits[: self.match])]
        return lut

    def describe(self) -> dict:
        return {"index": "substrings", "n_substrings": self.n_substrings, "match": self.match,
                "keys_per_image": self.keys_per_image, "min_key_bits": self.min_key_bits,
                "guaranteed_distance": self.guaranteed}


def index_for(n_images: int, guaranteed: int = GUARANTEED_DISTANCE,
              max_mean_bucket: float = DEFAULT_MEAN_BUCKET) -> SubstringIndex:
    """The index with the fewest keys per image that finds every pair ``<= guaranteed`` bits apart and keeps
    the mean bucket of ``n_images`` random hashes at most ``max_mean_bucket`` (so work per image stays flat as
    the catalog grows). Starts at (guaranteed + 2, 2): single-substring keys would be too narrow to matter."""
    for m in range(guaranteed + 2, 17):
        index = SubstringIndex(m, m - guaranteed)
        if index.min_key_bits > KEY_SHIFT:
            break
        if index.mean_bucket(max(n_images, 1)) <= max_mean_bucket:
            return index
    raise ValueError(f"no substring index keeps {n_images:,} hashes under a mean bucket of {max_mean_bucket}")


def _substrings(h: np.ndarray, index: SubstringIndex) -> list[np.ndarray]:
    return [(h >> np.uint64(s)) & np.uint64((1 << w) - 1) for s, w in zip(index.shifts, index.widths)]


def index_keys(frame: pd.DataFrame, index: SubstringIndex, combos: list[int] | None = None) -> pd.DataFrame:
    """One row per (image, combination): ``band_key`` = combination id above bit 40, the combination's
    substrings concatenated below. ``frame``: node_id, phash (nulls dropped). ``combos``: only these
    combination ids (their buckets are independent: one process can work through them one at a time). Pure."""
    f = frame[frame["phash"].notna()]
    if f.empty:
        return BAND_META.copy()
    ph = f["phash"].to_numpy(np.int64)
    ids = f["node_id"].to_numpy(np.int64)
    subs = _substrings(ph.view(np.uint64), index)
    widths = index.widths
    out = []
    for c in range(index.keys_per_image) if combos is None else combos:
        combo = index.combos[c]
        value = np.zeros(len(ph), dtype=np.uint64)
        for j in combo:
            value = (value << np.uint64(widths[j])) | subs[j]
        key = (np.uint64(c) << np.uint64(KEY_SHIFT)) | value
        out.append(pd.DataFrame({"band_key": key.view(np.int64), "node_id": ids, "phash": ph}))
    return pd.concat(out, ignore_index=True).astype(BAND_META.dtypes.to_dict())


PAIR_CHUNK = 1 << 22  # candidate pairs verified at once: bounds a task's memory whatever the bucket sizes


def index_pairs(frame: pd.DataFrame, index: SubstringIndex, threshold: int = DEFAULT_THRESHOLD,
                max_bucket: int = DEFAULT_MAX_BUCKET) -> pd.DataFrame:
    """Verified pairs (a < b, distance <= threshold) of the buckets of a partition (all rows of a key in the
    partition: shuffle on band_key first), each pair once (in its first matching combination's bucket).
    Buckets over ``max_bucket`` are skipped (``oversize_buckets`` counts them). Pure."""
    if len(frame) < 2:
        return PAIRS_META.copy()
    keys = frame["band_key"].to_numpy(np.int64)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    ids = frame["node_id"].to_numpy(np.int64)[order]
    ph = frame["phash"].to_numpy(np.int64)[order].view(np.uint64)
    bounds = np.flatnonzero(np.diff(keys)) + 1
    starts = np.concatenate([[0], bounds])
    sizes = np.diff(np.concatenate([starts, [len(keys)]]))
    lut = index.first_combo
    shifts = [np.uint64(s) for s in index.shifts]
    masks = [np.uint64((1 << w) - 1) for w in index.widths]
    a_out, b_out, d_out = [], [], []
    for size in np.unique(sizes[(sizes >= 2) & (sizes <= max_bucket)]):
        i, j = np.triu_indices(int(size), k=1)
        group = starts[sizes == size]
        per_chunk = max(1, PAIR_CHUNK // len(i))
        for lo in range(0, len(group), per_chunk):
            s = group[lo:lo + per_chunk, None]
            ai, bi = (s + i).ravel(), (s + j).ravel()
            x = ph[ai] ^ ph[bi]
            d = np.bitwise_count(x).astype(np.int64)
            keep = np.flatnonzero(d <= threshold)
            if not len(keep):
                continue
            ai, bi, x, d = ai[keep], bi[keep], x[keep], d[keep]
            same = np.zeros(len(x), dtype=np.int64)
            for bit, (sh, mk) in enumerate(zip(shifts, masks)):
                same |= (((x >> sh) & mk) == 0).astype(np.int64) << bit
            home = lut[same] == (keys[ai] >> KEY_SHIFT)
            a, b = ids[ai[home]], ids[bi[home]]
            a_out.append(np.minimum(a, b))
            b_out.append(np.maximum(a, b))
            d_out.append(d[home])
    if not a_out:
        return PAIRS_META.copy()
    out = pd.DataFrame({"a": np.concatenate(a_out), "b": np.concatenate(b_out), "distance": np.concatenate(d_out)})
    return out[out["a"] != out["b"]].astype(PAIRS_META.dtypes.to_dict()).reset_index(drop=True)


OVERSIZE_META = pd.DataFrame({"band_key": pd.Series(dtype="int64"), "size": pd.Series(dtype="int64")})


def skipped_summary(oversize: pd.DataFrame) -> dict:
    """Counts of the buckets too large to expand (an error of the run, never silent)."""
    sizes = oversize["size"].to_numpy(np.int64)
    return {"oversize_buckets": int(len(sizes)), "oversize_bucket_rows": int(sizes.sum()),
            "pairs_not_compared": int((sizes * (sizes - 1) // 2).sum())}


# ------------------------------------------------------------------------- components and VisualRank

PAIR_NODES_META = pd.DataFrame({"node_id": pd.Series(dtype="int64"), "component": pd.Series(dtype="int64"),
                                "dup_neighbors": pd.Series(dtype="int64"),
                                "visualrank": pd.Series(dtype="float64")})


def isolated_visualrank(n: int, n_paired: int, damping: float = PAGERANK.damping) -> float:
    """VisualRank (mean-1 scale) of an image without near-duplicates among ``n`` images of which ``n_paired``
    have one: the isolated images are dangling nodes; their mass returns uniformly, so each holds
    ``s = (1 - d) / (n - d * n_isolated)`` (times n)."""
    isolated = n - n_paired
    return (1.0 - damping) / (n - damping * isolated) * n if n else 0.0


def pair_graph_ranks(n: int, a: np.ndarray, b: np.ndarray, distance: np.ndarray,
                     threshold: int = DEFAULT_THRESHOLD, damping: float = PAGERANK.damping) -> pd.DataFrame:
    """Component, degree and VisualRank of the images that have a near-duplicate (``PAIR_NODES_META``), from
    the verified pairs only (memory grows with the pairs, not with the ``n`` images).

    PageRank on the near-duplicate subgraph of c images, y, gives the whole graph's scores exactly: every
    node receives the same teleport + dangling share s (``isolated_visualrank``), so x_C = y * c / (n - d * I)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    from imagerank.graph.pagerank import pagerank

    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    if not len(a):
        return PAIR_NODES_META.copy()
    nodes, codes = np.unique(np.concatenate([a, b]), return_inverse=True)
    c = len(nodes)
    ca, cb = codes[: len(a)], codes[len(a):]
    g = sp.coo_matrix((np.ones(len(a)), (ca, cb)), shape=(c, c))
    _, labels = connected_components(g, directed=False)
    degree = np.bincount(ca, minlength=c) + np.bincount(cb, minlength=c)
    w = 1.0 - np.asarray(distance, np.float64) / (threshold + 1.0)
    res = pagerank(np.concatenate([ca, cb]), np.concatenate([cb, ca]), c, damping=damping,
                   weights=np.concatenate([w, w]))
    scale = c / (n - damping * (n - c)) * n
    return pd.DataFrame({"node_id": nodes, "component": labels.astype(np.int64),
                         "dup_neighbors": degree.astype(np.int64), "visualrank": res.scores * scale})


def cluster_and_rank(n: int, a: np.ndarray, b: np.ndarray, distance: np.ndarray,
                     threshold: int = DEFAULT_THRESHOLD, damping: float = PAGERANK.damping):
    """Connected components and VisualRank of the near-duplicate graph on nodes 0..n-1, as whole arrays
    (small graphs, tests; the stage uses ``pair_graph_ranks``).

    Returns (component labels, degrees, visualrank scaled so that the mean is 1)."""
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    nodes = pair_graph_ranks(n, a, b, distance, threshold, damping)
    ids = nodes["node_id"].to_numpy(np.int64)
    first_free = int(nodes["component"].max()) + 1 if len(nodes) else 0
    labels = np.arange(n, dtype=np.int64) + first_free
    labels[ids] = nodes["component"].to_numpy(np.int64)
    degree = np.zeros(n, np.int64)
    degree[ids] = nodes["dup_neighbors"].to_numpy(np.int64)
    rank = np.full(n, isolated_visualrank(n, len(nodes), damping))
    rank[ids] = nodes["visualrank"].to_numpy(np.float64)
    return labels, degree, rank


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


STATS_META = pd.DataFrame({"component": pd.Series(dtype="float64"), "dup_cluster_size": pd.Series(dtype="int64"),
                           "dup_hosts": pd.Series(dtype="int64"), "dup_providers": pd.Series(dtype="int64")})
ROWS_META = pd.DataFrame({"image_id": pd.Series(dtype="string"), "dup_neighbors": pd.Series(dtype="int64"),
                          "visualrank": pd.Series(dtype="float64"), "dup_cluster_size": pd.Series(dtype="int64"),
                          "dup_hosts": pd.Series(dtype="int64"), "dup_providers": pd.Series(dtype="int64"),
                          "has_phash": pd.Series(dtype="bool")})


def unpaired_filled(rows: pd.DataFrame, isolated_rank: float) -> pd.DataFrame:
    """``ROWS_META`` from image rows left-joined to the paired nodes and their component stats: an image
    without a near-duplicate is its own cluster (size 1, its own host / provider, isolated_visualrank). Pure."""
    paired = rows["component"].notna().to_numpy()

    def filled(name, fill, dtype):
        col = pd.to_numeric(rows[name], errors="coerce").to_numpy(np.float64)
        return np.where(paired, col, fill).astype(dtype)

    return pd.DataFrame({
        "image_id": rows["image_id"].astype("string").to_numpy(),
        "dup_neighbors": filled("dup_neighbors", 0, np.int64),
        "visualrank": filled("visualrank", isolated_rank, np.float64),
        "dup_cluster_size": filled("dup_cluster_size", 1, np.int64),
        "dup_hosts": filled("dup_hosts", rows["host"].notna().to_numpy(np.float64), np.int64),
        "dup_providers": filled("dup_providers", rows["provider"].notna().to_numpy(np.float64), np.int64),
        "has_phash": np.ones(len(rows), dtype=bool),
    }, index=rows.index).astype(ROWS_META.dtypes.to_dict())


def near_duplicate_pairs(images: pd.DataFrame, *, threshold: int = DEFAULT_THRESHOLD,
                         index: SubstringIndex | None = None, max_bucket: int = DEFAULT_MAX_BUCKET,
                         n_bands: int | None = None, n_tables: int | None = None) -> tuple[pd.DataFrame, dict]:
    """Verified pairs of ``images`` (node_id, phash) in pandas, and the skipped-bucket counts. ``n_bands`` /
    ``n_tables`` select the earlier fixed banding (the benchmark's reference) instead of the index."""
    if n_bands is not None or n_tables is not None:
        keys = band_keys(images, n_bands or DEFAULT_BANDS, n_tables or DEFAULT_TABLES)
        pairs = bucket_pairs(keys, threshold, max_bucket)
    else:
        index = index or index_for(len(images))
        keys = index_keys(images, index)
        pairs = index_pairs(keys, index, threshold, max_bucket)
    return pairs, skipped_summary(oversize_buckets(keys, max_bucket))


def visual_features_frame(catalog: pd.DataFrame, pixels: pd.DataFrame, *, threshold: int = DEFAULT_THRESHOLD,
                          index: SubstringIndex | None = None, n_bands: int | None = None,
                          n_tables: int | None = None, max_bucket: int = DEFAULT_MAX_BUCKET) -> pd.DataFrame:
    """The whole computation in pandas (tests, demo); ``pipelines.visual.run_visual_features`` runs it on Dask."""
    imgs = image_rows(catalog, pixels)
    pairs, _ = near_duplicate_pairs(imgs, threshold=threshold, index=index, max_bucket=max_bucket,
                                    n_bands=n_bands, n_tables=n_tables)
    nodes = pair_graph_ranks(len(imgs), pairs["a"].to_numpy(), pairs["b"].to_numpy(),
                             pairs["distance"].to_numpy(), threshold)
    rows = imgs.merge(nodes.astype({"component": "float64"}), on="node_id", how="left")
    stats = cluster_stats(rows.loc[rows["component"].notna(), ["component", "host", "provider"]])
    rows = rows.merge(stats, on="component", how="left")
    rows = unpaired_filled(rows, isolated_visualrank(len(imgs), len(nodes)))
    return finalize_visual(catalog[["image_id"]].merge(rows, on="image_id", how="left"))


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


#: One partition of the Dask stage's hashed images (pipelines/visual.py): :func:`with_host`'s output.
HASHED_IMAGES_META = pd.DataFrame({"image_id": pd.Series(dtype="string"), "phash": pd.Series(dtype="int64"),
                                   "provider": pd.Series(dtype="string"), "node_id": pd.Series(dtype="int64"),
                                   "host": pd.Series(dtype="string")})


def with_host(part: pd.DataFrame) -> pd.DataFrame:
    """The landing host in place of the landing URL, phash as int64: what cluster statistics group by."""
    from imagerank.urls import host_of

    hosts = pd.array([host_of(u) if isinstance(u, str) else None for u in part["foreign_landing_url"].tolist()],
                     dtype="string")
    return part.assign(host=hosts, phash=part["phash"].astype("int64")).drop(columns=["foreign_landing_url"])
