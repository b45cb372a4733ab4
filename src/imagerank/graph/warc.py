"""Link extraction from WARC (HTML responses) and WAT (link metadata) files: the crawl-record loop lives here.

``extract_file(path)`` reads one file (one Dask task per file) and returns three pandas frames:

- edges (``EDGES_META``): one row per distinct (page, target, kind) with the anchor / alt text;
- rejects (``REJECTS_META``): one row per skipped *record* (not HTML, bad status, unreadable payload,
  clipped file ...), with a reason;
- counts (``COUNTS_META``): per-file counters of records and of skipped *links* by reason (absurd URLs,
  per-page caps), so a file with millions of bad links does not produce millions of reject rows.

HTML is parsed with selectolax (lexbor). Besides ``<a href>`` / ``<area href>`` (kind ``link``) and
``<img src>`` (kind ``image``), it takes the image references the WAT link list misses: ``srcset``,
lazy-loading attributes (``data-src``, ``data-srcset``, ``data-original``, ``data-lazy-src``),
``<picture><source srcset>``, ``og:image`` / ``twitter:image`` and ``<link rel=image_src>``; 3xx responses
become a ``link`` edge to their ``Location``. URLs are resolved against ``<base href>`` (else the page URL)
and normalized by ``imagerank.urls.normalize_url``. Nothing here raises on bad data.
"""

from __future__ import annotations

import codecs
import json
import re
from collections import Counter
from functools import lru_cache
from typing import Iterable, Iterator

import pandas as pd

from imagerank.urls import normalize_url, registered_domain, host_of

MAX_LINKS_PER_PAGE = 5000
MAX_IMAGES_PER_PAGE = 2000
MAX_TEXT = 200
MAX_HTML_BYTES = 8 << 20  # Common Crawl truncates payloads at 1 MiB; anything far larger is not a page
EXTRACTOR_VERSION = "links/1"  # bump when extraction changes: every crawl file is parsed again (pipelines/graph.py)

EDGES_META = pd.DataFrame({
    "src_url": pd.Series(dtype="string"),
    "src_host": pd.Series(dtype="string"),
    "src_domain": pd.Series(dtype="string"),
    "dst_url": pd.Series(dtype="string"),
    "dst_host": pd.Series(dtype="string"),
    "dst_domain": pd.Series(dtype="string"),
    "kind": pd.Series(dtype="string"),   # 'link' | 'image'
    "via": pd.Series(dtype="string"),    # a, area, redirect, img, srcset, data-src, source, meta, link-rel, wat
    "text": pd.Series(dtype="string"),   # anchor text (links) or alt text (images), <= MAX_TEXT chars, '' if none
    "source_file": pd.Series(dtype="string"),
})
REJECTS_META = pd.DataFrame({
    "source_file": pd.Series(dtype="string"),
    "record_offset": pd.Series(dtype="int64"),
    "url": pd.Series(dtype="string"),
    "stage": pd.Series(dtype="string"),
    "reason": pd.Series(dtype="string"),
    "detail": pd.Series(dtype="string"),
})
COUNTS_META = pd.DataFrame({
    "source_file": pd.Series(dtype="string"),
    "counter": pd.Series(dtype="string"),
    "count": pd.Series(dtype="int64"),
})

# record-level reasons
R_NOT_HTML = "not_html"
R_STATUS = "http_status"
R_BINARY = "binary_payload"
R_TOO_BIG = "payload_too_big"
R_BAD_PAGE_URL = "bad_page_url"
R_PARSE_ERROR = "html_parse_error"
R_READ_ERROR = "file_read_error"
R_WAT_JSON = "wat_bad_json"
R_OPEN_ERROR = "file_open_error"
R_INTERNAL = "record_internal_error"  # an unexpected exception on one record (a bug): the file goes on

