"""Dask jobs: crawl files -> ``W/graph/`` (edges, pages, hosts) and link features (visual duplicates: pipelines/visual.py).

- ``run_graph``: one task per WARC/WAT file writes its edge part straight into ``W/graph/edges/`` (bounded
  memory, nothing through the driver), then page and host PageRank (``imagerank.graph.build``). A part is
  named after its file's fingerprint (and the extractor version): a file already extracted by an earlier
  run is linked into the new edges dataset, with its rejects and counts, instead of being parsed again.
- ``run_link_features``: ``W/catalog/`` + ``W/graph/`` -> ``W/features/links/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import Client, as_completed

from imagerank.cluster import persist, show_progress
from imagerank.graph import build
from imagerank.graph import linkgraph as LG
from imagerank.graph import warc as W
from imagerank import datasets, storage
from imagerank.io import keep_unchanged_timestamps, stamped
from imagerank.io import write_json
from imagerank.settings import PAGERANK

log = logging.getLogger(__name__)

EDGES_SCHEMA = pa.Schema.from_pandas(W.EDGES_META, preserve_index=False)


def part_name(path: str) -> str | None:
    """Edge part of a crawl file: named by its fingerprint (local: size, mtime, edge hashes; URL: size and
    ETag) and the extractor version; None when the file cannot be read (it is extracted, to record why, but
    never reused)."""
    from imagerank.inputs import fingerprint as input_fingerprint

    try:
        fingerprint = input_fingerprint(path)
    except Exception:  # noqa: BLE001 - a missing file, a store error: extracted anyway, to record why
        return None
    key = json.dumps([W.EXTRACTOR_VERSION, fingerprint], sort_keys=True).encode()
    return f"part.{hashlib.blake2b(key, digest_size=12).hexdigest()}.parquet"


def extract_to_parquet(path: str, out_dir: str, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Worker task: edges of one crawl file into ``out_dir/<name>`` (a local path or URL: the worker writes
    its own part, nothing passes through the driver); returns (rejects, counts)."""
    with storage.open_file(storage.join(out_dir, name), "wb") as out, \
            pq.ParquetWriter(out, EDGES_SCHEMA) as writer:
        def sink(frame: pd.DataFrame) -> None:
            writer.write_table(pa.Table.from_pandas(frame, schema=EDGES_SCHEMA, preserve_index=False))
        rejects, counts = W.extract_file_chunked(path, sink)
    return rejects, counts


def run_extract(client: Client, workdir: str | Path, crawl_files: list[str], *, reuse: bool = True) -> dict:
    """``imagerank graph extract``: every crawl file -> ``W/graph/edges/``, ``W/graph/rejects/``,
    ``W/graph/extract_counts/``; files extracted by an earlier run are reused unless ``reuse=False``."""
    files = list(dict.fromkeys(str(f) for f in crawl_files))
    names = {f: part_name(f) or f"part.unreadable-{i:05d}.parquet" for i, f in enumerate(files)}
    previous = _previous_extraction(workdir) if reuse else {}
    reused = [f for f in files if names[f] in previous]
    rejects = [previous[names[f]][0] for f in reused]
    counts = [previous[names[f]][1] for f in reused]
    t0 = time.perf_counter()
    edges_now = datasets.current(workdir, "graph_edges")
    with datasets.publishing(workdir, "graph_edges") as tmp:
        for f in reused:
            _link_or_copy(storage.join(edges_now, names[f]), storage.join(tmp, names[f]))
        futures = [client.submit(extract_to_parquet, f, tmp, names[f], pure=False)
                   for f in files if f not in reused]
        bar = _bar(len(futures), "graph: extract links")
        for fut in as_completed(futures):
            r, c = fut.result()
            rejects.append(r)
            counts.append(c)
            bar.update(1)
        bar.close()
        write_json({names[f]: f for f in files if not names[f].startswith("part.unreadable-")},
                   storage.join(tmp, "_parts.json"))
    rej = pd.concat(rejects, ignore_index=True) if rejects else W.REJECTS_META.copy()
    cnt = pd.concat(counts, ignore_index=True) if counts else W.COUNTS_META.copy()
    datasets.write_frame(rej, workdir, "graph_rejects")
    datasets.write_frame(cnt, workdir, "graph_extract_counts")
    totals = cnt.groupby("counter")["count"].sum()
    summary = {
        "crawl_files": len(files),
        "crawl_files_reused": len(reused),
        "records": int(totals.get("records", 0)),
        "pages": int(totals.get("pages_html", 0) + totals.get("pages_wat", 0)),
        "edges_link": int(totals.get("edges_link", 0)),
        "edges_image": int(totals.get("edges_image", 0)),
        "rejected_records": int(len(rej)),
        "rejected_records_by_reason": {str(k): int(v) for k, v in rej["reason"].value_counts().items()},
        "skipped_links_by_reason": {str(k).split(":", 1)[1]: int(v) for k, v in totals.items()
                                    if str(k).startswith(("skipped_link:", "skipped_image:"))},
        "extract_seconds": round(time.perf_counter() - t0, 2),
    }
    log.info("extract: %s", summary)
    return summary


