"""The catalog of the work directory: every dataset named once, with its location and (where fixed) its schema.

A stage names the datasets it reads and writes; this module is the only place that turns a name into a
location under the work directory (a local path or a URL prefix such as ``s3://bucket/w``). Reads follow
the dataset's commit record (:mod:`imagerank.io`): a reader always sees the last complete version, never a
half-written one, on local disks and object storage alike.

    from imagerank import datasets
    scores = datasets.read_ddf(workdir, "scores", columns=["image_id", "popularity"])
    datasets.write_ddf(frame, workdir, "scores")          # visible only once complete
    datasets.location(workdir, "scores")                   # where it lives (logical location)
    datasets.current(workdir, "scores")                    # the committed version a reader opens, or None

Schemas are referenced where their writers define them (``module:attribute``), resolved on first use, so
this module imports nothing heavy and never moves a definition.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import import_module
from typing import Iterator

from imagerank import io, storage


@dataclass(frozen=True)
class Dataset:
    name: str
    relative: str  # location under the work directory, always with "/"
    kind: str = "parquet"  # parquet: a committed dataset prefix; json / file: one object; prefix: a folder of many
    schema_ref: str | None = None  # "module:attribute" of the writer's pa.Schema or META frame
    doc: str = ""


_ENTRIES = [
    # ingest
    Dataset("catalog", "catalog", schema_ref="imagerank.catalog.schema:CATALOG_SCHEMA",
            doc="valid, typed, de-duplicated catalog rows"),
    Dataset("rejects", "rejects", schema_ref="imagerank.catalog.schema:REJECTS_SCHEMA",
            doc="every input row not in the catalog, with its reason"),
    # features (one family each; the keys of features.registry.FAMILIES)
    Dataset("metadata", "features/metadata", schema_ref="imagerank.features.metadata:METADATA_META"),
    Dataset("popularity", "features/popularity", doc="raw provider metric and the standardized label"),
    Dataset("domains", "features/domains", schema_ref="imagerank.features.domains:DOMAIN_META"),
    Dataset("domain_stats", "features/domain_stats", doc="per landing domain: images, providers, rank score"),
    Dataset("pixels", "features/pixels", doc="written by pipelines/images.py"),
    Dataset("exif", "features/exif", doc="written by pipelines/images.py"),
    Dataset("links", "features/links", schema_ref="imagerank.features.links:LINKS_META"),
    Dataset("visual", "features/visual", schema_ref="imagerank.features.visual:VISUAL_META"),
    Dataset("text", "features/text", schema_ref="imagerank.features.text:TEXT_META"),
    Dataset("features", "features/joined",
            doc="every family left-joined per image, written once per run (features.registry.write_joined_features; "
                "its columns are the families' own); its schema metadata records the family versions it joined"),
    Dataset("links_summary", "features/links_summary.json", kind="json"),
    Dataset("visual_summary", "features/visual_summary.json", kind="json"),
    # graph
    Dataset("graph_edges", "graph/edges", schema_ref="imagerank.graph.warc:EDGES_META",
            doc="one part per crawl file, named by its fingerprint; _parts.json maps parts to files"),
    Dataset("graph_pages", "graph/pages", schema_ref="imagerank.graph.build:PAGES_META"),
    Dataset("graph_hosts", "graph/hosts", schema_ref="imagerank.graph.build:HOSTS_META"),
    Dataset("graph_rejects", "graph/rejects", schema_ref="imagerank.graph.warc:REJECTS_META"),
    Dataset("graph_extract_counts", "graph/extract_counts", schema_ref="imagerank.graph.warc:COUNTS_META"),
    Dataset("graph_summary", "graph/summary.json", kind="json"),
    Dataset("graph_domains", "graph/domains", schema_ref="imagerank.graph.linkgraph:DOMAINS_META",
            doc="--linkgraph: PageRank and harmonic centrality per registered domain"),
    Dataset("linkgraph_rejects", "graph/linkgraph_rejects", schema_ref="imagerank.graph.linkgraph:REJECTS_META"),
    Dataset("linkgraph_summary", "graph/domains_summary.json", kind="json"),
    # models, scores, bookkeeping
    Dataset("scores", "scores", schema_ref="imagerank.scoring:SCORES_SCHEMA"),
    Dataset("models", "models", kind="prefix", doc="models/<version>/: joblib files, metrics.json, oof_*.parquet"),
    Dataset("runs", "runs", kind="prefix", doc="runs/<run_id>.json manifests and runs/in-progress.json"),
    Dataset("run_state", "runs/in-progress.json", kind="json", doc="stages finished by the interrupted run"),
    Dataset("lock", ".lock", kind="file", doc="one recalculation at a time (imagerank.runs.workdir_lock)"),
    Dataset("report", "report", kind="prefix", doc="report/index.html"),
    Dataset("feast", "feast", kind="prefix", doc="the Feast registry (registry.db) and SQLite online store"),
    Dataset("demo_input", "demo-input", kind="prefix", doc="`imagerank demo`: the generated sample catalog"),
]
CATALOG: dict[str, Dataset] = {d.name: d for d in _ENTRIES}


def entry(name: str) -> Dataset:
    try:
        return CATALOG[name]
    except KeyError:
        raise KeyError(f"no dataset named {name!r} in imagerank.datasets.CATALOG") from None


def relative(name: str) -> str:
    """The dataset's location relative to the work directory (``features/links``)."""
    return entry(name).relative