_HTML_TYPES = ("text/html", "application/xhtml+xml", "application/xhtml", "text/xhtml")
_CHARSET_RE = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.I)
_WS = re.compile(r"\s+")
_LAZY_SRC = ("data-src", "data-original", "data-lazy-src", "data-lazy", "data-url")
_LAZY_SRCSET = ("data-srcset", "data-lazy-srcset")
_META_IMAGE = {"og:image", "og:image:url", "og:image:secure_url", "twitter:image", "twitter:image:src"}


# --------------------------------------------------------------------------------------------- decoding

def _charset_from_content_type(content_type: str | None) -> str | None:
    if not content_type:
        return None
    for part in content_type.split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip("\"'") or None
    return None


def _lookup_codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        codec = codecs.lookup(name.strip().lower()).name
    except (LookupError, ValueError):
        return None
    # WHATWG: latin-1/ascii labels mean windows-1252; gb2312 means gbk (a superset)
    return {"latin-1": "cp1252", "iso8859-1": "cp1252", "ascii": "cp1252", "gb2312": "gbk"}.get(codec, codec)


def decode_html(body: bytes, content_type: str | None = None) -> tuple[str, str]:
    """Text of an HTML payload and the codec used: BOM, HTTP charset, <meta charset>, UTF-8, else cp1252.

    Undecodable bytes become U+FFFD; never raises.
    """
    if body.startswith(codecs.BOM_UTF8):
        return body[3:].decode("utf-8", "replace"), "utf-8"
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return body.decode("utf-16", "replace"), "utf-16"
    candidates = [_lookup_codec(_charset_from_content_type(content_type))]
    m = _CHARSET_RE.search(body[:4096])
    if m:
        candidates.append(_lookup_codec(m.group(1).decode("ascii", "ignore")))
    for codec in candidates:
        if codec and not codec.startswith("utf-16"):
            return body.decode(codec, "replace"), codec
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return body.decode("cp1252", "replace"), "cp1252"


def _looks_binary(body: bytes) -> bool:
    head = body[:1024]
    return b"\x00" in head and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))


def _dict(value) -> dict:
    """``value`` when it is a JSON object, else an empty one (WAT fields are untrusted JSON)."""
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _clean_text(text: str | None) -> str:
    if not text or not isinstance(text, str):
        return ""
    return _WS.sub(" ", text).strip()[:MAX_TEXT]


def parse_srcset(value: str | None) -> list[str]:
    """URLs of a ``srcset`` attribute (HTML spec candidate parsing: URLs may contain commas)."""
    urls: list[str] = []
    if not value:
        return urls
    i, n = 0, len(value)
    while i < n:
        while i < n and (value[i].isspace() or value[i] == ","):
            i += 1
        start = i
        while i < n and not value[i].isspace():
            i += 1
        url = value[start:i]
        trailing_commas = len(url) - len(url.rstrip(","))
        url = url.rstrip(",")
        if url:
            urls.append(url)
        if trailing_commas:
            continue
        # skip descriptors up to the next comma (outside parentheses)
        depth = 0
        while i < n:
            c = value[i]
            if c == "(":
                depth += 1
            elif c == ")":
                depth = max(0, depth - 1)
            elif c == "," and depth == 0:
                i += 1
                break
            i += 1
    return urls


# --------------------------------------------------------------------------------------------- pages

