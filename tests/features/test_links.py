"""Link features: URL variant matching, PicASHOW authority, and the graph + links stages on a real LocalCluster."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from imagerank.testing import shared_fixture
from imagerank.features import links as L
from imagerank.graph.build import pages_frame
from imagerank.graph.synthetic import demo_pages, write_demo_warc
from imagerank.graph.warc import extract_file

IMAGES = [
    "https://live.staticflickr.com/65535/5012345678_abcdef0123_b.jpg",
    "https://upload.wikimedia.org/wikipedia/commons/thumb/a/ab/Foo_bar.jpg/220px-Foo_bar.jpg",
    "http://img.example.com/i/3.png",
    "https://img.example.com/i/4.png",
    "https://img.example.com/i/5.png",
]
CATALOG = pd.DataFrame({
    "image_id": ["id-flickr", "id-wm", "id-3", "id-4", "id-none", "id-bad"],
    "provider": ["flickr", "wikimedia", "x", "x", "x", "x"],
    "url": ["https://farm66.staticflickr.com/65535/5012345678_abcdef0123.jpg",
            "https://upload.wikimedia.org/wikipedia/commons/a/ab/Foo bar.jpg",
            "https://img.example.com/i/3.png", "https://img.example.com/full/4.png",
            "https://nowhere.org/x.jpg", "javascript:alert(1)"],
    "thumbnail": [None, None, None, "https://img.example.com/i/4.png", None, "http://[bad"],
    "foreign_landing_url": ["www.flickr.com/photos/someone/5012345678/", None, None,
                            "https://img.example.com/page/4", None, "::::"],
})


@pytest.mark.parametrize("a,b", [
    ("https://farm1.staticflickr.com/2/1418878_1e92283336_m.jpg", "https://live.staticflickr.com/2/1418878_1e92283336_z.jpg"),
    ("https://c1.staticflickr.com/1/2/1418878_1e92283336.jpg", "http://farm3.static.flickr.com/2/1418878_1e92283336_b.jpg"),
    ("https://upload.wikimedia.org/wikipedia/commons/thumb/a/ab/Foo_bar.jpg/640px-Foo_bar.jpg",
     "https://upload.wikimedia.org/wikipedia/commons/a/ab/Foo_bar.jpg"),
    ("http://img.example.com/x.jpg", "https://IMG.example.com:443/x.jpg#f"),
])
def test_variants_share_a_key(a, b):
    assert L.image_key(a) == L.image_key(b) is not None


def test_distinct_images_do_not_share_a_key():
    assert L.image_key("https://live.staticflickr.com/2/1_aa_b.jpg") != L.image_key("https://live.staticflickr.com/2/2_aa_b.jpg")
    assert L.image_key("https://upload.wikimedia.org/wikipedia/en/a/ab/Foo.jpg") != \
        L.image_key("https://upload.wikimedia.org/wikipedia/commons/a/ab/Foo.jpg")
    assert L.image_key("javascript:x") is None and L.image_key(None) is None


@pytest.fixture(scope="module")
def demo_warc(tmp_path_factory):
    landing = ["https://www.flickr.com/photos/someone/5012345678", None, None, "https://img.example.com/page/4", None]
    return write_demo_warc(tmp_path_factory.mktemp("warc") / "demo.warc.gz", demo_pages(IMAGES, landing))


def test_picashow_by_hand(demo_warc):
    edges, _, _ = extract_file(str(demo_warc))
    pages, res = pages_frame(edges)
    feats = L.link_features_frame(CATALOG, edges, pages).set_index("image_id")
    assert list(feats.reset_index().columns) == list(L.LINKS_META.columns)
    assert np.isfinite(feats.select_dtypes("number").to_numpy(float)).all()
    assert ((feats.link_authority >= 0) & (feats.link_authority < 1)).all()
    # independent PicASHOW: sum over pages embedding the flickr image of PR(page) / distinct images on page
    pr = dict(zip(pages.url, pages.pagerank))
    img = edges[edges.kind == "image"].assign(key=lambda d: d.dst_url.map(L.image_key))
    per_page = img.groupby("src_url").key.nunique()
    fk = L.image_key(IMAGES[0])
    emb = img[img.key == fk].src_url.unique()
    expected = sum(pr.get(p, 0.15 / len(pages)) / per_page[p] for p in emb)
    assert feats.loc["id-flickr", "picashow"] == pytest.approx(expected, rel=1e-12)
    assert feats.loc["id-flickr", "link_pages"] == len(emb) >= 5
    assert feats.loc["id-flickr", "landing_crawled"] and feats.loc["id-4", "landing_crawled"]
    assert feats.loc["id-4", "link_pages"] >= 1  # matched through its thumbnail URL
    assert not feats.loc["id-none", "has_link_evidence"] and feats.loc["id-none", "link_authority"] == 0
    assert not feats.loc["id-bad", "has_link_evidence"]
    order = feats.loc[["id-flickr", "id-wm", "id-3"], "link_authority"].to_numpy()
    assert (np.diff(order) < 0).all()  # images embedded on more / better pages rank higher


@pytest.mark.slow
def test_graph_and_link_stages_on_cluster(dask_client, demo_warc, tmp_path):
    from imagerank.io import write_frame
    from pipelines.graph import run_graph, run_link_features

    excerpt = shared_fixture("warc/cc_main_2020_34_excerpt.warc.gz")
    clipped = shared_fixture("warc/clipped.warc.gz")
    w = tmp_path / "w"
    write_frame(CATALOG, w / "catalog")
    counts = run_graph(dask_client, w, [str(demo_warc), str(excerpt), str(clipped), str(tmp_path / "missing.warc")])
    assert counts["pages"] == 16 + 1 + len(demo_pages(IMAGES, [None] * 5)) + 2
    assert counts["rejected_records_by_reason"] == {"file_open_error": 1}
    assert counts["page_pagerank_converged"] and counts["host_pagerank_converged"]
    pages = pd.read_parquet(w / "graph" / "pages")
    hosts = pd.read_parquet(w / "graph" / "hosts")
    edges = pd.read_parquet(w / "graph" / "edges")
    assert pages.url.is_unique and sorted(pages.node_id) == list(range(len(pages)))
    assert pages.pagerank.sum() == pytest.approx(1.0, abs=1e-9)
    assert hosts.pagerank.sum() == pytest.approx(1.0, abs=1e-9) and hosts.host.is_unique
    # the distributed page graph equals the in-process one
    local, _ = pages_frame(edges)
    merged = pages.merge(local, on="url", suffixes=("", "_local"))
    assert len(merged) == len(pages) == len(local)
    assert np.abs(merged.pagerank - merged.pagerank_local).sum() < 1e-9
    assert (merged.in_links == merged.in_links_local).all()
    out = run_link_features(dask_client, w)
    feats = pd.read_parquet(w / "features" / "links")
    assert len(feats) == len(CATALOG) and feats.image_id.is_unique and out["link_feature_rows"] == len(CATALOG)
    ref = L.link_features_frame(CATALOG, edges, pages)
    got = feats.set_index("image_id").loc[ref.image_id].reset_index()
    pd.testing.assert_frame_equal(got, ref, check_dtype=False, rtol=1e-9)


@pytest.mark.slow
def test_extraction_reuses_crawl_files_it_already_parsed(dask_client, demo_warc, tmp_path):
    from pipelines.graph import run_extract

    excerpt = str(shared_fixture("warc/cc_main_2020_34_excerpt.warc.gz"))
    missing = str(tmp_path / "missing.warc")
    w = tmp_path / "w"

    def outputs():
        frames = {name: pd.read_parquet(w / "graph" / name) for name in ("edges", "rejects", "extract_counts")}
        return {name: f.sort_values(list(f.columns), ignore_index=True) for name, f in frames.items()}

    first = run_extract(dask_client, w, [str(demo_warc), missing])
    assert first["crawl_files_reused"] == 0
    second = run_extract(dask_client, w, [str(demo_warc), excerpt, missing])
    assert second["crawl_files_reused"] == 1  # the demo crawl; the unreadable file is always tried again
    assert second["rejected_records_by_reason"] == {"file_open_error": 1}
    incremental = outputs()
    full = run_extract(dask_client, w, [str(demo_warc), excerpt, missing], reuse=False)
    assert full["crawl_files_reused"] == 0 and full["edges_link"] == second["edges_link"]
    for name, frame in outputs().items():
        pd.testing.assert_frame_equal(incremental[name], frame)
