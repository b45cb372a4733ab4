"""Domain link authority from a crawl-derived link graph (``--linkgraph``).

Two inputs, told apart by their columns:

- Creative Commons' Common Crawl extraction (``cc-archive/cccatalog`` output, e.g. CC-MAIN-2018-22): one row per
  (page, license match) with ``provider_domain`` (the page's host), ``content_path``, ``content_query_string`` and
  ``html_metadata`` = JSON ``{"Images": n, "Links": {target_host: count}}``. A page found with several licenses
  (or captured twice) appears in several rows with the same links: edges are de-duplicated per (page, target)
  so each page counts once.
- Generic domain edge lists ``source,target[,count]`` as CSV (optionally gzip; a header naming ``source`` and
  ``target`` is optional) or Parquet (columns ``source``, ``target``, optional ``count``). Rows sum.

Every name (host, URL or domain) becomes its registered domain (eTLD+1, ``imagerank.urls``): the graph is
the domain graph Common Crawl ranks. Links within one registered domain are self-links and dropped (a site
linking to itself is not a vote), but the domain stays a node. Edge weight: ``unweighted`` (default: one
vote per linking domain, as Common Crawl's domain graph; a blog template with 34 links to one target then
counts once, not 34 times), ``links`` (link occurrences) or ``log`` (``1 + log(links)``). Teleport and dangling
mass are uniform over domains (most targets are dangling: the crawl saw only CC-licensed pages' links).

Harmonic centrality ``H(v) = sum over u != v of 1 / d(u, v)`` (in-distances, as Common Crawl's ranks): only
domains with out-links can reach anything, so the exact value needs one BFS per *source* domain (5.6k for
CC-MAIN-2018-22, not 140k), run in blocks on the Dask workers. Above ``max_exact_sources`` source domains a
uniform sample of ``harmonic_samples`` sources is used and scaled by ``sources / samples`` — the unbiased
estimator of Eppstein & Wang (2004) restricted to the nodes that can contribute; the result says which.

Rows that cannot be used (JSON that does not parse, a source that is no host, a count that is no whole
number >= 0, ...) go to the rejects with their reason; unusable link targets inside a good page are counted
per reason, never silently dropped.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from imagerank.urls import host_of, normalize_host, registered_domain

log = logging.getLogger(__name__)

WEIGHTINGS = ("unweighted", "links", "log")
CCCATALOG_COLUMNS = ("provider_domain", "html_metadata")
RAW_CHARS = 500  # raw text kept per rejected row

#: What every read task returns: good link rows (``reason`` null) and rejected input rows / link entries.
ROWS_META = pd.DataFrame({
    "source_file": pd.Series(dtype="string"),  # the file, on rejected rows only (null on usable ones)
    "row": pd.Series(dtype="int64"),  # row number in the file (0-based, header excluded)
    "page_id": pd.Series(dtype="int64"),  # 64-bit hash of the page URL (cccatalog) or -1 (edge lists)
    "src_domain": pd.Series(dtype="string"),
    "dst_domain": pd.Series(dtype="string"),  # null: a row that only makes its source a node
    "links": pd.Series(dtype="int64"),
    "input_rows": pd.Series(dtype="int64"),  # input rows this row accounts for (sums to the files' rows)
    "reason": pd.Series(dtype="string"),  # null for usable rows
    "raw": pd.Series(dtype="string"),  # page URL and the offending text, on rejected rows only
})
REJECT_COLUMNS = ["source_file", "row", "reason", "raw"]

#: Row-level rejection reasons (the row contributes nothing) and link-level ones (one target of a good row).
R_JSON = "invalid_html_metadata_json"
R_METADATA = "html_metadata_not_an_object"
R_LINKS = "links_not_an_object"
R_SOURCE = "invalid_source_domain"
R_TARGET = "invalid_target_domain"
R_COUNT = "invalid_link_count"
R_COLUMNS = "missing_columns"


# ------------------------------------------------------------------------------------------- names

def name_to_domain(name, cache: dict | None = None) -> str | None:
    """Registered domain of a host, URL or domain name; None when it is none of these."""
    if cache is not None and name in cache:
        return cache[name]
    domain = None
    if isinstance(name, str) and name.strip():
        text = name.strip()
        host = host_of(text) if ("/" in text or ":" in text) else normalize_host(text)
        if host and ("." in host or ":" in host):
            domain = registered_domain(host)
    if cache is not None:
        cache[name] = domain
    return domain


def _frame(rows: dict) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(rows[c], dtype=ROWS_META[c].dtype) for c in ROWS_META.columns})


def _empty_rows() -> dict:
    return {c: [] for c in ROWS_META.columns}


def _add(rows: dict, source_file, row, page_id, src, dst, links, input_rows, reason=None, raw=None) -> None:
    rows["source_file"].append(source_file if reason is not None else None)
    rows["row"].append(row)
    rows["page_id"].append(page_id)
    rows["src_domain"].append(src)
    rows["dst_domain"].append(dst)
    rows["links"].append(links)
    rows["input_rows"].append(input_rows)
    rows["reason"].append(reason)
    rows["raw"].append(None if raw is None else str(raw)[:RAW_CHARS])


def page_id(page: str | None) -> int:
    """64-bit hash of a page URL: what crosses the shuffle instead of the URL (collisions ~n^2 / 2^65)."""
    import hashlib

    if page is None:
        return -1
    return int.from_bytes(hashlib.blake2b(page.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                          "little", signed=True)


# ------------------------------------------------------------------------------------------- cccatalog

def cccatalog_rows(part: pd.DataFrame, source_file: str, first_row: int = 0) -> pd.DataFrame:
    """Partition function: cccatalog extraction rows -> one row per (page, target domain) with its link count.

    Rows of one page (one per license match) are merged first; each page gives one node row for its source
    domain (``dst_domain`` null, ``input_rows`` = the rows merged). Self-links are kept here (``src == dst``)
    and dropped when edges are built, so they can be counted.
    """
    missing = [c for c in CCCATALOG_COLUMNS if c not in part.columns]
    rows = _empty_rows()
    if missing:
        for i in range(len(part)):
            _add(rows, source_file, first_row + i, -1, None, None, 0, 1, R_COLUMNS, f"missing {missing}")
        return _frame(rows)
    cache: dict = {}
    n = len(part)
    hosts = part["provider_domain"].astype(object).tolist()
    paths = part["content_path"].astype(object).tolist() if "content_path" in part else [None] * n
    queries = part["content_query_string"].astype(object).tolist() if "content_query_string" in part else [None] * n
    metadata = part["html_metadata"].astype(object).tolist()
    first_of: dict = {}  # (page, metadata) -> index of its first row; later rows are merged into it
    merged = [0] * n
    for i in range(n):
        key = (_page_key(hosts[i], paths[i], queries[i]), metadata[i])
        j = first_of.setdefault(key, i)
        merged[j] += 1
    for i in range(n):
        if not merged[i]:
            continue
        host, meta = hosts[i], metadata[i]
        page = _page_key(host, paths[i], queries[i])
        pid, row, count = page_id(page), first_row + i, merged[i]
        src = name_to_domain(host, cache)
        if src is None:
            _add(rows, source_file, row, pid, None, None, 0, count, R_SOURCE, f"{page}: {host!r}")
            continue
        try:
            parsed = json.loads(meta) if isinstance(meta, str) else None
        except ValueError:
            _add(rows, source_file, row, pid, src, None, 0, count, R_JSON, f"{page}: {meta}")
            continue
        if not isinstance(parsed, dict):
            _add(rows, source_file, row, pid, src, None, 0, count, R_METADATA, f"{page}: {meta}")
            continue
        links = parsed.get("Links") or {}
        if not isinstance(links, dict):
            _add(rows, source_file, row, pid, src, None, 0, count, R_LINKS, f"{page}: {meta}")
            continue
        _add(rows, source_file, row, pid, src, None, 0, count)  # the page: its source is a node
        per_target: dict[str, int] = {}
        for target, value in links.items():
            dst = name_to_domain(target, cache)
            if dst is None:
                _add(rows, source_file, row, pid, src, None, 0, 0, R_TARGET, f"{page}: {target!r}")
                continue
            whole = _whole_count(value)
            if whole is None:
                _add(rows, source_file, row, pid, src, dst, 0, 0, R_COUNT, f"{page}: {target!r}: {value!r}")
                continue
            per_target[dst] = per_target.get(dst, 0) + whole  # hosts of one domain merge
        for dst, whole in per_target.items():
            _add(rows, source_file, row, pid, src, dst, whole, 0)
    return _frame(rows)


def _page_key(host, path, query) -> str | None:
    if not isinstance(host, str):
        return None
    path = path if isinstance(path, str) else ""
    query = query if isinstance(query, str) and query else ""
    return f"{host.lower()}{path}" + (f"?{query}" if query else "")


def _whole_count(value) -> int | None:
    """A link count: a whole number >= 0 (JSON ints, or floats / numeric strings that are whole)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or number < 0 or number != math.floor(number):
        return None
    return int(number)