class PageLinks:
    """Collects the distinct normalized edges of one page, with caps and reason counters."""

    __slots__ = ("page_url", "base", "seen", "edges", "counts", "n_links", "n_images", "resolved")

    def __init__(self, page_url: str, base: str, counts: Counter):
        self.page_url = page_url
        self.base = base
        self.seen: dict[tuple[str, str], int] = {}
        self.edges: list[list] = []
        self.counts = counts
        self.n_links = 0
        self.n_images = 0
        self.resolved: dict[str, tuple[str | None, str | None]] = {}  # raw -> normalize_url(raw, base)

    def add(self, raw: str | None, kind: str, via: str, text: str = "") -> None:
        hit = self.resolved.get(raw) if isinstance(raw, str) else None  # a page repeats its links (nav, footer)
        if hit is None:
            hit = normalize_url(raw, self.base)
            if isinstance(raw, str):
                self.resolved[raw] = hit
        url, reason = hit
        if url is None:
            if reason != "empty_url" or raw:
                self.counts[f"skipped_{kind}:{reason}"] += 1
            return
        key = (url, kind)
        idx = self.seen.get(key)
        if idx is not None:
            if text and not self.edges[idx][3]:
                self.edges[idx][3] = text
            return
        if kind == "link":
            if self.n_links >= MAX_LINKS_PER_PAGE:
                self.counts["skipped_link:page_cap"] += 1
                return
            self.n_links += 1
        else:
            if self.n_images >= MAX_IMAGES_PER_PAGE:
                self.counts["skipped_image:page_cap"] += 1
                return
            self.n_images += 1
        self.seen[key] = len(self.edges)
        self.edges.append([url, kind, via, text])


def html_links(html: str, page_url: str, counts: Counter | None = None) -> PageLinks:
    """Distinct link and image edges of one HTML document (``page_url`` already normalized)."""
    from selectolax.lexbor import LexborHTMLParser

    counts = counts if counts is not None else Counter()
    tree = LexborHTMLParser(html)
    base = page_url
    for node in tree.css("base[href]"):
        resolved, _ = normalize_url(node.attributes.get("href"), page_url)
        if resolved:
            base = resolved
        break
    page = PageLinks(page_url, base, counts)
    # images in the head first so that og:image etc. are known, then body order
    for node in tree.css("meta"):
        attrs = node.attributes
        prop = (attrs.get("property") or attrs.get("name") or "").strip().lower()
        if prop in _META_IMAGE:
            page.add(attrs.get("content"), "image", "meta")
    for node in tree.css("link[rel]"):
        if "image_src" in (node.attributes.get("rel") or "").lower().split():
            page.add(node.attributes.get("href"), "image", "link-rel")
    for node in tree.css("a[href], area[href], img, picture source, video[poster]"):
        tag = node.tag
        attrs = node.attributes
        if tag == "a" or tag == "area":
            text = _clean_text(node.text(deep=True, separator=" ")) if tag == "a" else _clean_text(attrs.get("alt"))
            if not text and tag == "a":
                img = node.css_first("img[alt]")
                if img is not None:
                    text = _clean_text(img.attributes.get("alt"))
            page.add(attrs.get("href"), "link", tag, text)
        elif tag == "img":
            alt = _clean_text(attrs.get("alt"))
            if attrs.get("src"):
                page.add(attrs.get("src"), "image", "img", alt)
            for name in _LAZY_SRC:
                if attrs.get(name):
                    page.add(attrs.get(name), "image", "data-src", alt)
            for name in ("srcset", *_LAZY_SRCSET):
                for url in parse_srcset(attrs.get(name)):
                    page.add(url, "image", "srcset", alt)
        elif tag == "source":
            for name in ("srcset", "data-srcset"):
                for url in parse_srcset(attrs.get(name)):
                    page.add(url, "image", "source")
            if attrs.get("src") and (attrs.get("type") or "").startswith("image"):
                page.add(attrs.get("src"), "image", "source")
        elif tag == "video":
            page.add(attrs.get("poster"), "image", "poster")
    return page


