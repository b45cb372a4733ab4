"""Image authority from links: catalog images matched to crawled image URLs and to their landing pages.

Matching keys (``image_key``): a crawled ``<img>`` URL and a catalog ``url`` / ``thumbnail`` match when they
have the same key:

- Flickr: any ``*.staticflickr.com`` / ``*.static.flickr.com`` photo URL ``/<server>/<id>_<secret>[_<size>].<ext>``
  (farm hosts, ``live.staticflickr.com``, size suffixes ``_s _q _t _m _n _w _z _c _b _h _k _o``) -> ``flickr:<id>``;
- Wikimedia: ``upload.wikimedia.org/<project>/<lang>/[thumb/]x/xy/<File>[/<N>px-<File>]`` -> ``wm:<project>/<lang>/<File>``;
- everything else: the normalized URL without its scheme (http and https copies match).

Landing pages match page nodes by ``page_key`` (normalized URL without scheme, trailing ``/`` dropped).

Features (``LINKS_META``), one row per catalog image:

- ``link_pages`` / ``link_hosts`` / ``link_domains``: distinct crawled pages / hosts / registered domains embedding
  the image (domains are the farm-proof count), ``link_alt_pages``: embedding pages giving alt text;
- ``picashow``: PicASHOW authority, sum over embedding pages p of PR(p) / (distinct images on p);
- ``landing_crawled``, ``landing_pagerank``, ``landing_in_links``: the landing page as a page-graph node;
- ``authority_prob``: probability that the random surfer of the page graph, at a page, picks this image among
  the page's images = ``picashow``, plus PR(landing) when the landing page was crawled but not seen embedding
  the image (the landing page displays it; counted as its only image);
- ``link_authority`` in [0, 1): ``r / (r + 1)`` with ``r = authority_prob * n_pages`` (the image's surfer
  probability relative to an average page's PageRank ``1 / n_pages``): 0.5 = as likely as an average page;
- ``has_link_evidence``: any embedding page or a crawled landing page. Rows without evidence hold zeros.

``link_authority`` (where ``has_link_evidence``) is the link-evidence authority target.
Pages that embed images but have no link edges are not page-graph nodes: their PageRank is taken as the
teleport floor ``(1 - damping) / n_pages``.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pyarrow as pa

from imagerank.schemas import empty_frame
from imagerank.settings import PAGERANK
from imagerank.urls import normalize_url, with_scheme

_FLICKR_HOST = re.compile(r"^(?:[a-z0-9\-]+\.)*(?:staticflickr\.com|static\.flickr\.com)$")
_FLICKR_PATH = re.compile(r"^/(?:\d+/)?\d+/(\d+)_[0-9a-f]+(?:_[a-z0-9]{1,2})?\.(?:jpe?g|png|gif)$", re.I)
_WM_PATH = re.compile(r"^/(wikipedia|wikimedia|wiktionary|wikibooks|wikinews|wikiquote|wikisource|wikiversity|"
                      r"wikivoyage)/([a-z\-]+)/(?:thumb/)?[0-9a-f]/[0-9a-f]{2}/([^/]+)(?:/[^/]*)?$", re.I)

#: One row per catalog image (counts are 0, never null); ``W/features/links/`` adds the run's event time.
LINKS_SCHEMA = pa.schema([
    pa.field("image_id", pa.string()),
    pa.field("has_link_evidence", pa.bool_(), nullable=False),
    pa.field("link_pages", pa.int64(), nullable=False),
    pa.field("link_hosts", pa.int64(), nullable=False),
    pa.field("link_domains", pa.int64(), nullable=False),
    pa.field("link_alt_pages", pa.int64(), nullable=False),
    pa.field("link_alt_fraction", pa.float64()),
    pa.field("picashow", pa.float64()),
    pa.field("landing_crawled", pa.bool_(), nullable=False),
    pa.field("landing_pagerank", pa.float64()),
    pa.field("landing_in_links", pa.int64(), nullable=False),
    pa.field("authority_prob", pa.float64()),
    pa.field("link_authority", pa.float64()),
])
LINKS_META = empty_frame(LINKS_SCHEMA)
CATALOG_KEYS_META = pd.DataFrame({"image_id": pd.Series(dtype="string"), "key": pd.Series(dtype="string")})
IMAGE_EDGES_META = pd.DataFrame({
    "key": pd.Series(dtype="string"), "src_url": pd.Series(dtype="string"),
    "src_host": pd.Series(dtype="string"), "src_domain": pd.Series(dtype="string"),
    "has_alt": pd.Series(dtype="bool"),
})
EVIDENCE_META = pd.DataFrame({
    "image_id": pd.Series(dtype="string"), "link_pages": pd.Series(dtype="int64"),
    "link_hosts": pd.Series(dtype="int64"), "link_domains": pd.Series(dtype="int64"),
    "link_alt_pages": pd.Series(dtype="int64"), "picashow": pd.Series(dtype="float64"),
    "landing_embeds": pd.Series(dtype="bool"),
})


def image_key(url: str | None, *, assume_scheme: bool = False) -> str | None:
    """Matching key of an image URL (module docstring), or None for an unusable URL."""
    if not url or not isinstance(url, str):
        return None
    norm, _ = normalize_url(with_scheme(url) if assume_scheme else url)
    if norm is None:
        return None
    scheme_end = norm.index("://") + 3
    rest = norm[scheme_end:]
    host, _, path = rest.partition("/")
    path = "/" + path.split("?", 1)[0]
    if _FLICKR_HOST.match(host):
        m = _FLICKR_PATH.match(path)
        if m:
            return f"flickr:{m.group(1)}"
    elif host == "upload.wikimedia.org":
        m = _WM_PATH.match(path)
        if m:
            name = unquote(m.group(3)).replace(" ", "_")
            return f"wm:{m.group(1).lower()}/{m.group(2).lower()}/{name}"
    return rest


def page_key(url: str | None, *, assume_scheme: bool = False) -> str | None:
    """Matching key of a page URL: normalized, without scheme, without a trailing ``/``."""
    if not url or not isinstance(url, str):
        return None
    norm, _ = normalize_url(with_scheme(url) if assume_scheme else url)
    if norm is None:
        return None
    rest = norm[norm.index("://") + 3:]
    return rest[:-1] if rest.endswith("/") else rest


def catalog_image_keys(catalog: pd.DataFrame) -> pd.DataFrame:
    """(image_id, key) for each catalog row's ``url`` and ``thumbnail`` (distinct pairs; pure)."""
    rows = []
    for col in ("url", "thumbnail"):
        if col not in catalog.columns:
            continue
        for image_id, url in zip(catalog["image_id"].tolist(), catalog[col].tolist()):
            key = image_key(url, assume_scheme=True) if isinstance(url, str) else None
            if key is not None:
                rows.append((image_id, key))
    out = pd.DataFrame(rows, columns=["image_id", "key"]).drop_duplicates()
    return out.astype(CATALOG_KEYS_META.dtypes.to_dict())


