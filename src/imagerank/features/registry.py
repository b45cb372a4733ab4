"""The feature families of the work directory and how they join into one frame per image.

The join (every family left-joined on image_id) is written once per run as the ``features`` dataset
(:func:`write_joined_features`, the stage "features: join"); training, scoring and the training fingerprint
read it back with no shuffle. It records the committed version of every family it was built from, so a
family rewritten since (``imagerank features X``) makes it stale, and :func:`joined_features` then writes it
again before reading it.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import dask
import dask.dataframe as dd
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from imagerank import datasets, io, storage

#: family -> its dataset's location relative to the work directory (the family is also its name in
#: ``imagerank.datasets``); ``metadata`` is the base every image has. ``text`` is the cleaned text document
#: (a string: embedded inside the popularity estimator).
FAMILY_NAMES = ("metadata", "popularity", "domains", "pixels", "exif", "links", "visual", "text")
FAMILIES = {name: datasets.relative(name) for name in FAMILY_NAMES}
#: Columns that are labels, keys or bookkeeping, never model inputs.
NOT_MODEL_INPUTS = {
    "metric_value", "observed_popularity", "event_timestamp", "link_authority", "has_link_evidence",
    "domain_authority",  # authority evidence itself; popularity may use the rank scores it is made of
    "phash",  # a hash, not a quantity: its numeric value means nothing
}


#: Landing-host/domain ranks are constant within a provider: for popularity they would only say "which
#: provider", a shortcut that does not transfer to providers without metrics. Authority may use them.
PROVIDER_PROXIES = {"host_rank_score", "domain_rank_score", "host_pr_val", "domain_pr_val", "domain_n_hosts",
                    "host_graph_pagerank", "host_graph_in_domains", "domain_link_pagerank", "domain_link_harmonic",
                    "domain_link_in_domains", "domain_link_score", "domain_link_harmonic_score"}


#: Families computed from the image bytes: what the model card's "with and without image features" removes.
IMAGE_FAMILIES = ("pixels", "exif", "visual")


def family_columns(workdir: str | Path, families: tuple[str, ...]) -> list[str]:
    """Columns of the given families' datasets (from their Parquet schemas), without the key."""
    import pyarrow.dataset as ds

    columns: list[str] = []
    for name in families:
        found = datasets.current(workdir, name)
        if found is not None:
            fs, path = storage.filesystem(found)
            columns += [c for c in ds.dataset(path, format="parquet", filesystem=fs).schema.names
                        if c != "image_id" and c not in columns]
    return columns


def available_families(workdir: str | Path) -> list[str]:
    return [name for name in FAMILIES if datasets.exists(workdir, name)]


#: The joined dataset (in :mod:`imagerank.datasets`) and the Parquet schema metadata key of its sources.
JOINED = "features"
SOURCES_KEY = b"imagerank.sources"


def family_versions(workdir: str | Path) -> dict[str, str]:
    """The committed version a reader opens of every available family (its dataset location)."""
    found = {name: datasets.current(workdir, name) for name in FAMILY_NAMES}
    return {name: location for name, location in found.items() if location is not None}


def version_label(location: str) -> str:
    """What identifies a committed version independently of where the work directory lives: its last two path
    parts (``.pixels.v/<version id>``; every commit makes a new one)."""
    return "/".join(location.rstrip("/").replace("\\", "/").split("/")[-2:])


def joined_sources(workdir: str | Path) -> dict[str, str] | None:
    """The family versions the committed joined dataset was built from, or None when there is none."""
    import pyarrow.dataset as ds

    found = datasets.current(workdir, JOINED)
    if found is None:
        return None
    fs, path = storage.filesystem(found)
    metadata = ds.dataset(path, format="parquet", filesystem=fs).schema.metadata or {}
    return json.loads(metadata[SOURCES_KEY]) if SOURCES_KEY in metadata else None


def stale_families(workdir: str | Path) -> list[str] | None:
    """Families whose committed version differs from the joined dataset's (added, rewritten or removed); None
    when there is no joined dataset. An empty list: the joined dataset is current."""
    sources = joined_sources(workdir)
    if sources is None:
        return None
    now = {name: version_label(location) for name, location in family_versions(workdir).items()}
    return sorted(name for name in set(now) | set(sources) if now.get(name) != sources.get(name))


#: Images per bucket of the join: the most rows one join task holds (every family's columns of that many images).
ROWS_PER_BUCKET = 250_000
#: The join's scratch space under the work directory (``W/.join-staging-<id>``, :func:`imagerank.datasets.staging`).
STAGING = "join"


