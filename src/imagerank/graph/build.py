"""Page and host graphs from the edge dataset, node ids assigned with Dask, PageRank on the driver or blocked.

Node ids at scale: the node keys (URLs or hosts) are de-duplicated with a hash-partitioned shuffle
(``drop_duplicates(split_out=k)``), each partition's length is computed, and partition ``i`` numbers its rows
from the cumulative offset of partitions ``< i``: ids are dense ``0..n-1`` without collecting any key on the
driver. Edges are then joined to ids (two shuffle merges, int64 ids). Up to ``DRIVER_PAGERANK_MAX_EDGES``
edges the two id columns travel to the driver one partition at a time (int32 while ids fit), one CSR matrix
is built and PageRank iterates there (``imagerank.graph.pagerank``); above it the power iteration runs
blocked on the workers (``pagerank_blocked``) and no edge reaches the driver. Either way each id partition
receives only its own slice of the scores and degrees (``map_node_slices``), never the whole arrays.

Page graph: nodes are every URL at either end of a ``link`` edge; self-links dropped, duplicates merged
(an unweighted simple graph); teleport and dangling mass uniform over pages.

Host graph and the link-farm rule: an edge ``h1 -> h2`` is kept only when ``h1`` and ``h2`` have *different
registered domains* (self-links and links between hosts of one domain are dropped), duplicates merged; the
teleport (and dangling) distribution is uniform over registered domains, split evenly among a domain's hosts,
so a farm of 10,000 subdomains receives the random-jump mass of one domain, and its hosts cannot vote for
each other. ``in_domains`` (distinct source registered domains) is the farm-proof in-link count;
``in_hosts`` is reported alongside.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from imagerank.cluster import persist
from imagerank.graph.pagerank import (PageRankResult, map_node_slices, pagerank, pagerank_blocked,
                                      transition_matrix)
from imagerank.settings import PAGERANK
from imagerank.urls import host_of, registered_domain

log = logging.getLogger(__name__)

# Above this many edges PageRank runs blocked on the workers (``pagerank_blocked``) instead of on the driver:
# the in-memory path peaks at ~31 bytes per edge on the driver (``benchmarks.bench_pagerank``), ~9.3 GB here.
DRIVER_PAGERANK_MAX_EDGES = 300_000_000

PAGES_META = pd.DataFrame({
    "url": pd.Series(dtype="string"),
    "host": pd.Series(dtype="string"),
    "domain": pd.Series(dtype="string"),
    "node_id": pd.Series(dtype="int64"),
    "pagerank": pd.Series(dtype="float64"),
    "in_links": pd.Series(dtype="int64"),
    "out_links": pd.Series(dtype="int64"),
})
HOSTS_META = pd.DataFrame({
    "host": pd.Series(dtype="string"),
    "domain": pd.Series(dtype="string"),
    "node_id": pd.Series(dtype="int64"),
    "pagerank": pd.Series(dtype="float64"),
    "in_hosts": pd.Series(dtype="int64"),
    "in_domains": pd.Series(dtype="int64"),
    "out_hosts": pd.Series(dtype="int64"),
    "dropped_same_domain_out": pd.Series(dtype="int64"),
})


def _with_ids(part: pd.DataFrame, offset: int, key: str) -> pd.DataFrame:
    out = part[[key]].reset_index(drop=True)
    out["node_id"] = np.arange(offset, offset + len(out), dtype=np.int64)
    return out


def assign_ids(keys, key: str, split_out: int | None = None):
    """Dense ids ``0..n-1`` for the distinct values of column ``key`` of a Dask frame: (frame[key, node_id], n)."""
    import dask
    import dask.dataframe as dd

    split_out = split_out or max(1, keys.npartitions)
    uniq = persist(None, keys[[key]].dropna().drop_duplicates(split_out=split_out))
    lengths = uniq.map_partitions(len).compute().tolist()
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    meta = pd.DataFrame({key: pd.Series(dtype=uniq.dtypes[key]), "node_id": pd.Series(dtype="int64")})
    parts = [dask.delayed(_with_ids)(p, int(o), key) for p, o in zip(uniq.to_delayed(), offsets)]
    return dd.from_delayed(parts, meta=meta, verify_meta=False), int(sum(lengths))


def _joined_ids(edges, src: str, dst: str, ids, key: str):
    a = ids.rename(columns={key: src, "node_id": "src_id"})
    b = ids.rename(columns={key: dst, "node_id": "dst_id"})
    return edges.merge(a, on=src, how="inner").merge(b, on=dst, how="inner")[["src_id", "dst_id"]]


def _edge_ids(joined, lengths: list[int], n: int, client=None) -> tuple[np.ndarray, np.ndarray]:
    """Edge id arrays (``joined``: persisted src_id / dst_id frame) on the driver for the in-memory PageRank,
    gathered one partition at a time into preallocated arrays (driver peak: the arrays plus one partition).
    int64 ids; stored as int32 only when every id fits (n < 2^31): 8 bytes per edge for both arrays."""
    dtype = np.int32 if n < 2**31 else np.int64
    total = int(sum(lengths))
    out_src, out_dst = np.empty(total, dtype), np.empty(total, dtype)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    import dask

    for part, start in zip(joined.to_delayed(), starts):
        # plain arrays, already narrowed on the worker: a pandas frame on the driver can sit in a reference
        # cycle until the garbage collector runs, and would hold 16 bytes per edge per partition meanwhile
        arrays = dask.delayed(_id_arrays)(part, dtype)
        s, d = client.compute(arrays).result() if client is not None else arrays.compute()
        out_src[start:start + len(s)] = s
        out_dst[start:start + len(d)] = d
        del s, d
    return out_src, out_dst


def _id_arrays(part: pd.DataFrame, dtype) -> tuple[np.ndarray, np.ndarray]:
    return part["src_id"].to_numpy(np.int64).astype(dtype), part["dst_id"].to_numpy(np.int64).astype(dtype)


def _rank(joined, n: int, client, blocked: bool | None, label: str, **kwargs):
    """PageRank of the id edges ``joined``: on the driver, or blocked on the workers when ``blocked`` (None:
    when the graph has more than ``DRIVER_PAGERANK_MAX_EDGES`` edges and a client is given).
    Returns (result, [scores, in-degree, out-degree] as arrays or BlockVectors, number of edges)."""
    joined = persist(client, joined)
    lengths = joined.map_partitions(len).compute().tolist()
    n_edges = int(sum(lengths))
    if blocked is None:
        blocked = client is not None and n_edges > DRIVER_PAGERANK_MAX_EDGES
    if blocked:
        if client is None:
            raise ValueError("blocked PageRank runs on a Dask client")
        res = pagerank_blocked(client, joined, n, src="src_id", dst="dst_id", progress=_progress_logger(label),
                               **kwargs)
        return res, [res.scores, res.in_degree, res.out_degree], n_edges
    src, dst = _edge_ids(joined, lengths, n, client)
    del joined
    matrix = transition_matrix(src, dst, n)
    degrees = [np.bincount(dst, minlength=n), np.bincount(src, minlength=n)]
    del src, dst  # the iteration holds the CSR only (~12 bytes per edge)
    none = np.zeros(0, np.int64)
    res = pagerank(none, none, n, matrix=matrix, progress=_progress_logger(label), **kwargs)
    return res, [res.scores, *degrees], n_edges


def _progress_logger(label: str):
    def report(it: int, err: float) -> None:
        if it == 1 or it % 10 == 0:
            log.info("%s pagerank iteration %d: L1 change %.3g", label, it, err)
    return report


# ----------------------------------------------------------------------------------------------- pages

def _page_rows(part: pd.DataFrame, lo: int, scores, in_deg, out_deg) -> pd.DataFrame:
    """PAGES_META rows of an id partition; the arrays hold nodes ``lo..`` (the partition's slice)."""
    node = part["node_id"].to_numpy(np.int64)
    ids = node - lo
    hosts = [host_of(u) for u in part["url"].tolist()]
    out = pd.DataFrame({
        "url": part["url"].astype("string").to_numpy(),
        "host": pd.array(hosts, dtype="string"),
        "domain": pd.array([registered_domain(h) for h in hosts], dtype="string"),
        "node_id": node,
        "pagerank": scores[ids] if len(ids) else np.zeros(0),
        "in_links": in_deg[ids].astype(np.int64) if len(ids) else np.zeros(0, np.int64),
        "out_links": out_deg[ids].astype(np.int64) if len(ids) else np.zeros(0, np.int64),
    })
    return out


def page_graph(edges, *, damping: float = PAGERANK.damping, tol: float = PAGERANK.tol, max_iter: int = PAGERANK.max_iter, client=None,
               blocked: bool | None = None):
    """Page PageRank from the edge dataset (a Dask frame): (pages Dask frame, PageRankResult, counts).
    ``blocked``: PageRank on the workers (``_rank``); each id partition then receives only its slice."""
    t0 = time.perf_counter()
    links = edges[edges["kind"] == "link"][["src_url", "dst_url"]]
    links = links[links["src_url"] != links["dst_url"]]
    links = persist(client, links.drop_duplicates(split_out=max(1, edges.npartitions)))
    import dask.dataframe as dd

    keys = dd.concat([links[["src_url"]].rename(columns={"src_url": "url"}),
                      links[["dst_url"]].rename(columns={"dst_url": "url"})])
    ids, n = assign_ids(keys, "url")
    ids = persist(client, ids)
    joined = _joined_ids(links, "src_url", "dst_url", ids, "url")
    res, vectors, n_edges = _rank(joined, n, client, blocked, "page", damping=damping, tol=tol, max_iter=max_iter)
    log.info("page graph: %d nodes, %d edges (%.1fs)", n, n_edges, time.perf_counter() - t0)
    pages = map_node_slices(ids, _page_rows, vectors, PAGES_META, client)
    return pages, res, {"page_nodes": n, "page_edges": n_edges}


# ----------------------------------------------------------------------------------------------- hosts

def host_edge_frame(part: pd.DataFrame) -> pd.DataFrame:
    """Host-level link rows of an edge partition with the farm rule flag (pure)."""
    out = part.loc[(part["kind"] == "link") & part["src_host"].notna() & part["dst_host"].notna(),
                   ["src_host", "src_domain", "dst_host", "dst_domain"]]
    out = out[out["src_host"] != out["dst_host"]]
    same = (out["src_domain"] == out["dst_domain"]).fillna(False).astype(bool)
    out = out.assign(same_domain=same.to_numpy())
    return out.drop_duplicates()


def host_graph(edges, *, damping: float = PAGERANK.damping, tol: float = PAGERANK.tol, max_iter: int = PAGERANK.max_iter, client=None,
               blocked: bool | None = None):
    """Host PageRank with the link-farm rule (module docstring): (hosts Dask frame, PageRankResult, counts)."""
    import dask.dataframe as dd

    meta = pd.DataFrame({"src_host": pd.Series(dtype="string"), "src_domain": pd.Series(dtype="string"),
                         "dst_host": pd.Series(dtype="string"), "dst_domain": pd.Series(dtype="string"),
                         "same_domain": pd.Series(dtype="bool")})
    hl = edges.map_partitions(host_edge_frame, meta=meta)
    hl = persist(client, hl.drop_duplicates(split_out=max(1, edges.npartitions)))
    # every host seen at either end of a link is a node, even if all its links were dropped by the rule
    all_links = edges[edges["kind"] == "link"]
    keys = dd.concat([
        all_links[["src_host", "src_domain"]].rename(columns={"src_host": "host", "src_domain": "domain"}),
        all_links[["dst_host", "dst_domain"]].rename(columns={"dst_host": "host", "dst_domain": "domain"}),
    ])
    ids, n = assign_ids(keys, "host")
    ids = persist(client, ids)
    kept = hl[~hl["same_domain"]]
    joined = _joined_ids(kept[["src_host", "dst_host"]], "src_host", "dst_host", ids, "host")
    # teleport: uniform over registered domains, split among each domain's hosts
    node_domains = ids.map_partitions(_host_domains, meta=pd.DataFrame({
        "node_id": pd.Series(dtype="int64"), "domain": pd.Series(dtype="string")})).compute()
    node_domains = node_domains.sort_values("node_id")
    dom_codes, _ = pd.factorize(node_domains["domain"].fillna(node_domains["node_id"].astype(str)).to_numpy())
    hosts_per_domain = np.bincount(dom_codes)
    pers = 1.0 / hosts_per_domain[dom_codes] if n else np.zeros(0)
    res, vectors, n_edges = _rank(joined, n, client, blocked, "host", damping=damping, tol=tol, max_iter=max_iter,
                                  personalization=pers if n else None)
    log.info("host graph: %d hosts, %d cross-domain edges", n, n_edges)
    # distinct source domains per target host
    dom_in = kept[["src_domain", "dst_host"]].drop_duplicates().groupby("dst_host").size().compute()
    dropped = hl[hl["same_domain"]].groupby("src_host").size().compute()
    hosts = map_node_slices(ids, _host_rows, vectors, HOSTS_META, client)
    hosts = hosts.map_partitions(_host_domain_counts, dom_in, dropped, meta=HOSTS_META)
    return hosts, res, {"host_nodes": n, "host_edges": n_edges,
                        "host_edges_dropped_same_domain": int(dropped.sum())}


def _host_domains(part: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"node_id": part["node_id"].to_numpy(np.int64),
                         "domain": pd.array([registered_domain(h) for h in part["host"].tolist()], dtype="string")})


