"""The near-duplicate substring index: its guarantee against brute force, each pair once, buckets that stay
small as the catalog grows, skipped buckets reported, and VisualRank from the paired images only."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from imagerank.features import visual as V

INDEXES = [V.SubstringIndex(8, 2), V.SubstringIndex(9, 3), V.SubstringIndex(10, 4)]


def _flip(h: np.ndarray, rng, d: int) -> np.ndarray:
    """Each hash with ``d`` distinct random bits flipped."""
    out = h.view(np.uint64).copy()
    for row in range(len(out)):
        for bit in rng.choice(64, d, replace=False):
            out[row] ^= np.uint64(1) << np.uint64(bit)
    return out.view(np.int64)


def _planted(seed: int, n_random: int, per_distance: int, distances=range(0, 11)):
    """Random hashes plus, for each distance, ``per_distance`` copies of random originals that far away."""
    rng = np.random.default_rng(seed)
    hashes = [rng.integers(-2**63, 2**63 - 1, n_random, dtype=np.int64)]
    for d in distances:
        base = rng.integers(-2**63, 2**63 - 1, per_distance, dtype=np.int64)
        hashes += [base, _flip(base, rng, d)]
    ph = np.concatenate(hashes)
    return pd.DataFrame({"node_id": np.arange(len(ph), dtype=np.int64), "phash": ph})


def _brute(frame: pd.DataFrame, threshold: int) -> dict[tuple[int, int], int]:
    h = frame["phash"].to_numpy(np.int64).view(np.uint64)
    ids = frame["node_id"].to_numpy(np.int64)
    d = np.bitwise_count(h[:, None] ^ h[None, :])
    i, j = np.nonzero(np.triu(d <= threshold, k=1))
    return {(int(ids[a]), int(ids[b])): int(d[a, b]) for a, b in zip(i, j)}


def _found(pairs: pd.DataFrame) -> dict[tuple[int, int], int]:
    return {(int(a), int(b)): int(d) for a, b, d in zip(pairs.a, pairs.b, pairs.distance)}


@pytest.mark.parametrize("index", INDEXES, ids=lambda i: f"{i.n_substrings}-{i.match}")
def test_every_pair_within_the_guarantee_is_found_once_and_verified(index):
    frame = _planted(seed=index.n_substrings, n_random=300, per_distance=25)
    keys = V.index_keys(frame, index)
    assert len(keys) == len(frame) * index.keys_per_image
    # one shuffle partition per key range, as the stage's shuffle would leave them
    parts = [p for _, p in keys.groupby(keys["band_key"] % 5)]
    pairs = pd.concat([V.index_pairs(p, index, threshold=10) for p in parts], ignore_index=True)
    assert not pairs.duplicated(["a", "b"]).any()  # each pair once, without a de-duplication pass
    assert (pairs.a < pairs.b).all()
    truth = _brute(frame, 10)
    found = _found(pairs)
    assert set(found) <= set(truth) and all(found[k] == truth[k] for k in found)  # no false pair, exact d
    assert {k for k, d in truth.items() if d <= index.guaranteed} <= set(found)
    assert index.guaranteed == 6


def test_identical_hashes_share_every_key_yet_pair_once():
    frame = pd.DataFrame({"node_id": np.arange(6, dtype=np.int64), "phash": np.full(6, 12345, np.int64)})
    index = V.SubstringIndex(8, 2)
    pairs = V.index_pairs(V.index_keys(frame, index), index)
    assert len(pairs) == 15 and (pairs.distance == 0).all()


def test_recall_formula_matches_sampled_pairs():
    rng = np.random.default_rng(4)
    index = V.SubstringIndex(8, 2)
    for d in (7, 8, 10):
        base = rng.integers(-2**63, 2**63 - 1, 3000, dtype=np.int64)
        x = base.view(np.uint64) ^ _flip(base, rng, d).view(np.uint64)
        clean = sum((((x >> np.uint64(s)) & np.uint64((1 << w) - 1)) == 0).astype(int)
                    for s, w in zip(index.shifts, index.widths))
        observed = float((clean >= index.match).mean())
        p = index.recall(d)
        assert abs(observed - p) < 4 * np.sqrt(p * (1 - p) / len(base)) + 1e-9, (d, observed, p)
    assert index.recall(6) == 1.0 and 0 < index.recall(10) < index.recall(8) < index.recall(7) < 1


def test_index_widens_with_the_catalog_while_old_banding_overflows():
    for n in (10_000, 1_000_000, 10_000_000, 100_000_000, 500_000_000):
        index = V.index_for(n)
        assert index.guaranteed == V.GUARANTEED_DISTANCE
        assert index.mean_bucket(n) <= V.DEFAULT_MEAN_BUCKET
    assert V.index_for(1_000_000) == V.SubstringIndex(8, 2)
    assert V.index_for(10_000_000) == V.SubstringIndex(9, 3)
    # the earlier 8 x 8-bit banding: n / 256 per bucket, over max_bucket (nothing compared) from ~512 k images
    assert 1_000_000 / 256 > V.DEFAULT_MAX_BUCKET
    with pytest.raises(ValueError):
        V.SubstringIndex(8, 8)


def test_oversized_buckets_are_counted_not_expanded():
    frame = pd.DataFrame({"node_id": np.arange(40, dtype=np.int64), "phash": np.zeros(40, np.int64)})
    index = V.SubstringIndex(8, 2)
    pairs, skipped = V.near_duplicate_pairs(frame, index=index, max_bucket=30)
    assert pairs.empty
    assert skipped == {"oversize_buckets": 28, "oversize_bucket_rows": 28 * 40, "pairs_not_compared": 28 * 780}
    pairs, skipped = V.near_duplicate_pairs(frame, index=index, max_bucket=40)
    assert len(pairs) == 780 and skipped["oversize_buckets"] == 0


def test_visualrank_from_paired_images_equals_pagerank_on_the_whole_graph():
    rng = np.random.default_rng(7)
    n = 400
    a = rng.integers(0, 150, 120)
    b = rng.integers(0, 150, 120)
    keep = a != b
    a, b = np.minimum(a, b)[keep], np.maximum(a, b)[keep]
    uniq = pd.DataFrame({"a": a, "b": b}).drop_duplicates()
    a, b = uniq.a.to_numpy(), uniq.b.to_numpy()
    dist = rng.integers(0, 11, len(a))
    nodes = V.pair_graph_ranks(n, a, b, dist, threshold=10)
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_weighted_edges_from((int(x), int(y), 1 - d / 11) for x, y, d in zip(a, b, dist))
    ref = nx.pagerank(g, tol=1e-13, max_iter=1000)
    got = np.full(n, V.isolated_visualrank(n, len(nodes)))
    got[nodes.node_id.to_numpy()] = nodes.visualrank.to_numpy()
    want = np.array([ref[i] for i in range(n)]) * n
    assert len(nodes) < n and np.abs(got - want).max() < 1e-6
    deg = dict(g.degree())
    assert all(deg[i] == k for i, k in zip(nodes.node_id, nodes.dup_neighbors))
    labels, degree, rank = V.cluster_and_rank(n, a, b, dist, threshold=10)
    assert np.allclose(rank, got) and len(set(labels.tolist())) == nx.number_connected_components(g)


@pytest.mark.slow
def test_index_on_the_cluster_matches_pandas(dask_client, monkeypatch):
    import dask.dataframe as dd

    import pipelines.visual as G
    from pipelines.visual import near_duplicate_pairs

    monkeypatch.setattr(G, "KEY_ROWS_PER_PARTITION", 20_000)  # hashes re-split so keying tasks stay small

    frame = _planted(seed=11, n_random=2000, per_distance=40)
    index = V.SubstringIndex(9, 3)
    got, skipped = near_duplicate_pairs(dask_client, dd.from_pandas(frame, npartitions=4), len(frame), index,
                                        threshold=10, max_bucket=V.DEFAULT_MAX_BUCKET)
    want, want_skipped = V.near_duplicate_pairs(frame, index=index)
    assert _found(got) == _found(want) and skipped == want_skipped
    assert len(got) >= 7 * 40  # every planted pair at d <= 6


@pytest.mark.slow
@pytest.mark.parametrize("broadcast_limit", [1_000_000, 0], ids=["broadcast-join", "hash-join"])
def test_stage_reports_skipped_buckets_as_errors_and_keeps_every_row(dask_client, tmp_path, monkeypatch,
                                                                     broadcast_limit):
    import pipelines.visual as G
    from imagerank.io import write_frame
    from pipelines.visual import run_visual_features

    monkeypatch.setattr(G, "BROADCAST_PAIRED_NODES", broadcast_limit)  # both ways paired images join back

    rng = np.random.default_rng(3)
    n_blank, n_other = 30, 200
    ph = np.concatenate([np.zeros(n_blank, np.int64), rng.integers(-2**63, 2**63 - 1, n_other, dtype=np.int64)])
    ph[n_blank + 1] = ph[n_blank] ^ 0b101  # one real near-duplicate pair, 2 bits apart
    ids = [f"i{k}" for k in range(len(ph))]
    catalog = pd.DataFrame({"image_id": ids, "provider": "p",
                            "foreign_landing_url": [f"https://h{k}.org/" for k in range(len(ph))]})
    write_frame(catalog, tmp_path / "catalog")
    write_frame(pd.DataFrame({"image_id": ids, "phash": pd.array(ph, dtype="Int64")}), tmp_path / "features" / "pixels")
    out = run_visual_features(dask_client, tmp_path, max_bucket=20)
    keys = V.index_for(len(ph)).keys_per_image
    _, want = V.near_duplicate_pairs(pd.DataFrame({"node_id": np.arange(len(ph)), "phash": ph}),
                                     index=V.index_for(len(ph)), max_bucket=20)
    assert out["errors"] == want and want["oversize_buckets"] == keys  # every key of the blank images
    assert want["oversize_bucket_rows"] >= keys * n_blank  # (a random hash may share a blank bucket)
    assert out["near_duplicate_pairs"] == 1 and out["images_with_near_duplicates"] == 2
    got = pd.read_parquet(tmp_path / "features" / "visual").set_index("image_id")
    assert len(got) == len(catalog) and list(got.reset_index().columns)[:7] == list(V.VISUAL_META.columns)
    pair = got.loc[[f"i{n_blank}", f"i{n_blank + 1}"]]
    assert (pair.dup_neighbors == 1).all() and (pair.dup_cluster_size == 2).all() and (pair.dup_hosts == 2).all()
    lone = got.drop(index=pair.index)
    assert (lone.dup_cluster_size == 1).all() and (lone.dup_neighbors == 0).all()
    assert np.isclose(got.visualrank.mean(), 1.0) and (pair.visualrank > lone.visualrank.max()).all()
