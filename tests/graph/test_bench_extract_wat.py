"""benchmarks.bench_extract's WARC -> WAT converter writes the WAT Common Crawl would, and the links read from it
are the links read from the WARC's HTML.

On the real CC-MAIN-2020-34 excerpt the two edge sets are equal: its 16 pages have no ``srcset``, lazy-loading
attribute or ``<picture>``, which only the HTML path reads (the WAT lists none of them). The one ``<a href>`` the WAT
drops (never closed: Common Crawl's tokenizer lists an anchor at its ``</a>``) points to ``#``, the page itself,
which both paths keep anyway through other anchors. The synthetic page below has each of those HTML-only
references, so the known differences are asserted too.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections import Counter
from html.parser import HTMLParser

import pytest
from fastwarc.warc import ArchiveIterator, WarcRecordType

from benchmarks import bench_extract as B
from imagerank.graph import warc as W
from imagerank.testing import shared_fixture


class _TagCounts(HTMLParser):
    """<a href> start tags and <img src> of a document (an independent count, no CC rules)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.counts: Counter = Counter()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("href") is not None:
            self.counts["a_href"] += 1
        elif tag == "img" and a.get("src") is not None:
            self.counts["img_src"] += 1


def _wat_json(path):
    with open(path, "rb") as f:
        return [(rec.headers.get("WARC-Type"), dict(rec.headers.astuples()), rec.reader.read())
                for rec in ArchiveIterator(f, parse_http=False)]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    path = shared_fixture("warc/cc_main_2020_34_excerpt.warc.gz")
    data = path.read_bytes()
    wat, stats = B.warc_to_wat(data, path.name)
    out = tmp_path_factory.mktemp("wat") / "excerpt.wat.gz"
    out.write_bytes(wat)
    return path, data, out, wat, stats


def test_generated_wat_is_one_json_metadata_record_per_warc_record(converted):
    path, data, wat_path, wat, stats = converted
    with open(path, "rb") as f:
        source = [(rec.headers.get("WARC-Record-ID"), rec.record_type, dict(rec.headers.astuples()))
                  for rec in ArchiveIterator(f, parse_http=False)]
    records = _wat_json(wat_path)
    assert len(source) == stats["records"] == 50
    assert [t for t, _, _ in records] == ["warcinfo"] + ["metadata"] * len(source)
    # each record its own gzip member, as in CC's .wat.gz
    members, pos = 0, 0
    while pos < len(wat):
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        d.decompress(wat[pos:])
        assert d.eof
        pos = len(wat) - len(d.unused_data)
        members += 1
    assert members == len(records)

    html_pages = 0
    for (rid, rtype, src_headers), (_, headers, payload) in zip(source, records[1:]):
        assert headers["Content-Type"] == "application/json"
        assert headers["WARC-Refers-To"] == rid
        assert headers["WARC-Target-URI"] == src_headers.get("WARC-Target-URI", headers["WARC-Target-URI"])
        doc = json.loads(payload)
        env = doc["Envelope"]
        assert env["Format"] == "WARC"
        assert env["WARC-Header-Metadata"]["WARC-Record-ID"] == rid
        assert env["WARC-Header-Metadata"]["WARC-Type"] == src_headers["WARC-Type"]
        assert doc["Container"]["Filename"] == path.name
        meta = env["Payload-Metadata"]
        if rtype == WarcRecordType.response:
            # the digests the crawler wrote into the WARC are what the converter computes from its bytes
            assert env["Block-Digest"] == src_headers["WARC-Block-Digest"]
            http = meta["HTTP-Response-Metadata"]
            assert http["Entity-Digest"] == src_headers["WARC-Payload-Digest"]
            assert http["Response-Message"] == {"Status": "200", "Version": "HTTP/1.1", "Reason": "OK"}
            ctype = http["Headers"]["Content-Type"]  # a repeated header is a list, as in CC's WAT
            assert any(v.startswith("text/html") for v in (ctype if isinstance(ctype, list) else [ctype]))
            html = http["HTML-Metadata"]
            assert html["Head"]["Title"] and html["Links"]
            html_pages += 1
        elif rtype == WarcRecordType.request:
            assert meta["HTTP-Request-Metadata"]["Request-Message"]["Method"] == "GET"
        elif rtype == WarcRecordType.metadata:
            names = [r["Name"] for r in meta["WARC-Metadata-Metadata"]["Metadata-Records"]]
            assert "fetchTimeMs" in names
    assert html_pages == stats["html_pages"] == 16
    # the Container points at the real gzip member of the source record
    first_response = json.loads(records[3][2])["Container"]
    offset, length = int(first_response["Offset"]), int(first_response["Gzip-Metadata"]["Deflate-Length"]) + 18
    member = gzip.decompress(data[offset:offset + length])
    assert len(member) == int(first_response["Gzip-Metadata"]["Inflated-Length"])
    assert b"WARC-Type: response" in member[:40]