def _host_rows(part, lo: int, scores, in_hosts, out_hosts) -> pd.DataFrame:
    """HOSTS_META rows of an id partition (domain counts filled by ``_host_domain_counts``); the arrays
    hold nodes ``lo..`` (the partition's slice)."""
    node = part["node_id"].to_numpy(np.int64)
    ids = node - lo
    hosts = part["host"].astype("string")
    return pd.DataFrame({
        "host": hosts.to_numpy(),
        "domain": pd.array([registered_domain(h) for h in hosts.tolist()], dtype="string"),
        "node_id": node,
        "pagerank": np.asarray(scores, np.float64)[ids],
        "in_hosts": np.asarray(in_hosts)[ids].astype(np.int64),
        "in_domains": np.zeros(len(ids), np.int64),
        "out_hosts": np.asarray(out_hosts)[ids].astype(np.int64),
        "dropped_same_domain_out": np.zeros(len(ids), np.int64),
    })


def _host_domain_counts(rows: pd.DataFrame, dom_in: pd.Series, dropped: pd.Series) -> pd.DataFrame:
    hosts = rows["host"].astype("string")
    return rows.assign(in_domains=hosts.map(dom_in).fillna(0).astype(np.int64).to_numpy(),
                       dropped_same_domain_out=hosts.map(dropped).fillna(0).astype(np.int64).to_numpy())


