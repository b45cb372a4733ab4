"""--linkgraph: the real cccatalog CC-MAIN-2018-22 extraction and generic edge lists -> W/graph/domains/."""

from __future__ import annotations

import gzip
import json

import networkx as nx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imagerank.graph import linkgraph as LG
from imagerank.testing import shared_fixture
from pipelines.graph import run_linkgraph

LINKGRAPH = "linkgraph/cccatalog-cc-main-2018-22"
DOMAIN_RANKS = "ranks/cc-main-2026-apr-may-jun-domain-ranks-top1000.txt.gz"
HOST_RANKS = "ranks/cc-main-2026-apr-may-jun-host-ranks-top1000.txt.gz"


def _domains(workdir) -> pd.DataFrame:
    return pd.read_parquet(workdir / "graph" / "domains").set_index("domain")


def _reference_graph(root) -> nx.DiGraph:
    """The same domain graph built the plain way, in pandas on one machine, without the project's pipeline:
    every page once, its link targets as registered domains, self-links dropped, one edge per domain pair."""
    frame = pd.concat([pd.read_parquet(p, columns=["provider_domain", "content_path", "content_query_string",
                                                   "html_metadata"]) for p in sorted(root.glob("*.parquet"))])
    frame = frame.drop_duplicates(["provider_domain", "content_path", "content_query_string"])
    graph = nx.DiGraph()
    for host, meta in zip(frame["provider_domain"], frame["html_metadata"]):
        src = LG.name_to_domain(host)
        graph.add_node(src)
        for target in json.loads(meta).get("Links", {}):
            dst = LG.name_to_domain(target)
            if dst is None:
                continue
            graph.add_node(dst)
            if dst != src:
                graph.add_edge(src, dst)
    return graph


@pytest.mark.slow
def test_cccatalog_extraction_builds_the_domain_graph(tmp_path, dask_client):
    root = shared_fixture(LINKGRAPH)
    ranks = [str(shared_fixture(DOMAIN_RANKS)), str(shared_fixture(HOST_RANKS))]
    summary = run_linkgraph(dask_client, tmp_path, [str(root)], ranks_files=ranks, tol=1e-12)

    # every input row is in the graph or the rejects; pages counted once (license rows and re-captures merged)
    assert summary["input_rows"] == 127_607 == sum(pq.ParquetFile(p).metadata.num_rows for p in root.glob("*.parquet"))
    assert summary["rejected_rows"] == 0 and summary["accepted_rows"] == 127_607
    assert summary["pages"] == 66_064
    assert summary["read_tasks"] == 10  # one task per row group
    # measured on this fixture (README: ~5.6k source domains, ~133k targets, hosts folded into registered domains)
    assert summary["source_domains"] == MEASURED["source_domains"]
    assert summary["domains"] == MEASURED["domains"]
    assert summary["domain_edges"] == MEASURED["domain_edges"]
    assert summary["skipped_links_by_reason"] == MEASURED["skipped_links_by_reason"]
    assert summary["pagerank_converged"] and summary["harmonic_exact"]

    domains = _domains(tmp_path)
    assert list(pd.read_parquet(tmp_path / "graph" / "domains").columns[:4]) == [
        "domain", "pagerank", "harmonic_centrality", "in_domains"]
    assert len(domains) == summary["domains"] and domains.index.is_unique
    assert domains["pagerank"].sum() == pytest.approx(1.0, abs=1e-9)
    # registered domains, never hosts: www.flickr.com and flickr.com are one node
    assert "flickr.com" in domains.index and "www.flickr.com" not in domains.index
    top = domains.sort_values("pagerank", ascending=False).index[:20]
    assert {"wikipedia.org", "flickr.com", "creativecommons.org"} <= set(top)

    # the same graph built plainly with networkx gives the same PageRank, in-domains and out-degrees
    reference = _reference_graph(root)
    assert reference.number_of_nodes() == summary["domains"]
    assert reference.number_of_edges() == summary["domain_edges"]
    expected = nx.pagerank(reference, alpha=0.85, tol=1e-12, max_iter=500)
    ours = domains["pagerank"]
    assert sum(abs(ours[d] - v) for d, v in expected.items()) < 1e-6
    in_deg = dict(reference.in_degree())
    assert all(domains.at[d, "in_domains"] == in_deg[d] for d in ("flickr.com", "wikipedia.org", "pixabay.com"))

    # agreement with Common Crawl's ranks, recorded in the stage result (the run manifest)
    agreement = summary["ranks_agreement"]["domain"]
    assert agreement["shared_domains"] == MEASURED["shared_domains"]
    assert -1 <= agreement["spearman_pagerank"] <= 1 and -1 <= agreement["spearman_harmonic"] <= 1
    assert agreement["spearman_pagerank"] > 0.55  # measured 0.592 (unweighted; 0.554 with link-count weights)
    saved = json.loads((tmp_path / "graph" / "domains_summary.json").read_text())
    assert saved["ranks_agreement"]["domain"] == agreement


