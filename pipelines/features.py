"""Dask jobs: metadata features, observed popularity labels and domain-rank features from ``W/catalog/``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from distributed import Client

from imagerank.cluster import persist
from imagerank.features.domains import DOMAIN_META, domain_features, rank_scores, read_ranks, with_link_authority
from imagerank.features.metadata import METADATA_META, metadata_features
from imagerank import datasets
from imagerank.io import keep_unchanged_timestamps, stamped, stamped_meta, with_timestamp
from imagerank.popularity import StandardizationConfig, provider_constants, raw_metrics, standardize




def run_metadata_features(client: Client, workdir: str | Path, now: pd.Timestamp) -> int:
    catalog = datasets.read_ddf(workdir, "catalog")
    features = catalog.map_partitions(metadata_features, now, meta=METADATA_META)
    features = persist(client, stamped(features, now), "features: metadata")
    datasets.write_ddf(features, workdir, "metadata")
    return int(features.map_partitions(len).sum().compute())


def run_popularity_labels(client: Client, workdir: str | Path, config: StandardizationConfig,
                          now: pd.Timestamp) -> dict:
    """Raw provider metrics -> per-provider constants (exact percentile_disc) -> standardized popularity."""
    catalog = datasets.read_ddf(workdir, "catalog", columns=["image_id", "provider", "meta_data"])
    meta = raw_metrics(catalog._meta, config)
    metrics = persist(client, catalog.map_partitions(raw_metrics, config, meta=meta), "features: popularity metrics")
    observed = metrics.dropna(subset=["metric_value"])
    counts = observed.groupby(["provider", "metric_value"]).size().compute().rename("count").reset_index()
    constants = provider_constants(counts, config)

    def label(part: pd.DataFrame) -> pd.DataFrame:
        return with_timestamp(part.assign(observed_popularity=standardize(part, constants)), now)

    labels = metrics.map_partitions(label, meta=stamped_meta(meta.assign(observed_popularity=pd.Series(dtype="float64"))))
    labels = keep_unchanged_timestamps(labels, datasets.location(workdir, "popularity"))
    datasets.write_ddf(persist(client, labels, "features: popularity labels"), workdir, "popularity")
    return {"config": config.to_dict(), "constants": {p: vars(c) for p, c in constants.items()}}


def run_domain_features(client: Client, workdir: str | Path, ranks_files: list[str], now: pd.Timestamp) -> dict:
    """Stream the ranks files for the catalog's landing hosts/domains, then join per image and per domain."""
    metadata = datasets.read_ddf(workdir, "metadata",
                                 columns=["image_id", "provider", "landing_host", "landing_domain"])
    hosts = set(metadata["landing_host"].dropna().unique().compute())
    domains = set(metadata["landing_domain"].dropna().unique().compute())
    ranks = client.gather([client.submit(read_ranks, str(path), hosts | domains, pure=False) for path in ranks_files])
    host_scores, domain_scores = rank_scores(ranks, "host"), rank_scores(ranks, "domain")
    per_image = metadata.map_partitions(domain_features, host_scores, domain_scores, meta=DOMAIN_META)
    own = own_host_ranks(workdir, hosts)
    if own is not None:  # ranks from our own crawl's host graph, when a crawl was processed
        per_image = per_image.merge(own, on="landing_host", how="left")
    # --linkgraph: the landing domain's link authority
    graph_domains = datasets.read_ddf(workdir, "graph_domains") if datasets.exists(workdir, "graph_domains") else None
    per_image = with_link_authority(per_image, graph_domains)
    per_image = keep_unchanged_timestamps(stamped(per_image, now), datasets.location(workdir, "domains"))
    per_image = persist(client, per_image, "features: domains")
    datasets.write_ddf(per_image, workdir, "domains")
    datasets.write_frame(domain_stats(workdir, domain_scores, now), workdir, "domain_stats")
    return {"ranks_files": [str(p) for p in ranks_files],
            "ranked_rows": {str(p): r.rows for p, r in zip(ranks_files, ranks)},
            "skipped_rank_lines": {str(p): getattr(r, "skipped", 0) for p, r in zip(ranks_files, ranks)},
            "matched_hosts": len(host_scores), "matched_domains": len(domain_scores),
            "images_with_rank": int(per_image["domain_authority"].notnull().sum().compute()),
            "images_with_link_authority": int(per_image["domain_link_pagerank"].notnull().sum().compute())}


def own_host_ranks(workdir: str | Path, hosts: set[str]) -> pd.DataFrame | None:
    """PageRank and distinct linking domains of the catalog's landing hosts in ``W/graph/hosts/``."""
    if not datasets.exists(workdir, "graph_hosts"):
        return None
    graph = datasets.read_ddf(workdir, "graph_hosts", columns=["host", "pagerank", "in_domains"])
    graph = graph[graph["host"].isin(list(hosts))].compute()
    return pd.DataFrame({"landing_host": graph["host"].astype("string"),
                         "host_graph_pagerank": graph["pagerank"].astype("float64"),
                         "host_graph_in_domains": graph["in_domains"].astype("float64")})


def domain_stats(workdir: str | Path, domain_scores: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
    """Per landing domain: images, providers, share with an observed popularity metric, and rank score."""
    metadata = datasets.read_ddf(workdir, "metadata", columns=["image_id", "provider", "landing_domain"])
    labels = datasets.read_ddf(workdir, "popularity", columns=["image_id", "observed_popularity"])
    both = metadata.merge(labels, on="image_id", how="left")
    both["observed"] = both["observed_popularity"].notnull().astype("int64")
    per_provider = both.groupby(["landing_domain", "provider"]).agg(
        images=("image_id", "count"), observed=("observed", "sum")).compute().reset_index()
    stats = per_provider.groupby("landing_domain").agg(images=("images", "sum"), providers=("provider", "nunique"),
                                                       observed=("observed", "sum"))
    stats = stats.reset_index().rename(columns={"landing_domain": "domain"})
    stats["observed_share"] = stats["observed"] / stats["images"]
    scores = domain_scores.rename(columns={"name": "domain", "score": "rank_score"})[["domain", "rank_score"]]
    stats = stats.merge(scores, on="domain", how="left")
    stats = with_timestamp(stats[["domain", "rank_score", "images", "providers", "observed_share"]], now)
    return stats.astype({"images": "int64", "providers": "int64"})
