"""Dask jobs: crawl files -> ``W/graph/`` (edges, pages, hosts), link features and visual-duplicate features.

- ``run_graph``: one task per WARC/WAT file writes its edge part straight into ``W/graph/edges/`` (bounded
  memory, nothing through the driver), then page and host PageRank (``imagerank.graph.build``).
- ``run_link_features``: ``W/catalog/`` + ``W/graph/`` -> ``W/features/links/``.
- ``run_visual_features``: ``W/features/pixels/`` (phash) + ``W/catalog/`` -> ``W/features/visual/``.
"""

from __future__ import annotations

import logging
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
from imagerank.io import atomic_path, write_ddf, write_frame, write_json

log = logging.getLogger(__name__)

EDGES_SCHEMA = pa.Schema.from_pandas(W.EDGES_META, preserve_index=False)


def extract_to_parquet(path: str, out_dir: str, part: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Worker task: edges of one crawl file into ``out_dir/part.<part>.parquet``; returns (rejects, counts)."""
    out = Path(out_dir) / f"part.{part:05d}.parquet"
    with pq.ParquetWriter(out, EDGES_SCHEMA) as writer:
        def sink(frame: pd.DataFrame) -> None:
            writer.write_table(pa.Table.from_pandas(frame, schema=EDGES_SCHEMA, preserve_index=False))
        rejects, counts = W.extract_file_chunked(path, sink)
    return rejects, counts


def run_extract(client: Client, workdir: str | Path, crawl_files: list[str]) -> dict:
    """``imagerank graph extract``: every crawl file -> ``W/graph/edges/``, ``W/graph/rejects/``,
    ``W/graph/extract_counts/``."""
    workdir = Path(workdir)
    files = [str(f) for f in crawl_files]
    rejects, counts = [], []
    t0 = time.perf_counter()
    with atomic_path(workdir / "graph" / "edges") as tmp:
        tmp.mkdir(parents=True)
        futures = [client.submit(extract_to_parquet, f, str(tmp), i, pure=False) for i, f in enumerate(files)]
        bar = _bar(len(futures), "graph: extract links")
        for fut in as_completed(futures):
            r, c = fut.result()
            rejects.append(r)
            counts.append(c)
            bar.update(1)
        bar.close()
    rej = pd.concat(rejects, ignore_index=True) if rejects else W.REJECTS_META.copy()
    cnt = pd.concat(counts, ignore_index=True) if counts else W.COUNTS_META.copy()
    write_frame(rej, workdir / "graph" / "rejects")
    write_frame(cnt, workdir / "graph" / "extract_counts")
    totals = cnt.groupby("counter")["count"].sum()
    summary = {
        "crawl_files": len(files),
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


def run_link_features(client: Client, workdir: str | Path) -> dict:
    """``W/catalog/`` + ``W/graph/{edges,pages}`` -> ``W/features/links/``."""
    from imagerank.features import links

    return links.run(client, Path(workdir))


def run_visual_features(client: Client, workdir: str | Path, **params) -> dict:
    """``W/features/pixels/`` (phash) + ``W/catalog/`` -> ``W/features/visual/``."""
    from imagerank.features import visual

    return visual.run(client, Path(workdir), **params)


class _NoBar:
    def update(self, n): pass
    def close(self): pass


def _bar(total: int, label: str):
    if not show_progress():
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=f"[imagerank] {label}", unit="file", file=sys.stderr)