def test_links_listed_as_common_crawl_lists_them(converted):
    path, _, wat_path, _, _ = converted
    raw = Counter()
    with open(path, "rb") as f:
        for rec in ArchiveIterator(f, record_types=WarcRecordType.response, parse_http=True):
            html, _ = W.decode_html(rec.reader.read(), rec.http_headers.get("Content-Type"))
            p = _TagCounts()
            p.feed(html)
            p.close()
            raw += p.counts
    listed, head = Counter(), Counter()
    for rtype, _, payload in _wat_json(wat_path)[1:]:
        html = json.loads(payload)["Envelope"]["Payload-Metadata"].get("HTTP-Response-Metadata", {}).get(
            "HTML-Metadata")
        if html is not None:
            listed.update(link.get("path") for link in html.get("Links", []))
            head.update({k: len(v) if isinstance(v, list) else 1 for k, v in html.get("Head", {}).items()})
    assert listed["IMG@/src"] == raw["img_src"] > 100
    # every <a href> that is closed is listed: one on these pages never is (CC drops it the same way)
    assert raw["a_href"] - 1 == listed["A@/href"] > 1000
    assert listed["FORM@/action"] > 0 and listed["AREA@/href"] > 0 and listed["IFRAME@/src"] > 0
    assert head["Title"] == 16 and head["Scripts"] > 16 and head["Link"] > 16 and head["Metas"] > 16


def test_wat_edges_equal_the_warc_html_edges_on_the_real_excerpt(converted):
    path, _, wat_path, _, _ = converted
    edges, rejects, counts = W.extract_file(str(path))
    wat_edges, wat_rejects, wat_counts = W.extract_file(str(wat_path))
    c = dict(zip(wat_counts.counter, wat_counts["count"]))
    assert wat_rejects.empty
    assert c["pages_wat"] == 16
    assert c["skipped_record:wat_request"] == 17 and c["skipped_record:wat_metadata"] == 16
    assert (wat_edges.via == "wat").all()
    warc_set, wat_set = B.edge_sets(edges), B.edge_sets(wat_edges)
    assert len(wat_set) > 1100 and sum(k == "image" for *_, k in wat_set) > 100
    # the real relation on this excerpt: the same edges (no srcset / lazy / <picture> images here)
    assert wat_set == warc_set
    assert set(edges.via) <= {"a", "area", "img", "meta"}
    # anchor and alt text mostly agree (CC: text nodes only, 128 characters, no <img alt> fallback)
    both = edges.merge(wat_edges, on=["src_url", "dst_url", "kind"], suffixes=("_html", "_wat"))
    assert (both.text_html == both.text_wat).mean() > 0.8
    img = both[both.kind == "image"]
    assert (img.text_html == img.text_wat).all()  # alt text, same in both


def _response(uri: str, html: str) -> bytes:
    body = html.encode()
    block = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + body
    head = (f"WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: {uri}\r\nWARC-Record-ID: <urn:uuid:1>\r\n"
            f"Content-Type: application/http; msgtype=response\r\nContent-Length: {len(block)}\r\n\r\n").encode()
    return gzip.compress(head + block + b"\r\n\r\n")


