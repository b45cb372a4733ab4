"""Dask jobs: crawl files -> ``W/graph/`` (edges, pages, hosts), link features and visual-duplicate features.

- ``run_graph``: one task per WARC/WAT file writes its edge part straight into ``W/graph/edges/`` (bounded
  memory, nothing through the driver), then page and host PageRank (``imagerank.graph.build``). A part is
  named after its file's fingerprint (and the extractor version): a file already extracted by an earlier
  run is linked into the new edges dataset, with its rejects and counts, instead of being parsed again.
- ``run_link_features``: ``W/catalog/`` + ``W/graph/`` -> ``W/features/links/``.
- ``run_visual_features``: ``W/features/pixels/`` (phash) + ``W/catalog/`` -> ``W/features/visual/``.
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
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import Client, as_completed

from imagerank.cluster import persist, show_progress
from imagerank.graph import build
from imagerank.graph import warc as W
from imagerank.io import atomic_path, keep_unchanged_timestamps, stamped, write_ddf, write_frame, write_json
from imagerank.runs import file_fingerprint

log = logging.getLogger(__name__)

EDGES_SCHEMA = pa.Schema.from_pandas(W.EDGES_META, preserve_index=False)
EXTRACTOR_VERSION = "links/1"  # bump when extraction changes: every crawl file is parsed again


def part_name(path: str) -> str | None:
    """Edge part of a crawl file: named by its fingerprint (size, mtime, edge hashes) and the extractor
    version; None when the file cannot be read (it is extracted, to record why, but never reused)."""
    try:
        fingerprint = file_fingerprint(path)
    except OSError:
        return None
    key = json.dumps([EXTRACTOR_VERSION, fingerprint], sort_keys=True).encode()
    return f"part.{hashlib.blake2b(key, digest_size=12).hexdigest()}.parquet"


def extract_to_parquet(path: str, out_dir: str, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Worker task: edges of one crawl file into ``out_dir/<name>``; returns (rejects, counts)."""
    out = Path(out_dir) / name
    with pq.ParquetWriter(out, EDGES_SCHEMA) as writer:
        def sink(frame: pd.DataFrame) -> None:
            writer.write_table(pa.Table.from_pandas(frame, schema=EDGES_SCHEMA, preserve_index=False))
        rejects, counts = W.extract_file_chunked(path, sink)
    return rejects, counts


def run_extract(client: Client, workdir: str | Path, crawl_files: list[str], *, reuse: bool = True) -> dict:
    """``imagerank graph extract``: every crawl file -> ``W/graph/edges/``, ``W/graph/rejects/``,
    ``W/graph/extract_counts/``; files extracted by an earlier run are reused unless ``reuse=False``."""
    workdir = Path(workdir)
    files = list(dict.fromkeys(str(f) for f in crawl_files))
    names = {f: part_name(f) or f"part.unreadable-{i:05d}.parquet" for i, f in enumerate(files)}
    previous = _previous_extraction(workdir) if reuse else {}
    reused = [f for f in files if names[f] in previous]
    rejects = [previous[names[f]][0] for f in reused]
    counts = [previous[names[f]][1] for f in reused]
    t0 = time.perf_counter()
    with atomic_path(workdir / "graph" / "edges") as tmp:
        tmp.mkdir(parents=True)
        for f in reused:
            _link_or_copy(workdir / "graph" / "edges" / names[f], tmp / names[f])
        futures = [client.submit(extract_to_parquet, f, str(tmp), names[f], pure=False)
                   for f in files if f not in reused]
        bar = _bar(len(futures), "graph: extract links")
        for fut in as_completed(futures):
            r, c = fut.result()
            rejects.append(r)
            counts.append(c)
            bar.update(1)
        bar.close()
        write_json({names[f]: f for f in files if not names[f].startswith("part.unreadable-")}, tmp / "_parts.json")
    rej = pd.concat(rejects, ignore_index=True) if rejects else W.REJECTS_META.copy()
    cnt = pd.concat(counts, ignore_index=True) if counts else W.COUNTS_META.copy()
    write_frame(rej, workdir / "graph" / "rejects")
    write_frame(cnt, workdir / "graph" / "extract_counts")
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


