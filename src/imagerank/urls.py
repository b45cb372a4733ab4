"""URL normalization, hosts and registered domains.

Registered domains come from tldextract's bundled Public Suffix List snapshot, never fetched from
the network (``suffix_list_urls=()``); tldextract is pinned because the snapshot decides domain keys.

``normalize_url`` is the one place where crawled and catalog URLs become graph keys:

- resolved against a base (the page URL or its ``<base href>``) when given;
- only ``http``/``https`` survive (``javascript:``, ``data:``, ``mailto:`` ... are rejected with a reason);
- scheme and host lower-cased, host IDNA-encoded (UTS #46, punycode ``xn--`` labels), trailing dot dropped,
  user info dropped, default ports (80 / 443) dropped, other ports kept, invalid ports rejected;
- IPv4 / IPv6 hosts are kept (IPv6 in brackets); hosts without a dot that are not IPs are rejected;
- path dot-segments removed, empty path -> ``/``, unsafe characters percent-encoded (existing escapes kept);
- the fragment is dropped; URLs longer than ``MAX_URL_LENGTH`` are rejected.

Rejections never raise: ``normalize_url`` returns ``(None, reason)``.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from urllib.parse import quote, urljoin, urlsplit

import idna
import tldextract

_EXTRACT = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, include_psl_private_domains=False)

MAX_URL_LENGTH = 2048
MAX_HOST_LENGTH = 253
_DEFAULT_PORTS = {"http": 80, "https": 443}
_TAB_NEWLINE = re.compile(r"[\t\n\r]")
_STRIP = " \x00\x0b\x0c\u00a0\ufeff"  # stripped from both ends of a URL (after tabs and newlines are removed)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_HOST_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_\-]{0,61}[a-z0-9_])?$")
# characters left alone when percent-encoding path / query (RFC 3986 reserved + unreserved + '%')
_SAFE_PATH = "/%:@!$&'()*+,;=-._~"
_SAFE_QUERY = "/?%:@!$&'()*+,;=-._~[]|"

# rejection reasons (stable strings: they are counted in W/graph/extract_counts)
R_EMPTY = "empty_url"
R_TOO_LONG = "url_too_long"
R_SCHEME = "unsupported_scheme"
R_PARSE = "unparsable_url"
R_NO_HOST = "no_host"
R_BAD_HOST = "invalid_host"
R_IDNA = "invalid_idna"
R_PORT = "invalid_port"


def with_scheme(url: str) -> str:
    """Catalog landing URLs sometimes lack a scheme (``www.flickr.com/photos/...``): assume https."""
    url = url.strip()
    if url.startswith("//"):
        return "https:" + url
    return url if "://" in url[:12] else "https://" + url.lstrip("/")


@lru_cache(maxsize=1 << 16)
def normalize_host(host: str | None) -> str | None:
    """Lower-case ASCII (punycode) form of a host name or IP literal, or None when it is not a valid host.

    IPv6 literals come back without brackets; ``normalize_url`` adds them back.
    """
    if not isinstance(host, str) or not host:  # type first: pd.NA has no truth value
        return None
    host = host.strip().strip("[]").rstrip(".").lower()
    if not host or len(host) > MAX_HOST_LENGTH:
        return None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if host.isascii():
        ascii_host = host
    else:
        try:
            ascii_host = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            return None
    if ascii_host.startswith("xn--") or ".xn--" in ascii_host:
        try:  # a punycode label must decode; lenient (transitional) check only
            idna.decode(ascii_host, uts46=True)
        except (idna.IDNAError, UnicodeError, ValueError):
            return None
    labels = ascii_host.split(".")
    if any(not _HOST_LABEL.match(label) for label in labels):
        return None
    return ascii_host


def host_of(url: str | None) -> str | None:
    """Lower-case host name of a URL (no port, no trailing dot, IDNA as punycode), or None when there is none."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH * 4:  # pd.NA / NaN from a null column
        return None
    try:
        host = urlsplit(with_scheme(_TAB_NEWLINE.sub("", url))).hostname
    except (ValueError, UnicodeError):
        return None
    return normalize_host(host) if host else None


@lru_cache(maxsize=1 << 16)
def registered_domain(host: str | None) -> str | None:
    """Registered domain (eTLD+1) of a host: ``live.staticflickr.com`` -> ``staticflickr.com``.

    IP addresses and hosts under an unknown TLD give the host itself; bare suffixes give None.
    """
    if not isinstance(host, str) or not host:
        return None
    try:
        parts = _EXTRACT(host)
    except (ValueError, UnicodeError):
        return None
    if parts.domain and parts.suffix:
        return f"{parts.domain}.{parts.suffix}"
    if parts.domain and not parts.suffix:  # IP address or unknown TLD
        return host
    return None


