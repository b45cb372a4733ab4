"""Fuzzing URLs, HTML, WAT JSON and WARC files: nothing raises, every record is counted, URLs come out normal."""

from __future__ import annotations

import gzip
import json
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from fuzzkit import examples, tried
from imagerank import urls as U
from imagerank.graph import warc as W

REASONS = {U.R_EMPTY, U.R_TOO_LONG, U.R_SCHEME, U.R_PARSE, U.R_NO_HOST, U.R_BAD_HOST, U.R_IDNA, U.R_PORT}
URL_PARTS = st.sampled_from([
    "http://", "https://", "HTTP://", "//", "javascript:", "data:", "mailto:", "ftp://", "file:///", "", "h.org", "a.b.c",
    "[::1]", "[fe80::1%25eth0]", "127.0.0.1", "0x7f.1", "xn--", "xn--zz", "münchen.de", "ДОМЕН.РФ", ":", ":80", ":443",
    ":0", ":99999", ":-1", "@", "user:pw@", "/", "/../..", "/./", "?", "#", "%", "%zz", "%2e%2e", " ", "\t", "\n",
    "\x00", "\u00a0", "\ufeff", "\\", "..", ".", "a" * 70, "a" * 300, "é", "\U0001f600", "&amp;", "<", ">", "\"", "'",
    "[", "]", "::", "www.", ".com", "co.uk", "s3.amazonaws.com", "\u200b", "\u3002", "ß", "İ", "ﬀ"])
URLS = st.one_of(st.lists(URL_PARTS, max_size=8).map("".join), st.text(max_size=60))


@settings(max_examples=examples(8))
@given(URLS, st.one_of(st.none(), URLS))
def test_normalize_url_never_raises_and_is_idempotent(url, base):
    tried("urls", (url, base))
    result, reason = U.normalize_url(url, base)
    if result is None:
        assert reason in REASONS
        return
    assert reason is None
    assert result.startswith(("http://", "https://")) and len(result) <= U.MAX_URL_LENGTH
    assert not any(ch.isspace() for ch in result) and result.isascii()
    again, why = U.normalize_url(result)
    assert again == result, (result, again, why)
    host = U.host_of(result)
    assert host is not None and U.normalize_host(host) == host
    domain = U.registered_domain(host)
    assert domain is None or host == domain or host.endswith("." + domain)


@settings(max_examples=examples(4))
@given(st.one_of(URLS, st.none(), st.integers(), st.binary(max_size=10)))
def test_hosts_and_domains_never_raise(value):
    tried("urls", value)
    host = U.host_of(value)
    if host is not None:
        assert host == host.lower() and host.isascii() and len(host) <= U.MAX_HOST_LENGTH
        domain = U.registered_domain(host)
        assert domain is None or host == domain or host.endswith("." + domain)
    normal = U.normalize_host(value if isinstance(value, str) else None)
    if normal is not None:
        assert normal.isascii() and normal == normal.lower() and len(normal) <= U.MAX_HOST_LENGTH
        assert U.normalize_host(normal) == normal
    if isinstance(value, str):
        absolute = U.with_scheme(value)
        assert "://" in absolute[:12] and U.with_scheme(absolute) == absolute
        assert U.reverse_host(U.reverse_host(value)) == value


# --------------------------------------------------------------------------------------------- HTML / WAT

TAGS = st.sampled_from(["a", "img", "area", "base", "meta", "link", "picture", "source", "video", "script", "div",
                        "svg", "iframe", "template", "noscript", "table", "!--", "![CDATA["])
ATTRS = st.sampled_from(["href", "src", "srcset", "data-src", "data-srcset", "alt", "content", "property", "rel",
                         "poster", "type", "name", "data-original"])
VALUES = st.one_of(URLS, st.sampled_from(["og:image", "image_src", "image/png", "a.jpg 1x, b.jpg 2x", ",,,,", "(((",
                                          "a.jpg 100w (", "   ", "x" * 5000]))


@st.composite
def html_documents(draw):
    parts = []
    for _ in range(draw(st.integers(0, 25))):
        tag = draw(TAGS)
        attrs = " ".join(f'{draw(ATTRS)}="{draw(VALUES)}"' for _ in range(draw(st.integers(0, 3))))
        parts.append(f"<{tag} {attrs}>{draw(st.text(max_size=15))}" + (f"</{tag}>" if draw(st.booleans()) else ""))
    return "".join(parts) if draw(st.booleans()) else draw(st.text(max_size=200)) + "".join(parts)


@settings(max_examples=examples(2))
@given(html_documents())
def test_html_links_never_raise_and_respect_caps(html):
    tried("html", html)
    counts = Counter()
    _assert_distinct_normal_edges(W.html_links(html, "http://page.example.org/dir/p.html", counts))