# ------------------------------------------------------------------------------------------- edge lists

def edge_list_rows(part: pd.DataFrame, source_file: str, first_row: int = 0) -> pd.DataFrame:
    """Partition function: ``source, target[, count]`` rows -> domain link rows (count 1 when absent)."""
    rows = _empty_rows()
    if not {"source", "target"} <= set(part.columns):
        for i in range(len(part)):
            _add(rows, source_file, first_row + i, -1, None, None, 0, 1, R_COLUMNS,
                 f"columns {list(part.columns)}: need source, target[, count]")
        return _frame(rows)
    cache: dict = {}
    sources = part["source"].astype(object).tolist()
    targets = part["target"].astype(object).tolist()
    counts = part["count"].astype(object).tolist() if "count" in part else [None] * len(part)
    for i, (s, t, c) in enumerate(zip(sources, targets, counts)):
        raw = f"{s},{t}" + ("" if c is None else f",{c}")
        src = name_to_domain(s, cache)
        if src is None:
            _add(rows, source_file, first_row + i, -1, None, None, 0, 1, R_SOURCE, raw)
            continue
        dst = name_to_domain(t, cache)
        if dst is None:
            _add(rows, source_file, first_row + i, -1, src, None, 0, 1, R_TARGET, raw)
            continue
        blank = c is None or (isinstance(c, float) and math.isnan(c)) or (isinstance(c, str) and not c.strip())
        value = 1 if blank else _whole_count(c)  # the count is optional per row
        if value is None:
            _add(rows, source_file, first_row + i, -1, src, dst, 0, 1, R_COUNT, raw)
            continue
        _add(rows, source_file, first_row + i, -1, src, dst, value, 1)
    return _frame(rows)


