"""A generated sample catalog for ``make demo``: Openverse-shaped rows, JPEGs, a crawl and a ranks file.

Nothing here is real data: rows, views and ranks come from a seeded generator whose hidden popularity
depends on the same kind of signals real catalogs carry (tags, descriptions, age, place), so the
pipeline has something true to learn. A few deliberately broken rows show the rejects path.
"""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from imagerank.graph.synthetic import demo_pages, write_demo_warc

PROVIDERS = {  # provider -> (landing URL template, metric key or None, share of rows)
    "flickr": ("https://www.flickr.com/photos/{creator}/{n}", "views", 0.45),
    "wikimedia": ("https://commons.wikimedia.org/wiki/File:{title}_{n}.jpg", "global_usage_count", 0.2),
    "geographorguk": ("https://www.geograph.org.uk/photo/{n}", None, 0.15),
    "rijksmuseum": ("https://www.rijksmuseum.nl/en/collection/SK-A-{n}", None, 0.1),
    "behance": ("https://www.behance.net/gallery/{n}/{title}", None, 0.1),
}
WORDS = ("harbour sunset bridge street market cathedral forest river mountain portrait festival train "
         "garden lighthouse museum painting snow beach castle city night bird flower architecture").split()
LICENSES = [("by", "2.0"), ("by-sa", "4.0"), ("by-nc", "2.0"), ("cc0", "1.0"), ("by-nc-sa", "2.0")]
DEMO_DOMAIN_RANKS = [("com.flickr", 69, 1.6e-4, 167), ("org.wikimedia", 107, 1.1e-4, 1053),
                     ("net.behance", 185, 7.4e-5, 31), ("nl.rijksmuseum", 20_412, 2.1e-6, 12)]


