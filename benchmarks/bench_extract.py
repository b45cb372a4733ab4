"""Link extraction records/s vs bare fastwarc iteration over the same file, same run: WARC and WAT.

    python -m benchmarks.bench_extract [--quick] [--repeat N] [FILE]

Default file: the real Common Crawl excerpt in ../shared/fixtures (16 HTML pages), repeated into a larger
temporary WARC (gzip per record) so the timing is not dominated by start-up. Reference: fastwarc iterating the
same records and reading every payload (no HTML parsing). Ends with one JSON line.

WAT: the same excerpt is first converted into the WAT file Common Crawl would publish for it (``warc_to_wat``:
one JSON metadata record per WARC record, the HTML's links listed the way Common Crawl's extractor,
ia-web-commons' ``ExtractingParseObserver``, lists them), repeated the same way and timed against fastwarc
iterating it plus ``json.loads`` of every payload. The edges of one copy are compared with the WARC's, and the
WAT's compressed bytes per page with Common Crawl's published average, before the rates are turned into
core-hours for one monthly crawl.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import os
import re
import statistics
import tempfile
import time
import uuid
import zlib
from html.parser import HTMLParser
from pathlib import Path

from fastwarc.warc import ArchiveIterator, WarcRecordType

from imagerank.graph.warc import decode_html, extract_file

FIXTURE = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "warc" / "cc_main_2020_34_excerpt.warc.gz"

# Common Crawl's published size of one monthly crawl, August 2018 (CC-MAIN-2018-34):
# https://commoncrawl.org/2018/08/august-2018-crawl-archive-now-available/
CC_PAGES = 2.65e9
CC_WAT_BYTES = 16.76 * 2**40  # 16.76 TiB of WAT, compressed
CC_WAT_BYTES_PER_PAGE = CC_WAT_BYTES / CC_PAGES  # ~6,954 bytes


def bare_fastwarc(path) -> int:
    n = 0
    with open(path, "rb") as f:
        for rec in ArchiveIterator(f, record_types=WarcRecordType.response | WarcRecordType.metadata,
                                   parse_http=True):
            rec.reader.read()
            n += 1
    return n


def bare_fastwarc_json(path) -> int:
    """The WAT reference: fastwarc iteration as ``bare_fastwarc`` plus ``json.loads`` of every payload."""
    n = 0
    with open(path, "rb") as f:
        for rec in ArchiveIterator(f, record_types=WarcRecordType.response | WarcRecordType.metadata,
                                   parse_http=True):
            json.loads(rec.reader.read())
            n += 1
    return n


# --------------------------------------------------------------------------------------------- WARC -> WAT
# What Common Crawl's WAT generator (ia-web-commons: org.archive.resource.html.ExtractingParseObserver and
# HTMLMetaData) writes for an HTML page, re-done with the stdlib's html.parser. Both are tokenizers, not tree
# builders: tags are seen in source order, nothing is implied or closed, so the quirks carry over (an <a> that
# is never closed is never listed; the last <base href> wins; anchor text stops at 128 characters).

_CC_TEXT_MAX = 128
_CC_BLOCK = frozenset(
    "address article aside blockquote body br button canvas caption col colgroup dd div dl dt embed fieldset "
    "figcaption figure footer form h1 h2 h3 h4 h5 h6 header hgroup hr li map noscript object ol output p pre "
    "progress section table tbody textarea tfoot th thead title tr ul video".split())
_CC_INLINE_SPACING = frozenset(
    "address cite details datalist iframe img input label legend optgroup q select summary tbody td time".split())
_CC_GLOBAL_HREF = frozenset(("background", "data-href", "data-uri"))
_CC_BASIC_HREFS = {  # tag -> attributes listed as {"path": "TAG@/attr", "url": value}
    "applet": ("codebase", "cdata"), "embed": ("src",), "audio": ("src",), "track": ("src",), "source": ("src",),
    "frame": ("src",), "iframe": ("src",), "object": ("codebase", "cdata", "data"), "q": ("cite",),
    "blockquote": ("cite",), "del": ("cite",), "ins": ("cite",), "button": ("formaction",), "menuitem": ("icon",),
    "video": ("src", "poster"), "input": ("src", "formaction"), "img": ("longdesc",),
}
_CC_ONCLICK = (
    re.compile(r"""(?i)^(?:javascript:)?(?:(?:window|top|document|self|parent)\.)?location(?:\.href)?\s*=\s*"""
               r"""('|&#39;)([^'"]{3,256})\1$"""),
    re.compile(r"""(?i)^(?:javascript:)?(?:window|parent)\.open\((['"]|&#39;)([^"']{3,256}?)\1[,)]"""),
)
_CC_CSS_URL = re.compile(r"url\s*\(\s*([^)\s]{1,8000}?)\s*\)")
_CC_CSS_IMPORT = re.compile(r"""@import\s+((?:'[^']+')|(?:"[^"]+")|(?:\('[^']+'\))|(?:\("[^"]+"\))|"""
                            r"""(?:\([^)]+\))|(?:[a-z0-9_.:/\\-]+))\s*;""")
