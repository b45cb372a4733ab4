"""Page and host graphs from the edge dataset, node ids assigned with Dask, PageRank on the driver.

Node ids at scale: the node keys (URLs or hosts) are de-duplicated with a hash-partitioned shuffle
(``drop_duplicates(split_out=k)``), each partition's length is computed, and partition ``i`` numbers its rows
from the cumulative offset of partitions ``< i``: ids are dense ``0..n-1`` without collecting any key on the
driver. Edges are then joined to ids (two shuffle merges) and only the two int32 id columns travel to the
driver, where one CSR matrix is built and PageRank iterates (``imagerank.graph.pagerank``).

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

from imagerank.graph.pagerank import PageRankResult, pagerank
from imagerank.urls import host_of, registered_domain

log = logging.getLogger(__name__)

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
    uniq = keys[[key]].dropna().drop_duplicates(split_out=split_out).persist()
    lengths = uniq.map_partitions(len).compute().tolist()
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    meta = pd.DataFrame({key: pd.Series(dtype=uniq.dtypes[key]), "node_id": pd.Series(dtype="int64")})
    parts = [dask.delayed(_with_ids)(p, int(o), key) for p, o in zip(uniq.to_delayed(), offsets)]
    return dd.from_delayed(parts, meta=meta, verify_meta=False), int(sum(lengths))


def _edge_ids(edges, src: str, dst: str, ids, key: str) -> tuple[np.ndarray, np.ndarray]:
    a = ids.rename(columns={key: src, "node_id": "src_id"})
    b = ids.rename(columns={key: dst, "node_id": "dst_id"})
    joined = edges.merge(a, on=src, how="inner").merge(b, on=dst, how="inner")[["src_id", "dst_id"]]
    frame = joined.compute()
    return frame["src_id"].to_numpy(np.int32), frame["dst_id"].to_numpy(np.int32)


def _progress_logger(label: str):
    def report(it: int, err: float) -> None:
        if it == 1 or it % 10 == 0:
            log.info("%s pagerank iteration %d: L1 change %.3g", label, it, err)
    return report


# ----------------------------------------------------------------------------------------------- pages

def _page_rows(part: pd.DataFrame, scores, in_deg, out_deg) -> pd.DataFrame:
    ids = part["node_id"].to_numpy(np.int64)
    hosts = [host_of(u) for u in part["url"].tolist()]
    out = pd.DataFrame({
        "url": part["url"].astype("string").to_numpy(),
        "host": pd.array(hosts, dtype="string"),
        "domain": pd.array([registered_domain(h) for h in hosts], dtype="string"),
        "node_id": ids,
        "pagerank": scores[ids] if len(ids) else np.zeros(0),
        "in_links": in_deg[ids].astype(np.int64) if len(ids) else np.zeros(0, np.int64),
        "out_links": out_deg[ids].astype(np.int64) if len(ids) else np.zeros(0, np.int64),
    })
    return out


def page_graph(edges, *, damping: float = 0.85, tol: float = 1e-10, max_iter: int = 200, client=None):
    """Page PageRank from the edge dataset (a Dask frame): (pages Dask frame, PageRankResult, counts)."""
    t0 = time.perf_counter()
    links = edges[edges["kind"] == "link"][["src_url", "dst_url"]]
    links = links[links["src_url"] != links["dst_url"]]
    links = links.drop_duplicates(split_out=max(1, edges.npartitions)).persist()
    import dask.dataframe as dd

    keys = dd.concat([links[["src_url"]].rename(columns={"src_url": "url"}),
                      links[["dst_url"]].rename(columns={"dst_url": "url"})])
    ids, n = assign_ids(keys, "url")
    ids = ids.persist()
    src, dst = _edge_ids(links, "src_url", "dst_url", ids, "url")
    log.info("page graph: %d nodes, %d edges (ids in %.1fs)", n, len(src), time.perf_counter() - t0)
    res = pagerank(src, dst, n, damping=damping, tol=tol, max_iter=max_iter, progress=_progress_logger("page"))
    in_deg = np.bincount(dst, minlength=n)
    out_deg = np.bincount(src, minlength=n)
    scores, in_deg, out_deg = _share(client, res.scores, in_deg, out_deg)
    pages = ids.map_partitions(_page_rows, scores, in_deg, out_deg, meta=PAGES_META)
    return pages, res, {"page_nodes": n, "page_edges": int(len(src))}


def _share(client, *arrays):
    """Ship large read-only arrays to the workers once (scatter) when a client is given."""
    if client is None:
        return arrays
    return tuple(client.scatter(a, broadcast=True) for a in arrays)


# ----------------------------------------------------------------------------------------------- hosts

def host_edge_frame(part: pd.DataFrame) -> pd.DataFrame:
    """Host-level link rows of an edge partition with the farm rule flag (pure)."""
    out = part.loc[(part["kind"] == "link") & part["src_host"].notna() & part["dst_host"].notna(),
                   ["src_host", "src_domain", "dst_host", "dst_domain"]]
    out = out[out["src_host"] != out["dst_host"]]
    same = (out["src_domain"] == out["dst_domain"]).fillna(False).astype(bool)
    out = out.assign(same_domain=same.to_numpy())
    return out.drop_duplicates()


def host_graph(edges, *, damping: float = 0.85, tol: float = 1e-10, max_iter: int = 200, client=None):
    """Host PageRank with the link-farm rule (module docstring): (hosts Dask frame, PageRankResult, counts)."""
    import dask.dataframe as dd

    meta = pd.DataFrame({"src_host": pd.Series(dtype="string"), "src_domain": pd.Series(dtype="string"),
                         "dst_host": pd.Series(dtype="string"), "dst_domain": pd.Series(dtype="string"),
                         "same_domain": pd.Series(dtype="bool")})
    hl = edges.map_partitions(host_edge_frame, meta=meta)
    hl = hl.drop_duplicates(split_out=max(1, edges.npartitions)).persist()
    # every host seen at either end of a link is a node, even if all its links were dropped by the rule
    all_links = edges[edges["kind"] == "link"]
    keys = dd.concat([
        all_links[["src_host", "src_domain"]].rename(columns={"src_host": "host", "src_domain": "domain"}),
        all_links[["dst_host", "dst_domain"]].rename(columns={"dst_host": "host", "dst_domain": "domain"}),
    ])
    ids, n = assign_ids(keys, "host")
    ids = ids.persist()
    kept = hl[~hl["same_domain"]]
    src, dst = _edge_ids(kept[["src_host", "dst_host"]], "src_host", "dst_host", ids, "host")
    # teleport: uniform over registered domains, split among each domain's hosts
    node_domains = ids.map_partitions(_host_domains, meta=pd.DataFrame({
        "node_id": pd.Series(dtype="int64"), "domain": pd.Series(dtype="string")})).compute()
    node_domains = node_domains.sort_values("node_id")
    dom_codes, _ = pd.factorize(node_domains["domain"].fillna(node_domains["node_id"].astype(str)).to_numpy())
    hosts_per_domain = np.bincount(dom_codes)
    pers = 1.0 / hosts_per_domain[dom_codes] if n else np.zeros(0)
    res = pagerank(src, dst, n, damping=damping, tol=tol, max_iter=max_iter,
                   personalization=pers if n else None, progress=_progress_logger("host"))
    log.info("host graph: %d hosts, %d cross-domain edges", n, len(src))
    in_hosts = np.bincount(dst, minlength=n)
    out_hosts = np.bincount(src, minlength=n)
    # distinct source domains per target host
    dom_in = kept[["src_domain", "dst_host"]].drop_duplicates().groupby("dst_host").size().compute()
    dropped = hl[hl["same_domain"]].groupby("src_host").size().compute()
    scores, in_hosts, out_hosts = _share(client, res.scores, in_hosts, out_hosts)
    hosts = ids.map_partitions(_host_rows, scores, in_hosts, out_hosts, dom_in, dropped, meta=HOSTS_META)
    return hosts, res, {"host_nodes": n, "host_edges": int(len(src)),
                        "host_edges_dropped_same_domain": int(dropped.sum())}


def _host_domains(part: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"node_id": part["node_id"].to_numpy(np.int64),
                         "domain": pd.array([registered_domain(h) for h in part["host"].tolist()], dtype="string")})


def _host_rows(part, scores, in_hosts, out_hosts, dom_in: pd.Series, dropped: pd.Series) -> pd.DataFrame:
    ids = part["node_id"].to_numpy(np.int64)
    hosts = part["host"].astype("string")
    return pd.DataFrame({
        "host": hosts.to_numpy(),
        "domain": pd.array([registered_domain(h) for h in hosts.tolist()], dtype="string"),
        "node_id": ids,
        "pagerank": scores[ids],
        "in_hosts": in_hosts[ids].astype(np.int64),
        "in_domains": hosts.map(dom_in).fillna(0).astype(np.int64).to_numpy(),
        "out_hosts": out_hosts[ids].astype(np.int64),
        "dropped_same_domain_out": hosts.map(dropped).fillna(0).astype(np.int64).to_numpy(),
    })


__all__ = ["assign_ids", "page_graph", "host_graph", "host_edge_frame", "PAGES_META", "HOSTS_META",
           "PageRankResult"]


def pages_frame(edges: pd.DataFrame, *, damping: float = 0.85, tol: float = 1e-10, max_iter: int = 200
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
    pages = _page_rows(part, res.scores, np.bincount(dst, minlength=n), np.bincount(src, minlength=n))
    return pages.astype(PAGES_META.dtypes.to_dict()), res