def image_edge_keys(edges: pd.DataFrame) -> pd.DataFrame:
    """Image edges of an edge partition as (key, src_url, src_host, src_domain, has_alt) (pure)."""
    img = edges[edges["kind"] == "image"]
    keys = [image_key(u) for u in img["dst_url"].tolist()]
    out = pd.DataFrame({
        "key": pd.array(keys, dtype="string"),
        "src_url": img["src_url"].astype("string").to_numpy(),
        "src_host": img["src_host"].astype("string").to_numpy(),
        "src_domain": img["src_domain"].astype("string").to_numpy(),
        "has_alt": (img["text"].fillna("").str.len() > 0).to_numpy(dtype=bool),
    })
    out = out[out["key"].notna()]
    return out.groupby(["key", "src_url"], as_index=False, sort=False).agg(
        src_host=("src_host", "first"), src_domain=("src_domain", "first"), has_alt=("has_alt", "max")
    ).astype(IMAGE_EDGES_META.dtypes.to_dict())[list(IMAGE_EDGES_META.columns)]


def page_image_counts(image_edges: pd.DataFrame) -> pd.DataFrame:
    """Distinct images per embedding page: (src_url, n_images) (pure; run after a shuffle on src_url)."""
    out = image_edges.groupby("src_url", sort=False)["key"].nunique().rename("n_images").reset_index()
    return out.astype({"src_url": "string", "n_images": "int64"})