_CC_CSS_TRIM = re.compile(r"""^(?:\\?["'])+|(?:\\?["'])+$""")
_CONTROL_TO_SPACE = {c: " " for c in (*range(0x20), 0x7F, 0xA0)}
_WS_RUN = re.compile(r"(\s)\s+")


class CCHtmlMetadata(HTMLParser):
    """``HTML-Metadata`` ({"Head": {Title, Base, Metas, Link, Scripts}, "Links": [...]}) of one HTML document."""

    def __init__(self):
        super().__init__(convert_charrefs=True)  # attribute values and text arrive entity-decoded, as in CC
        self.head: dict = {}
        self.links: list[dict] = []
        self.anchors: list[list] = []  # open <a>: [link dict, anchor text so far]
        self.in_head = self.in_title = self.in_pre = self.in_svg = False
        self.title: str | None = None
        self.cdata: str | None = None  # inside <script> / <style>
        self.text_ends_in_space = True  # CC's page text extract: only its last character matters here

    def metadata(self) -> dict:
        out: dict = {}
        if self.head:
            out["Head"] = self.head
        if self.links:
            out["Links"] = self.links
        return out

    # -- tokens
    def handle_startendtag(self, tag, attrs):
        self._open(tag, attrs, empty=True)  # CC: handleTagEmpty = handleTagOpen, and no close

    def handle_starttag(self, tag, attrs):
        self._open(tag, attrs, empty=False)

    def _open(self, tag: str, attrs: list, empty: bool) -> None:
        if tag == "head":
            self.in_head = True
        elif tag == "title":
            self.in_title = not empty
            return
        elif tag == "pre":
            self.in_pre = True
        elif tag == "svg":
            self.in_svg = True
        elif tag == "body":
            self.in_head = False
        if tag in ("script", "style") and not empty:
            self.cdata = tag
        if tag in _CC_BLOCK or tag in _CC_INLINE_SPACING:
            self.text_ends_in_space = True
        a: dict = {}
        name = tag.upper()
        for key, value in attrs:
            if value is None:
                continue
            a.setdefault(key, value)
            if key in _CC_GLOBAL_HREF:
                self.links.append({"path": f"{name}@/{key}", "url": value})
        if tag == "a":
            link: dict = {}
            if a.get("href") is not None:
                link = {"path": "A@/href", "url": a["href"]}
                for k in ("target", "alt", "title", "rel", "hreflang", "type"):
                    if k in a:
                        link[k] = a[k]
            if empty:
                self.links.append(link)  # CC lists even an <a name=x/> (as {})
            else:
                self.anchors.append([link, ""])
        elif tag == "img":
            self._with_attrs(self.links, a, "IMG", "src", ("alt", "title"))
        elif tag == "area":
            self._with_attrs(self.links, a, "AREA", "href", ("rel",))
        elif tag == "form":
            self._with_attrs(self.links, a, "FORM", "action", ("target", "method"))
        elif tag == "link":
            if "href" in a:
                self._with_attrs(self.head.setdefault("Link", []), a, "LINK", "href", ("rel", "type"))
        elif tag == "script":
            if "src" in a:
                self._with_attrs(self.head.setdefault("Scripts", []), a, "SCRIPT", "src", ("type",))
        elif tag == "base":
            if "href" in a:
                self.head["Base"] = a["href"]  # a JSON put: the last <base> wins
        elif tag == "meta":
            meta = {k: a[k] for k in ("name", "rel", "content", "http-equiv", "property") if k in a}
            if meta:
                self.head.setdefault("Metas", []).append(meta)
        elif tag == "html":
            for k in ("lang", "xml:lang"):
                if k in a:
                    self.head.setdefault("Metas", []).append({"name": f"HTML@/{k}", "content": a[k]})
        for key in _CC_BASIC_HREFS.get(tag, ()):
            if key in a:
                self.links.append({"path": f"{name}@/{key}", "url": a[key]})
        if tag in ("div", "input") and "onclick" in a:
            for pattern in _CC_ONCLICK:
                m = pattern.search(a["onclick"])
                if m:
                    self.links.append({"path": f"{name}@/onclick", "url": m.group(2)})

    @staticmethod
    def _with_attrs(target: list, a: dict, name: str, url_attr: str, optional: tuple) -> None:
        if url_attr in a:
            entry = {"path": f"{name}@/{url_attr}", "url": a[url_attr]}
            for k in optional:
                if k in a:
                    entry[k] = a[k]
            target.append(entry)

    def handle_endtag(self, tag):
        if self.in_title:
            self.in_title = False
            if not self.in_svg and (self.in_head or "Title" not in self.head) and self.title is not None:
                self.head["Title"] = self.title
            self.title = None
        if tag in _CC_BLOCK or tag in _CC_INLINE_SPACING:
            self.text_ends_in_space = True
            for anchor in self.anchors:
                if anchor[1] and anchor[1][-1] not in " \n":
                    anchor[1] += " "
        if tag == "a":
            if self.anchors:
                link, text = self.anchors.pop()
                if link:
                    text = text.strip()[:_CC_TEXT_MAX]
                    if text:
                        link["text"] = text
                    self.links.append(link)
        elif tag == "head":
            self.in_head = False
        elif tag == "pre":
            self.in_pre = False
        elif tag == "svg":
            self.in_svg = False
        if tag == self.cdata:
            self.cdata = None

    def handle_data(self, data):
        if self.cdata == "script":
            return
        if self.cdata == "style":
            for pattern in (_CC_CSS_URL, _CC_CSS_IMPORT):
                for m in pattern.finditer(data[:100_000]):
                    url = _CC_CSS_TRIM.sub("", m.group(1))
                    if url:
                        self.links.append({"path": "STYLE/#text", "href": url})
            return
        if self.in_pre:
            text = data
        else:
            text = _WS_RUN.sub(r"\1", data.translate(_CONTROL_TO_SPACE))
            if self.text_ends_in_space and text[:1].isspace():
                text = text[1:]
        if text:
            self.text_ends_in_space = text[-1].isspace()
        if not (self.in_title or self.anchors):
            return
        text = text[:_CC_TEXT_MAX]
        if self.in_title:
            self.title = text.strip()
            return
        for anchor in self.anchors:  # outermost first, as CC iterates its stack
            have = anchor[1]
            if len(have) >= _CC_TEXT_MAX:
                break
            clipped = text if len(have) + len(text) < _CC_TEXT_MAX else text[:_CC_TEXT_MAX - len(have)]
            if clipped and (not have or have[-1] == " ") and clipped[0] == " ":
                clipped = clipped[1:]
            anchor[1] = have + clipped


