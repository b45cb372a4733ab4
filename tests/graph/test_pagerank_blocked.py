"""PageRank past one machine's memory: the blocked power iteration on a real LocalCluster agrees with networkx,
the page / host graphs give the same rows either way, and partitions receive only their slice of the scores."""

from __future__ import annotations

import dask.dataframe as dd
import networkx as nx
import numpy as np
import pandas as pd
import pytest

from imagerank.graph import build
from imagerank.graph.pagerank import BlockVector, block_bounds, map_node_slices, pagerank_blocked

pytestmark = pytest.mark.slow


def _graph(seed: int) -> nx.DiGraph:
    rng = np.random.default_rng(seed)
    g = nx.DiGraph()
    g.add_nodes_from(range(250))
    g.add_edges_from(zip(rng.integers(0, 200, 700).tolist(), rng.integers(0, 220, 700).tolist()))
    g.add_edges_from([(230, 231), (231, 232), (232, 230), (240, 241)])  # 200..229 dangling, 242..249 isolated
    return g


def _frame(g: nx.DiGraph, npartitions: int = 5) -> dd.DataFrame:
    e = np.array(list(g.edges()), dtype=np.int64).reshape(-1, 2)
    return dd.from_pandas(pd.DataFrame({"src": e[:, 0], "dst": e[:, 1]}), npartitions=npartitions)


def _ref(g, **kw) -> np.ndarray:
    r = nx.pagerank(g, tol=1e-12, max_iter=2000, **kw)
    return np.array([r[i] for i in range(g.number_of_nodes())])


def test_blocked_matches_networkx_with_personalization_and_degrees(dask_client):
    g = _graph(0)
    n = g.number_of_nodes()
    pers = np.random.default_rng(9).random(n)
    pers[::7] = 0
    res = pagerank_blocked(dask_client, _frame(g), n, n_blocks=3, personalization=pers)
    assert res.converged and res.tiles <= 9 and res.edges == g.number_of_edges()
    ref = _ref(g, personalization={i: pers[i] for i in range(n)})
    assert np.abs(res.scores.gather() - ref).sum() < 1e-6
    assert res.in_degree.gather().tolist() == [g.in_degree(i) for i in range(n)]
    assert res.out_degree.gather().tolist() == [g.out_degree(i) for i in range(n)]
    # a slice crossing block boundaries is cut on a worker from the overlapping blocks
    bounds = block_bounds(n, 3)
    lo, hi = int(bounds[1]) - 5, int(bounds[2]) + 5
    assert np.allclose(dask_client.gather(res.scores.slice(lo, hi)), ref[lo:hi], atol=1e-8)


def test_blocked_weighted_uniform_dangling_matches_networkx(dask_client, monkeypatch):
    from imagerank.graph import pagerank as P

    monkeypatch.setattr(P, "ROW_GROUP", 2)  # rows of 5 tiles: grouped products and a tree of partial sums
    g = _graph(4)
    n = g.number_of_nodes()
    rng = np.random.default_rng(2)
    for u, v in g.edges():
        g[u][v]["weight"] = float(rng.random() + 0.1)
    e = [(u, v, d["weight"]) for u, v, d in g.edges(data=True)]
    frame = dd.from_pandas(pd.DataFrame(e, columns=["src", "dst", "w"]), npartitions=4)
    pers = rng.random(n)
    res = pagerank_blocked(dask_client, frame, n, n_blocks=5, weight="w", personalization=pers, dangling="uniform")
    assert res.tiles > 20
    ref = _ref(g, weight="weight", personalization={i: pers[i] for i in range(n)},
               dangling={i: 1.0 for i in range(n)})
    assert np.abs(res.scores.gather() - ref).sum() < 1e-6


def test_partitions_receive_only_their_slice(dask_client):
    n = 1000
    ids = dd.from_pandas(pd.DataFrame({"node_id": np.arange(n, dtype=np.int64)}), npartitions=4)
    values = np.arange(n, dtype=np.float64) * 2

    def seen(part, lo, slice_):
        return pd.DataFrame({"node_id": part["node_id"].to_numpy(), "value": slice_[part["node_id"].to_numpy() - lo],
                             "received": len(slice_)})

    meta = pd.DataFrame({"node_id": pd.Series(dtype="int64"), "value": pd.Series(dtype="float64"),
                         "received": pd.Series(dtype="int64")})
    out = map_node_slices(ids, seen, [values], meta, dask_client).compute().sort_values("node_id")
    assert (out["value"].to_numpy() == values).all()
    assert out["received"].max() == 250  # each partition got its 250 values, not the 1,000
    blocks = BlockVector(dask_client, dask_client.scatter(np.split(values, [300, 700])), np.array([0, 300, 700, n]))
    out = map_node_slices(ids, seen, [blocks], meta, dask_client).compute().sort_values("node_id")
    assert (out["value"].to_numpy() == values).all() and out["received"].max() == 250


def _edges_frame() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    hosts = [f"h{k}.site{k % 7}.org" for k in range(12)] + ["a.farm.com", "b.farm.com"]
    rows = []
    for _ in range(400):
        s, d = rng.integers(0, len(hosts), 2)
        rows.append((f"https://{hosts[s]}/p{rng.integers(0, 9)}", f"https://{hosts[d]}/p{rng.integers(0, 9)}",
                     hosts[s], hosts[d]))
    f = pd.DataFrame(rows, columns=["src_url", "dst_url", "src_host", "dst_host"])
    f["src_domain"] = f["src_host"].str.split(".", n=1).str[1]
    f["dst_domain"] = f["dst_host"].str.split(".", n=1).str[1]
    f["kind"] = "link"
    return f.astype("string")


def test_page_and_host_graphs_blocked_equal_in_memory(dask_client):
    edges = dd.from_pandas(_edges_frame(), npartitions=4)
    for fn, key in ((build.page_graph, "url"), (build.host_graph, "host")):
        rows, res, counts = fn(edges, client=dask_client, blocked=False)
        brows, bres, bcounts = fn(edges, client=dask_client, blocked=True)
        a = rows.compute().set_index(key).sort_index()
        b = brows.compute().set_index(key).sort_index()
        assert counts == bcounts and res.converged and bres.converged
        assert (a.drop(columns=["pagerank", "node_id"]).equals(b.drop(columns=["pagerank", "node_id"])))
        assert np.abs(a["pagerank"] - b["pagerank"]).sum() < 1e-8 and abs(a["pagerank"].sum() - 1) < 1e-9


def test_edge_ids_keep_int64_ids_past_two_to_the_31(dask_client):
    big = 2**31 + 7
    joined = dd.from_pandas(pd.DataFrame({"src_id": np.array([0, big - 1, 5], np.int64),
                                          "dst_id": np.array([big - 2, 3, 2**31], np.int64)}), npartitions=2)
    joined = dask_client.persist(joined)
    lengths = joined.map_partitions(len).compute().tolist()
    src, dst = build._edge_ids(joined, lengths, big, dask_client)
    assert src.dtype == np.int64 and sorted(src.tolist()) == [0, 5, big - 1]
    assert sorted(dst.tolist()) == [3, 2**31, big - 2]
    small = dd.from_pandas(pd.DataFrame({"src_id": [0, 9], "dst_id": [4, 1]}, dtype="int64"), npartitions=1)
    s, d = build._edge_ids(dask_client.persist(small), [2], 10, dask_client)
    assert s.dtype == np.int32 and s.tolist() == [0, 9] and d.tolist() == [4, 1]
