from datetime import timedelta

import pandas as pd
from feast import FeatureView, Field, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, String

from imagerank.features.domains import DOMAIN_STATS_SCHEMA, DOMAINS_DATASET_SCHEMA
from imagerank.features.exif import EXIF_SCHEMA
from imagerank.features.links import LINKS_SCHEMA
from imagerank.features.metadata import METADATA_SCHEMA
from imagerank.features.pixels import PIXELS_SCHEMA
from imagerank.features.visual import VISUAL_SCHEMA
from imagerank.schemas import feast_fields
from imagerank.scoring import SCORE_FEATURES, SCORES_SCHEMA

from entities import domain, image
from sources import (domain_stats_source, domains_source, exif_source, links_source, metadata_source, pixels_source,
                     scores_source, visual_source)

NO_EXPIRY = timedelta(0)
# Every field's type comes from the schema its dataset's writer declares (imagerank.schemas.feast_fields):
# a view cannot serve a type its Parquet files do not hold.

image_scores = FeatureView(
    name="image_scores", entities=[image], ttl=NO_EXPIRY, source=scores_source, online=True,
    description="Served popularity and authority in [0, 1], with where each came from.",
    schema=feast_fields(SCORES_SCHEMA, SCORE_FEATURES),
)

image_metadata = FeatureView(
    name="image_metadata", entities=[image], ttl=NO_EXPIRY, source=metadata_source, online=True,
    description="What the catalog row says: text lengths, license, size, age, place.",
    schema=feast_fields(METADATA_SCHEMA, (
        "title_chars", "title_words", "description_chars", "tag_count", "license_version", "width", "height",
        "aspect", "age_days", "taken_age_days", "has_geo", "provider", "landing_domain")),
)

image_domain = FeatureView(
    name="image_domain", entities=[image], ttl=NO_EXPIRY, source=domains_source, online=True,
    description="Rank evidence inherited from the landing page's host and registered domain: Common Crawl ranks "
                "files, and the landing domain's authority in a crawl-derived domain link graph (--linkgraph).",
    schema=feast_fields(DOMAINS_DATASET_SCHEMA, (
        "host_rank_score", "domain_rank_score", "host_pr_val", "domain_pr_val", "domain_authority",
        "domain_link_pagerank", "domain_link_harmonic", "domain_link_in_domains", "domain_link_score",
        "domain_link_harmonic_score")),
)

domain_stats = FeatureView(
    name="domain_stats", entities=[domain], ttl=NO_EXPIRY, source=domain_stats_source, online=True,
    description="Per registered domain: its rank score and what the catalog holds from it.",
    schema=feast_fields(DOMAIN_STATS_SCHEMA, ("rank_score", "images", "providers", "observed_share")),
)

image_pixels = FeatureView(
    name="image_pixels", entities=[image], ttl=NO_EXPIRY, source=pixels_source, online=True,
    description="Pixel statistics of the DCT-scaled decode, JPEG quality and the 64-bit perceptual hash.",
    schema=feast_fields(PIXELS_SCHEMA, (
        "bytes_per_pixel", "brightness", "contrast", "colourfulness", "saturation", "entropy",
        "highlights_clipped", "shadows_clipped", "sharpness", "edge_density", "jpeg_quality", "decoded_width",
        "decoded_height", "phash", "format", "pixels_error")),
)

image_exif = FeatureView(
    name="image_exif", entities=[image], ttl=NO_EXPIRY, source=exif_source, online=True,
    description="Camera facts from EXIF (Pillow) and the EXIF-like facts providers put in meta_data.",
    schema=feast_fields(EXIF_SCHEMA, (
        "has_exif", "make", "model", "camera_class", "focal_length", "f_number", "exposure_time", "iso", "edited",
        "gps_present", "taken_at_source", "exif_error")),
)

image_links = FeatureView(
    name="image_links", entities=[image], ttl=NO_EXPIRY, source=links_source, online=True,
    description="Link evidence from web crawls: embedding pages/hosts/domains, PicASHOW, landing PageRank.",
    schema=feast_fields(LINKS_SCHEMA, (
        "has_link_evidence", "link_pages", "link_hosts", "link_domains", "picashow", "landing_pagerank",
        "link_authority")),
)

image_visual = FeatureView(
    name="image_visual", entities=[image], ttl=NO_EXPIRY, source=visual_source, online=True,
    description="Near-duplicate copies by perceptual hash and a VisualRank score (1.0 = the average image).",
    schema=feast_fields(VISUAL_SCHEMA, ("dup_cluster_size", "dup_hosts", "dup_providers", "visualrank")),
)


boost_request = RequestSource(
    name="boost_request",
    schema=[Field(name="boost_weight", dtype=Float64), Field(name="boost_mode", dtype=String)],
    description="Per search request: boost_mode 'min' (Openverse: min(popularity, authority)) or 'weighted' "
                "(boost_weight * popularity + (1 - boost_weight) * authority).",
)


@on_demand_feature_view(
    sources=[image_scores, boost_request], schema=[Field(name="boost", dtype=Float64)], mode="pandas",
    description="The ranking boost in [0, 1] blended per request from the served popularity and authority.",
)
def rank_boost(inputs: pd.DataFrame) -> pd.DataFrame:
    from imagerank.store.boost import rank_boost_frame

    return rank_boost_frame(inputs)