# ------------------------------------------------------------------------------------------- reading

@dataclass(frozen=True)
class LinkgraphPart:
    """One read task: a Parquet row group or a whole CSV file."""
    path: str
    kind: str  # "cccatalog" | "edges"
    fmt: str  # "parquet" | "csv"
    row_group: int = 0
    first_row: int = 0


def expand_paths(paths: list[str]) -> list[str]:
    """Files of each path (directories listed recursively, hidden and ``_`` files skipped), fsspec URLs allowed."""
    from imagerank import storage

    files: list[str] = []
    for path in paths:
        fs, root = storage.filesystem(str(path))
        if not fs.exists(root):
            raise FileNotFoundError(f"--linkgraph {path}: no such file or directory")
        if fs.isdir(root):
            found = sorted(f for f in fs.find(root) if not f.rsplit("/", 1)[-1].startswith((".", "_")))
        else:
            found = [root]
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        files += [f if protocol in ("file", "local") else f"{protocol}://{f}" for f in found]
    if not files:
        raise FileNotFoundError(f"--linkgraph {paths}: no files found")
    return list(dict.fromkeys(files))


def _is_parquet(path: str) -> bool:
    return path.endswith((".parquet", ".parq", ".pq"))


def plan_parts(files: list[str]) -> list[LinkgraphPart]:
    """One task per Parquet row group (footer metadata only) and per CSV file; each file's kind from its columns."""
    import pyarrow.parquet as pq

    from imagerank import storage

    parts: list[LinkgraphPart] = []
    for path in files:
        if _is_parquet(path):
            with storage.open_file(path) as handle:
                meta = pq.ParquetFile(handle).metadata
                names = set(meta.schema.names)
            kind = "cccatalog" if set(CCCATALOG_COLUMNS) <= names else "edges"
            first = 0
            for g in range(meta.num_row_groups):
                parts.append(LinkgraphPart(path, kind, "parquet", g, first))
                first += meta.row_group(g).num_rows
        else:
            parts.append(LinkgraphPart(path, "edges", "csv"))
    return parts


def read_part(part: LinkgraphPart) -> pd.DataFrame:
    """Worker task: one row group / CSV file -> ``ROWS_META`` rows."""
    from imagerank import storage

    if part.fmt == "parquet":
        import pyarrow.parquet as pq

        with storage.open_file(part.path) as handle:
            pf = pq.ParquetFile(handle)
            wanted = (["provider_domain", "content_path", "content_query_string", "html_metadata"]
                      if part.kind == "cccatalog" else ["source", "target", "count"])
            columns = [c for c in wanted if c in pf.schema_arrow.names]
            frame = pf.read_row_group(part.row_group, columns=columns).to_pandas()
        if part.kind == "cccatalog":
            return cccatalog_rows(frame, part.path, part.first_row)
        return edge_list_rows(frame, part.path, part.first_row)
    return edge_list_rows(read_edge_csv(part.path), part.path, 0)


