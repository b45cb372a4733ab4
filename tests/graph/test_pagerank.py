"""PageRank by sparse power iteration agrees with networkx (tol=1e-12) on awkward graphs."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from imagerank.graph.pagerank import pagerank, transition_matrix


def _graph(seed: int) -> nx.DiGraph:
    rng = np.random.default_rng(seed)
    g = nx.DiGraph()
    g.add_nodes_from(range(250))
    n_edges = 700
    g.add_edges_from(zip(rng.integers(0, 200, n_edges).tolist(), rng.integers(0, 220, n_edges).tolist()))
    g.add_edges_from([(230, 231), (231, 232), (232, 230), (240, 241)])  # disconnected parts
    # 200..229 receive links but have none (dangling), 242..249 are isolated
    return g


def _arrays(g):
    e = np.array(list(g.edges()), dtype=np.int64).reshape(-1, 2)
    return e[:, 0], e[:, 1], g.number_of_nodes()


def _ref(g, **kw):
    r = nx.pagerank(g, tol=1e-12, max_iter=2000, **kw)
    return np.array([r[i] for i in range(g.number_of_nodes())])


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("damping", [0.85, 0.5])
def test_uniform_matches_networkx(seed, damping):
    g = _graph(seed)
    src, dst, n = _arrays(g)
    res = pagerank(src, dst, n, damping=damping)
    assert res.converged
    assert np.abs(res.scores - _ref(g, alpha=damping)).sum() < 1e-6
    assert abs(res.scores.sum() - 1) < 1e-9


def test_personalized_and_dangling_matches_networkx():
    g = _graph(3)
    src, dst, n = _arrays(g)
    rng = np.random.default_rng(9)
    pers = rng.random(n)
    pers[::7] = 0
    pd_ = {i: pers[i] for i in range(n)}
    res = pagerank(src, dst, n, personalization=pers)
    assert np.abs(res.scores - _ref(g, personalization=pd_)).sum() < 1e-6
    res_u = pagerank(src, dst, n, personalization=pers, dangling="uniform")
    ref_u = _ref(g, personalization=pd_, dangling={i: 1.0 for i in range(n)})
    assert np.abs(res_u.scores - ref_u).sum() < 1e-6


def test_weighted_matches_networkx():
    g = _graph(4)
    rng = np.random.default_rng(2)
    for u, v in g.edges():
        g[u][v]["weight"] = float(rng.random() + 0.1)
    src, dst, n = _arrays(g)
    w = np.array([g[u][v]["weight"] for u, v in zip(src, dst)])
    res = pagerank(src, dst, n, weights=w)
    assert np.abs(res.scores - _ref(g, weight="weight")).sum() < 1e-6


def test_matrix_is_int32_csr_and_duplicates_sum():
    m, dangling = transition_matrix(np.array([0, 0, 1]), np.array([1, 1, 2]), 3)
    assert m.indices.dtype == np.int32 and m.indptr.dtype == np.int32 and m.data.dtype == np.float64
    assert m[1, 0] == 1.0 and dangling.tolist() == [False, False, True]


def test_edge_cases():
    assert pagerank(np.array([], dtype=int), np.array([], dtype=int), 0).scores.size == 0
    r = pagerank(np.array([], dtype=int), np.array([], dtype=int), 4)
    assert np.allclose(r.scores, 0.25)
    r = pagerank(np.array([0]), np.array([1]), 2, max_iter=1)
    assert not r.converged and np.isfinite(r.scores).all()
    with pytest.raises(ValueError):
        pagerank(np.array([0]), np.array([1]), 2, personalization=np.zeros(2))
