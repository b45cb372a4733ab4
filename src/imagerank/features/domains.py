"""Authority inherited from the landing page's host and registered domain via Common Crawl ranks files.

Ranks files (tab-separated, gzip, header ``#harmonicc_pos #harmonicc_val #pr_pos #pr_val #host_rev``,
domain level with ``#n_hosts``) have hundreds of millions of rows, so they are streamed and filtered to
the hosts/domains the catalog actually has. A position ``pos`` among ``N`` ranked names becomes
``1 - log(pos) / log(N + 1)`` — log scale because web rank is heavy-tailed — where ``N`` is the number of
rows the file holds. The image CDN's host is never used: only the landing page (``foreign_landing_url``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from imagerank.schemas import empty_frame, with_event_time
from imagerank.urls import reverse_host

RANK_COLUMNS = {"#harmonicc_pos": "hc_pos", "#harmonicc_val": "hc_val", "#pr_pos": "pr_pos",
                "#pr_val": "pr_val", "#host_rev": "name_rev", "#n_hosts": "n_hosts"}
#: Authority of a landing page whose host and domain are in no ranks file: no evidence anyone gets there.
AUTHORITY_PRIOR = 0.0

DOMAIN_FEATURE_COLUMNS = ["host_rank_score", "domain_rank_score", "host_pr_val", "domain_pr_val",
                          "domain_n_hosts", "domain_authority"]


@dataclass(frozen=True)
class RanksFile:
    level: str  # "host" or "domain"
    table: pd.DataFrame  # name, hc_pos, hc_val, pr_pos, pr_val, n_hosts (only wanted names)
    rows: int  # rows in the whole file: the N of the position score
    skipped: int = 0  # lines that were not a ranked name (wrong field count, position not a whole number >= 1)


class RanksFileError(ValueError):
    pass


def read_ranks(path: str | Path, wanted: set[str] | None = None, block_size: int = 1 << 24) -> RanksFile:
    """Stream one ranks file, keeping only ``wanted`` names (un-reversed hosts/domains; None keeps all).

    A line with the wrong number of fields, or whose position is not a whole number >= 1, is skipped and
    counted in ``skipped`` (it is not a ranked name: it does not count in ``rows`` either); only a file
    without the ranks header is refused (:class:`RanksFileError`).
    """
    skipped = 0

    def on_invalid(row) -> str:
        nonlocal skipped
        skipped += 1
        return "skip"

    # every column as text: a stray non-numeric value costs its line, not the stage
    as_text = pacsv.ConvertOptions(column_types={name: pa.string() for name in RANK_COLUMNS})
    with _ranks_stream(path) as source:
        try:
            reader = pacsv.open_csv(source, read_options=pacsv.ReadOptions(block_size=block_size),
                                    parse_options=pacsv.ParseOptions(delimiter="\t", invalid_row_handler=on_invalid),
                                    convert_options=as_text)
        except (pa.ArrowInvalid, OSError) as exc:
            raise RanksFileError(f"{path}: not a Common Crawl ranks file ({exc})") from exc
        level, table, rows, invalid = _wanted_rows(path, reader, wanted)
    return RanksFile(level, table, rows, skipped + invalid)


def _ranks_stream(path: str | Path):
    """What pyarrow reads: a local path as given (pyarrow opens it and infers the compression from its name);
    a URL as an object-store stream that pyarrow inflates natively, closed with the context."""
    from contextlib import contextmanager, nullcontext

    from imagerank import storage

    if not storage.is_url(path):
        return nullcontext(str(path))

    @contextmanager
    def remote():
        lower = str(path).lower()
        codecs = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}
        codec = next((c for suffix, c in codecs.items() if lower.endswith(suffix)), None)
        try:
            raw = storage.open_file(path)
        except OSError as exc:
            raise RanksFileError(f"{path}: cannot be opened ({type(exc).__name__}: {exc})") from exc
        with raw:
            stream = pa.PythonFile(raw, mode="r")
            yield pa.CompressedInputStream(stream, codec) if codec else stream

    return remote()


def _wanted_rows(path, reader, wanted: set[str] | None) -> tuple[str, pd.DataFrame, int, int]:
    """Of an open ranks reader: its level, the ``wanted`` ranked names, the count of ranked rows in the whole
    file and of rows whose position was not a whole number >= 1."""
    skipped = 0
    names = reader.schema.names
    if not {"#harmonicc_pos", "#host_rev", "#pr_val"} <= set(names):
        raise RanksFileError(f"{path}: missing ranks columns; header is {names}")
    level = "domain" if "#n_hosts" in names else "host"
    wanted_rev = None if wanted is None else {reverse_host(n) for n in wanted if n}
    rows, kept = 0, []
    try:
        for batch in reader:
            frame = batch.to_pandas().rename(columns=RANK_COLUMNS)
            for column in ("hc_pos", "hc_val", "pr_pos", "pr_val", "n_hosts"):
                if column in frame:
                    frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
            position = frame["hc_pos"]
            valid = (position >= 1) & (position == np.floor(position)) & np.isfinite(position) \
                & frame["name_rev"].notna()
            skipped += int((~valid).sum())
            frame = frame[valid]
            rows += len(frame)
            if wanted_rev is not None:
                frame = frame[frame["name_rev"].isin(wanted_rev)]
            if len(frame):
                kept.append(frame)
    except (pa.ArrowInvalid, OSError) as exc:  # a corrupt tail (cut gzip ...): keep what was read, say so
        raise RanksFileError(f"{path}: unreadable after {rows:,} rows ({exc})") from exc
    table = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame(columns=list(RANK_COLUMNS.values()))
    table["name"] = [reverse_host(str(n)) for n in table["name_rev"]]
    if "n_hosts" not in table:
        table["n_hosts"] = np.nan
    table = table.drop_duplicates("name")[["name", "hc_pos", "hc_val", "pr_pos", "pr_val", "n_hosts"]]
    return level, table.astype({"hc_pos": "float64", "pr_val": "float64", "n_hosts": "float64"}), rows, skipped


def position_score(position: pd.Series, population: int) -> pd.Series:
    """1 for the top-ranked name, falling on a log scale to 0 just past the last ranked one."""
    return (1.0 - np.log(position) / math.log(population + 1)).clip(0.0, 1.0)


def rank_scores(ranks: list[RanksFile], level: str) -> pd.DataFrame:
    """name -> best rank score and PageRank value among the given files of one level."""
    frames = [r.table.assign(score=position_score(r.table["hc_pos"], r.rows)) for r in ranks if r.level == level]
    if not frames:
        return pd.DataFrame({"name": pd.Series(dtype="string"), "score": pd.Series(dtype="float64"),
                             "pr_val": pd.Series(dtype="float64"), "n_hosts": pd.Series(dtype="float64")})
    both = pd.concat(frames).sort_values("score", ascending=False).drop_duplicates("name")
    return both[["name", "score", "pr_val", "n_hosts"]]


def domain_features(metadata: pd.DataFrame, host_scores: pd.DataFrame, domain_scores: pd.DataFrame) -> pd.DataFrame:
    """Partition function: per image, the landing host's and domain's rank scores and the inherited authority.

    ``domain_authority`` is the host's score when the host is ranked (more specific), else the domain's,
    else NaN (no rank evidence).
    """
    host = metadata[["image_id", "landing_host", "landing_domain"]].merge(
        host_scores.rename(columns={"name": "landing_host", "score": "host_rank_score", "pr_val": "host_pr_val"})
        .drop(columns="n_hosts"), on="landing_host", how="left")
    both = host.merge(
        domain_scores.rename(columns={"name": "landing_domain", "score": "domain_rank_score",
                                      "pr_val": "domain_pr_val", "n_hosts": "domain_n_hosts"}),
        on="landing_domain", how="left")
    both["domain_authority"] = both["host_rank_score"].fillna(both["domain_rank_score"])
    both[DOMAIN_FEATURE_COLUMNS] = both[DOMAIN_FEATURE_COLUMNS].astype("float64")
    return both[["image_id", "landing_host", "landing_domain", *DOMAIN_FEATURE_COLUMNS]]


#: What :func:`domain_features` returns.
DOMAIN_SCHEMA = pa.schema([pa.field("image_id", pa.string()), pa.field("landing_host", pa.string()),
                           pa.field("landing_domain", pa.string()),
                           *(pa.field(c, pa.float64()) for c in DOMAIN_FEATURE_COLUMNS)])
DOMAIN_META = empty_frame(DOMAIN_SCHEMA)


# ------------------------------------------------------------------------------------------- link graph

#: ``W/graph/domains/`` column -> per-image feature: the landing domain's authority in a crawl-derived
#: domain link graph (``--linkgraph``). NaN when the domain is not in the graph (or no graph was given).
LINK_AUTHORITY_COLUMNS = {
    "pagerank": "domain_link_pagerank",
    "harmonic_centrality": "domain_link_harmonic",
    "in_domains": "domain_link_in_domains",
    "pagerank_score": "domain_link_score",
    "harmonic_score": "domain_link_harmonic_score",
}


def link_authority_table(domains: pd.DataFrame) -> pd.DataFrame:
    """Partition function: ``W/graph/domains/`` rows -> ``landing_domain`` + the feature columns."""
    out = pd.DataFrame({"landing_domain": domains["domain"].astype("string").to_numpy()})
    for column, feature in LINK_AUTHORITY_COLUMNS.items():
        out[feature] = pd.to_numeric(domains[column], errors="coerce").astype("float64").to_numpy()
    return out


LINK_AUTHORITY_SCHEMA = pa.schema([pa.field("landing_domain", pa.string()),
                                   *(pa.field(f, pa.float64()) for f in LINK_AUTHORITY_COLUMNS.values())])
LINK_AUTHORITY_META = empty_frame(LINK_AUTHORITY_SCHEMA)
#: ``W/features/domains/``: the per-image domain features and link authority, stamped with the run's event
#: time. (A run that processed a crawl also writes ``host_graph_pagerank`` / ``host_graph_in_domains``,
#: float64, after ``domain_authority``; no view serves them.)
DOMAINS_DATASET_SCHEMA = with_event_time(pa.schema([*DOMAIN_SCHEMA, *LINK_AUTHORITY_SCHEMA.remove(0)]))
#: ``W/features/domain_stats/``: per landing domain, its rank score and what the catalog holds from it.
DOMAIN_STATS_SCHEMA = with_event_time(pa.schema([
    pa.field("domain", pa.string()), pa.field("rank_score", pa.float64()),
    pa.field("images", pa.int64(), nullable=False), pa.field("providers", pa.int64(), nullable=False),
    pa.field("observed_share", pa.float64())]))


def with_link_authority(per_image, graph_domains):
    """Per-image domain features (Dask frame) + the landing domain's link authority, joined by registered
    domain on the workers; ``graph_domains`` is ``W/graph/domains/`` as a Dask frame, or None (NaN columns,
    so the dataset keeps one schema with or without a link graph)."""
    if graph_domains is None:
        return per_image.assign(**{f: np.nan for f in LINK_AUTHORITY_COLUMNS.values()})
    table = graph_domains.map_partitions(link_authority_table, meta=LINK_AUTHORITY_META)
    table = table.dropna(subset=["landing_domain"]).drop_duplicates(subset=["landing_domain"])
    return per_image.merge(table, on="landing_domain", how="left")