def _previous_extraction(workdir: Path) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Part name -> (rejects, counts) of every crawl file the current ``W/graph/edges/`` holds."""
    index = workdir / "graph" / "edges" / "_parts.json"
    if not index.exists() or not (workdir / "graph" / "extract_counts").is_dir():
        return {}
    parts = json.loads(index.read_text())
    rejects = pd.read_parquet(workdir / "graph" / "rejects") if (workdir / "graph" / "rejects").is_dir() else W.REJECTS_META
    counts = pd.read_parquet(workdir / "graph" / "extract_counts")
    return {name: (rejects[rejects["source_file"] == path].astype(W.REJECTS_META.dtypes.to_dict()),
                   counts[counts["source_file"] == path].astype(W.COUNTS_META.dtypes.to_dict()))
            for name, path in parts.items() if (workdir / "graph" / "edges" / name).exists()}


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        import shutil

        shutil.copyfile(source, target)


def run_graph(client: Client, workdir: str | Path, crawl_files: list[str] | None = None, *,
              damping: float = 0.85, tol: float = 1e-10, max_iter: int = 200, extract: bool = True) -> dict:
    """Extract (when ``crawl_files``) -> ``W/graph/edges/`` -> page and host PageRank; returns counts."""
    workdir = Path(workdir)
    counts: dict = {}
    if extract and crawl_files:
        counts.update(run_extract(client, workdir, crawl_files))
    edges = dd.read_parquet(str(workdir / "graph" / "edges"))
    edges = persist(client, edges, "graph: load edges")
    pages, pres, pc = build.page_graph(edges, damping=damping, tol=tol, max_iter=max_iter, client=client)
    write_ddf(pages, workdir / "graph" / "pages", schema=pa.Schema.from_pandas(build.PAGES_META,
                                                                                preserve_index=False))
    hosts, hres, hc = build.host_graph(edges, damping=damping, tol=tol, max_iter=max_iter, client=client)
    write_ddf(hosts, workdir / "graph" / "hosts", schema=pa.Schema.from_pandas(build.HOSTS_META,
                                                                                preserve_index=False))
    counts.update(pc)
    counts.update(hc)
    counts.update({
        "page_pagerank_iterations": pres.iterations, "page_pagerank_converged": bool(pres.converged),
        "page_pagerank_l1_change": pres.error, "page_pagerank_seconds": round(pres.seconds, 3),
        "host_pagerank_iterations": hres.iterations, "host_pagerank_converged": bool(hres.converged),
        "host_pagerank_l1_change": hres.error, "damping": damping, "tol": tol,
    })
    write_json(counts, workdir / "graph" / "summary.json")
    return counts


def run_link_features(client: Client, workdir: str | Path, *, damping: float = 0.85,
                      event_timestamp: pd.Timestamp | None = None) -> dict:
    """``W/catalog/`` + ``W/graph/{edges,pages}`` -> ``W/features/links/`` (one row per catalog image)."""
    from imagerank.features import links as L

    workdir = Path(workdir)
    catalog = dd.read_parquet(str(workdir / "catalog"), columns=["image_id", "url", "thumbnail",
                                                                 "foreign_landing_url"])
    edges = dd.read_parquet(str(workdir / "graph" / "edges"))
    pages = dd.read_parquet(str(workdir / "graph" / "pages"), columns=["url", "pagerank", "in_links"])
    n_pages = int(pages.map_partitions(len).sum().compute())
    nparts = max(1, edges.npartitions)
    img = edges.map_partitions(L.image_edge_keys, meta=L.IMAGE_EDGES_META)
    img = img.drop_duplicates(subset=["key", "src_url"], split_out=nparts)
    img = persist(client, img, "links: image edges")
    counts = img[["src_url", "key"]].shuffle(on="src_url").map_partitions(
        L.page_image_counts, meta=pd.DataFrame({"src_url": pd.Series(dtype="string"),
                                                "n_images": pd.Series(dtype="int64")}))
    pr = pages[["url", "pagerank"]].rename(columns={"url": "src_url"})
    img = img.merge(counts, on="src_url", how="left").merge(pr, on="src_url", how="left")
    img = img.map_partitions(L.add_share, n_pages, damping,
                             meta=L.IMAGE_EDGES_META.assign(n_images=pd.Series(dtype="int64"),
                                                            pagerank=pd.Series(dtype="float64"),
                                                            share=pd.Series(dtype="float64")))
    keys = catalog.map_partitions(L.catalog_image_keys, meta=L.CATALOG_KEYS_META)
    landing = catalog.map_partitions(L.landing_frame, meta=pd.DataFrame({
        "image_id": pd.Series(dtype="string"), "page_key": pd.Series(dtype="string")}))
    landing = persist(client, landing, "links: landing pages")
    matches = keys.merge(img, on="key", how="inner")
    matches = matches.merge(landing.rename(columns={"page_key": "landing_key"}), on="image_id", how="left")
    matches = matches.map_partitions(_mark_landing, meta=matches._meta.assign(is_landing=pd.Series(dtype="bool")))
    evidence = matches.shuffle(on="image_id").map_partitions(L.aggregate_evidence, meta=L.EVIDENCE_META)
    page_keys = pages.map_partitions(L.page_frame, meta=pd.DataFrame({
        "page_key": pd.Series(dtype="string"), "landing_pagerank": pd.Series(dtype="float64"),
        "landing_in_links": pd.Series(dtype="int64")}))
    lp = landing.merge(page_keys, on="page_key", how="inner").drop(columns="page_key")
    lp = lp.drop_duplicates(subset=["image_id"])
    frame = catalog[["image_id"]].merge(evidence, on="image_id", how="left").merge(lp, on="image_id", how="left")
    feats = frame.map_partitions(L.finalize_link_features, n_pages, meta=L.LINKS_META)
    feats = persist(client, feats, "links: features")
    links_path = workdir / "features" / "links"
    write_ddf(persist(client, keep_unchanged_timestamps(stamped(feats, event_timestamp), links_path), "links: stamp"),
              links_path)
    summary = feats[["has_link_evidence", "landing_crawled"]].sum().compute()
    n = int(feats.map_partitions(len).sum().compute())
    out = {"link_feature_rows": n, "images_with_link_evidence": int(summary["has_link_evidence"]),
           "images_with_crawled_landing": int(summary["landing_crawled"]), "n_pages": n_pages}
    write_json(out, workdir / "features" / "links_summary.json")
    return out


def _mark_landing(part: pd.DataFrame) -> pd.DataFrame:
    from imagerank.features.links import page_key

    src_keys = [page_key(u) for u in part["src_url"].tolist()]
    landing = part["landing_key"].astype(object).tolist()
    flag = [isinstance(lk, str) and s == lk for s, lk in zip(src_keys, landing)]
    return part.assign(is_landing=pd.Series(flag, index=part.index, dtype=bool))


KEY_ROWS_PER_PARTITION = 2_000_000  # index rows per shuffle partition (~48 MB): bounds a bucket task's memory
BROADCAST_PAIRED_NODES = 1_000_000  # images with a near-duplicate joined back by broadcast up to this (~32 MB)


def near_duplicate_pairs(client: Client, hashes: dd.DataFrame, n: int, index, *, threshold: int,
                         max_bucket: int, label: str = "visual") -> tuple[pd.DataFrame, dict]:
    """Verified near-duplicate pairs of ``hashes`` (node_id, phash; ``n`` rows) on the cluster: index keys are
    shuffled on the key so every bucket is built and verified on a worker; only the verified pairs (each once)
    and the oversized buckets' (key, size) reach the driver."""
    from imagerank.features import visual as V

    nparts = max(hashes.npartitions, -(-n * index.keys_per_image // KEY_ROWS_PER_PARTITION))
    if nparts > hashes.npartitions:  # a keying task writes keys_per_image rows per image: keep its output bounded
        hashes = hashes.repartition(npartitions=nparts)
    keys = hashes.map_partitions(V.index_keys, index, meta=V.BAND_META)
    keys = persist(client, keys.shuffle(on="band_key", npartitions=nparts), f"{label}: index shuffle")
    pairs = keys.map_partitions(V.index_pairs, index, threshold, max_bucket, meta=V.PAIRS_META)
    oversize = keys.map_partitions(V.oversize_buckets, max_bucket, meta=V.OVERSIZE_META)
    pairs, oversize = client.compute([pairs, oversize], sync=True)
    del keys
    return pairs, V.skipped_summary(oversize)


def run_visual_features(client: Client, workdir: str | Path, *, threshold: int | None = None,
                        max_bucket: int | None = None, event_timestamp: pd.Timestamp | None = None,
                        max_mean_bucket: float | None = None) -> dict:
    """``W/features/pixels/`` (phash) + ``W/catalog/`` -> ``W/features/visual/`` (one row per catalog image).

    Index keys are shuffled with Dask (``near_duplicate_pairs``), never all pairs; the index widens with the
    number of hashed images (``visual.index_for``). Only the verified pairs travel to the driver for components
    / VisualRank; their per-image results go back by a join on node_id (broadcast while small, else a hash
    join: each partition receives its own images' rows). Buckets too large to compare are counted under
    ``errors`` in the result (the run manifest), and logged as an error.
    """
    from imagerank.features import visual as V
    from imagerank.urls import host_of

    threshold = V.DEFAULT_THRESHOLD if threshold is None else threshold
    max_bucket = max_bucket or V.DEFAULT_MAX_BUCKET
    workdir = Path(workdir)
    catalog = dd.read_parquet(str(workdir / "catalog"), columns=["image_id", "provider", "foreign_landing_url"])
    pixels = dd.read_parquet(str(workdir / "features" / "pixels"), columns=["image_id", "phash"])
    pixels = pixels.dropna(subset=["phash"]).drop_duplicates(subset=["image_id"])
    imgs = pixels.merge(catalog, on="image_id", how="inner")
    ids, n = build.assign_ids(imgs[["image_id"]], "image_id")
    imgs = imgs.merge(ids, on="image_id", how="inner")
    imgs = imgs.map_partitions(
        lambda p: p.assign(host=pd.array([host_of(u) if isinstance(u, str) else None
                                          for u in p["foreign_landing_url"].tolist()], dtype="string"),
                           phash=p["phash"].astype("int64")).drop(columns=["foreign_landing_url"]),
        meta=pd.DataFrame({"image_id": pd.Series(dtype="string"), "phash": pd.Series(dtype="int64"),
                           "provider": pd.Series(dtype="string"), "node_id": pd.Series(dtype="int64"),
                           "host": pd.Series(dtype="string")}))
    imgs = persist(client, imgs, "visual: images")
    index = V.index_for(n, max_mean_bucket=max_mean_bucket or V.DEFAULT_MEAN_BUCKET)
    pairs, skipped = near_duplicate_pairs(client, imgs[["node_id", "phash"]], n, index,
                                          threshold=threshold, max_bucket=max_bucket)
    if skipped["oversize_buckets"]:
        log.error("visual: %d buckets over %d images (%d rows, %d pairs) were not compared: identical or "
                  "degenerate hashes (blank images?)", skipped["oversize_buckets"], max_bucket,
                  skipped["oversize_bucket_rows"], skipped["pairs_not_compared"])
    nodes = V.pair_graph_ranks(n, pairs["a"].to_numpy(), pairs["b"].to_numpy(), pairs["distance"].to_numpy(),
                               threshold).astype({"component": "float64"})
    n_paired = len(nodes)
    isolated = V.isolated_visualrank(n, n_paired)
    nodes = dd.from_pandas(nodes, npartitions=max(1, min(imgs.npartitions, -(-n_paired // 500_000))))
    # up to BROADCAST_PAIRED_NODES rows (32 bytes each) the paired images go to every partition; above, a hash
    # join sends each partition only its own images' rows
    broadcast = n_paired <= BROADCAST_PAIRED_NODES
    rows = imgs.merge(nodes, on="node_id", how="left", broadcast=broadcast)
    paired = rows[~rows["component"].isna()][["component", "host", "provider"]]
    stats = paired.shuffle(on="component").map_partitions(V.cluster_stats, meta=V.STATS_META)
    rows = rows.merge(stats, on="component", how="left", broadcast=broadcast).map_partitions(
        V.unpaired_filled, isolated, meta=V.ROWS_META)
    frame = catalog[["image_id"]].merge(rows, on="image_id", how="left")
    feats = persist(client, frame.map_partitions(V.finalize_visual, meta=V.VISUAL_META), "visual: features")
    visual_path = workdir / "features" / "visual"
    write_ddf(persist(client, keep_unchanged_timestamps(stamped(feats, event_timestamp), visual_path), "visual: stamp"),
              visual_path)
    out = {"visual_rows": int(feats.map_partitions(len).sum().compute()), "images_with_phash": n,
           "near_duplicate_pairs": int(len(pairs)), "images_with_near_duplicates": n_paired,
           **skipped, "errors": {k: v for k, v in skipped.items() if v},
           "threshold": threshold, "max_bucket": max_bucket, **index.describe(),
           "recall_at_threshold": index.recall(threshold)}
    write_json(out, workdir / "features" / "visual_summary.json")
    return out


class _NoBar:
    def update(self, n): pass
    def close(self): pass


def _bar(total: int, label: str):
    if not show_progress():
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=f"[imagerank] {label}", unit="file", file=sys.stderr)