def aggregate_evidence(matches: pd.DataFrame) -> pd.DataFrame:
    """Per-image evidence from matched rows (image_id, src_url, src_host, src_domain, has_alt, share,
    is_landing); rows of one image must be in one partition (shuffle on image_id first). Pure."""
    if matches.empty:
        return EVIDENCE_META.copy()
    m = matches.drop_duplicates(["image_id", "src_url"])
    g = m.groupby("image_id", sort=False)
    out = pd.DataFrame({
        "link_pages": g["src_url"].nunique(),
        "link_hosts": g["src_host"].nunique(),
        "link_domains": g["src_domain"].nunique(),
        "link_alt_pages": g["has_alt"].sum().astype("int64"),
        "picashow": g["share"].sum(),
        "landing_embeds": g["is_landing"].max().astype(bool),
    }).reset_index()
    return out.astype(EVIDENCE_META.dtypes.to_dict())[list(EVIDENCE_META.columns)]


def finalize_link_features(frame: pd.DataFrame, n_pages: int) -> pd.DataFrame:
    """One ``LINKS_META`` row per catalog image from (image_id + evidence columns + landing_pagerank,
    landing_in_links, possibly null); zeros where nothing matched; all floats finite. Pure."""
    def col(name, dtype, fill):
        if name not in frame.columns:
            return pd.Series(fill, index=frame.index, dtype=dtype)
        return pd.to_numeric(frame[name], errors="coerce").fillna(fill).astype(dtype)

    link_pages = col("link_pages", "int64", 0)
    alt = col("link_alt_pages", "int64", 0)
    picashow = col("picashow", "float64", 0.0).clip(lower=0.0)
    landing_pr = col("landing_pagerank", "float64", 0.0).clip(lower=0.0)
    landing_crawled = frame["landing_pagerank"].notna() if "landing_pagerank" in frame.columns else \
        pd.Series(False, index=frame.index)
    embeds = frame["landing_embeds"].astype("boolean").fillna(False).astype(bool) if "landing_embeds" in frame.columns else \
        pd.Series(False, index=frame.index)
    prob = picashow + np.where(landing_crawled & ~embeds, landing_pr, 0.0)
    ratio = prob * max(int(n_pages), 1)
    out = pd.DataFrame({
        "image_id": frame["image_id"].astype("string"),
        "has_link_evidence": (link_pages > 0) | landing_crawled,
        "link_pages": link_pages,
        "link_hosts": col("link_hosts", "int64", 0),
        "link_domains": col("link_domains", "int64", 0),
        "link_alt_pages": alt,
        "link_alt_fraction": np.where(link_pages > 0, alt / link_pages.clip(lower=1), 0.0),
        "picashow": picashow,
        "landing_crawled": landing_crawled.astype(bool),
        "landing_pagerank": landing_pr,
        "landing_in_links": col("landing_in_links", "int64", 0),
        "authority_prob": prob,
        "link_authority": ratio / (ratio + 1.0),
    })
    return out.astype(LINKS_META.dtypes.to_dict()).reset_index(drop=True)


def link_features_frame(catalog: pd.DataFrame, edges: pd.DataFrame, pages: pd.DataFrame,
                        damping: float = PAGERANK.damping) -> pd.DataFrame:
    """The whole computation in pandas (small inputs: tests, demo); ``pipelines.graph`` does it with Dask."""
    n_pages = len(pages)
    img = image_edge_keys(edges)
    counts = page_image_counts(img)
    pr = pages[["url", "pagerank"]].rename(columns={"url": "src_url"})
    img = img.merge(counts, on="src_url", how="left").merge(pr, on="src_url", how="left")
    img = add_share(img, n_pages, damping)
    keys = catalog_image_keys(catalog)
    landing = landing_frame(catalog)
    matches = keys.merge(img, on="key", how="inner")
    matches = mark_landing(matches, landing)
    evidence = aggregate_evidence(matches)
    lp = landing.merge(page_frame(pages), on="page_key", how="inner").drop(columns="page_key")
    frame = catalog[["image_id"]].merge(evidence, on="image_id", how="left").merge(lp, on="image_id", how="left")
    return finalize_link_features(frame, n_pages)