def read_edge_csv(path: str) -> pd.DataFrame:
    """A ``source,target[,count]`` CSV (gzip by suffix), header optional; every field as text."""
    from imagerank import storage

    with storage.open_file(path, "rt", compression="infer", encoding="utf-8", errors="replace", newline="") as handle:
        first = handle.readline()
    fields = [f.strip().strip('"').lower() for f in first.rstrip("\r\n").split(",")]
    has_header = "source" in fields and "target" in fields
    with storage.open_file(path, "rb", compression="infer") as handle:
        frame = pd.read_csv(handle, header=0 if has_header else None, dtype=str, keep_default_na=False,
                            skip_blank_lines=True, on_bad_lines="warn", engine="python")
    if has_header:
        frame.columns = [str(c).strip().lower() for c in frame.columns]
        return frame
    names = ["source", "target", "count"][:frame.shape[1]]
    if frame.shape[1] > 3:
        frame = frame.iloc[:, :3]
        names = ["source", "target", "count"]
    frame.columns = names
    return frame


# ------------------------------------------------------------------------------------------- graph pieces

def edge_weight(links: np.ndarray, weighting: str) -> np.ndarray:
    """Edge weight from a domain pair's link occurrences (see module docstring)."""
    links = np.asarray(links, dtype=np.float64)
    if weighting == "unweighted":
        return np.ones_like(links)
    if weighting == "links":
        return links
    if weighting == "log":
        return 1.0 + np.log(np.maximum(links, 1.0))
    raise ValueError(f"edge weighting must be one of {', '.join(WEIGHTINGS)}, not {weighting!r}")


def adjacency(src: np.ndarray, dst: np.ndarray, n: int) -> sp.csr_matrix:
    """Unweighted CSR adjacency ``A[src, dst] = 1`` (de-duplicated) for BFS."""
    data = np.ones(len(src), dtype=np.float64)
    a = sp.csr_matrix((data, (np.asarray(src, np.int64), np.asarray(dst, np.int64))), shape=(n, n))
    a.sum_duplicates()
    a.data[:] = 1.0
    return a


def harmonic_block(a: sp.csr_matrix, sources: np.ndarray) -> np.ndarray:
    """Sum over the given sources ``s`` of ``1 / d(s, v)`` for every node ``v`` (``v != s``, reachable)."""
    from scipy.sparse.csgraph import shortest_path

    total = np.zeros(a.shape[0], dtype=np.float64)
    if len(sources) == 0:
        return total
    dist = shortest_path(a, method="D", directed=True, unweighted=True, indices=np.asarray(sources))
    dist = np.atleast_2d(dist)
    with np.errstate(divide="ignore"):
        inv = np.where(np.isfinite(dist) & (dist > 0), 1.0 / dist, 0.0)
    total += inv.sum(axis=0)
    return total


def harmonic_plan(out_degree: np.ndarray, max_exact_sources: int, samples: int, seed: int = 0
                  ) -> tuple[np.ndarray, float, bool]:
    """(source nodes to BFS from, scale factor, exact?): every node with out-links, or a uniform sample."""
    sources = np.flatnonzero(np.asarray(out_degree) > 0)
    if len(sources) <= max_exact_sources:
        return sources, 1.0, True
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(sources, size=min(samples, len(sources)), replace=False))
    return chosen, len(sources) / len(chosen), False