__all__ = ["assign_ids", "page_graph", "host_graph", "host_edge_frame", "PAGES_META", "HOSTS_META",
           "PageRankResult"]


def pages_frame(edges: pd.DataFrame, *, damping: float = PAGERANK.damping, tol: float = PAGERANK.tol, max_iter: int = PAGERANK.max_iter
                ) -> tuple[pd.DataFrame, PageRankResult]:
    """The page graph of a small pandas edge frame, in-process (tests, demo): (PAGES_META frame, result)."""
    links = edges.loc[edges["kind"] == "link", ["src_url", "dst_url"]]
    links = links[links["src_url"] != links["dst_url"]].drop_duplicates()
    urls, codes = np.unique(np.concatenate([links["src_url"].to_numpy(str), links["dst_url"].to_numpy(str)]),
                            return_inverse=True)
    n = len(urls)
    src, dst = codes[: len(links)], codes[len(links):]
    res = pagerank(src, dst, n, damping=damping, tol=tol, max_iter=max_iter)
    part = pd.DataFrame({"url": pd.array(urls, dtype="string"), "node_id": np.arange(n, dtype=np.int64)})
    pages = _page_rows(part, 0, res.scores, np.bincount(dst, minlength=n), np.bincount(src, minlength=n))
    return pages.astype(PAGES_META.dtypes.to_dict()), res
