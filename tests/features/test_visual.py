"""Visual near-duplicates: LSH banding recall against brute force, clusters, VisualRank, the Dask stage."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from imagerank.features import visual as V


def _flip(h: int, bits) -> int:
    u = h & (2**64 - 1)
    for b in bits:
        u ^= 1 << int(b)
    return u - 2**64 if u >= 2**63 else u


def _dataset(seed=0, n_clusters=60, n_random=400):
    """Clusters of copies (each copy 0..12 random bit flips from its original) plus unrelated random hashes."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_clusters):
        base = int(rng.integers(-2**63, 2**63 - 1))
        for k in range(int(rng.integers(2, 6))):
            d = 0 if k == 0 else int(rng.integers(0, 13))
            rows.append((f"c{c}-{k}", _flip(base, rng.choice(64, d, replace=False)), f"p{k % 3}",
                         f"https://h{k}.site{c}.org/x"))
    for r in range(n_random):
        rows.append((f"r{r}", int(rng.integers(-2**63, 2**63 - 1)), "p9", f"https://r{r}.org/"))
    rows.append(("no-hash", None, "p1", "https://n.org/"))
    df = pd.DataFrame(rows, columns=["image_id", "phash", "provider", "foreign_landing_url"])
    df["phash"] = pd.array([r[1] for r in rows], dtype="Int64")  # exact 64-bit values (no float detour)
    catalog = df[["image_id", "provider", "foreign_landing_url"]]
    pixels = df[["image_id", "phash"]]
    return catalog, pixels


def _brute(pixels, threshold):
    p = pixels.dropna()
    ids = p.image_id.to_numpy()
    h = p.phash.to_numpy(np.int64).view(np.uint64)
    d = np.bitwise_count(h[:, None] ^ h[None, :])
    i, j = np.nonzero(np.triu(d <= threshold, k=1))
    return {tuple(sorted((ids[a], ids[b]))): int(d[a, b]) for a, b in zip(i, j)}


def test_recall_formula():
    assert V.band_recall(7, 8) == pytest.approx(1.0)
    assert V.band_recall(10, 8) == pytest.approx(0.956, abs=1e-3)
    assert V.band_recall(3, 4) == pytest.approx(1.0) and V.band_recall(10, 4) < 0.2
    assert V.band_recall(10, 8, 2) > 0.99


def test_banding_finds_pairs_like_brute_force():
    catalog, pixels = _dataset()
    imgs = V.image_rows(catalog, pixels)
    bands = V.band_keys(imgs)
    assert len(bands) == len(imgs) * V.DEFAULT_BANDS
    pairs = V.bucket_pairs(bands, threshold=10)
    name = dict(zip(imgs.node_id, imgs.image_id))
    found = {tuple(sorted((name[a], name[b]))): d for a, b, d in zip(pairs.a, pairs.b, pairs.distance)}
    truth = _brute(pixels, 10)
    assert set(found) <= set(truth) and all(found[k] == truth[k] for k in found)  # verified: no false pairs
    close = {k for k, d in truth.items() if d <= 7}
    assert close <= set(found)  # pigeonhole guarantee with 8 bands
    assert len(found) / len(truth) > 0.9
    # candidates are bucket-local, far fewer than all pairs
    n = len(imgs)
    sizes = bands.groupby("band_key").size()
    assert int((sizes * (sizes - 1) // 2).sum()) < n * (n - 1) // 2 // 5


def test_features_clusters_and_visualrank():
    catalog, pixels = _dataset(seed=1)
    feats = V.visual_features_frame(catalog, pixels, n_tables=2).set_index("image_id")
    assert list(feats.reset_index().columns) == list(V.VISUAL_META.columns)
    assert len(feats) == len(catalog)
    assert np.isfinite(feats.visualrank).all()
    assert not feats.loc["no-hash", "has_phash"] and feats.loc["no-hash", "dup_cluster_size"] == 0
    singles = feats.loc[[i for i in feats.index if i.startswith("r")]]
    assert (singles.dup_cluster_size == 1).mean() > 0.95
    # A planted cluster whose copies are all within 7 bits of their original is found whole (8 bands: the
    # pigeonhole guarantee), and when no other hash is within the threshold of any member, the near-duplicate
    # component is exactly the planted cluster: its size, hosts (one per copy), providers and the original's
    # neighbours are known.
    truth = _brute(pixels, V.DEFAULT_THRESHOLD)
    graph = nx.Graph(truth.keys())
    graph.add_nodes_from(pixels.dropna().image_id)
    planted: dict[str, list[str]] = {}
    for image_id in catalog.image_id:
        if image_id.startswith("c"):
            planted.setdefault(image_id.split("-")[0], []).append(image_id)
    certain = [members for members in planted.values()
               if all(truth.get(tuple(sorted((members[0], m))), V.DEFAULT_THRESHOLD + 1) <= 7 for m in members[1:])
               and nx.node_connected_component(graph, members[0]) == set(members)]
    assert len(certain) >= 10, len(certain)
    for members in certain:
        rows, n = feats.loc[members], len(members)
        assert (rows.dup_cluster_size == n).all() and (rows.dup_hosts == n).all(), rows
        assert (rows.dup_providers == min(n, 3)).all(), rows  # providers p0, p1, p2 by copy number
        assert rows.loc[members[0], "dup_neighbors"] == n - 1 and (rows.dup_neighbors >= 1).all(), rows
    clustered = feats[feats.dup_cluster_size > 1]
    assert clustered.visualrank.mean() > singles.visualrank.mean()


def test_oversize_buckets_are_skipped_and_counted():
    pixels = pd.DataFrame({"image_id": [f"i{k}" for k in range(50)], "phash": [0] * 50})
    catalog = pixels[["image_id"]].assign(provider="p", foreign_landing_url="https://a.org/")
    imgs = V.image_rows(catalog, pixels)
    bands = V.band_keys(imgs)
    assert V.bucket_pairs(bands, max_bucket=10).empty
    assert len(V.oversize_buckets(bands, max_bucket=10)) == V.DEFAULT_BANDS
    assert len(V.bucket_pairs(bands, max_bucket=100)) == 50 * 49 // 2


@pytest.mark.slow
def test_visual_stage_on_cluster(dask_client, tmp_path):
    from imagerank.io import write_frame
    from pipelines.visual import run_visual_features

    catalog, pixels = _dataset(seed=2, n_clusters=30, n_random=150)
    write_frame(catalog, tmp_path / "catalog")
    write_frame(pixels, tmp_path / "features" / "pixels")
    out = run_visual_features(dask_client, tmp_path)
    got = pd.read_parquet(tmp_path / "features" / "visual").set_index("image_id").sort_index()
    ref = V.visual_features_frame(catalog, pixels).set_index("image_id").sort_index()
    assert out["visual_rows"] == len(catalog)
    pd.testing.assert_frame_equal(got, ref, check_dtype=False, rtol=1e-6)