def _assert_distinct_normal_edges(page: W.PageLinks) -> None:
    """Every edge of a page is a normalized URL, each (url, kind) once, within the per-page caps."""
    assert page.n_links <= W.MAX_LINKS_PER_PAGE and page.n_images <= W.MAX_IMAGES_PER_PAGE
    keys = set()
    for url, kind, via, text in page.edges:
        assert U.normalize_url(url)[0] == url and kind in ("link", "image") and len(text) <= W.MAX_TEXT
        assert (url, kind) not in keys
        keys.add((url, kind))
    assert sum(kind == "link" for _, kind in keys) == page.n_links
    assert sum(kind == "image" for _, kind in keys) == page.n_images


@settings(max_examples=examples(2))
@given(st.binary(max_size=300), st.one_of(st.none(), st.text(max_size=40),
                                          st.sampled_from(["text/html; charset=utf-16", "text/html; charset=",
                                                           "text/html; charset=x-unknown", "text/html;charset=\"gb2312\""])))
def test_decode_html_never_raises(body, content_type):
    tried("html_bytes", (body, content_type))
    text, codec = W.decode_html(body, content_type)
    assert isinstance(text, str) and codec
    for url in W.parse_srcset(text):  # candidate URLs: non-empty runs of the text, no spaces, no edge commas
        assert url and url in text and not any(ch.isspace() for ch in url)
        assert not url.startswith(",") and not url.endswith(",")


SRCSET_URLS = st.one_of(
    st.sampled_from(["a.jpg", "/img/x.png", "https://h.org/a,b.jpg", "x(1).jpg", "é.jpg", "data:image/png;base64,AA==",
                     "?w=2", "//cdn.example.org/p.webp"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Zs", "Zl", "Zp", "Cc")), min_size=1,
            max_size=12).filter(lambda u: not u.startswith(",") and not u.endswith(",")
                                and not any(ch.isspace() for ch in u)))


@settings(max_examples=examples(2))
@given(st.lists(st.tuples(SRCSET_URLS, st.sampled_from(["", " 1x", " 2x", " 100w", " 1.5x", "  640w  ", " f(1,2)"])),
                max_size=5))
def test_srcset_candidates_come_back_in_order(candidates):
    """``parse_srcset`` returns each candidate's URL, in order, whatever commas the URLs and descriptors hold."""
    tried("srcset", candidates)
    value = ", ".join(url + descriptor for url, descriptor in candidates)
    assert W.parse_srcset(value) == [url for url, _ in candidates], value


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10) | URLS,
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                           st.sampled_from(["Envelope", "Payload-Metadata", "HTTP-Response-Metadata", "HTML-Metadata",
                                            "Links", "Head", "Base", "Metas", "path", "url", "text", "alt",
                                            "property", "content", "WARC-Header-Metadata", "WARC-Type"]),
                           inner, max_size=5), max_leaves=25)


@settings(max_examples=examples(2))
@given(JSONISH)
def test_wat_links_never_raise(envelope):
    tried("wat", envelope)
    if isinstance(envelope, dict):
        _assert_distinct_normal_edges(W.wat_links(envelope, "http://page.example.org/", Counter()))


# --------------------------------------------------------------------------------------------- WARC files

def warc_record(uri: str, payload: bytes, http_head: str, *, kind: str = "response", lie: int = 0,
                content_type: str = "application/http; msgtype=response") -> bytes:
    block = http_head.encode("utf-8", "replace") + b"\r\n" + payload if http_head is not None else payload
    head = (f"WARC/1.0\r\nWARC-Type: {kind}\r\nWARC-Target-URI: {uri}\r\n"
            f"WARC-Record-ID: <urn:uuid:00000000-0000-0000-0000-000000000000>\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {max(0, len(block) + lie)}\r\n\r\n").encode("utf-8", "replace")
    return head + block + b"\r\n\r\n"