def cc_html_metadata(html: str) -> dict:
    """The ``HTML-Metadata`` object Common Crawl's WAT carries for this HTML (unclosed anchors are dropped)."""
    parser = CCHtmlMetadata()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # noqa: BLE001 - CC keeps what it parsed before a parser failure
        pass
    return parser.metadata()


def _sha1_b32(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode("ascii")


def _fields(block: bytes) -> list[tuple[str, str]]:
    """``Name: value`` lines (WARC / HTTP headers, warc-fields payloads), continuation lines folded."""
    out: list[list[str]] = []
    for line in block.decode("utf-8", "replace").split("\r\n"):
        if not line:
            continue
        if line[0] in " \t" and out:
            out[-1][1] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if sep:
            out.append([name.strip(), value.strip()])
    return [(n, v) for n, v in out]


def _multi(pairs) -> dict:
    """A JSON object of headers; a repeated name becomes a list of its values (CC's ``MetaData.accumulate``)."""
    obj: dict = {}
    for name, value in pairs:
        if name in obj:
            obj[name] = obj[name] + [value] if isinstance(obj[name], list) else [obj[name], value]
        else:
            obj[name] = value
    return obj


def _http_message(block: bytes) -> tuple[str, list[tuple[str, str]], int, bytes]:
    """Start line, headers, header length and entity of an HTTP message stored in a WARC block."""
    end = block.find(b"\r\n\r\n")
    head_len = len(block) if end < 0 else end + 4
    head = block[:head_len]
    first, _, rest = head.partition(b"\r\n")
    return first.decode("latin-1").strip(), _fields(rest), head_len, block[head_len:]


def _is_html(content_type: str, entity: bytes) -> bool:
    mime = content_type.split(";")[0].strip().lower()
    if mime:
        return "html" in mime
    return entity.lstrip()[:1] == b"<"


def _wat_envelope(warc_head: bytes, block: bytes, slop: int) -> dict:
    """``Envelope`` of one WARC record: its headers, digests, and the payload's metadata (links for HTML)."""
    headers = _multi(_fields(warc_head.split(b"\r\n", 1)[1] if b"\r\n" in warc_head else b""))
    wtype = str(headers.get("WARC-Type", "")).lower()
    ctype = str(headers.get("Content-Type", ""))
    payload: dict = {"Actual-Content-Type": ctype, "Actual-Content-Length": str(len(block))}
    if wtype in ("response", "request") and ctype.startswith("application/http"):
        start, http_headers, head_len, entity = _http_message(block)
        http: dict = {}
        if wtype == "response":
            version, _, status_reason = start.partition(" ")
            status, _, reason = status_reason.partition(" ")
            http["Response-Message"] = {"Status": status, "Version": version, "Reason": reason}
        else:
            method, _, rest = start.partition(" ")
            path, _, version = rest.rpartition(" ")
            http["Request-Message"] = {"Method": method, "Path": path, "Version": version}
        http.update({"Headers-Length": str(head_len), "Headers": _multi(http_headers),
                     "Entity-Length": str(len(entity)), "Entity-Digest": _sha1_b32(entity),
                     "Entity-Trailing-Slop-Length": "0"})
        if wtype == "response":
            content_type = next((v for n, v in http_headers if n.lower() == "content-type"), "")
            if _is_html(content_type, entity):
                html, _ = decode_html(entity, content_type)
                http["HTML-Metadata"] = cc_html_metadata(html)
            payload["HTTP-Response-Metadata"] = http
        else:
            payload["HTTP-Request-Metadata"] = http
    elif wtype == "metadata":
        payload["WARC-Metadata-Metadata"] = {
            "Metadata-Records": [{"Name": n, "Value": v} for n, v in _fields(block)]}
    elif wtype == "warcinfo":
        payload["WARC-Info-Metadata"] = _multi(_fields(block))
        payload["Headers-Corrupt"] = True  # as CC writes it for warcinfo records
    payload["Trailing-Slop-Length"] = str(slop)
    return {"Format": "WARC", "WARC-Header-Length": str(len(warc_head)), "Actual-Content-Length": str(len(block)),
            "WARC-Header-Metadata": headers, "Block-Digest": _sha1_b32(block), "Payload-Metadata": payload}


def _gzip_members(data: bytes):
    """(offset, compressed length, header length, inflated bytes, CRC) of each complete gzip member."""
    pos = 0
    while pos < len(data):
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            inflated = d.decompress(data[pos:])
        except zlib.error:
            return
        if not d.eof:
            return  # a clipped last member
        used = len(data) - pos - len(d.unused_data)
        flags, header = data[pos + 3], 10
        if flags & 4:  # FEXTRA
            header += 2 + int.from_bytes(data[pos + 10:pos + 12], "little")
        for bit in (8, 16):  # FNAME, FCOMMENT: zero-terminated
            if flags & bit:
                header = data.index(b"\0", pos + header) - pos + 1
        if flags & 2:  # FHCRC
            header += 2
        yield pos, used, header, inflated, int.from_bytes(data[pos + used - 8:pos + used - 4], "little")
        pos += used


def _warc_records(inflated: bytes):
    """(WARC header bytes, block, trailing bytes) of the records in one inflated member."""
    pos = 0
    while pos < len(inflated):
        end = inflated.find(b"\r\n\r\n", pos)
        if end < 0:
            return
        head = inflated[pos:end + 4]
        length = next((int(v) for n, v in _fields(head) if n.lower() == "content-length"), 0)
        block = inflated[end + 4:end + 4 + length]
        nxt = inflated.find(b"WARC/", end + 4 + length)
        stop = len(inflated) if nxt < 0 else nxt
        yield head, block, stop - (end + 4 + length)
        pos = stop


def _wat_record(uri: str, refers_to: str | None, payload: bytes, warc_date: str) -> bytes:
    rid = uuid.uuid5(uuid.NAMESPACE_URL, f"wat:{refers_to or uri}")
    head = f"WARC/1.0\r\nWARC-Type: metadata\r\nWARC-Target-URI: {uri}\r\nWARC-Date: {warc_date}\r\n" \
           f"WARC-Record-ID: <urn:uuid:{rid}>\r\n"
    if refers_to:
        head += f"WARC-Refers-To: {refers_to}\r\n"
    head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    # one gzip member per record; Java's GZIPOutputStream deflates at zlib's default level (6)
    return gzip.compress(head.encode("utf-8") + payload + b"\r\n\r\n", compresslevel=6, mtime=0)


def warc_to_wat(warc: bytes, filename: str = "excerpt.warc.gz", warc_date: str = "2020-08-15T00:00:00Z"
                ) -> tuple[bytes, dict]:
    """The WAT file Common Crawl would publish for a per-record-gzip WARC, and counts of what it holds.

    One ``metadata`` record (``Content-Type: application/json``, one gzip member) per WARC record, as CC's WAT
    files have: the JSON ``Container`` (file, offset, gzip member) and ``Envelope`` (``Format``,
    ``WARC-Header-Length``, ``WARC-Header-Metadata``, digests, ``Payload-Metadata``). A response's
    ``HTTP-Response-Metadata`` carries ``Response-Message``, the HTTP ``Headers`` and, for HTML,
    ``HTML-Metadata`` ({"Head": {Title, Base, Metas, Link, Scripts}, "Links": [...]}, see ``CCHtmlMetadata``).
    The file starts with its own ``warcinfo`` record. A plain (uncompressed) WARC is read as one container.
    """
    info = (f"software: imagerank benchmarks.bench_extract (ia-web-commons WAT layout)\r\n"
            f"format: WARC File Format 1.0\r\nisPartOf: {filename}\r\n\r\n").encode()
    info_head = (f"WARC/1.0\r\nWARC-Type: warcinfo\r\nWARC-Date: {warc_date}\r\nWARC-Filename: "
                 f"{filename.replace('.warc.gz', '.warc.wat.gz')}\r\nWARC-Record-ID: <urn:uuid:"
                 f"{uuid.uuid5(uuid.NAMESPACE_URL, 'wat-info:' + filename)}>\r\nContent-Type: application/warc-fields"
                 f"\r\nContent-Length: {len(info)}\r\n\r\n").encode()
    parts = [gzip.compress(info_head + info + b"\r\n\r\n", compresslevel=6, mtime=0)]
    stats = {"records": 0, "html_pages": 0, "links": 0, "html_record_bytes": 0}
    if warc[:2] == b"\x1f\x8b":
        members = _gzip_members(warc)
    else:
        members = [(0, len(warc), 0, warc, zlib.crc32(warc))]
    for offset, used, header_len, inflated, crc in members:
        container: dict = {"Filename": filename, "Compressed": warc[:2] == b"\x1f\x8b", "Offset": str(offset)}
        if container["Compressed"]:
            crc_signed = crc - (1 << 32) if crc >= 1 << 31 else crc  # Java prints the CRC as a signed int
            container["Gzip-Metadata"] = {"Deflate-Length": str(used - header_len - 8),
                                          "Header-Length": str(header_len), "Footer-Length": "8",
                                          "Inflated-CRC": str(crc_signed), "Inflated-Length": str(len(inflated))}
        for head, block, slop in _warc_records(inflated):
            envelope = _wat_envelope(head, block, slop)
            fields = envelope["WARC-Header-Metadata"]
            uri = fields.get("WARC-Target-URI") or fields.get("WARC-Filename") or filename
            html_meta = envelope["Payload-Metadata"].get("HTTP-Response-Metadata", {}).get("HTML-Metadata")
            if html_meta is not None:
                stats["html_pages"] += 1
                stats["links"] += len(html_meta.get("Links", []))
            payload = json.dumps({"Container": container, "Envelope": envelope}, ensure_ascii=False,
                                 separators=(",", ":")).encode("utf-8")
            record = _wat_record(str(uri), fields.get("WARC-Record-ID"), payload, warc_date)
            parts.append(record)
            stats["records"] += 1
            if html_meta is not None:
                stats["html_record_bytes"] += len(record)
    wat = b"".join(parts)
    stats["bytes"] = len(wat)
    return wat, stats


def edge_sets(edges) -> set[tuple[str, str, str]]:
    """(src_url, dst_url, kind) of an edges frame."""
    return set(zip(edges.src_url, edges.dst_url, edges.kind))


# --------------------------------------------------------------------------------------------- timing

def _timed(fn, *args):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - t0, time.process_time() - c0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs of each side (the median is reported)")
    ap.add_argument("file", nargs="?", default=str(FIXTURE))
    args = ap.parse_args(argv)
    copies = 5 if args.quick else 40
    repeat = args.repeat
    data = Path(args.file).read_bytes()
    (wat, wat_stats), t_convert, _ = _timed(warc_to_wat, data, Path(args.file).name)
    with tempfile.TemporaryDirectory() as tmp:
        one_warc, one_wat = Path(tmp) / "one.warc.gz", Path(tmp) / "one.wat.gz"
        one_warc.write_bytes(data)
        one_wat.write_bytes(wat)
        warc_set, wat_set = edge_sets(extract_file(str(one_warc))[0]), edge_sets(extract_file(str(one_wat))[0])
        big = Path(tmp) / "bench.warc.gz"
        big.write_bytes(data * copies)  # concatenated gzip members are a valid WARC
        big_wat = Path(tmp) / "bench.wat.gz"
        big_wat.write_bytes(wat * copies)
        t_ref, records = [], 0
        t_ext, cpu_ref, cpu_ext = [], [], []
        t_wref, t_wext, cpu_wref, cpu_wext = [], [], [], []
        for _ in range(repeat):
            records, t, c = _timed(bare_fastwarc, big)
            t_ref.append(t)
            cpu_ref.append(c)
            (edges, rejects, counts), t, c = _timed(extract_file, str(big))
            t_ext.append(t)
            cpu_ext.append(c)
            wat_records, t, c = _timed(bare_fastwarc_json, big_wat)
            t_wref.append(t)
            cpu_wref.append(c)
            (wat_edges, wat_rejects, wat_counts), t, c = _timed(extract_file, str(big_wat))
            t_wext.append(t)
            cpu_wext.append(c)
    c = dict(zip(counts.counter, counts["count"]))
    ref, ext = statistics.median(t_ref), statistics.median(t_ext)
    pages = int(c.get("pages_html", 0))
    print(f"file: {args.file} x{copies} ({len(data) * copies / 1e6:.1f} MB, {records} response+metadata records,"
          f" {pages} HTML pages, {len(edges):,} edges)")
    print(f"{'run':28} {'median s':>9} {'records/s':>11} {'pages/s':>9} {'edges/s':>9}")
    print(f"{'bare fastwarc iteration':28} {ref:>9.3f} {records / ref:>11,.0f} {pages / ref:>9,.0f} {'':>9}")
    print(f"{'imagerank extract_file':28} {ext:>9.3f} {records / ext:>11,.0f} {pages / ext:>9,.0f}"
          f" {len(edges) / ext:>9,.0f}")
    load = [round(x, 2) for x in os.getloadavg()]
    cref, cext = statistics.median(cpu_ref), statistics.median(cpu_ext)
    print(f"CPU seconds (less sensitive to other jobs): bare {cref:.3f}, extract {cext:.3f}"
          f" ({records / cext:,.0f} records/s of CPU)")
    print(f"ratio extract / bare: {ext / ref:.1f}x  (medians of {repeat}; load average {load}, {os.cpu_count()} CPUs)")
    figures = {"benchmark": "extract", "quick": args.quick, "records": records, "pages": pages,
               "edges": int(len(edges)), "bare_fastwarc_s": round(ref, 4), "extract_s": round(ext, 4),
               "bare_records_per_s": round(records / ref), "extract_records_per_s": round(records / ext),
               "extract_pages_per_s": round(pages / ext), "edges_per_s": round(len(edges) / ext),
               "ratio_extract_to_bare": round(ext / ref, 2), "bare_cpu_s": round(cref, 4), "extract_cpu_s": round(cext, 4),
               "extract_records_per_cpu_s": round(records / cext), "repeats": repeat, "load_average": load}

    # ---- WAT
    wc = dict(zip(wat_counts.counter, wat_counts["count"]))
    wref, wext = statistics.median(t_wref), statistics.median(t_wext)
    cwref, cwext = statistics.median(cpu_wref), statistics.median(cpu_wext)
    wpages = int(wc.get("pages_wat", 0))
    wat_bytes = len(wat) * copies
    bytes_per_page = len(wat) / max(wat_stats["html_pages"], 1)
    common, only_warc, only_wat = warc_set & wat_set, warc_set - wat_set, wat_set - warc_set
    print()
    print(f"WAT derived from the same file ({wat_stats['records']} WARC records -> {wat_stats['records'] + 1} WAT"
          f" records, {wat_stats['html_pages']} with HTML-Metadata, {wat_stats['links']:,} Links entries;"
          f" converted in {t_convert:.2f} s)")
    print(f"edges of one copy: WARC (HTML) {len(warc_set):,}, WAT {len(wat_set):,}; in both {len(common):,}"
          f" ({len(common) / max(len(warc_set), 1):.1%} of WARC's), only in WARC {len(only_warc):,}"
          f" (links {sum(k == 'link' for *_, k in only_warc)}, images {sum(k == 'image' for *_, k in only_warc)}),"
          f" only in WAT {len(only_wat):,}")
    print(f"file: x{copies} ({wat_bytes / 1e6:.2f} MB WAT.gz, {wat_records} metadata records,"
          f" {wpages} pages, {len(wat_edges):,} edges)")
    print(f"{'run':28} {'median s':>9} {'records/s':>11} {'pages/s':>9} {'edges/s':>9} {'MB/CPU-s':>9}")
    print(f"{'bare fastwarc + json.loads':28} {wref:>9.3f} {wat_records / wref:>11,.0f} {wpages / wref:>9,.0f}"
          f" {'':>9} {wat_bytes / cwref / 1e6:>9.2f}")
    print(f"{'imagerank extract_file':28} {wext:>9.3f} {wat_records / wext:>11,.0f} {wpages / wext:>9,.0f}"
          f" {len(wat_edges) / wext:>9,.0f} {wat_bytes / cwext / 1e6:>9.2f}")
    print(f"CPU seconds: bare+json {cwref:.3f}, extract {cwext:.3f} ({wat_records / cwext:,.0f} records/s,"
          f" {wpages / cwext:,.0f} pages/s of CPU)")
    print(f"ratio extract / (bare + json): {wext / wref:.1f}x; WAT extract vs WARC extract, CPU per page:"
          f" {(cwext / max(wpages, 1)) / (cext / max(pages, 1)):.2f}x")
    print(f"WAT.gz bytes per page: {bytes_per_page:,.0f} here (response records alone"
          f" {wat_stats['html_record_bytes'] / max(wat_stats['html_pages'], 1):,.0f}) vs Common Crawl's"
          f" {CC_WAT_BYTES_PER_PAGE:,.0f} (CC-MAIN-2018-34: 16.76 TiB / 2.65 billion pages):"
          f" {bytes_per_page / CC_WAT_BYTES_PER_PAGE:.2f}x")
    pages_per_cpu_s, bytes_per_cpu_s = wpages / cwext, wat_bytes / cwext
    hours_pages, hours_bytes = CC_PAGES / pages_per_cpu_s / 3600, CC_WAT_BYTES / bytes_per_cpu_s / 3600
    ref_hours_bytes = CC_WAT_BYTES / (wat_bytes / cwref) / 3600
    print(f"one monthly crawl from WAT (estimate): by pages 2.65e9 / {pages_per_cpu_s:,.0f} per CPU-s ="
          f" {hours_pages:,.0f} core-hours; by bytes 16.76 TiB / {bytes_per_cpu_s / 1e6:.2f} MB per CPU-s ="
          f" {hours_bytes:,.0f} core-hours (bare fastwarc + json.loads alone: {ref_hours_bytes:,.0f})")
    figures.update({
        "wat_records": wat_records, "wat_pages": wpages, "wat_edges": int(len(wat_edges)),
        "wat_mb": round(wat_bytes / 1e6, 3),
        "wat_bare_json_s": round(wref, 4), "wat_extract_s": round(wext, 4),
        "wat_bare_json_cpu_s": round(cwref, 4), "wat_extract_cpu_s": round(cwext, 4),
        "wat_bare_json_records_per_s": round(wat_records / wref),
        "wat_extract_records_per_s": round(wat_records / wext),
        "wat_extract_pages_per_s": round(wpages / wext), "wat_edges_per_s": round(len(wat_edges) / wext),
        "wat_extract_pages_per_cpu_s": round(pages_per_cpu_s),
        "wat_extract_mb_per_cpu_s": round(bytes_per_cpu_s / 1e6, 3),
        "wat_bare_json_mb_per_cpu_s": round(wat_bytes / cwref / 1e6, 3),
        "wat_ratio_extract_to_bare_json": round(wext / wref, 2),
        "wat_bytes_per_page": round(bytes_per_page), "cc_wat_bytes_per_page": round(CC_WAT_BYTES_PER_PAGE),
        "wat_core_hours_by_pages": round(hours_pages), "wat_core_hours_by_bytes": round(hours_bytes),
        "excerpt_edges_warc": len(warc_set), "excerpt_edges_wat": len(wat_set), "excerpt_edges_both": len(common),
        "wat_convert_s": round(t_convert, 3),
    })
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