def add_share(img: pd.DataFrame, n_pages: int, damping: float) -> pd.DataFrame:
    """``share = PR(page) / n_images(page)``; pages outside the page graph get the teleport floor. Pure."""
    floor = (1.0 - damping) / max(n_pages, 1)
    pr = pd.to_numeric(img["pagerank"], errors="coerce").fillna(floor)
    n = pd.to_numeric(img["n_images"], errors="coerce").fillna(1).clip(lower=1)
    return img.assign(share=(pr / n).astype("float64"))


def landing_frame(catalog: pd.DataFrame) -> pd.DataFrame:
    """(image_id, page_key) of each catalog row's landing page (pure)."""
    keys = [page_key(u, assume_scheme=True) if isinstance(u, str) else None
            for u in catalog.get("foreign_landing_url", pd.Series([None] * len(catalog))).tolist()]
    out = pd.DataFrame({"image_id": catalog["image_id"].astype("string").to_numpy(),
                        "page_key": pd.array(keys, dtype="string")})
    return out[out["page_key"].notna()]


def page_frame(pages: pd.DataFrame) -> pd.DataFrame:
    """(page_key, landing_pagerank, landing_in_links) of page-graph nodes (pure)."""
    out = pd.DataFrame({
        "page_key": pd.array([page_key(u) for u in pages["url"].tolist()], dtype="string"),
        "landing_pagerank": pages["pagerank"].astype("float64").to_numpy(),
        "landing_in_links": pages["in_links"].astype("int64").to_numpy(),
    })
    return out[out["page_key"].notna()].drop_duplicates("page_key")


def mark_landing(matches: pd.DataFrame, landing: pd.DataFrame) -> pd.DataFrame:
    """Flag matched rows whose embedding page is the image's own landing page (pure)."""
    src_keys = pd.array([page_key(u) for u in matches["src_url"].tolist()], dtype="string")
    m = matches.assign(src_key=src_keys)
    lk = landing.rename(columns={"page_key": "src_key"}).assign(is_landing=True)
    m = m.merge(lk, on=["image_id", "src_key"], how="left")
    m["is_landing"] = m["is_landing"].astype("boolean").fillna(False).astype(bool)
    return m.drop(columns="src_key")


def mark_landing_key(part: pd.DataFrame) -> pd.DataFrame:
    """Partition function, as :func:`mark_landing` for matches that already carry their image's ``landing_key``
    (joined on the cluster): ``is_landing`` — the linking page is the image's own landing page."""
    src_keys = [page_key(u) for u in part["src_url"].tolist()]
    landing = part["landing_key"].astype(object).tolist()
    flag = [isinstance(lk, str) and s == lk for s, lk in zip(src_keys, landing)]
    return part.assign(is_landing=pd.Series(flag, index=part.index, dtype=bool))


#: Frames the link-features stage passes between its partition functions.
PAGE_IMAGE_COUNTS_META = pd.DataFrame({"src_url": pd.Series(dtype="string"), "n_images": pd.Series(dtype="int64")})
SHARED_EDGES_META = IMAGE_EDGES_META.assign(n_images=pd.Series(dtype="int64"), pagerank=pd.Series(dtype="float64"),
                                            share=pd.Series(dtype="float64"))
LANDING_META = pd.DataFrame({"image_id": pd.Series(dtype="string"), "page_key": pd.Series(dtype="string")})
PAGE_KEYS_META = pd.DataFrame({"page_key": pd.Series(dtype="string"), "landing_pagerank": pd.Series(dtype="float64"),
                               "landing_in_links": pd.Series(dtype="int64")})
