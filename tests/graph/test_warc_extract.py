"""Link extraction from real Common Crawl WARC records, checked against an independent stdlib HTML parse."""

from __future__ import annotations

import gzip
import io
import json
from html.parser import HTMLParser

import pytest
from fastwarc.warc import ArchiveIterator, WarcRecordType

from imagerank.testing import shared_fixture
from imagerank.graph import warc as W
from imagerank.urls import normalize_url


class _StdlibLinks(HTMLParser):
    """<a href>/<area href> and <img src> of a document, with <base href>, using only html.parser."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.base = None
        self.links: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "base" and self.base is None and a.get("href"):
            self.base = a["href"]
        elif tag in ("a", "area") and a.get("href") is not None:
            self.links.append(a["href"])
        elif tag == "img" and a.get("src"):
            self.images.append(a["src"])

    handle_startendtag = handle_starttag


def _stdlib_edges(path):
    links, images = set(), set()
    with open(path, "rb") as f:
        for rec in ArchiveIterator(f, record_types=WarcRecordType.response, parse_http=True):
            page, _ = normalize_url(rec.headers.get("WARC-Target-URI"))
            ctype = rec.http_headers.get("Content-Type") or ""
            html, _ = W.decode_html(rec.reader.read(), ctype)
            p = _StdlibLinks()
            p.feed(html)
            p.close()
            base = normalize_url(p.base, page)[0] if p.base else page
            for raw in p.links:
                url = normalize_url(raw, base or page)[0]
                if url:
                    links.add((page, url))
            for raw in p.images:
                url = normalize_url(raw, base or page)[0]
                if url:
                    images.add((page, url))
    return links, images


@pytest.fixture(scope="module")
def excerpt():
    path = shared_fixture("warc/cc_main_2020_34_excerpt.warc.gz")
    return path, W.extract_file(str(path))


def test_edges_match_independent_parse(excerpt):
    path, (edges, rejects, counts) = excerpt
    std_links, std_images = _stdlib_edges(path)
    assert len(std_links) > 1000 and len(std_images) > 100
    links = set(zip(edges.loc[edges.kind == "link", "src_url"], edges.loc[edges.kind == "link", "dst_url"]))
    imgs = edges[(edges.kind == "image") & (edges.via == "img")]
    assert links == std_links
    # every <img src> is an image edge (a few may be recorded via og:image first), and no <img src> is invented
    all_images = set(zip(edges.loc[edges.kind == "image", "src_url"], edges.loc[edges.kind == "image", "dst_url"]))
    assert std_images <= all_images
    assert set(zip(imgs.src_url, imgs.dst_url)) <= std_images
    assert edges.src_url.nunique() == 16
    assert rejects.empty


def test_edge_columns_and_accounting(excerpt):
    _, (edges, rejects, counts) = excerpt
    assert list(edges.columns) == list(W.EDGES_META.columns)
    assert edges.dtypes.to_dict() == W.EDGES_META.dtypes.to_dict()
    assert edges[["src_url", "src_host", "src_domain", "dst_url", "dst_host"]].notna().all().all()
    assert (edges.text.str.len() <= W.MAX_TEXT).all()
    assert not edges.duplicated(["src_url", "dst_url", "kind"]).any()
    c = dict(zip(counts.counter, counts["count"]))
    assert c["pages_html"] == 16
    assert c["edges_link"] + c["edges_image"] == len(edges)
    assert c.get("skipped_link:unsupported_scheme", 0) > 0  # javascript: links exist in these pages
    # anchor text survives the Windows-1251 page
    ru = edges[edges.src_url == "http://01spb.ru/company/"]
    assert ru.text.str.contains("Монтаж").any()


def test_clipped_warc_keeps_records_before_cut():
    path = shared_fixture("warc/clipped.warc.gz")
    edges, rejects, counts = W.extract_file(str(path))
    assert len(edges) > 50
    assert edges.src_url.unique().tolist() == [
        "http://www.houstonpress.com/music/a-humble-chance-the-rapper-leads-a-spiritual-awakening-at-revention-8866723"]


def _warc_record(uri: str, payload: bytes, http_headers: str, rtype: str = "response") -> bytes:
    block = http_headers.encode("latin-1") + b"\r\n" + payload
    head = (f"WARC/1.0\r\nWARC-Type: {rtype}\r\nWARC-Target-URI: {uri}\r\n"
            f"WARC-Record-ID: <urn:uuid:0000>\r\nContent-Type: application/http; msgtype=response\r\n"
            f"Content-Length: {len(block)}\r\n\r\n").encode()
    return gzip.compress(head + block + b"\r\n\r\n")


def _html_headers(ctype="text/html; charset=utf-8", status="200 OK"):
    return f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"


def test_hostile_records_are_counted_not_fatal(tmp_path):
    many = "".join(f'<a href="/p{i}">x</a>' for i in range(W.MAX_LINKS_PER_PAGE + 50))
    page = f"""<html><head><base href="http://base.example.org/dir/">
      <meta property="og:image" content="/og.jpg"></head><body>
      <a href="javascript:alert(1)">js</a><a href="data:text/html,hi">d</a>
      <a href="http://{'a' * 10000}.com/">long</a><a href="http://xn--zz-bad.com/">idna</a>
      <a href="http://10.0.0.1:8080/x">ip</a><a href="http://h.org:99999/">port</a>
      <img src="a.jpg" srcset="b.jpg 1x, c,d.jpg 2x" alt="  Alt   text ">
      <img data-src="lazy.jpg"><picture><source srcset="pic.webp"><img src="pic.jpg"></picture>
      {many}</body></html>""".encode()
    parts = [
        _warc_record("http://page.example.org/a", page, _html_headers()),
        _warc_record("http://page.example.org/img.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00", _html_headers("image/png")),
        _warc_record("http://page.example.org/bin", b"\x00\x01\x02<html>", _html_headers("text/html")),
        _warc_record("http://page.example.org/enc", "<a href='/é'>é</a>".encode("latin-1") + b"\xff\x81 \xc3",
                     _html_headers("text/html; charset=bogus-charset")),
        _warc_record("http://page.example.org/404", b"<a href='/x'>x</a>", _html_headers(status="404 Not Found")),
        _warc_record("http://page.example.org/r", b"", "HTTP/1.1 301 Moved\r\nLocation: /target\r\n"),
        _warc_record("javascript:bad", b"<a href='/x'>x</a>", _html_headers()),
    ]
    data = b"".join(parts)
    path = tmp_path / "hostile.warc.gz"
    clipped = _warc_record("http://page.example.org/clipped", page, _html_headers())
    path.write_bytes(data + clipped[: len(clipped) // 2])  # the file ends mid-record
    edges, rejects, counts = W.extract_file(str(path))
    c = dict(zip(counts.counter, counts["count"]))
    reasons = set(rejects.reason)
    assert {"not_html", "binary_payload", "http_status", "bad_page_url"} <= reasons
    a = edges[edges.src_url == "http://page.example.org/a"]
    assert (a.kind == "link").sum() == W.MAX_LINKS_PER_PAGE
    assert c["skipped_link:page_cap"] >= 50
    assert c["skipped_link:unsupported_scheme"] >= 2 and c["skipped_link:url_too_long"] >= 1
    assert c["skipped_link:invalid_idna"] >= 1 and c["skipped_link:invalid_port"] >= 1
    imgs = set(a.loc[a.kind == "image", "dst_url"])
    base = "http://base.example.org/dir/"
    assert {base + "a.jpg", base + "b.jpg", base + "c,d.jpg", base + "lazy.jpg", base + "pic.webp",
            base + "pic.jpg", "http://base.example.org/og.jpg"} <= imgs
    assert a.loc[a.dst_url == base + "a.jpg", "text"].item() == "Alt text"
    assert "http://10.0.0.1:8080/x" in set(a.dst_url)
    assert ("http://page.example.org/r", "http://page.example.org/target") in set(zip(edges.src_url, edges.dst_url))
    assert "http://page.example.org/enc" in set(edges.src_url)
    assert "http://page.example.org/clipped" in set(edges.src_url)  # partial payload before the cut


def test_wat_records(tmp_path):
    env = {"Envelope": {"WARC-Header-Metadata": {"WARC-Type": "response", "WARC-Target-URI": "http://w.org/p"},
                        "Payload-Metadata": {"HTTP-Response-Metadata": {"HTML-Metadata": {
                            "Head": {"Base": "http://w.org/base/"},
                            "Links": [{"path": "A@/href", "url": "q.html", "text": "Q"},
                                      {"path": "IMG@/src", "url": "i.jpg", "alt": "I"},
                                      {"path": "LINK@/href", "url": "s.css"},
                                      {"path": "A@/href", "url": "javascript:x()"}]}}}}}
    payload = json.dumps(env).encode()
    head = (f"WARC/1.0\r\nWARC-Type: metadata\r\nWARC-Target-URI: http://w.org/p\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n").encode()
    path = tmp_path / "x.wat.gz"
    path.write_bytes(gzip.compress(head + payload + b"\r\n\r\n") + gzip.compress(b"WARC/1.0\r\nbroken"))
    edges, rejects, counts = W.extract_file(str(path))
    got = set(zip(edges.dst_url, edges.kind, edges.text))
    assert got == {("http://w.org/base/q.html", "link", "Q"), ("http://w.org/base/i.jpg", "image", "I")}


def _wat_file(path, envelopes) -> str:
    members = []
    for env in envelopes:
        payload = json.dumps(env).encode()
        head = (f"WARC/1.0\r\nWARC-Type: metadata\r\nWARC-Target-URI: "
                f"{env['Envelope']['WARC-Header-Metadata']['WARC-Target-URI']}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n").encode()
        members.append(gzip.compress(head + payload + b"\r\n\r\n"))
    path.write_bytes(b"".join(members))
    return str(path)


def _wat_envelope(url: str, status: str, headers: dict, html: dict | None) -> dict:
    http = {"Response-Message": {"Status": status}, "Headers": headers}
    if html is not None:
        http["HTML-Metadata"] = html
    return {"Envelope": {"WARC-Header-Metadata": {"WARC-Type": "response", "WARC-Target-URI": url},
                         "Payload-Metadata": {"HTTP-Response-Metadata": http}}}


def test_wat_records_follow_the_warc_paths_rules(tmp_path):
    """As from the WARC's HTML: a 3xx is one redirect edge, another non-200 is a status reject, and a video
    poster and ``<link rel=image_src>`` are images."""
    links = {"Links": [{"path": "A@/href", "url": "/next", "text": "next"}]}
    path = _wat_file(tmp_path / "s.wat.gz", [
        _wat_envelope("http://w.org/gone", "404", {}, links),
        _wat_envelope("http://w.org/old", "301", {"Location": "http://w.org/new"}, None),
        _wat_envelope("http://w.org/nowhere", "302", {}, None),
        _wat_envelope("http://w.org/ok", "200", {}, {
            "Head": {"Link": [{"path": "LINK@/href", "url": "/card.jpg", "rel": "image_src"},
                              {"path": "LINK@/href", "url": "/s.css", "rel": "stylesheet"}]},
            "Links": [{"path": "VIDEO@/poster", "url": "/poster.jpg"}, {"path": "A@/href", "url": "/a"}]}),
    ])
    edges, rejects, counts = W.extract_file(path)
    got = set(zip(edges.src_url, edges.dst_url, edges.kind, edges.via))
    assert got == {("http://w.org/old", "http://w.org/new", "link", "redirect"),
                   ("http://w.org/ok", "http://w.org/card.jpg", "image", "link-rel"),
                   ("http://w.org/ok", "http://w.org/poster.jpg", "image", "poster"),
                   ("http://w.org/ok", "http://w.org/a", "link", "wat")}
    assert sorted(zip(rejects.reason, rejects.detail)) == [("http_status", "302"), ("http_status", "404")]


def test_srcset_parser():
    assert W.parse_srcset("a.jpg 1x, b.jpg 2x") == ["a.jpg", "b.jpg"]
    assert W.parse_srcset("x,y.jpg 100w,z.jpg") == ["x,y.jpg", "z.jpg"]
    assert W.parse_srcset("") == []


def test_missing_file_is_a_reject(tmp_path):
    edges, rejects, counts = W.extract_file(str(tmp_path / "nope.warc.gz"))
    assert edges.empty and rejects.reason.tolist() == ["file_open_error"]


def test_chunked_edges_equal_whole_file(excerpt):
    """Small chunks (column-wise buffers flushed often) concatenate to the same frame as one pass."""
    path, (edges, rejects, counts) = excerpt
    chunks = []
    rejects2, counts2 = W.extract_file_chunked(str(path), chunks.append, chunk_rows=100)
    assert len(chunks) > 3
    import pandas as pd
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), edges)
    pd.testing.assert_frame_equal(counts2, counts)