def reverse_host(host: str) -> str:
    """Common Crawl ranks files key hosts reversed: ``www.flickr.com`` <-> ``com.flickr.www``."""
    return ".".join(reversed(host.split(".")))


def _remove_dot_segments(path: str) -> str:
    if "." not in path:
        return path
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments):
        if seg == ".":
            if i == len(segments) - 1:
                out.append("")
            continue
        if seg == "..":
            if len(out) > 1:
                out.pop()
            if i == len(segments) - 1:
                out.append("")
            continue
        out.append(seg)
    result = "/".join(out)
    return result if result.startswith("/") else "/" + result


# ------------------------------------------------------------------------------------------ fast paths
# Most crawled links are already canonical (absolute, lower-case http(s) host, no port, nothing to quote) or are
# simple relative references against a canonical page URL. Those are recognized with one regex and returned or
# joined by string concatenation; everything else goes through ``_normalize_url_reference`` (urllib). The
# characters accepted are exactly those ``quote`` leaves alone (RFC 3986 unreserved + the safe sets above, ASCII
# only), so the fast result is byte-identical to the reference one; tests/graph/test_urls_normalize.py checks it
# against the reference on generated URLs.
_P = r"A-Za-z0-9_.\-~/%:@!$&'()*+,;="  # quote(safe=_SAFE_PATH) keeps these
_Q = _P + r"?\[\]|"                      # quote(safe=_SAFE_QUERY) keeps these
_CANON_ABS = re.compile(rf"(https?)://([a-z0-9_.\-]+)(/[{_P}]*)(?:\?([{_Q}]+))?")
_CANON_PATH_ABS = re.compile(rf"/(?!/)[{_P}]*(?:\?[{_Q}]+)?")            # /dir/x.html?q
_CANON_PATH_REL = re.compile(rf"[A-Za-z0-9_.\-~%@!$&'()*+,=][{_P}]*(?:\?[{_Q}]+)?")  # x.html, dir/x?q
_CANON_QUERY = re.compile(rf"\?[{_Q}]+")                                  # ?q (against the base path)
_LOOSE_ORIGIN = re.compile(r"[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9_.\-]+", re.ASCII)
_DOT_SEGMENT = re.compile(r"(?:^|/)\.\.?(?:/|[?]|$)")


@lru_cache(maxsize=1 << 14)
def _fast_host_ok(host: str) -> bool:
    """The reference keeps this host exactly as written (valid, already normalized, a dot or an IP)."""
    return normalize_host(host) == host and ("." in host or _is_ip(host))


def _canonical_parts(url: str) -> tuple[str, str, str] | None:
    """(scheme, origin ``scheme://host``, path) when ``url`` is returned unchanged by the reference, else None."""
    m = _CANON_ABS.fullmatch(url)
    if m is None or len(url) > MAX_URL_LENGTH:
        return None
    path = m.group(3)
    if path.endswith(";") or ("." in path and _DOT_SEGMENT.search(path)) or not _fast_host_ok(m.group(2)):
        return None  # a trailing ';' is an empty ``params`` that urljoin drops
    return m.group(1), url[:m.end(2)], path


@lru_cache(maxsize=1 << 12)
def _base_context(base: str) -> tuple[str, str, str, str] | None:
    """(scheme, origin, directory, path) of a canonical base URL, for joining simple relative references."""
    parts = _canonical_parts(base)
    if parts is None:
        return None
    scheme, origin, path = parts
    if "//" in path:
        return None  # urljoin collapses empty segments of the base directory
    return scheme, origin, path[: path.rfind("/") + 1], path


def _loose_absolute(url: str) -> str | None:
    """``url`` with what the reference rewrites trivially undone: upper-case scheme / host, no path.

    The reference only sees urlsplit's components, and those are the same for both spellings.
    """
    m = _LOOSE_ORIGIN.match(url)
    if m is None:
        return None
    rest = url[m.end():]
    if rest and rest[0] not in "/?":
        return None  # a port, user info, a fragment ...
    return m.group(0).lower() + (rest if rest.startswith("/") else "/" + rest)


