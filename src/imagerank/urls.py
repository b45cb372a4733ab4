"""URL normalization, hosts and registered domains.

Registered domains come from tldextract's bundled Public Suffix List snapshot, never fetched from
the network (``suffix_list_urls=()``); tldextract is pinned because the snapshot decides domain keys.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

import tldextract

_EXTRACT = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, include_psl_private_domains=False)


def with_scheme(url: str) -> str:
    """Catalog landing URLs sometimes lack a scheme (``www.flickr.com/photos/...``): assume https."""
    url = url.strip()
    return url if "://" in url[:12] else "https://" + url.lstrip("/")


def host_of(url: str | None) -> str | None:
    """Lower-case host name of a URL (no port, no trailing dot), or None when there is none."""
    if not url or not isinstance(url, str):
        return None
    try:
        host = urlsplit(with_scheme(url)).hostname
    except ValueError:
        return None
    return host.rstrip(".") or None if host else None


@lru_cache(maxsize=1 << 16)
def registered_domain(host: str | None) -> str | None:
    """Registered domain (eTLD+1) of a host: ``live.staticflickr.com`` -> ``staticflickr.com``.

    IP addresses and bare suffixes have no registered domain and give the host itself / None.
    """
    if not host:
        return None
    parts = _EXTRACT(host)
    if parts.domain and parts.suffix:
        return f"{parts.domain}.{parts.suffix}"
    if parts.domain and not parts.suffix:  # IP address or unknown TLD
        return host
    return None


def reverse_host(host: str) -> str:
    """Common Crawl ranks files key hosts reversed: ``www.flickr.com`` <-> ``com.flickr.www``."""
    return ".".join(reversed(host.split(".")))