def wat_links(envelope: dict, page_url: str, counts: Counter | None = None) -> PageLinks:
    """Edges of one WAT JSON record (``Envelope.Payload-Metadata.HTTP-Response-Metadata.HTML-Metadata``)."""
    counts = counts if counts is not None else Counter()
    meta = _dict(_dict(_dict(envelope.get("Envelope")).get("Payload-Metadata")).get("HTTP-Response-Metadata"))
    html_meta = _dict(meta.get("HTML-Metadata"))
    base = page_url
    head = _dict(html_meta.get("Head"))
    if head.get("Base"):
        resolved, _ = normalize_url(head.get("Base"), page_url)
        base = resolved or base
    page = PageLinks(page_url, base, counts)
    for link in _list(html_meta.get("Links")):
        if not isinstance(link, dict):
            counts["skipped_link:wat_bad_link"] += 1
            continue
        path = str(link.get("path") or "")
        url = link.get("url")
        if path.startswith("IMG@"):
            page.add(url, "image", "wat", _clean_text(link.get("alt") or link.get("title")))
        elif path == "VIDEO@/poster":
            page.add(url, "image", "poster")
        elif path.startswith(("A@", "AREA@")):
            page.add(url, "link", "wat", _clean_text(link.get("text") or link.get("title") or link.get("alt")))
        else:
            counts["skipped_link:wat_other_path"] += 1
    for link in _list(head.get("Metas")):
        name = link.get("property") or link.get("name") if isinstance(link, dict) else None
        if isinstance(name, str) and name.lower() in _META_IMAGE:
            page.add(link.get("content"), "image", "meta")
    for link in _list(head.get("Link")):
        if isinstance(link, dict) and "image_src" in str(link.get("rel") or "").lower().split():
            page.add(link.get("url"), "image", "link-rel")
    return page


# --------------------------------------------------------------------------------------------- records

def iter_records(stream) -> Iterator:
    """WARC records of a stream; a truncated / corrupt tail ends the iteration instead of raising."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    types = WarcRecordType.response | WarcRecordType.metadata | WarcRecordType.resource
    it = iter(ArchiveIterator(stream, record_types=types, parse_http=True))
    while True:
        try:
            record = next(it)
        except StopIteration:
            return
        yield record


def _open(path: str):
    """The raw (still compressed) bytes of a local file or URL: fastwarc detects and inflates gzip itself."""
    from imagerank import storage

    return storage.open_file(str(path))


def extract_file(path: str, source_name: str | None = None
                 ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Edges, record rejects and counters of one WARC / WAT file (gzip or plain, any fsspec path)."""
    chunks: list[pd.DataFrame] = []
    rejects, counts = extract_file_chunked(path, chunks.append, source_name=source_name)
    edges = pd.concat(chunks, ignore_index=True) if chunks else _edges_frame([])
    return edges, rejects, counts