def generate(out_dir: str | Path, rows: int = 400, seed: int = 7, images: bool = True) -> dict:
    """Write ``catalog.csv`` (+ ``broken.csv``), ``images/{image_id}.jpg``, ``crawl.warc.gz`` and ``ranks-domain.txt.gz``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = list(PROVIDERS)
    shares = np.array([PROVIDERS[p][2] for p in names])
    records = [_row(i, rng.choice(names, p=shares / shares.sum()), rng) for i in range(rows)]
    catalog = pd.DataFrame(records)
    catalog.drop(columns="_quality").to_csv(out / "catalog.csv", index=False)
    _broken_rows(catalog.iloc[0]).to_csv(out / "broken.csv", index=False)
    if images:
        (out / "images").mkdir(exist_ok=True)
        for record in records:
            render_image(out / "images" / f"{record['identifier']}.jpg", record["_quality"], rng)
        for original, copy in zip(records[::REUPLOAD_EVERY], records[REUPLOAD_EVERY - 1::REUPLOAD_EVERY]):
            reupload(out / "images" / f"{original['identifier']}.jpg", out / "images" / f"{copy['identifier']}.jpg")
    crawled = catalog.sample(frac=0.4, random_state=seed)  # the crawl saw 40% of the images' pages
    write_demo_warc(out / "crawl.warc.gz", demo_pages(crawled["url"].tolist(), crawled["foreign_landing_url"].tolist()))
    with gzip.open(out / "ranks-domain.txt.gz", "wt") as handle:
        handle.write("#harmonicc_pos\t#harmonicc_val\t#pr_pos\t#pr_val\t#host_rev\t#n_hosts\n")
        for name, pos, pr, hosts in DEMO_DOMAIN_RANKS:
            handle.write(f"{pos}\t{2e7 / pos ** 0.1:.1f}\t{pos}\t{pr}\t{name}\t{hosts}\n")
        for pos in range(len(DEMO_DOMAIN_RANKS) + 1, 5_000):  # fill the file to a plausible population
            handle.write(f"{pos * 10}\t{1e6:.1f}\t{pos * 10}\t1e-7\tcom.example{pos}\t1\n")
    return {"catalog": [str(out / "catalog.csv"), str(out / "broken.csv")], "ranks": [str(out / "ranks-domain.txt.gz")],
            "crawl": [str(out / "crawl.warc.gz")],
            "images": str(out / "images") if images else None, "rows": rows}


def _row(i: int, provider: str, rng: np.random.Generator) -> dict:
    template, metric, _ = PROVIDERS[provider]
    tags = list(rng.choice(WORDS, size=int(rng.integers(0, 12)), replace=False))
    title = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 6)))).title() if rng.random() > 0.15 else f"IMG_{rng.integers(1000, 9999)}"
    description = " ".join(rng.choice(WORDS, size=int(rng.integers(0, 40))))
    published = pd.Timestamp("2008-01-01", tz="UTC") + pd.Timedelta(days=float(rng.uniform(0, 6000)))
    geo = rng.random() < 0.3
    quality = float(rng.uniform(0, 1))
    age_years = (pd.Timestamp("2026-11-01", tz="UTC") - published).days / 365
    latent = 0.18 * len(tags) + 0.02 * len(description.split()) + 0.8 * geo + 1.2 * quality + 0.25 * age_years
    meta = {"pub_date": str(int(published.timestamp())), "date_taken": str((published - pd.Timedelta(days=3)).tz_localize(None)),
            "description": description}
    if geo:
        meta.update(latitude=round(float(rng.uniform(50, 58)), 5), longitude=round(float(rng.uniform(-5, 1)), 5))
    if metric:
        scale = 40 if metric == "views" else 0.3
        meta[metric] = str(int(rng.poisson(scale * np.exp(latent + rng.normal(0, 0.6)))))
    creator = f"creator{int(rng.integers(0, 60))}"
    license_, version = LICENSES[int(rng.integers(0, len(LICENSES)))]
    image_id = str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | i))
    return {
        "identifier": image_id, "created_on": str(published + pd.Timedelta(days=400)), "updated_on": str(published + pd.Timedelta(days=500)),
        "ingestion_type": "provider_api", "provider": provider, "source": provider, "foreign_identifier": str(100000 + i),
        "foreign_landing_url": template.format(creator=creator, n=100000 + i, title=title.replace(" ", "_")),
        "url": f"https://images.example-cdn.net/{provider}/{image_id}.jpg",
        "thumbnail": f"https://images.example-cdn.net/{provider}/{image_id}_m.jpg",
        "width": 640, "height": int(rng.choice([427, 480, 640, 360])), "filesize": "", "license": license_,
        "license_version": version, "creator": creator, "creator_url": f"https://www.{provider}.example/people/{creator}",
        "title": title, "meta_data": json.dumps(meta), "tags": json.dumps([{"name": t, "provider": provider} for t in tags]),
        "watermarked": "f", "last_synced_with_source": "", "removed_from_source": "f", "filetype": "jpg",
        "category": "photograph", "_quality": quality,
    }


def _broken_rows(good: pd.Series) -> pd.DataFrame:
    """Rows a real export does contain: bad JSON, no identifier, a non-numeric width, a repeated id."""
    bad_json = good.copy(); bad_json["identifier"] = str(uuid.uuid5(uuid.NAMESPACE_URL, "bad-json")); bad_json["meta_data"] = '{"views": 12'
    no_id = good.copy(); no_id["identifier"] = ""
    bad_width = good.copy(); bad_width["identifier"] = str(uuid.uuid5(uuid.NAMESPACE_URL, "bad-width")); bad_width["width"] = "wide"
    repeated = good.copy(); repeated["title"] = good["title"] + " (re-exported)"
    return pd.DataFrame([bad_json, no_id, bad_width, repeated]).drop(columns="_quality", errors="ignore")


REUPLOAD_EVERY = 40
"""Every 40th image is a re-upload of another one (resized, re-encoded), as catalogs have: the visual
near-duplicate features then have copies to find."""


def reupload(original: Path, copy: Path) -> None:
    """``copy`` becomes ``original`` scaled to 600 px wide and saved again at JPEG quality 70."""
    from PIL import Image

    with Image.open(original) as image:
        height = round(image.height * 600 / image.width)
        image.convert("RGB").resize((600, height), Image.LANCZOS).save(copy, "JPEG", quality=70)


def render_image(path: Path, quality: float, rng: np.random.Generator, width: int = 640, height: int = 427) -> None:
    """A photo-like JPEG: smooth gradients, shapes and grain; sharper and more colourful with ``quality``."""
    from PIL import Image, ImageDraw, ImageFilter

    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 200, size=3)
    tilt = rng.uniform(-0.2, 0.2, size=(3, 2))
    pixels = np.stack([base[c] + tilt[c, 0] * x + tilt[c, 1] * y for c in range(3)], axis=-1)
    pixels += rng.normal(0, 6, size=pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(3 + 12 * quality)):
        x0, y0 = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        draw.ellipse([x0, y0, x0 + int(rng.integers(20, 200)), y0 + int(rng.integers(20, 200))], fill=colour)
    if quality < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(radius=3 * (0.5 - quality) * 4))
    image.save(path, "JPEG", quality=85)