def position_score(values: np.ndarray) -> np.ndarray:
    """1 for the top domain, falling on a log scale with rank position (ties share the best position) to
    ~0 past the last, as the Common Crawl ranks files' scores in ``imagerank.features.domains``."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0:
        return values
    position = pd.Series(-values).rank(method="min").to_numpy()
    return np.clip(1.0 - np.log(position) / math.log(n + 1), 0.0, 1.0)


# ------------------------------------------------------------------------------------------- agreement

def spearman(a, b) -> float | None:
    """Spearman rank correlation (average ranks for ties); None with fewer than 3 pairs or a constant side."""
    a = pd.Series(np.asarray(a, dtype=np.float64))
    b = pd.Series(np.asarray(b, dtype=np.float64))
    ok = a.notna() & b.notna()
    if ok.sum() < 3:
        return None
    ra, rb = a[ok].rank(), b[ok].rank()
    if ra.nunique() < 2 or rb.nunique() < 2:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def ranks_agreement(domains: pd.DataFrame, ranks) -> dict:
    """How our domain graph agrees with Common Crawl ranks files, over the domains both hold.

    ``domains``: ``domain, pagerank, harmonic_centrality, in_domains`` (only the rows that matter may be
    passed); ``ranks``: ``RanksFile`` objects (``imagerank.features.domains.read_ranks``). Host-level files
    are reduced to registered domains (a domain's best-ranked host). Returns, per level, the number of shared
    domains and Spearman of our PageRank vs theirs, our harmonic centrality vs theirs, and in_domains vs
    their harmonic centrality.
    """
    out: dict = {}
    for level in ("domain", "host"):
        tables = [r.table for r in ranks if r.level == level]
        if not tables:
            continue
        theirs = pd.concat(tables, ignore_index=True)
        if level == "host":
            theirs = theirs.assign(name=[registered_domain(h) for h in theirs["name"]]).dropna(subset=["name"])
        theirs = theirs.groupby("name", as_index=False).agg(pr_val=("pr_val", "max"), hc_val=("hc_val", "max"))
        theirs["hc_val"] = pd.to_numeric(theirs["hc_val"], errors="coerce")
        both = domains.merge(theirs, left_on="domain", right_on="name", how="inner")
        out[level] = {
            "ranked_names": int(sum(r.rows for r in ranks if r.level == level)),  # rows of the whole files
            "shared_domains": int(len(both)),
            "spearman_pagerank": spearman(both["pagerank"], both["pr_val"]),
            "spearman_harmonic": spearman(both["harmonic_centrality"], both["hc_val"]),
            "spearman_in_domains_vs_harmonic": spearman(both["in_domains"], both["hc_val"]),
        }
    return out


# ------------------------------------------------------------------------------------------- W/graph/domains

DOMAINS_META = pd.DataFrame({
    "domain": pd.Series(dtype="string"),
    "pagerank": pd.Series(dtype="float64"),
    "harmonic_centrality": pd.Series(dtype="float64"),
    "in_domains": pd.Series(dtype="int64"),  # distinct registered domains linking here (self excluded)
    "out_domains": pd.Series(dtype="int64"),
    "in_links": pd.Series(dtype="int64"),  # link occurrences from other domains
    "pagerank_score": pd.Series(dtype="float64"),  # log-scaled PageRank position in [0, 1] (1 = top)
    "harmonic_score": pd.Series(dtype="float64"),  # the same for harmonic centrality
})
REJECTS_META = pd.DataFrame({
    "source_file": pd.Series(dtype="string"), "row": pd.Series(dtype="int64"), "level": pd.Series(dtype="string"),
    "reason": pd.Series(dtype="string"), "raw": pd.Series(dtype="string"), "input_rows": pd.Series(dtype="int64"),
})


def reject_rows(part: pd.DataFrame) -> pd.DataFrame:
    """Rejected rows of a read partition; an unusable link inside a usable page is a ``link``-level reject."""
    bad = part[part["reason"].notna()]
    link_level = (bad["page_id"] != -1) & bad["reason"].isin([R_TARGET, R_COUNT])
    out = bad[["source_file", "row", "reason", "raw", "input_rows"]].copy()
    out.insert(2, "level", pd.array(np.where(link_level, "link", "row"), dtype="string"))
    return out.astype(REJECTS_META.dtypes.to_dict())


def domain_rows(part: pd.DataFrame, lo: int, pagerank, harmonic, in_domains, out_domains, in_links,
                pagerank_score, harmonic_score) -> pd.DataFrame:
    """One row per domain of ``part``; the arrays are the ``[lo, hi)`` slices of its node ids."""
    ids = part["node_id"].to_numpy(np.int64) - lo
    return pd.DataFrame({
        "domain": part["domain"].astype("string").to_numpy(),
        "pagerank": pagerank[ids], "harmonic_centrality": harmonic[ids],
        "in_domains": in_domains[ids].astype(np.int64), "out_domains": out_domains[ids].astype(np.int64),
        "in_links": in_links[ids].astype(np.int64),
        "pagerank_score": pagerank_score[ids], "harmonic_score": harmonic_score[ids],
    })
