"""Dask job: the ``features: visual duplicates`` stage, ``W/features/pixels/`` (phash) + ``W/catalog/`` ->
``W/features/visual/`` (one row per catalog image) and ``W/features/visual_summary.json``.

The partition functions are :mod:`imagerank.features.visual`; this file only wires them on the cluster.
"""

from __future__ import annotations

import logging
from pathlib import Path

import dask.dataframe as dd
import pandas as pd
from distributed import Client

from imagerank import datasets
from imagerank.cluster import persist, progress_bar
from imagerank.graph import build
from imagerank.io import keep_unchanged_timestamps, stamped

log = logging.getLogger(__name__)

KEY_ROWS_PER_PARTITION = 2_000_000  # index rows per shuffle partition (~48 MB): bounds a bucket task's memory
BROADCAST_PAIRED_NODES = 1_000_000  # images with a near-duplicate joined back by broadcast up to this (~32 MB)


def near_duplicate_pairs(client: Client, hashes: dd.DataFrame, n: int, index, *, threshold: int,
                         max_bucket: int, label: str = "visual") -> tuple[pd.DataFrame, dict]:
    """Verified near-duplicate pairs of ``hashes`` (node_id, phash; ``n`` rows) on the cluster: index keys are
    shuffled on the key so every bucket is built and verified on a worker; only the verified pairs (each once)
    and the oversized buckets' (key, size) reach the driver.

    The shuffled index (``keys_per_image`` rows per image: ~8 GB at 4 M images) is never persisted: pairs and
    oversized buckets are computed in one graph, so each shuffled partition is read by both and released."""
    from imagerank.features import visual as V

    nparts = max(hashes.npartitions, -(-n * index.keys_per_image // KEY_ROWS_PER_PARTITION))
    if nparts > hashes.npartitions:  # a keying task writes keys_per_image rows per image: keep its output bounded
        hashes = hashes.repartition(npartitions=nparts)
    keys = hashes.map_partitions(V.index_keys, index, meta=V.BAND_META).shuffle(on="band_key", npartitions=nparts)
    pairs = keys.map_partitions(V.index_pairs, index, threshold, max_bucket, meta=V.PAIRS_META)
    oversize = keys.map_partitions(V.oversize_buckets, max_bucket, meta=V.OVERSIZE_META)
    futures = client.compute([pairs, oversize])
    progress_bar(futures, f"{label}: index shuffle and buckets")
    pairs, oversize = client.gather(futures)
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

    threshold = V.DEFAULT_THRESHOLD if threshold is None else threshold
    max_bucket = max_bucket or V.DEFAULT_MAX_BUCKET
    catalog = datasets.read_ddf(workdir, "catalog", columns=["image_id", "provider", "foreign_landing_url"])
    pixels = datasets.read_ddf(workdir, "pixels", columns=["image_id", "phash"])
    pixels = pixels.dropna(subset=["phash"])
    # split_out explicit: with dask's default the next two joins silently lost the images of half the catalog's
    # partitions at 1 M rows (the planted-pair check of bench_scale found it)
    pixels = pixels.drop_duplicates(subset=["image_id"], split_out=pixels.npartitions)
    imgs = pixels.merge(catalog, on="image_id", how="inner")
    ids, n = build.assign_ids(imgs[["image_id"]], "image_id")
    imgs = imgs.merge(ids, on="image_id", how="inner")
    imgs = imgs.map_partitions(V.with_host, meta=V.HASHED_IMAGES_META)
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
    visual_path = datasets.location(workdir, "visual")
    datasets.write_ddf(persist(client, keep_unchanged_timestamps(stamped(feats, event_timestamp), visual_path),
                               "visual: stamp"), workdir, "visual")
    out = {"visual_rows": int(feats.map_partitions(len).sum().compute()), "images_with_phash": n,
           "near_duplicate_pairs": int(len(pairs)), "images_with_near_duplicates": n_paired,
           **skipped, "errors": {k: v for k, v in skipped.items() if v},
           "threshold": threshold, "max_bucket": max_bucket, **index.describe(),
           "recall_at_threshold": index.recall(threshold)}
    datasets.write_json(out, workdir, "visual_summary")
    return out
