"""PageRank by scipy.sparse power iteration, with explicit dangling-node mass.

The transition matrix is built once as a CSR matrix ``M`` of shape (n, n) with ``M[dst, src] = w / out_w(src)``
(int32 indices, float64 values), so one iteration is one sparse matrix-vector product::

    x' = d * (M @ x + sum(x[dangling]) * q) + (1 - d) * p

``p`` is the teleport (personalization) vector, ``q`` the dangling distribution (``p`` by default, as in
networkx, or uniform). Convergence: ``sum |x' - x| < n * tol`` (networkx's criterion); with ``tol=1e-10`` the
result agrees with ``networkx.pagerank(tol=1e-12)`` to L1 < 1e-6. Memory for E edges and n nodes:
~12 bytes/edge for the CSR (int32 index + float64 value) plus ~5 float64 vectors of length n.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

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


def pagerank(src, dst, n: int | None = None, *, damping: float = 0.85, tol: float = 1e-10,
             max_iter: int = 200, personalization: np.ndarray | None = None, dangling: str = "personalization",
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