@st.composite
def warc_files(draw):
    records = []
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["response", "response", "metadata", "resource", "request", "warcinfo"]))
        status = draw(st.sampled_from(["200 OK", "301 Moved", "404 Not Found", "999 X", "abc", ""]))
        ctype = draw(st.sampled_from(["text/html", "text/html; charset=latin-1", "image/jpeg", "", "application/json"]))
        head = draw(st.one_of(st.just(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nLocation: {draw(URLS)}\r\n"),
                              st.text(max_size=30), st.none()))
        if kind == "metadata":
            payload = json.dumps(draw(JSONISH)).encode() if draw(st.booleans()) else draw(st.binary(max_size=50))
            records.append(warc_record(draw(URLS).replace("\r", "").replace("\n", ""), payload, None, kind=kind,
                                       content_type="application/json"))
            continue
        payload = draw(html_documents()).encode(draw(st.sampled_from(["utf-8", "utf-16", "latin-1"])), "replace")
        lie = draw(st.sampled_from([0, 0, 0, -7, 5, 10_000, -10_000]))
        uri = draw(st.one_of(st.just("http://page.example.org/p"), URLS)).replace("\r", "").replace("\n", "")
        records.append(warc_record(uri, payload, head, kind=kind, lie=lie))
    data = b"".join(records)
    cut = draw(st.sampled_from(["none", "none", "cut", "flip", "garbage"]))
    if cut == "cut" and data:
        data = data[: draw(st.integers(0, len(data)))]
    elif cut == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + bytes([data[i] ^ 0x55]) + data[i + 1:]
    elif cut == "garbage":
        data = draw(st.binary(max_size=200)) + data
    if draw(st.booleans()):
        data = gzip.compress(data)
        if draw(st.booleans()):
            data = data[: max(1, len(data) - draw(st.integers(1, 30)))]
    return data


@settings(max_examples=examples(2))
@given(warc_files())
def test_extract_file_never_raises_and_accounts_for_records(tmp_path_factory, data):
    tried("warc", data)
    path = tmp_path_factory.mktemp("warc") / "f.warc.gz"
    path.write_bytes(data)
    edges, rejects, counts = W.extract_file(str(path))
    assert list(edges.columns) == list(W.EDGES_META.columns)
    assert list(rejects.columns) == list(W.REJECTS_META.columns)
    c = dict(zip(counts["counter"], counts["count"]))
    # every record read ends as a page, a reject or a counted skip
    record_rejects = int((rejects["reason"] != W.R_READ_ERROR).sum())
    outcomes = (c.get("pages_html", 0) + c.get("pages_wat", 0) + c.get("pages_redirect", 0) + record_rejects
                + sum(v for k, v in c.items() if k.startswith("skipped_record:")))
    assert outcomes == c.get("records", 0), (c, rejects[["reason", "detail"]].to_dict("records"))
    for url in edges["dst_url"]:
        assert U.normalize_url(url)[0] == url


def test_a_hostile_wat_record_does_not_end_the_file(tmp_path):
    """A WAT envelope whose nested fields were not objects raised AttributeError; the record loop caught it as a
    file read error, so every later record of the file was silently dropped."""
    good = {"Envelope": {"WARC-Header-Metadata": {"WARC-Type": "response"},
                         "Payload-Metadata": {"HTTP-Response-Metadata": {"HTML-Metadata": {
                             "Links": [{"path": "A@/href", "url": "/next", "text": 5},
                                       {"path": "IMG@/src", "url": "/a.jpg", "alt": ["x"]}, "junk", 7],
                             "Head": {"Metas": [{"property": 3}, "x", {"name": "og:image", "content": "/og.jpg"}]}}}}}}
    hostile = [{"Envelope": {"Payload-Metadata": "text"}}, {"Envelope": {"WARC-Header-Metadata": "x"}},
               {"Envelope": {"Payload-Metadata": {"HTTP-Response-Metadata": {"HTML-Metadata": "x"}}}},
               {"Envelope": {"Payload-Metadata": {"HTTP-Response-Metadata": {"HTML-Metadata": {"Links": 5,
                                                                                              "Head": []}}}}},
               {"Envelope": {"WARC-Header-Metadata": {"WARC-Type": 7}}}]
    data = b"".join(warc_record("http://page.example.org/p", json.dumps(e).encode(), None, kind="metadata",
                                content_type="application/json") for e in [*hostile, good])
    path = tmp_path / "f.wat.gz"
    path.write_bytes(gzip.compress(data))
    edges, rejects, counts = W.extract_file(str(path))
    c = dict(zip(counts["counter"], counts["count"]))
    assert c["records"] == 6 and W.R_READ_ERROR not in set(rejects["reason"])
    assert {"http://page.example.org/next", "http://page.example.org/a.jpg",
            "http://page.example.org/og.jpg"} <= set(edges["dst_url"])


def test_null_values_from_string_columns_are_no_host():
    """host_of / normalize_host / registered_domain tested ``not value`` first: pd.NA (a null in a pandas
    string column, e.g. a catalog row without foreign_landing_url) raised TypeError and took the whole
    metadata-features partition down."""
    import math

    import pandas as pd

    for null in (pd.NA, None, math.nan, pd.NaT, 0, b"h.org"):
        assert U.host_of(null) is None
        assert U.normalize_host(null) is None
        assert U.registered_domain(null) is None
    catalog_column = pd.array(["https://www.flickr.com/p/1", None], dtype="string")
    assert [U.host_of(u) for u in catalog_column] == ["www.flickr.com", None]