def write_joined_features(workdir: str | Path, *, rows_per_bucket: int = ROWS_PER_BUCKET) -> dict:
    """Join every available family once and publish the rows as the ``features`` dataset, recording the
    family versions it read (so a later rewrite of one makes it stale).

    A bucketed join, each step bounded in memory whatever the catalog size: every family in turn is shuffled
    on image_id into the same buckets and written to scratch space (one shuffle at a time, each finished
    before the next starts); then one task per bucket reads that bucket of every family, left-joins them onto
    the metadata rows and writes one file. Chained Dask merges instead kept shuffled partitions of several
    families in worker memory at once: at 4 M images they killed both 3.5 GiB workers of ``bench_scale``.
    """
    versions = family_versions(workdir)
    if "metadata" not in versions:
        raise FileNotFoundError(f"{datasets.location(workdir, 'metadata')} does not exist: the joined features "
                                "need the metadata features (run `imagerank features metadata`)")
    schemas = join_schemas(versions)
    images = sum(rows for *_, rows in io.parquet_pieces(versions["metadata"]))
    buckets = max(1, math.ceil(images / rows_per_bucket))
    sources = {name: version_label(location) for name, location in versions.items()}
    schema = joined_schema(schemas).with_metadata({SOURCES_KEY: json.dumps(sources).encode()})
    with datasets.staging(workdir, STAGING) as staging, datasets.publishing(workdir, JOINED) as target:
        for name, family_schema in schemas.items():
            write_buckets(versions[name], family_schema, buckets, storage.join(staging, name))
        counts = dask.compute(*[dask.delayed(write_joined_bucket)(b, staging, schemas, schema, target)
                                for b in range(buckets)])
    unmatched = {name: sum(c["unmatched"][name] for c in counts) for name in schemas if name != "metadata"}
    return {"rows": sum(c["rows"] for c in counts), "families": sorted(sources), "buckets": buckets,
            "unmatched_rows": {name: n for name, n in unmatched.items() if n}}


def join_schemas(versions: dict[str, str]) -> dict[str, pa.Schema]:
    """family -> the Arrow schema of what it adds to the join: image_id and its columns no earlier family has
    (metadata first, then :data:`FAMILY_NAMES` order)."""
    import pyarrow.dataset as ds

    schemas: dict[str, pa.Schema] = {}
    seen: set[str] = set()
    for name in FAMILY_NAMES:
        if name not in versions:
            continue
        fs, path = storage.filesystem(versions[name])
        full = ds.dataset(path, format="parquet", filesystem=fs).schema
        fields = [full.field("image_id")] + [f for f in full if f.name != "image_id" and f.name not in seen]
        schemas[name] = pa.schema(fields)
        seen.update(f.name for f in fields)
    return schemas


def joined_schema(schemas: dict[str, pa.Schema]) -> pa.Schema:
    return pa.schema([f for i, schema in enumerate(schemas.values()) for f in (schema if i == 0 else list(schema)[1:])])


def bucket_file(bucket: int) -> str:
    return f"part.{bucket:06d}.parquet"


def write_buckets(location: str, schema: pa.Schema, buckets: int, target: str) -> None:
    """Shuffle one family's columns on image_id into ``buckets`` partitions (Dask's hash partitioning: the same
    image lands in the same bucket in every family) and write partition ``i`` as :func:`bucket_file` ``(i)``.
    Read one row group per task (at most :data:`imagerank.io.ROW_GROUP_ROWS` rows): a family's files may hold
    millions of rows."""
    family = io.read_ddf(location, columns=schema.names, split_row_groups=True)
    family.shuffle(on="image_id", npartitions=buckets).to_parquet(
        target, write_index=False, schema=schema, name_function=bucket_file,
        storage_options=storage.storage_options(target) or None)


def write_joined_bucket(bucket: int, staging: str, schemas: dict[str, pa.Schema], schema: pa.Schema,
                        target: str) -> dict:
    """Join one bucket of every family and write it as one file of the joined dataset; returns its row count
    and, per family, its rows that matched no image (rows of images no longer in the catalog: dropped)."""
    frames = {name: read_bucket(storage.join(staging, name, bucket_file(bucket)), family_schema)
              for name, family_schema in schemas.items()}
    joined = left_join(list(frames.values()))
    images = set(frames["metadata"]["image_id"])
    unmatched = {name: int((~frame["image_id"].isin(images)).sum()) for name, frame in frames.items()}
    fs, path = storage.filesystem(storage.join(target, bucket_file(bucket)))
    pq.write_table(pa.Table.from_pandas(joined, schema=schema, preserve_index=False), path, filesystem=fs,
                   row_group_size=io.ROW_GROUP_ROWS)
    return {"rows": len(joined), "unmatched": unmatched}


def read_bucket(path: str, schema: pa.Schema) -> pd.DataFrame:
    fs, found = storage.filesystem(path)
    return pq.read_table(found, columns=schema.names, filesystem=fs).to_pandas()


def left_join(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The frames left-joined on image_id onto the first (the metadata features: one row per image)."""
    joined = frames[0]
    for other in frames[1:]:
        joined = joined.merge(other, on="image_id", how="left")
    return joined


def stale_reason(stale: list[str] | None) -> str:
    return "no joined dataset" if stale is None else f"the joined dataset predates {', '.join(stale)}"


def joined_features(workdir: str | Path) -> dd.DataFrame:
    """Every available family joined on image_id onto the metadata features (one row per image): the joined
    dataset, rewritten first when missing or stale (a family rewritten since; said in one line), then read
    with no shuffle."""
    stale = stale_families(workdir)
    if stale != []:
        print(f"[imagerank] features: {stale_reason(stale)}; joining the families once", file=sys.stderr, flush=True)
        write_joined_features(workdir)
    return datasets.read_ddf(workdir, JOINED)


def model_feature_columns(frame: pd.DataFrame | dd.DataFrame) -> list[str]:
    """Numeric columns that may feed a model: everything numeric but labels, keys and bookkeeping."""
    numeric = frame._meta if isinstance(frame, dd.DataFrame) else frame
    return [c for c in numeric.columns
            if c not in NOT_MODEL_INPUTS and not c.endswith(("_error", "_pos"))
            and pd.api.types.is_numeric_dtype(numeric[c])]