def location(workdir: str | os.PathLike, name: str, *parts: str) -> str:
    """Where the dataset lives under ``workdir`` (a local path or URL); ``parts`` go below it (files of a prefix).

    For a Parquet dataset this is its logical location: open :func:`current` to read it.
    """
    return storage.join(storage.absolute(workdir), *relative(name).split("/"), *parts)


def schema(name: str):
    """The dataset's fixed Arrow schema as its writer defines it, or None when the writer infers it."""
    ref = entry(name).schema_ref
    if ref is None:
        return None
    module, attribute = ref.split(":")
    value = getattr(import_module(module), attribute)
    if hasattr(value, "dtypes"):  # a META frame
        import pyarrow as pa

        return pa.Schema.from_pandas(value, preserve_index=False)
    return value


def current(workdir: str | os.PathLike, name: str) -> str | None:
    """The committed version of a Parquet dataset (what a reader opens), or None when it was never published."""
    return io.current(location(workdir, name))


def exists(workdir: str | os.PathLike, name: str, *parts: str) -> bool:
    """A Parquet dataset has a committed version; any other entry (or its ``parts``) exists."""
    if entry(name).kind == "parquet" and not parts:
        return current(workdir, name) is not None
    return storage.exists(location(workdir, name, *parts))


def require(workdir: str | os.PathLike, name: str) -> str:
    """The committed version, or a clear error naming the dataset."""
    found = current(workdir, name)
    if found is None:
        raise FileNotFoundError(f"{location(workdir, name)} does not exist (dataset {name!r} was never published)")
    return found


def read_ddf(workdir: str | os.PathLike, name: str, columns: list[str] | None = None, **kwargs):
    """The committed version as a Dask DataFrame (the version is pinned when the frame is built)."""
    return io.read_ddf(require(workdir, name), columns=columns, **kwargs)


def read_frame(workdir: str | os.PathLike, name: str, columns: list[str] | None = None):
    """The committed version in pandas (small datasets only)."""
    return io.read_frame(location(workdir, name), columns=columns)


def write_ddf(ddf, workdir: str | os.PathLike, name: str, *, schema=None, metadata: dict[str, str] | None = None) -> str:
    """Write and publish a Dask DataFrame (one part per partition); returns the committed version."""
    return io.write_ddf(ddf, location(workdir, name), schema=schema, metadata=metadata)


def write_frame(frame, workdir: str | os.PathLike, name: str, *, schema=None) -> str:
    return io.write_frame(frame, location(workdir, name), schema=schema)


def publishing(workdir: str | os.PathLike, name: str):
    """Context manager: a fresh version location to write the dataset's files into, published on success."""
    return io.publishing(location(workdir, name))


def read_json(workdir: str | os.PathLike, name: str, *parts: str):
    return io.read_json(location(workdir, name, *parts))


def write_json(obj, workdir: str | os.PathLike, name: str, *parts: str) -> str:
    return io.write_json(obj, location(workdir, name, *parts))


def list_files(workdir: str | os.PathLike, name: str, pattern: str = "*") -> list[str]:
    """Files directly under a prefix entry (``runs``, ``models``) matching ``pattern``, sorted by name."""
    base = location(workdir, name)
    fs, path = storage.filesystem(base)
    if not fs.isdir(path):
        return []
    found = sorted(fs.glob(f"{path.rstrip('/')}/{pattern}"))
    return [storage.join(base, p.rstrip("/").rsplit("/", 1)[-1]) for p in found]


def staging_prefix(purpose: str) -> str:
    return f".{purpose}-staging-"


@contextmanager
def staging(workdir: str | os.PathLike, purpose: str) -> Iterator[str]:
    """A fresh scratch location ``W/.<purpose>-staging-<id>`` for one writer's intermediate files, removed
    afterwards whatever happens. Scratch a killed writer of the same purpose left is removed first: only the
    writer that made it reads it, and one recalculation runs at a time."""
    remove_stale_staging(workdir, purpose)
    found = storage.join(storage.absolute(workdir), f"{staging_prefix(purpose)}{uuid.uuid4().hex[:8]}")
    fs, path = storage.filesystem(found)
    fs.makedirs(path, exist_ok=True)
    try:
        yield found
    finally:
        io._remove(found)


def remove_stale_staging(workdir: str | os.PathLike, purpose: str) -> list[str]:
    """Scratch locations of ``purpose`` left by killed writers (the paths removed)."""
    fs, path = storage.filesystem(storage.absolute(workdir))
    stale = fs.glob(f"{path.rstrip('/')}/{staging_prefix(purpose)}*") if fs.isdir(path) else []
    for found in stale:
        fs.rm(found, recursive=True)
    return stale
