"""A small synthetic but realistic WARC for the demo and tests: pages linking each other and embedding images.

``write_demo_warc(path, pages)`` writes one gzip-per-record WARC/1.0 file with a ``warcinfo`` record and, per
page, a ``request``, an HTTP ``response`` (HTML with ``<a href>``, ``<img src alt srcset>`` and an ``og:image``)
and a ``metadata`` record, as Common Crawl files have. ``demo_pages`` builds a page list around given image
URLs (a hub site linking to spokes, pages on other hosts embedding the images) so ``make demo`` can show link
authority without network access.
"""

from __future__ import annotations

import gzip
import html
import uuid
from datetime import datetime, timezone
from pathlib import Path


def _record(rtype: str, uri: str | None, block: bytes, content_type: str, extra: dict | None = None) -> bytes:
    headers = {
        "WARC-Type": rtype,
        "WARC-Date": datetime(2024, 1, 1, tzinfo=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "WARC-Record-ID": f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{rtype}:{uri}')}>",
        "Content-Type": content_type,
    }
    if uri:
        headers["WARC-Target-URI"] = uri
    headers.update(extra or {})
    headers["Content-Length"] = str(len(block))
    head = "WARC/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return gzip.compress(head.encode("utf-8") + block + b"\r\n\r\n")


def page_html(page: dict) -> str:
    title = html.escape(page.get("title") or page["url"])
    parts = [f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>"]
    images = list(page.get("images") or [])
    if images:
        first = images[0]
        first_url = first["url"] if isinstance(first, dict) else first
        parts.append(f'<meta property="og:image" content="{html.escape(first_url, quote=True)}">')
    parts.append(f"</head><body><h1>{title}</h1>")
    for link in page.get("links") or []:
        url, text = (link["url"], link.get("text", "")) if isinstance(link, dict) else (link, "")
        parts.append(f'<p><a href="{html.escape(url, quote=True)}">{html.escape(text or url)}</a></p>')
    for img in images:
        url, alt = (img["url"], img.get("alt", "")) if isinstance(img, dict) else (img, "")
        alt_attr = f' alt="{html.escape(alt, quote=True)}"' if alt else ""
        parts.append(f'<figure><img src="{html.escape(url, quote=True)}"{alt_attr} loading="lazy"></figure>')
    parts.append("</body></html>")
    return "\n".join(parts)


def write_demo_warc(path: str | Path, pages: list[dict]) -> Path:
    """Write ``pages`` (dicts: ``url``, ``links`` [url or {url, text}], ``images`` [url or {url, alt}], optional
    ``title``) as a WARC file; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = b"software: imagerank synthetic demo\r\nformat: WARC File Format 1.0\r\n"
    out = [_record("warcinfo", None, info, "application/warc-fields")]
    for page in pages:
        uri = page["url"]
        body = page_html(page).encode("utf-8")
        http = (f"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body
        request = f"GET / HTTP/1.1\r\nHost: {uri.split('/')[2]}\r\nUser-Agent: imagerank-demo\r\n\r\n".encode()
        out.append(_record("request", uri, request, "application/http; msgtype=request"))
        out.append(_record("response", uri, http, "application/http; msgtype=response",
                           {"WARC-Identified-Payload-Type": "text/html"}))
        out.append(_record("metadata", uri, b"fetchTimeMs: 12\r\n", "application/warc-fields"))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(b"".join(out))
    tmp.replace(path)
    return path


def demo_pages(image_urls: list[str], landing_urls: list[str | None] | None = None, *, n_blogs: int = 6
               ) -> list[dict]:
    """A small web around catalog images: a popular hub host linking to blog pages on other hosts; blogs embed
    the images unevenly (the first images on many pages, the last on none), landing pages embed their image."""
    landing_urls = landing_urls or [None] * len(image_urls)
    hub = "https://news.example-hub.org/"
    blogs = [f"https://blog{i}.example-{i}.net/post/{i}" for i in range(n_blogs)]
    pages = [{"url": hub, "title": "Hub", "links": [{"url": b, "text": f"Post {i}"} for i, b in enumerate(blogs)]}]
    for i, blog in enumerate(blogs):
        # image j appears on blogs i where j <= i (so image 0 on all, the last ones on few or none)
        imgs = [{"url": u, "alt": f"image {j}" if j % 2 == 0 else ""} for j, u in enumerate(image_urls)
                if j < len(image_urls) * 0.6 and j % n_blogs <= i]
        links = [hub] + [blogs[(i + 1) % n_blogs]]
        pages.append({"url": blog, "title": f"Blog {i}", "links": links, "images": imgs[:50]})
    for url, landing in zip(image_urls, landing_urls):
        if landing:
            pages.append({"url": landing, "title": "Landing", "links": [hub], "images": [url]})
    return pages
