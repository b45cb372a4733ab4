"""PageRank by scipy.sparse power iteration, with explicit dangling-node mass.

The transition matrix is built once as a CSR matrix ``M`` of shape (n, n) with ``M[dst, src] = w / out_w(src)``
(int32 indices, float64 values), so one iteration is one sparse matrix-vector product::

    x' = d * (M @ x + sum(x[dangling]) * q) + (1 - d) * p

``p`` is the teleport (personalization) vector, ``q`` the dangling distribution (``p`` by default, as in
networkx, or uniform). Convergence: ``sum |x' - x| < n * tol`` (networkx's criterion); with ``tol=1e-10`` the
result agrees with ``networkx.pagerank(tol=1e-12)`` to L1 < 1e-6.

Memory for E edges and n nodes (``benchmarks.bench_pagerank``, tracemalloc): the CSR holds ~12.4 bytes per
edge (int32 index + float64 value) plus ~5 float64 vectors of length n; building it from int32 id arrays peaks
at ~22 bytes per edge above the 8 bytes of the arrays themselves, so the pipeline's in-memory path
(``graph.build``) peaks at ~31 bytes per edge on the driver (~31 GB at 1 B edges).

Past one machine: ``pagerank_blocked`` runs the same iteration on a Dask cluster. The edges are shuffled into
B x B tiles by (dst block, src block); each tile is a CSR on a worker (~13.6 bytes per edge); block i of the
next iterate sums the products of row i's tiles with the blocks of x they need, ``ROW_GROUP`` tiles per task
and a tree of sums above, so no task holds more than a few blocks of x. The driver holds futures and
B + 1 floats per iteration; no edge and (without a personalization vector) no per-node array passes through
it. ``map_node_slices`` hands every partition of a node frame only its ``[lo, hi)`` slice of a per-node
vector (node ids are contiguous per partition), whether the vector is on the driver or in blocks.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from imagerank.settings import PAGERANK

log = logging.getLogger(__name__)


@dataclass
class PageRankResult:
    scores: np.ndarray
    iterations: int
    converged: bool
    error: float
    seconds: float
    history: list[float] = field(default_factory=list)


def transition_matrix(src: np.ndarray, dst: np.ndarray, n: int, weights: np.ndarray | None = None
                      ) -> tuple[sp.csr_matrix, np.ndarray]:
    """Column-stochastic CSR ``M[dst, src]`` and the boolean dangling mask.

    Duplicate edges are summed (they count as weight); pass de-duplicated edges for a simple graph.
    """
    src = np.asarray(src)
    dst = np.asarray(dst)
    if src.shape != dst.shape:
        raise ValueError("src and dst must have the same length")
    index_dtype = np.int32 if n < 2**31 - 1 and len(src) < 2**31 - 1 else np.int64
    src = src.astype(index_dtype, copy=False)
    dst = dst.astype(index_dtype, copy=False)
    if weights is None:
        out_w = np.bincount(src, minlength=n).astype(np.float64)
    else:
        weights = np.asarray(weights, dtype=np.float64)
        out_w = np.bincount(src, weights=weights, minlength=n)
    dangling = out_w <= 0
    inv = np.zeros(n, dtype=np.float64)
    np.divide(1.0, out_w, out=inv, where=~dangling)
    values = inv[src] if weights is None else weights * inv[src]
    # scipy's COO -> CSR conversion is a counting sort in C and sums duplicate (dst, src) entries
    m = sp.coo_matrix((values, (dst, src)), shape=(n, n)).tocsr()
    del values
    return m, dangling


def pagerank(src, dst, n: int | None = None, *, damping: float = PAGERANK.damping, tol: float = PAGERANK.tol,
             max_iter: int = PAGERANK.max_iter, personalization: np.ndarray | None = None, dangling: str = "personalization",
             weights: np.ndarray | None = None, x0: np.ndarray | None = None,
             matrix: tuple[sp.csr_matrix, np.ndarray] | None = None, progress=None) -> PageRankResult:
    """PageRank of nodes ``0..n-1`` over edges ``src[i] -> dst[i]``.

    ``personalization``: teleport weights (normalized here; uniform when None). ``dangling``:
    ``'personalization'`` (networkx's default) or ``'uniform'``. ``matrix``: a prebuilt
    ``transition_matrix`` result to reuse. ``progress``: optional callable(iteration, error).
    Does not raise on non-convergence: ``converged`` is False and the last iterate is returned.
    """
    t0 = time.perf_counter()
    src = np.asarray(src)
    dst = np.asarray(dst)
    if n is None:
        n = int(max(src.max(initial=-1), dst.max(initial=-1)) + 1)
    if n == 0:
        return PageRankResult(np.zeros(0), 0, True, 0.0, 0.0)
    m, dangling_mask = matrix if matrix is not None else transition_matrix(src, dst, n, weights)
    if personalization is None:
        p = np.full(n, 1.0 / n)
    else:
        p = np.asarray(personalization, dtype=np.float64)
        total = p.sum()
        if p.shape != (n,) or not np.isfinite(total) or total <= 0 or (p < 0).any():
            raise ValueError("personalization must be n non-negative finite weights with a positive sum")
        p = p / total
    if dangling == "personalization":
        q = p
    elif dangling == "uniform":
        q = np.full(n, 1.0 / n)
    else:
        raise ValueError("dangling must be 'personalization' or 'uniform'")
    dangling_idx = np.flatnonzero(dangling_mask)
    x = p.copy() if x0 is None else np.asarray(x0, dtype=np.float64) / np.sum(x0)
    teleport = (1.0 - damping) * p
    history: list[float] = []
    err = np.inf
    it = 0
    for it in range(1, max_iter + 1):
        x_new = m @ x
        x_new *= damping
        dangling_mass = damping * x[dangling_idx].sum()
        if dangling_mass:
            x_new += dangling_mass * q
        x_new += teleport
        err = float(np.abs(x_new - x).sum())
        x = x_new
        history.append(err)
        if progress is not None:
            progress(it, err)
        if err < n * tol:
            break
    converged = err < n * tol
    seconds = time.perf_counter() - t0
    log.info("pagerank n=%d edges=%d iterations=%d l1_change=%.3g converged=%s %.2fs",
             n, m.nnz, it, err, converged, seconds)
    if not converged:
        log.warning("pagerank did not converge in %d iterations (last L1 change %.3g)", max_iter, err)
    return PageRankResult(x, it, converged, err, seconds, history)


# --------------------------------------------------------------------------------- node-range slices

def partition_ranges(frame, column: str = "node_id") -> list[tuple[int, int]]:
    """``[lo, hi)`` node-id range of each partition of a Dask frame (``(0, 0)`` when empty): the slice of a
    per-node array that partition needs. Contiguous ids (``build.assign_ids``) make it exact."""
    meta = pd.DataFrame({"lo": pd.Series(dtype="int64"), "hi": pd.Series(dtype="int64")})
    ranges = frame[[column]].map_partitions(_range_of, column, meta=meta).compute()
    return [(int(lo), int(hi)) for lo, hi in zip(ranges["lo"], ranges["hi"])]


def _range_of(part: pd.DataFrame, column: str) -> pd.DataFrame:
    ids = part[column].to_numpy(np.int64)
    lo, hi = (int(ids.min()), int(ids.max()) + 1) if len(ids) else (0, 0)
    return pd.DataFrame({"lo": [lo], "hi": [hi]}, dtype="int64")


def map_node_slices(frame, fn, vectors: list, meta, client=None, column: str = "node_id"):
    """``fn(part, lo, *slices)`` per partition of ``frame``, each partition receiving only the ``[lo, hi)``
    slices of ``vectors`` (numpy arrays on the driver, or ``BlockVector`` results of ``pagerank_blocked``
    that never leave the workers), instead of whole arrays broadcast to every worker."""
    import dask
    import dask.dataframe as dd

    ranges = partition_ranges(frame, column)
    parts = frame.to_delayed()
    out = []
    for part, (lo, hi) in zip(parts, ranges):
        slices = []
        for v in vectors:
            if isinstance(v, BlockVector):
                slices.append(v.slice(lo, hi))
            elif client is not None:
                slices.append(client.scatter(np.asarray(v)[lo:hi], hash=False))
            else:
                slices.append(np.asarray(v)[lo:hi])
        out.append(dask.delayed(fn)(part, lo, *slices))
    return dd.from_delayed(out, meta=meta, verify_meta=False)


# ------------------------------------------- past one machine's memory: blocked power iteration on Dask

@dataclass
class BlockVector:
    """A length-n vector as contiguous blocks held by the workers (``bounds[k]:bounds[k+1]`` in block k)."""
    client: object
    blocks: list
    bounds: np.ndarray

    def slice(self, lo: int, hi: int):
        """A future of ``vector[lo:hi]``, built on a worker from the overlapping blocks only."""
        k0 = max(0, int(np.searchsorted(self.bounds, lo, side="right")) - 1)
        k1 = max(k0 + 1, int(np.searchsorted(self.bounds, hi, side="left")))
        picked = self.blocks[k0:k1]
        return self.client.submit(_cut, int(self.bounds[k0]), lo, hi, *picked, pure=False)

    def gather(self) -> np.ndarray:
        """The whole vector on the driver (tests, small graphs)."""
        parts = self.client.gather(self.blocks)
        return np.concatenate(parts) if parts else np.zeros(0)


def _cut(start: int, lo: int, hi: int, *blocks) -> np.ndarray:
    whole = np.concatenate(blocks) if blocks else np.zeros(0)
    return whole[lo - start:hi - start]


@dataclass
class BlockedPageRankResult:
    scores: BlockVector
    in_degree: BlockVector
    out_degree: BlockVector
    iterations: int
    converged: bool
    error: float
    seconds: float
    tiles: int
    edges: int
    tile_bytes: int  # the tiles' CSR arrays on the workers (data + indices + indptr)
    history: list[float] = field(default_factory=list)


TILE_META = pd.DataFrame({"tile": pd.Series(dtype="int64"), "row": pd.Series(dtype="int64"),
                          "col": pd.Series(dtype="int64"), "weight": pd.Series(dtype="float64")})


def block_bounds(n: int, n_blocks: int) -> np.ndarray:
    """``n_blocks`` contiguous node ranges of (nearly) equal size: bounds ``[0, ..., n]``."""
    n_blocks = max(1, min(int(n_blocks), max(n, 1)))
    return np.linspace(0, n, n_blocks + 1).round().astype(np.int64)


def edge_tiles(part: pd.DataFrame, bounds: np.ndarray, src: str = "src", dst: str = "dst",
               weight: str | None = None) -> pd.DataFrame:
    """Edges as tile rows: tile = dst block * B + src block, row / col = ids local to the blocks. Pure."""
    s = part[src].to_numpy(np.int64)
    d = part[dst].to_numpy(np.int64)
    n_blocks = len(bounds) - 1
    j = np.searchsorted(bounds, s, side="right") - 1
    i = np.searchsorted(bounds, d, side="right") - 1
    w = part[weight].to_numpy(np.float64) if weight else np.ones(len(s))
    return pd.DataFrame({"tile": i * n_blocks + j, "row": d - bounds[i], "col": s - bounds[j], "weight": w},
                        index=part.index)


def _tile_sums(tile: pd.DataFrame, height: int, width: int):
    col = tile["col"].to_numpy(np.int64)
    row = tile["row"].to_numpy(np.int64)
    return (np.bincount(col, weights=tile["weight"].to_numpy(np.float64), minlength=width),
            np.bincount(col, minlength=width), np.bincount(row, minlength=height))


def _add(*arrays):
    return np.sum(arrays, axis=0) if arrays else None


def _pick(t, k):
    return t[k]


def _tile_matrix(tile: pd.DataFrame, height: int, width: int, out_w: np.ndarray) -> sp.csr_matrix:
    """The tile's block of the column-stochastic matrix (CSR, int32 local indices when blocks allow)."""
    col = tile["col"].to_numpy(np.int64)
    values = tile["weight"].to_numpy(np.float64) / out_w[col]
    return sp.coo_matrix((values, (tile["row"].to_numpy(np.int64), col)), shape=(height, width)).tocsr()


def _dangling_mass(x: np.ndarray, out_w: np.ndarray) -> float:
    return float(x[out_w <= 0].sum())


def _matrix_bytes(m: sp.csr_matrix) -> int:
    return int(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes)


def _row_partial(mats, xs) -> np.ndarray:
    """Sum of tile @ x_j over a group of the tiles of one row."""
    y = mats[0] @ xs[0]
    for m, xj in zip(mats[1:], xs[1:]):
        y += m @ xj
    return y


def _sum_partials(*partials) -> np.ndarray:
    y = partials[0].copy()
    for part in partials[1:]:
        y += part
    return y


def _row_step(x, p, q, damping, dangling_parts, *partials):
    """Block i of ``x' = d (M x + D q) + (1 - d) p`` from its row's partial products, and its L1 change."""
    y = np.zeros_like(x)
    for part in partials:
        y += part
    y *= damping
    total = float(sum(dangling_parts))
    if total:
        y += damping * total * q
    y += (1.0 - damping) * p
    return y, float(np.abs(y - x).sum())


def _groups(items: list, size: int) -> list[list]:
    return [items[k:k + size] for k in range(0, len(items), size)]


ROW_GROUP = 8  # tiles (and x blocks) per product task, partials per sum task: bounds a task's memory


def _error_sum(*steps) -> float:
    return float(sum(step[1] for step in steps))


CHECK_LAG = 4  # iterations queued ahead of the convergence check: the driver never waits on a round trip


def pagerank_blocked(client, edges, n: int, *, damping: float = PAGERANK.damping, tol: float = PAGERANK.tol, max_iter: int = PAGERANK.max_iter,
                     personalization: np.ndarray | None = None, dangling: str = "personalization",
                     n_blocks: int | None = None, src: str = "src", dst: str = "dst", weight: str | None = None,
                     progress=None) -> BlockedPageRankResult:
    """PageRank of nodes ``0..n-1`` over the edges of a Dask frame, for graphs past one machine's memory.

    Same iteration and convergence test as ``pagerank``; the matrix is cut into ``n_blocks`` x ``n_blocks``
    tiles (a shuffle of the edges to their (dst block, src block)); tile (i, j) lives on a worker as a CSR of
    ~13.6 bytes per edge and multiplies block j of x into a partial of block i. Each iteration the driver
    receives n_blocks + 1 floats; no edge and no per-node array passes through it (except ``personalization``,
    given as a numpy array). Duplicate edges are summed, as in ``transition_matrix``."""
    from distributed import wait

    t0 = time.perf_counter()
    n_blocks = n_blocks or max(1, int(round(np.sqrt(edges.npartitions))))
    bounds = block_bounds(n, n_blocks)
    nb = len(bounds) - 1
    size = np.diff(bounds)
    if personalization is None:
        p_f = [client.submit(np.full, int(s), 1.0 / n, pure=False) for s in size]  # built on the workers
    else:
        p = np.asarray(personalization, dtype=np.float64)
        total = p.sum()
        if p.shape != (n,) or not np.isfinite(total) or total <= 0 or (p < 0).any():
            raise ValueError("personalization must be n non-negative finite weights with a positive sum")
        p_f = client.scatter([b / total for b in np.split(p, bounds[1:-1])], hash=False)
    if dangling not in ("personalization", "uniform"):
        raise ValueError("dangling must be 'personalization' or 'uniform'")
    q_f = p_f if dangling == "personalization" else [client.submit(np.full, int(s), 1.0 / n, pure=False)
                                                     for s in size]
    cols = [src, dst] + ([weight] if weight else [])
    tiles = edges[cols].map_partitions(edge_tiles, bounds, src, dst, weight, meta=TILE_META)
    n_tiles = nb * nb
    tiles = tiles.set_index("tile", divisions=list(range(n_tiles)) + [n_tiles]).persist()
    lengths = tiles.map_partitions(len).compute().tolist()
    parts = tiles.to_delayed(optimize_graph=False)
    present = [k for k in range(n_tiles) if lengths[k]]
    part_f = dict(zip(present, client.compute([parts[k] for k in present], optimize_graph=False)))
    sums = {k: client.submit(_tile_sums, part_f[k], int(size[k // nb]), int(size[k % nb])) for k in present}
    zeros = [client.submit(np.zeros, int(s), pure=False) for s in size]

    def block_total(keys, which, block):
        items = [client.submit(_pick, sums[k], which) for k in keys]
        return client.submit(_add, *items) if items else zeros[block]

    out_w = [block_total([k for k in present if k % nb == j], 0, j) for j in range(nb)]
    out_deg = [block_total([k for k in present if k % nb == j], 1, j) for j in range(nb)]
    in_deg = [block_total([k for k in present if k // nb == i], 2, i) for i in range(nb)]
    mats = {k: client.submit(_tile_matrix, part_f[k], int(size[k // nb]), int(size[k % nb]), out_w[k % nb])
            for k in present}
    wait(list(mats.values()))
    tile_bytes = int(sum(client.gather([client.submit(_matrix_bytes, m) for m in mats.values()])))
    del part_f, parts, tiles
    rows = {i: [k for k in present if k // nb == i] for i in range(nb)}
    x = list(p_f)
    history: list[float] = []
    pending: deque = deque()
    err, it, result = np.inf, 0, x
    for step in range(1, max_iter + 1):
        dmass = [client.submit(_dangling_mass, x[j], out_w[j]) for j in range(nb)]
        steps = []
        for i in range(nb):
            partials = [client.submit(_row_partial, [mats[k] for k in group], [x[k % nb] for k in group])
                        for group in _groups(rows[i], ROW_GROUP)]
            while len(partials) > ROW_GROUP:  # a tree, so no task holds more than ROW_GROUP blocks
                partials = [client.submit(_sum_partials, *group) for group in _groups(partials, ROW_GROUP)]
            steps.append(client.submit(_row_step, x[i], p_f[i], q_f[i], damping, dmass, *partials))
        x = [client.submit(_pick, st, 0) for st in steps]
        pending.append((step, client.submit(_error_sum, *steps), x))
        if len(pending) <= CHECK_LAG and step < max_iter:
            continue
        while pending:
            it, err_f, result = pending.popleft()
            err = float(err_f.result())
            history.append(err)
            if progress is not None:
                progress(it, err)
            if err < n * tol or len(pending) < CHECK_LAG and step < max_iter:
                break
        if err < n * tol:
            break
    pending.clear()
    x = result
    converged = err < n * tol
    seconds = time.perf_counter() - t0
    edges_total = int(sum(lengths))
    log.info("blocked pagerank n=%d edges=%d tiles=%d/%d iterations=%d l1_change=%.3g converged=%s %.2fs",
             n, edges_total, len(present), n_tiles, it, err, converged, seconds)
    if not converged:
        log.warning("pagerank did not converge in %d iterations (last L1 change %.3g)", max_iter, err)
    return BlockedPageRankResult(BlockVector(client, x, bounds), BlockVector(client, in_deg, bounds),
                                 BlockVector(client, out_deg, bounds), it, converged, err, seconds,
                                 len(present), edges_total, tile_bytes, history)