#: Figures measured on the real fixture (tests assert them so a change in graph building shows up).
MEASURED = {
    "source_domains": 3_562,  # registered domains of the 5,631 page hosts (blogspot.com etc. fold many hosts)
    "domains": 82_951,  # the ~133k target hosts fold into ~80k registered domains
    "domain_edges": 137_414,  # distinct cross-domain pairs (~320k host pairs in the README)
    "skipped_links_by_reason": {LG.R_TARGET: 2_568},  # link keys that are no host ("", "localhost", ...)
    "shared_domains": 740,  # of the 1,000 top domains in the Common Crawl ranks fixture
}


def test_harmonic_centrality_equals_networkx_on_a_small_graph():
    rng = np.random.default_rng(3)
    n = 60
    src = rng.integers(0, 20, 150)  # only 20 nodes have out-links, as in the crawl extraction
    dst = rng.integers(0, n, 150)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    a = LG.adjacency(src, dst, n)
    sources, scale, exact = LG.harmonic_plan(np.bincount(src, minlength=n), max_exact_sources=100, samples=5)
    assert exact and scale == 1.0 and set(sources) == set(np.unique(src))
    ours = LG.harmonic_block(a, sources[:7]) + LG.harmonic_block(a, sources[7:])
    graph = nx.DiGraph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from(zip(src.tolist(), dst.tolist()))
    expected = nx.harmonic_centrality(graph)
    assert np.allclose(ours, [expected[i] for i in range(n)])
    sampled, scale, exact = LG.harmonic_plan(np.bincount(src, minlength=n), max_exact_sources=10, samples=10)
    assert not exact and len(sampled) == 10 and scale == pytest.approx(len(sources) / 10)


def _edge_list_inputs(tmp_path):
    header = tmp_path / "with_header.csv"
    header.write_text("source,target,count\n"
                      "www.flickr.com,en.wikipedia.org,3\n"
                      "https://blog.example.org/post/1,commons.wikimedia.org,2\n"
                      "example.org,www.example.org,5\n"  # self-link: same registered domain
                      "example.org,,1\n"  # no target
                      "example.org,wikipedia.org,-2\n"  # not a count
                      "flickr.com,wikipedia.org,\n")  # count optional: 1
    bare = tmp_path / "bare.csv.gz"
    with gzip.open(bare, "wt") as handle:
        handle.write("wikimedia.org,flickr.com\nnot a host,flickr.com\nstaticflickr.com,flickr.com\n")
    table = pa.table({"source": ["wikipedia.org", "wikipedia.org", "pixabay.com"],
                      "target": ["flickr.com", "WIKIMEDIA.ORG.", "flickr.com"], "count": [4, 1, 7]})
    parquet = tmp_path / "edges.parquet"
    pq.write_table(table, parquet, row_group_size=2)
    return [str(header), str(bare), str(parquet)]


@pytest.mark.slow
def test_edge_lists_in_csv_and_parquet(tmp_path, dask_client):
    files = _edge_list_inputs(tmp_path)
    work = tmp_path / "w"
    summary = run_linkgraph(dask_client, work, files, weighting="links")
    assert summary["edge_list_files"] == 3 and summary["read_tasks"] == 1 + 1 + 2  # two Parquet row groups
    assert summary["input_rows"] == 12 and summary["accepted_rows"] == 9 and summary["rejected_rows"] == 3
    assert summary["rejected_rows_by_reason"] == {LG.R_TARGET: 1, LG.R_COUNT: 1, LG.R_SOURCE: 1}
    assert summary["self_link_rows_dropped"] == 1
    rejects = pd.read_parquet(work / "graph" / "linkgraph_rejects")
    assert sorted(rejects["raw"]) == ["example.org,,1", "example.org,wikipedia.org,-2", "not a host,flickr.com"]
    assert set(rejects["level"]) == {"row"}

    domains = _domains(work)
    assert set(domains.index) == {"flickr.com", "wikipedia.org", "example.org", "wikimedia.org",
                                  "staticflickr.com", "pixabay.com"}
    assert domains.at["flickr.com", "in_domains"] == 4  # wikimedia, staticflickr, wikipedia, pixabay
    assert domains.at["flickr.com", "in_links"] == 1 + 1 + 4 + 7
    assert domains.at["wikipedia.org", "in_links"] == 3 + 1
    assert domains.at["wikimedia.org", "in_domains"] == 2 and domains.at["example.org", "in_domains"] == 0

    graph = nx.DiGraph()
    graph.add_nodes_from(domains.index)
    for s, t, w in [("flickr.com", "wikipedia.org", 4), ("example.org", "wikimedia.org", 2),
                    ("wikimedia.org", "flickr.com", 1), ("staticflickr.com", "flickr.com", 1),
                    ("wikipedia.org", "flickr.com", 4), ("wikipedia.org", "wikimedia.org", 1),
                    ("pixabay.com", "flickr.com", 7)]:
        graph.add_edge(s, t, weight=w)
    expected = nx.pagerank(graph, alpha=0.85, tol=1e-13, weight="weight")
    assert sum(abs(domains.at[d, "pagerank"] - v) for d, v in expected.items()) < 1e-8
    unweighted = run_linkgraph(dask_client, tmp_path / "u", files)  # the default: one vote per linking domain
    expected = nx.pagerank(graph, alpha=0.85, tol=1e-13, weight=None)
    got = _domains(tmp_path / "u")["pagerank"]
    assert unweighted["weighting"] == "unweighted"
    assert sum(abs(got[d] - v) for d, v in expected.items()) < 1e-8
    expected_hc = nx.harmonic_centrality(graph)
    assert np.allclose([domains.at[d, "harmonic_centrality"] for d in expected_hc], list(expected_hc.values()))