def _previous_extraction(workdir: str | Path) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Part name -> (rejects, counts) of every crawl file the current ``W/graph/edges/`` holds."""
    edges = datasets.current(workdir, "graph_edges")
    if edges is None or not storage.exists(storage.join(edges, "_parts.json")) \
            or not datasets.exists(workdir, "graph_extract_counts"):
        return {}
    parts = json.loads(storage.read_text(storage.join(edges, "_parts.json")))
    rejects = datasets.read_frame(workdir, "graph_rejects") if datasets.exists(workdir, "graph_rejects") \
        else W.REJECTS_META
    counts = datasets.read_frame(workdir, "graph_extract_counts")
    return {name: (rejects[rejects["source_file"] == path].astype(W.REJECTS_META.dtypes.to_dict()),
                   counts[counts["source_file"] == path].astype(W.COUNTS_META.dtypes.to_dict()))
            for name, path in parts.items() if storage.exists(storage.join(edges, name))}


def _link_or_copy(source: str, target: str) -> None:
    """A part reused from the previous version: a hard link on local disk, a server-side copy on object storage."""
    if not storage.is_url(target):
        try:
            os.link(source, target)
            return
        except OSError:
            pass
    fs, source_path = storage.filesystem(source)
    fs.copy(source_path, storage.filesystem(target)[1])


def run_graph(client: Client, workdir: str | Path, crawl_files: list[str] | None = None, *,
              damping: float = PAGERANK.damping, tol: float = PAGERANK.tol, max_iter: int = PAGERANK.max_iter,
              extract: bool = True) -> dict:
    """Extract (when ``crawl_files``) -> ``W/graph/edges/`` -> page and host PageRank; returns counts."""
    counts: dict = {}
    if extract and crawl_files:
        counts.update(run_extract(client, workdir, crawl_files))
    edges = datasets.read_ddf(workdir, "graph_edges")
    edges = persist(client, edges, "graph: load edges")
    pages, pres, pc = build.page_graph(edges, damping=damping, tol=tol, max_iter=max_iter, client=client)
    datasets.write_ddf(pages, workdir, "graph_pages", schema=datasets.schema("graph_pages"))
    hosts, hres, hc = build.host_graph(edges, damping=damping, tol=tol, max_iter=max_iter, client=client)
    datasets.write_ddf(hosts, workdir, "graph_hosts", schema=datasets.schema("graph_hosts"))
    counts.update(pc)
    counts.update(hc)
    counts.update({
        "page_pagerank_iterations": pres.iterations, "page_pagerank_converged": bool(pres.converged),
        "page_pagerank_l1_change": pres.error, "page_pagerank_seconds": round(pres.seconds, 3),
        "host_pagerank_iterations": hres.iterations, "host_pagerank_converged": bool(hres.converged),
        "host_pagerank_l1_change": hres.error, "damping": damping, "tol": tol,
    })
    datasets.write_json(counts, workdir, "graph_summary")
    return counts


def run_link_features(client: Client, workdir: str | Path, *, damping: float = PAGERANK.damping,
                      event_timestamp: pd.Timestamp | None = None) -> dict:
    """``W/catalog/`` + ``W/graph/{edges,pages}`` -> ``W/features/links/`` (one row per catalog image)."""
    from imagerank.features import links as L

    catalog = datasets.read_ddf(workdir, "catalog", columns=["image_id", "url", "thumbnail", "foreign_landing_url"])
    edges = datasets.read_ddf(workdir, "graph_edges")
    pages = datasets.read_ddf(workdir, "graph_pages", columns=["url", "pagerank", "in_links"])
    n_pages = int(pages.map_partitions(len).sum().compute())
    nparts = max(1, edges.npartitions)
    img = edges.map_partitions(L.image_edge_keys, meta=L.IMAGE_EDGES_META)
    img = img.drop_duplicates(subset=["key", "src_url"], split_out=nparts)
    img = persist(client, img, "links: image edges")
    counts = img[["src_url", "key"]].shuffle(on="src_url").map_partitions(
        L.page_image_counts, meta=L.PAGE_IMAGE_COUNTS_META)
    pr = pages[["url", "pagerank"]].rename(columns={"url": "src_url"})
    img = img.merge(counts, on="src_url", how="left").merge(pr, on="src_url", how="left")
    img = img.map_partitions(L.add_share, n_pages, damping,
                             meta=L.SHARED_EDGES_META)
    keys = catalog.map_partitions(L.catalog_image_keys, meta=L.CATALOG_KEYS_META)
    landing = catalog.map_partitions(L.landing_frame, meta=L.LANDING_META)
    landing = persist(client, landing, "links: landing pages")
    matches = keys.merge(img, on="key", how="inner")
    matches = matches.merge(landing.rename(columns={"page_key": "landing_key"}), on="image_id", how="left")
    matches = matches.map_partitions(L.mark_landing_key, meta=matches._meta.assign(is_landing=pd.Series(dtype="bool")))
    evidence = matches.shuffle(on="image_id").map_partitions(L.aggregate_evidence, meta=L.EVIDENCE_META)
    page_keys = pages.map_partitions(L.page_frame, meta=L.PAGE_KEYS_META)
    lp = landing.merge(page_keys, on="page_key", how="inner").drop(columns="page_key")
    lp = lp.drop_duplicates(subset=["image_id"], split_out=lp.npartitions)  # explicit: see pipelines.visual
    frame = catalog[["image_id"]].merge(evidence, on="image_id", how="left").merge(lp, on="image_id", how="left")
    feats = frame.map_partitions(L.finalize_link_features, n_pages, meta=L.LINKS_META)
    feats = persist(client, feats, "links: features")
    links_path = datasets.location(workdir, "links")
    datasets.write_ddf(persist(client, keep_unchanged_timestamps(stamped(feats, event_timestamp), links_path),
                               "links: stamp"), workdir, "links")
    summary = feats[["has_link_evidence", "landing_crawled"]].sum().compute()
    n = int(feats.map_partitions(len).sum().compute())
    out = {"link_feature_rows": n, "images_with_link_evidence": int(summary["has_link_evidence"]),
           "images_with_crawled_landing": int(summary["landing_crawled"]), "n_pages": n_pages}
    datasets.write_json(out, workdir, "links_summary")
    return out


class _NoBar:
    def update(self, n): pass
    def close(self): pass


def _bar(total: int, label: str):
    if not show_progress():
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=f"[imagerank] {label}", unit="file", file=sys.stderr)


# ------------------------------------------------------------------------------------------- --linkgraph

def linkgraph_edges(client: Client, paths: list[str]):
    """Read every part on the workers -> (usable link rows, rejects, counts); pages counted once per target."""
    files = LG.expand_paths([str(p) for p in paths])
    parts = LG.plan_parts(files)
    rows = persist(client, dd.from_map(LG.read_part, parts, meta=LG.ROWS_META, enforce_metadata=False),
                   "linkgraph: read")
    nparts = max(1, rows.npartitions)
    rejects = rows.map_partitions(LG.reject_rows, meta=LG.REJECTS_META)
    good = rows[rows["reason"].isnull() & rows["src_domain"].notnull()][
        ["page_id", "src_domain", "dst_domain", "links", "input_rows"]]
    from_pages = good["page_id"] != -1
    page_links = good[from_pages & good["dst_domain"].notnull()]
    # a page captured twice (or in two files) counts once per target
    page_links = page_links.drop_duplicates(subset=["page_id", "dst_domain"], split_out=nparts)
    listed = good[~from_pages & good["dst_domain"].notnull()]
    links = dd.concat([page_links, listed])[["src_domain", "dst_domain", "links"]]
    accepted, page_link_rows, page_link_unique, pages, source_domains, occurrences = dd.compute(
        good["input_rows"].sum(), good[from_pages & good["dst_domain"].notnull()].shape[0], page_links.shape[0],
        good[from_pages]["page_id"].drop_duplicates(split_out=nparts).shape[0],
        good["src_domain"].drop_duplicates(split_out=nparts).shape[0],
        links["links"].sum())
    counts = {"files": len(files), "read_tasks": len(parts),
              "cccatalog_files": len({p.path for p in parts if p.kind == "cccatalog"}),
              "edge_list_files": len({p.path for p in parts if p.kind == "edges"}),
              "accepted_rows": int(accepted), "pages": int(pages), "source_domains": int(source_domains),
              "page_link_rows_repeated": int(page_link_rows - page_link_unique),
              "link_occurrences": int(occurrences)}
    return good, links, rejects, counts


def run_linkgraph(client: Client, workdir: str | Path, paths: list[str], *, ranks_files: list[str] = (),
                  weighting: str = "unweighted", damping: float = PAGERANK.damping, tol: float = PAGERANK.tol,
                  max_iter: int = PAGERANK.max_iter,
                  max_exact_sources: int = 20_000, harmonic_samples: int = 4_000, harmonic_block: int = 64) -> dict:
    """``--linkgraph``: crawl-derived link graph files -> ``W/graph/domains/`` (PageRank, harmonic centrality,
    in-domains per registered domain), ``W/graph/linkgraph_rejects/`` and, with ranks files, how the result
    agrees with Common Crawl's ranks (returned and in ``W/graph/domains_summary.json``)."""
    from imagerank.graph.pagerank import map_node_slices, pagerank

    LG.edge_weight(np.ones(1), weighting)  # refuse an unknown weighting before any work
    t0 = time.perf_counter()
    good, links, rejects, counts = linkgraph_edges(client, paths)
    rejects = persist(client, rejects, "linkgraph: rejects")
    nparts = max(1, links.npartitions)
    self_links = links[links["src_domain"] == links["dst_domain"]]
    cross = links[links["src_domain"] != links["dst_domain"]]
    pairs = cross.groupby(["src_domain", "dst_domain"]).agg(links=("links", "sum"), split_out=nparts).reset_index()
    pairs = persist(client, pairs[pairs["links"] > 0], "linkgraph: domain edges")
    keys = dd.concat([good[["src_domain"]].rename(columns={"src_domain": "domain"}),
                      good[["dst_domain"]].rename(columns={"dst_domain": "domain"})])
    ids, n = build.assign_ids(keys, "domain")
    ids = persist(client, ids, "linkgraph: domain ids")
    joined = pairs.merge(ids.rename(columns={"domain": "src_domain", "node_id": "src_id"}), on="src_domain") \
                  .merge(ids.rename(columns={"domain": "dst_domain", "node_id": "dst_id"}), on="dst_domain")
    edge_ids = joined[["src_id", "dst_id", "links"]].compute()
    src = edge_ids["src_id"].to_numpy(np.int64)
    dst = edge_ids["dst_id"].to_numpy(np.int64)
    occurrences = edge_ids["links"].to_numpy(np.float64)
    in_domains = np.bincount(dst, minlength=n)
    out_domains = np.bincount(src, minlength=n)
    in_links = np.bincount(dst, weights=occurrences, minlength=n).round().astype(np.int64)
    res = pagerank(src, dst, n, damping=damping, tol=tol, max_iter=max_iter, dangling="uniform",
                   weights=LG.edge_weight(occurrences, weighting), progress=build._progress_logger("domain"))
    harmonic, hinfo = _harmonic_on_workers(client, src, dst, n, out_domains, max_exact_sources,
                                           harmonic_samples, harmonic_block)
    vectors = [res.scores, harmonic, in_domains, out_domains, in_links,
               LG.position_score(res.scores), LG.position_score(harmonic)]
    domains = map_node_slices(ids, LG.domain_rows, vectors, LG.DOMAINS_META, client=client)
    domains = persist(client, domains, "linkgraph: domain rows")
    datasets.write_ddf(domains, workdir, "graph_domains", schema=datasets.schema("graph_domains"))
    datasets.write_ddf(rejects, workdir, "linkgraph_rejects", schema=datasets.schema("linkgraph_rejects"))
    rejected = rejects.groupby(["level", "reason"]).agg(rows=("input_rows", "sum"), entries=("row", "count")).compute()
    n_self = self_links.shape[0].compute()
    summary = {
        "linkgraph": [str(p) for p in paths], **counts,
        "rejected_rows": int(sum(v["rows"] for (lvl, _), v in rejected.iterrows() if lvl == "row")),
        "rejected_rows_by_reason": {str(r): int(v["rows"]) for (lvl, r), v in rejected.iterrows() if lvl == "row"},
        "skipped_links_by_reason": {str(r): int(v["entries"]) for (lvl, r), v in rejected.iterrows() if lvl == "link"},
        "domains": n, "source_domains_with_out_links": int((out_domains > 0).sum()),
        "target_domains": int((in_domains > 0).sum()), "domain_edges": int(len(src)),
        "self_link_rows_dropped": int(n_self),
        "weighting": weighting, "damping": damping, "tol": tol,
        "pagerank_iterations": res.iterations, "pagerank_converged": bool(res.converged),
        "pagerank_l1_change": res.error, "pagerank_seconds": round(res.seconds, 3), **hinfo,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    summary["input_rows"] = summary["accepted_rows"] + summary["rejected_rows"]
    if ranks_files:
        summary["ranks_agreement"] = linkgraph_ranks_agreement(client, workdir, list(ranks_files))
    datasets.write_json(summary, workdir, "linkgraph_summary")
    log.info("linkgraph: %s", summary)
    return summary


def _harmonic_on_workers(client: Client, src, dst, n: int, out_degree, max_exact_sources: int, samples: int,
                         block: int) -> tuple[np.ndarray, dict]:
    """Harmonic centrality: BFS from blocks of source domains on the workers, summed on the driver in block order."""
    t0 = time.perf_counter()
    sources, scale, exact = LG.harmonic_plan(out_degree, max_exact_sources, samples)
    a = LG.adjacency(src, dst, n)
    a_shared = client.scatter(a, broadcast=True)
    blocks = [sources[i:i + block] for i in range(0, len(sources), block)]
    futures = client.map(LG.harmonic_block, [a_shared] * len(blocks), blocks, pure=False)
    total = np.zeros(n, dtype=np.float64)
    bar = _bar(len(futures), "linkgraph: harmonic centrality")
    for fut in futures:  # summed in block order: the same floats every run, whichever worker finishes first
        total += fut.result()
        bar.update(1)
    bar.close()
    return total * scale, {"harmonic_exact": bool(exact), "harmonic_sources": int(len(sources)),
                           "harmonic_scale": float(scale), "harmonic_seconds": round(time.perf_counter() - t0, 2)}


def linkgraph_ranks_agreement(client: Client, workdir: str | Path, ranks_files: list[str]) -> dict:
    """Spearman of ``W/graph/domains/`` against Common Crawl ranks files over the domains both hold.

    The ranks files are streamed on the workers keeping only our domains (and their ``www.`` hosts for
    host-level files), so a full ranks file never sits in memory.
    """
    from imagerank.features.domains import read_ranks
    from imagerank.graph.linkgraph import ranks_agreement

    domains = datasets.read_ddf(workdir, "graph_domains",
                                columns=["domain", "pagerank", "harmonic_centrality", "in_domains"]).compute()
    names = set(domains["domain"].dropna().astype(str))
    # one object, not one future per name (scatter splits a bare set)
    [wanted] = client.scatter([frozenset(names | {f"www.{d}" for d in names})], broadcast=True)
    ranks = client.gather([client.submit(read_ranks, str(p), wanted, pure=False) for p in ranks_files])
    result = ranks_agreement(domains, ranks)
    result["ranks_files"] = [str(p) for p in ranks_files]
    return result