def test_html_only_references_and_cc_quirks(tmp_path):
    page = """<html lang="de"><head><title>T &amp; t</title><base href="http://b.example.org/d/">
      <meta property="og:image" content="/og.jpg"><link rel="image_src" href="rel.jpg">
      <link rel="stylesheet" href="s.css"><script src="j.js"></script>
      <style>body { background: url('bg.png') }</style></head><body>
      <a href="one.html?a=1&amp;b=2" title="t1">One <b>bold</b></a>
      <a href="pic.html"><img src="in.jpg" alt="Inner alt"></a>
      <img src="a.jpg" srcset="s1.jpg 1x, s2.jpg 2x" alt="A">
      <img data-src="lazy.jpg"><picture><source srcset="p.webp"><img src="p.jpg"></picture>
      <video poster="poster.jpg" src="v.mp4"></video>
      <form action="/search" method="get"><input type="image" src="btn.png"></form>
      <iframe src="f.html"></iframe><map><area href="area.html" alt="Area"></map>
      <a href="long.html">""" + "x" * 300 + """</a>
      <a href="unclosed.html">never closed
    </body></html>"""
    warc = tmp_path / "p.warc.gz"
    warc.write_bytes(_response("http://p.example.org/", page))
    wat_bytes, stats = B.warc_to_wat(warc.read_bytes(), "p.warc.gz")
    wat = tmp_path / "p.wat.gz"
    wat.write_bytes(wat_bytes)

    doc = json.loads(_wat_json(wat)[1][2])
    html = doc["Envelope"]["Payload-Metadata"]["HTTP-Response-Metadata"]["HTML-Metadata"]
    headm = html["Head"]
    assert headm["Title"] == "T & t" and headm["Base"] == "http://b.example.org/d/"
    assert {"name": "HTML@/lang", "content": "de"} in headm["Metas"]
    assert {"property": "og:image", "content": "/og.jpg"} in headm["Metas"]
    assert {"path": "LINK@/href", "url": "s.css", "rel": "stylesheet"} in headm["Link"]
    assert headm["Scripts"] == [{"path": "SCRIPT@/src", "url": "j.js"}]
    links = html["Links"]
    assert {"path": "A@/href", "url": "one.html?a=1&b=2", "title": "t1", "text": "One bold"} in links
    assert {"path": "IMG@/src", "url": "in.jpg", "alt": "Inner alt"} in links
    assert {"path": "A@/href", "url": "pic.html"} in links  # no text: CC does not fall back to <img alt>
    assert {"path": "FORM@/action", "url": "/search", "method": "get"} in links
    assert {"path": "VIDEO@/poster", "url": "poster.jpg"} in links
    assert {"path": "STYLE/#text", "href": "bg.png"} in links
    for path in ("INPUT@/src", "IFRAME@/src", "AREA@/href", "VIDEO@/src"):
        assert path in {link["path"] for link in links}
    long_text = next(link["text"] for link in links if link.get("url") == "long.html")
    assert long_text == "x" * 128
    assert not any(link.get("url") == "unclosed.html" for link in links)

    html_edges, _, _ = W.extract_file(str(warc))
    wat_edges, _, _ = W.extract_file(str(wat))
    html_set, wat_set = B.edge_sets(html_edges), B.edge_sets(wat_edges)
    base, src = "http://b.example.org/d/", "http://p.example.org/"
    assert wat_set < html_set
    assert html_set - wat_set == {
        (src, base + u, "image") for u in ("s1.jpg", "s2.jpg", "lazy.jpg", "p.webp")
    } | {(src, base + "unclosed.html", "link")}
    assert {(src, "http://b.example.org/og.jpg", "image"), (src, base + "one.html?a=1&b=2", "link"),
            (src, base + "rel.jpg", "image"), (src, base + "poster.jpg", "image"),
            (src, base + "in.jpg", "image"), (src, base + "area.html", "link")} <= wat_set


def test_benchmark_reports_wat_figures(capsys):
    figures = B.main(["--quick", "--repeat", "1"])
    for key in ("records", "pages", "edges", "extract_s", "bare_fastwarc_s", "ratio_extract_to_bare",
                "extract_records_per_cpu_s"):
        assert key in figures  # the WARC keys are unchanged
    assert figures["wat_pages"] == figures["pages"] == 5 * 16
    assert figures["wat_edges"] == figures["edges"]
    assert figures["excerpt_edges_wat"] == figures["excerpt_edges_warc"] == figures["excerpt_edges_both"]
    assert figures["wat_records"] == 5 * 50
    assert figures["cc_wat_bytes_per_page"] == round(16.76 * 2**40 / 2.65e9)
    assert 1000 < figures["wat_bytes_per_page"] < 50_000
    assert figures["wat_core_hours_by_pages"] > 0 and figures["wat_core_hours_by_bytes"] > 0
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1]) == figures
    assert "core-hours" in out and "bytes per page" in out