def test_cccatalog_rows_reject_bad_pages_and_count_bad_links():
    part = pd.DataFrame({
        "provider_domain": ["a.example.com", "a.example.com", "b.org", "c.net", "not a host", "d.org"],
        "content_path": ["/p", "/p", "/", "/x", "/", "/"],
        "content_query_string": ["", "", "", "q=1", "", ""],
        "html_metadata": [json.dumps({"Images": 1, "Links": {"www.flickr.com": 2, "flickr.com": 1, "a.example.com": 4}}),
                          json.dumps({"Images": 1, "Links": {"www.flickr.com": 2, "flickr.com": 1, "a.example.com": 4}}),
                          "{not json", json.dumps({"Links": {"b.org": "x", "": 1, "c.net": 2}}),
                          json.dumps({"Links": {}}), json.dumps([1, 2])],
    })
    rows = LG.cccatalog_rows(part, "f.parquet")
    assert rows["input_rows"].sum() == len(part)  # every input row accounted for
    good = rows[rows["reason"].isna()]
    page_a = good[good["page_id"] == LG.page_id("a.example.com/p")]
    assert page_a["input_rows"].sum() == 2  # the second license row of the same page merged
    links = page_a.dropna(subset=["dst_domain"]).set_index("dst_domain")["links"]
    assert links.to_dict() == {"flickr.com": 3, "example.com": 4}  # hosts of one domain merged; self-link kept
    reasons = rows.dropna(subset=["reason"]).groupby("reason")["input_rows"].agg(["sum", "count"])
    assert reasons.loc[LG.R_JSON, "sum"] == 1 and reasons.loc[LG.R_SOURCE, "sum"] == 1
    assert reasons.loc[LG.R_METADATA, "sum"] == 1
    assert reasons.loc[LG.R_COUNT, "count"] == 1 and reasons.loc[LG.R_TARGET, "count"] == 1
    assert reasons.loc[[LG.R_COUNT, LG.R_TARGET], "sum"].sum() == 0  # a bad link does not reject its page
    c_net = good[good["src_domain"] == "c.net"]
    assert c_net["dst_domain"].isna().sum() == 1 and c_net["dst_domain"].dropna().tolist() == ["c.net"]


def test_spearman_agreement_over_shared_domains():
    from imagerank.features.domains import RanksFile

    ours = pd.DataFrame({"domain": ["a.com", "b.com", "c.com", "d.com", "e.com"],
                         "pagerank": [0.5, 0.2, 0.1, 0.05, 0.01], "harmonic_centrality": [5.0, 1.0, 2.0, 3.0, 4.0],
                         "in_domains": [9, 5, 3, 1, 0]})
    theirs = pd.DataFrame({"name": ["a.com", "b.com", "c.com", "d.com", "zzz.com"], "hc_pos": [1.0, 2, 3, 4, 5],
                           "hc_val": [4.0, 3, 2, 1, 0.5], "pr_pos": [1.0, 2, 3, 4, 5],
                           "pr_val": [0.4, 0.3, 0.2, 0.1, 0.05], "n_hosts": [1.0] * 5})
    result = LG.ranks_agreement(ours, [RanksFile("domain", theirs, 5)])["domain"]
    assert result["shared_domains"] == 4 and result["ranked_names"] == 5
    assert result["spearman_pagerank"] == pytest.approx(1.0)
    assert result["spearman_harmonic"] == pytest.approx(0.2)
    assert result["spearman_in_domains_vs_harmonic"] == pytest.approx(1.0)


def test_unknown_weighting_and_missing_path_fail_clearly(tmp_path, dask_client):
    with pytest.raises(ValueError, match="edge weighting must be one of"):
        run_linkgraph(dask_client, tmp_path, [str(tmp_path)], weighting="pages")
    with pytest.raises(FileNotFoundError, match="no such file"):
        run_linkgraph(dask_client, tmp_path, [str(tmp_path / "absent")])


@pytest.mark.slow
def test_graph_build_command_with_linkgraph_only(tmp_path, dask_client, capsys):
    from imagerank.cli import main

    files = _edge_list_inputs(tmp_path)
    work = tmp_path / "w"
    code = main(["graph", "build", "--linkgraph", *files, "--workdir", str(work),
                 "--scheduler", dask_client.scheduler.address])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["linkgraph"]["domains"] == 6 and printed["linkgraph"]["rejected_rows"] == 3
    assert not (work / "graph" / "pages").exists()  # no crawl edges: only the domain graph is built
    assert len(pd.read_parquet(work / "graph" / "domains")) == 6