def normalize_url(url: str | None, base: str | None = None) -> tuple[str | None, str | None]:
    """Absolute, normalized http(s) URL of ``url`` (resolved against ``base``) and None, or (None, reason)."""
    if isinstance(url, str) and url and (base is None or isinstance(base, str)):
        if url[0] in _STRIP or url[-1] in _STRIP or "\t" in url or "\n" in url or "\r" in url:
            # the reference's own first step (idempotent, so the reference gives the same answer afterwards)
            url = _TAB_NEWLINE.sub("", url).strip(_STRIP)
            if not url:
                return None, R_EMPTY
        hash_at = url.find("#")
        if hash_at > 0 and url[hash_at - 1] not in _STRIP and len(url) <= MAX_URL_LENGTH:
            url = url[:hash_at]  # the fragment is dropped: same urlsplit components, same answer
        if (url[-1] == "?" and len(url) > 1 and url[-2] not in _STRIP and url.count("?") == 1 and "#" not in url
                and len(url) <= MAX_URL_LENGTH):
            url = url[:-1]  # an empty query is dropped: same urlsplit components, same answer
        if url[:4].lower() == "http":
            canonical: str | None = url
            if _canonical_parts(url) is None:
                canonical = _loose_absolute(url)
                if canonical is not None and _canonical_parts(canonical) is None:
                    canonical = None
            if canonical is not None and (not base or _base_parses(base)):
                return canonical, None
        elif base:
            ctx = _base_context(base)
            if ctx is not None:
                result = _join_simple(url, ctx)
                if result is not None:
                    return result, None
    return _normalize_url_reference(url, base)


def _join_simple(url: str, ctx: tuple[str, str, str, str]) -> str | None:
    """``url`` resolved against a canonical base when the join is plain concatenation, else None."""
    scheme, origin, directory, base_path = ctx
    if url[0] == "?":  # query only: the base path with this query
        if not _CANON_QUERY.fullmatch(url):
            return None
        result = origin + base_path + url
    elif url[0] == "/":
        if url.startswith("//"):  # protocol-relative: the base's scheme
            candidate = f"{scheme}:{url}"
            return candidate if _canonical_parts(candidate) is not None else None
        if not _CANON_PATH_ABS.fullmatch(url) or _needs_full_path(url):
            return None
        result = origin + url
    else:
        if not _CANON_PATH_REL.fullmatch(url) or _needs_full_path(url):
            return None
        path = url.split("?", 1)[0]
        if ":" in path.split("/", 1)[0] or "//" in path:  # a scheme, or empty segments urljoin would collapse
            return None
        result = origin + directory + url
    return result if len(result) <= MAX_URL_LENGTH else None


@lru_cache(maxsize=1 << 12)
def _base_parses(base: str) -> bool:
    """urljoin parses the base first: a base urlsplit rejects makes the reference fail with R_PARSE."""
    try:
        urlsplit(base)
    except (ValueError, UnicodeError):
        return False
    return True


def _needs_full_path(ref: str) -> bool:
    """Dot segments or a trailing ';' (urljoin drops an empty ``params``) in the path of a relative reference."""
    path = ref.split("?", 1)[0]
    return path.endswith(";") or ("." in path and _DOT_SEGMENT.search(path) is not None)


def _normalize_url_reference(url: str | None, base: str | None = None) -> tuple[str | None, str | None]:
    """The urllib implementation of ``normalize_url`` (its slow path, and the reference its fast paths are tested
    against): every input takes ``urljoin`` / ``urlsplit`` / ``quote``."""
    if url is None or not isinstance(url, str):
        return None, R_EMPTY
    url = _TAB_NEWLINE.sub("", url).strip(_STRIP)
    if not url:
        return None, R_EMPTY
    if len(url) > MAX_URL_LENGTH:
        return None, R_TOO_LONG
    m = _SCHEME.match(url)
    if m and m.group(1).lower() not in _DEFAULT_PORTS:
        return None, R_SCHEME
    if url.startswith("#"):
        return None, R_EMPTY  # in-page anchor: not an edge
    try:
        absolute = urljoin(base, url) if base else url
        parts = urlsplit(absolute)
    except (ValueError, UnicodeError):
        return None, R_PARSE
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        return None, R_SCHEME if scheme else R_PARSE
    try:
        raw_host = parts.hostname
        port = parts.port
    except ValueError:
        return None, R_PORT if "]" not in parts.netloc.rsplit(":", 1)[-1] else R_BAD_HOST
    except UnicodeError:
        return None, R_IDNA
    if not raw_host:
        return None, R_NO_HOST
    host = normalize_host(raw_host)
    if host is None:
        return None, R_IDNA if (not raw_host.isascii() or "xn--" in raw_host.lower()) else R_BAD_HOST
    is_ip = _is_ip(host)
    if not is_ip and "." not in host:
        return None, R_BAD_HOST
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        if port == 0:
            return None, R_PORT
        netloc = f"{netloc}:{port}"
    path = _remove_dot_segments(quote(parts.path, safe=_SAFE_PATH)) or "/"
    query = quote(parts.query, safe=_SAFE_QUERY) if parts.query else ""
    result = f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")
    if len(result) > MAX_URL_LENGTH:
        return None, R_TOO_LONG
    return result, None


@lru_cache(maxsize=1 << 12)
def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def canonical_url(url: str | None, base: str | None = None) -> str | None:
    """``normalize_url`` without the reason: the normalized URL or None."""
    return normalize_url(url, base)[0]