def extract_file_chunked(path: str, sink, *, source_name: str | None = None, chunk_rows: int = 200_000
                         ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stream the edges of one file to ``sink(frame)`` in chunks of about ``chunk_rows`` rows (bounded memory).

    Returns the record rejects and the counters of the file.
    """
    source = source_name or str(path)
    rows = _EdgeColumns()
    rejects: list[list] = []
    counts: Counter = Counter()

    def flush() -> None:
        if rows:
            frame = _edges_frame(rows)
            for kind, n in frame["kind"].value_counts().items():
                counts[f"edges_{kind}"] += int(n)
            sink(frame)
            rows.clear()

    try:
        stream = _open(path)
    except Exception as exc:  # noqa: BLE001 - a missing or unreadable file is a reject, not a crash
        rejects.append([source, -1, None, "extract", R_OPEN_ERROR, f"{type(exc).__name__}: {exc}"[:500]])
        return _small_frames(rejects, counts, source)
    with stream:
        try:
            for record in iter_records(stream):
                try:
                    _extract_record(record, source, rows, rejects, counts)
                except Exception as exc:  # noqa: BLE001 - one hostile record must not end the file
                    counts[f"rejected_record:{R_INTERNAL}"] += 1
                    rejects.append([source, int(getattr(record, "stream_pos", -1) or -1), None, "extract",
                                    R_INTERNAL, f"{type(exc).__name__}: {exc}"[:500]])
                if len(rows) >= chunk_rows:
                    flush()
        except Exception as exc:  # noqa: BLE001 - corrupt gzip member / clipped file: keep what was read
            rejects.append([source, -1, None, "extract", R_READ_ERROR, f"{type(exc).__name__}: {exc}"[:500]])
            counts["file_read_error"] += 1
    flush()
    return _small_frames(rejects, counts, source)


def _extract_record(record, source: str, rows: _EdgeColumns, rejects: list, counts: Counter) -> None:
    from fastwarc.warc import WarcRecordType

    counts["records"] += 1
    offset = int(getattr(record, "stream_pos", -1) or -1)
    target = record.headers.get("WARC-Target-URI")
    rtype = record.record_type

    def reject(reason: str, detail: str = "") -> None:
        counts[f"rejected_record:{reason}"] += 1
        rejects.append([source, offset, (target or "")[:2048], "extract", reason, detail[:500]])

    content_type = (record.headers.get("Content-Type") or "").lower()
    if rtype == WarcRecordType.metadata:
        if "json" not in content_type:
            counts["skipped_record:warc_metadata"] += 1  # crawler metadata of a WARC, no links
            return
        _extract_wat(record, source, target, rows, counts, reject)
        return
    page_url, reason = normalize_url(target)
    if page_url is None:
        reject(R_BAD_PAGE_URL, reason or "")
        return
    http = record.http_headers
    if http is None:
        reject(R_NOT_HTML, "no HTTP headers")
        return
    status = int(http.status_code or 0)
    if 300 <= status < 400:
        _redirect(page_url, http.get("Location"), str(status), source, rows, counts, reject)
        return
    if status != 200:
        reject(R_STATUS, str(status))
        return
    http_type = http.get("Content-Type") or ""
    mime = http_type.split(";")[0].strip().lower()
    if mime and mime not in _HTML_TYPES:
        reject(R_NOT_HTML, mime[:100])
        return
    length = int(record.content_length or 0)
    if length > MAX_HTML_BYTES:
        reject(R_TOO_BIG, str(length))
        return
    try:
        body = record.reader.read()
    except Exception as exc:  # noqa: BLE001
        reject(R_READ_ERROR, f"{type(exc).__name__}: {exc}")
        return
    if record.headers.get("WARC-Truncated"):
        counts["pages_payload_truncated_by_crawler"] += 1
    if _looks_binary(body):
        reject(R_BINARY, mime)
        return
    if not mime and not body.lstrip()[:1] == b"<":
        reject(R_NOT_HTML, "no content type, not markup")
        return
    html, _codec = decode_html(body, http_type)
    try:
        page = html_links(html, page_url, counts)
    except Exception as exc:  # noqa: BLE001 - parser failure on a hostile page
        reject(R_PARSE_ERROR, f"{type(exc).__name__}: {exc}")
        return
    counts["pages_html"] += 1
    _emit(page, source, rows)


def _redirect(page_url: str, location, status: str, source, rows, counts, reject) -> None:
    """A 3xx page is one edge to its Location (a redirect passes authority); without one, a status reject."""
    if isinstance(location, str) and location:
        page = PageLinks(page_url, page_url, counts)
        page.add(location, "link", "redirect")
        _emit(page, source, rows)
        counts["pages_redirect"] += 1
    else:
        reject(R_STATUS, status)


def _extract_wat(record, source, target, rows, counts, reject) -> None:
    try:
        envelope = json.loads(record.reader.read())
    except Exception as exc:  # noqa: BLE001
        reject(R_WAT_JSON, f"{type(exc).__name__}: {exc}")
        return
    env = envelope.get("Envelope") if isinstance(envelope, dict) else None
    if not isinstance(env, dict):
        reject(R_WAT_JSON, "no Envelope")
        return
    warc_type = _dict(env.get("WARC-Header-Metadata")).get("WARC-Type") or ""
    warc_type = warc_type.lower() if isinstance(warc_type, str) else "invalid"
    if warc_type and warc_type != "response":
        counts[f"skipped_record:wat_{warc_type}"] += 1
        return
    page_url, reason = normalize_url(target or _dict(env.get("WARC-Header-Metadata")).get("WARC-Target-URI"))
    if page_url is None:
        reject(R_BAD_PAGE_URL, reason or "")
        return
    meta = _dict(_dict(env.get("Payload-Metadata")).get("HTTP-Response-Metadata"))
    status = str(_dict(meta.get("Response-Message")).get("Status") or "200")  # as the WARC path: 200 or a redirect
    if status.startswith("3"):
        _redirect(page_url, _dict(meta.get("Headers")).get("Location"), status[:10], source, rows, counts, reject)
        return
    if status != "200":
        reject(R_STATUS, status[:10])
        return
    if not isinstance(meta.get("HTML-Metadata"), dict):
        counts["skipped_record:wat_not_html"] += 1
        return
    counts["pages_wat"] += 1
    _emit(wat_links(envelope, page_url, counts), source, rows)


class _EdgeColumns:
    """Edge rows kept column-wise (one list per ``EDGES_META`` column): no per-edge row object."""

    __slots__ = ("columns",)

    def __init__(self):
        self.columns: dict[str, list] = {name: [] for name in EDGES_META.columns}

    def __len__(self) -> int:
        return len(self.columns["dst_url"])

    def clear(self) -> None:
        for values in self.columns.values():
            values.clear()


def _emit(page: PageLinks, source: str, rows: _EdgeColumns) -> None:
    n = len(page.edges)
    if not n:
        return
    src_host, src_domain = _host_and_domain(page.page_url)
    c = rows.columns
    c["src_url"].extend([page.page_url] * n)
    c["src_host"].extend([src_host] * n)
    c["src_domain"].extend([src_domain] * n)
    c["source_file"].extend([source] * n)
    dst_url, dst_host, dst_domain = c["dst_url"], c["dst_host"], c["dst_domain"]
    kinds, vias, texts = c["kind"], c["via"], c["text"]
    for url, kind, via, text in page.edges:
        host, domain = _host_and_domain(url)
        dst_url.append(url)
        dst_host.append(host)
        dst_domain.append(domain)
        kinds.append(kind)
        vias.append(via)
        texts.append(text)


def _host_and_domain(url: str) -> tuple[str | None, str | None]:
    """``host_of`` and ``registered_domain`` of a *normalized* URL, computed once per distinct origin.

    A normalized URL is ``scheme://netloc/path...`` and its host depends on the netloc alone, so the pair is
    cached under ``scheme://netloc`` (``host_of(origin + "/")`` is ``host_of(url)``).
    """
    start = url.find("://") + 3
    end = url.find("/", start) if start >= 3 else -1
    if end < 0:
        host = host_of(url)
        return host, registered_domain(host)
    return _origin_host_and_domain(url[:end])


@lru_cache(maxsize=1 << 14)
def _origin_host_and_domain(origin: str) -> tuple[str | None, str | None]:
    host = host_of(origin + "/")
    return host, registered_domain(host)


def _edges_frame(rows: list | _EdgeColumns) -> pd.DataFrame:
    if isinstance(rows, _EdgeColumns):
        return pd.DataFrame({name: pd.array(values, dtype=EDGES_META.dtypes[name])
                             for name, values in rows.columns.items()}, columns=list(EDGES_META.columns))
    return pd.DataFrame(rows, columns=list(EDGES_META.columns)).astype(EDGES_META.dtypes.to_dict())


def _small_frames(rejects, counts, source) -> tuple[pd.DataFrame, pd.DataFrame]:
    rej = pd.DataFrame(rejects, columns=list(REJECTS_META.columns)).astype(REJECTS_META.dtypes.to_dict())
    cnt = pd.DataFrame([[source, k, int(v)] for k, v in sorted(counts.items())],
                       columns=list(COUNTS_META.columns)).astype(COUNTS_META.dtypes.to_dict())
    return rej, cnt


def extract_files(paths: Iterable[str]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``extract_file`` over several files in this process (tests, demo)."""
    parts = [extract_file(p) for p in paths]
    return tuple(pd.concat([p[i] for p in parts], ignore_index=True) for i in range(3))  # type: ignore[return-value]
