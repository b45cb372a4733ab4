"""The feature families of the work directory and how they join into one frame per image.

The join (a left merge per family on image_id: a shuffle each) is written once per run as the ``features``
dataset (:func:`write_joined_features`, the stage "features: join"); training, scoring and the training
fingerprint read it back with no shuffle. It records the committed version of every family it was built
from, so a family rewritten since (``imagerank features X``) makes it stale, and :func:`load_features` then
joins on the fly instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import dask.dataframe as dd
import pandas as pd

from imagerank import datasets, io

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

    from imagerank import storage

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


def join_families(versions: dict[str, str]) -> dd.DataFrame:
    """The given family versions left-joined on image_id onto the metadata features (one row per image)."""
    frame = io.read_ddf(versions["metadata"])
    for name in FAMILY_NAMES:
        if name == "metadata" or name not in versions:
            continue
        other = io.read_ddf(versions[name])
        keep = ["image_id"] + [c for c in other.columns if c not in frame.columns]
        frame = frame.merge(other[keep], on="image_id", how="left")
    return frame


def joined_sources(workdir: str | Path) -> dict[str, str] | None:
    """The family versions the committed joined dataset was built from, or None when there is none."""
    import pyarrow.dataset as ds

    from imagerank import storage

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


def write_joined_features(workdir: str | Path) -> dict:
    """Join every available family once and publish the rows as the ``features`` dataset, recording the
    family versions it read (so a later rewrite of one makes it stale)."""
    versions = family_versions(workdir)
    if "metadata" not in versions:
        raise FileNotFoundError(f"{datasets.location(workdir, 'metadata')} does not exist: the joined features "
                                "need the metadata features (run `imagerank features metadata`)")
    frame = join_families(versions)
    sources = {name: version_label(location) for name, location in versions.items()}
    written = datasets.write_ddf(frame, workdir, JOINED, schema=text_as_string(frame._meta),
                                 metadata={SOURCES_KEY.decode(): json.dumps(sources)})
    return {"rows": sum(rows for *_, rows in io.parquet_pieces(written)), "families": sorted(sources)}


def text_as_string(meta: pd.DataFrame):
    """The Arrow schema of ``meta`` with its object columns (text here: ids, names, error codes) as strings:
    an empty meta types them null, and a schema inferred from the first partition would fail on a later one
    whose values are not all null."""
    import pyarrow as pa

    schema = pa.Schema.from_pandas(meta, preserve_index=False)
    return pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in schema],
                     metadata=schema.metadata)


def load_features(workdir: str | Path) -> dd.DataFrame:
    """Every available family joined on image_id onto the metadata features (one row per image).

    The joined dataset when it was built from the families' current versions (a Parquet read, no shuffle);
    otherwise the join built on the fly (a shuffle per family), said in one line on stderr.
    """
    stale = stale_families(workdir)
    if stale == []:
        return datasets.read_ddf(workdir, JOINED)
    print(f"[imagerank] features: {stale_reason(stale)}; joining the families on the fly (run `imagerank features "
          "join` to join them once)", file=sys.stderr, flush=True)
    return join_families(family_versions(workdir))


def stale_reason(stale: list[str] | None) -> str:
    return "no joined dataset" if stale is None else f"the joined dataset predates {', '.join(stale)}"


def refresh_joined_features(workdir: str | Path) -> bool:
    """Rewrite the joined dataset when it is missing or stale (True if it did): for callers that read the
    features more than once, so the join's shuffles run once rather than at every read."""
    stale = stale_families(workdir)
    if stale == []:
        return False
    print(f"[imagerank] features: {stale_reason(stale)}; joining the families once", file=sys.stderr, flush=True)
    write_joined_features(workdir)
    return True


def joined_features(workdir: str | Path) -> dd.DataFrame:
    """The joined dataset, rewritten first when stale: read it as often as needed, no shuffle at any read."""
    refresh_joined_features(workdir)
    return datasets.read_ddf(workdir, JOINED)


def model_feature_columns(frame: pd.DataFrame | dd.DataFrame) -> list[str]:
    """Numeric columns that may feed a model: everything numeric but labels, keys and bookkeeping."""
    numeric = frame._meta if isinstance(frame, dd.DataFrame) else frame
    return [c for c in numeric.columns
            if c not in NOT_MODEL_INPUTS and not c.endswith(("_error", "_pos"))
            and pd.api.types.is_numeric_dtype(numeric[c])]
