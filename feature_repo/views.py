from datetime import timedelta

import pandas as pd
from feast import FeatureView, Field, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Bool, Float32, Float64, Int32, Int64, String

from entities import domain, image
from sources import (domain_stats_source, domains_source, exif_source, links_source, metadata_source, pixels_source,
                     scores_source, visual_source)

NO_EXPIRY = timedelta(0)

image_scores = FeatureView(
    name="image_scores", entities=[image], ttl=NO_EXPIRY, source=scores_source, online=True,
    description="Served popularity and authority in [0, 1], with where each came from.",
    schema=[Field(name="popularity", dtype=Float64), Field(name="authority", dtype=Float64),
            Field(name="popularity_source", dtype=String), Field(name="authority_source", dtype=String),
            Field(name="model_version", dtype=String)],
)

image_metadata = FeatureView(
    name="image_metadata", entities=[image], ttl=NO_EXPIRY, source=metadata_source, online=True,
    description="What the catalog row says: text lengths, license, size, age, place.",
    schema=[Field(name=name, dtype=Float64) for name in (
        "title_chars", "title_words", "description_chars", "tag_count", "license_version", "width", "height",
        "aspect", "age_days", "taken_age_days", "has_geo")]
    + [Field(name="provider", dtype=String), Field(name="landing_domain", dtype=String)],
)

image_domain = FeatureView(
    name="image_domain", entities=[image], ttl=NO_EXPIRY, source=domains_source, online=True,
    description="Rank evidence inherited from the landing page's host and registered domain: Common Crawl ranks "
                "files, and the landing domain's authority in a crawl-derived domain link graph (--linkgraph).",
    schema=[Field(name=name, dtype=Float64) for name in (
        "host_rank_score", "domain_rank_score", "host_pr_val", "domain_pr_val", "domain_authority",
        "domain_link_pagerank", "domain_link_harmonic", "domain_link_in_domains", "domain_link_score",
        "domain_link_harmonic_score")],
)

domain_stats = FeatureView(
    name="domain_stats", entities=[domain], ttl=NO_EXPIRY, source=domain_stats_source, online=True,
    description="Per registered domain: its rank score and what the catalog holds from it.",
    schema=[Field(name="rank_score", dtype=Float64), Field(name="images", dtype=Int64),
            Field(name="providers", dtype=Int64), Field(name="observed_share", dtype=Float64)],
)

image_pixels = FeatureView(
    name="image_pixels", entities=[image], ttl=NO_EXPIRY, source=pixels_source, online=True,
    description="Pixel statistics of the DCT-scaled decode, JPEG quality and the 64-bit perceptual hash.",
    schema=[Field(name=name, dtype=Float32) for name in (
        "bytes_per_pixel", "brightness", "contrast", "colourfulness", "saturation", "entropy",
        "highlights_clipped", "shadows_clipped", "sharpness", "edge_density")]
    + [Field(name="jpeg_quality", dtype=Int32), Field(name="decoded_width", dtype=Int32),
       Field(name="decoded_height", dtype=Int32), Field(name="phash", dtype=Int64),
       Field(name="format", dtype=String), Field(name="pixels_error", dtype=String)],
)

image_exif = FeatureView(
    name="image_exif", entities=[image], ttl=NO_EXPIRY, source=exif_source, online=True,
    description="Camera facts from EXIF (Pillow) and the EXIF-like facts providers put in meta_data.",
    schema=[Field(name="has_exif", dtype=Bool), Field(name="make", dtype=String), Field(name="model", dtype=String),
            Field(name="camera_class", dtype=String), Field(name="focal_length", dtype=Float32),
            Field(name="f_number", dtype=Float32), Field(name="exposure_time", dtype=Float32),
            Field(name="iso", dtype=Int32), Field(name="edited", dtype=Bool), Field(name="gps_present", dtype=Bool),
            Field(name="taken_at_source", dtype=String), Field(name="exif_error", dtype=String)],
)

image_links = FeatureView(
    name="image_links", entities=[image], ttl=NO_EXPIRY, source=links_source, online=True,
    description="Link evidence from web crawls: embedding pages/hosts/domains, PicASHOW, landing PageRank.",
    schema=[Field(name="has_link_evidence", dtype=Bool), Field(name="link_pages", dtype=Int64),
            Field(name="link_hosts", dtype=Int64), Field(name="link_domains", dtype=Int64),
            Field(name="picashow", dtype=Float64), Field(name="landing_pagerank", dtype=Float64),
            Field(name="link_authority", dtype=Float64)],
)

image_visual = FeatureView(
    name="image_visual", entities=[image], ttl=NO_EXPIRY, source=visual_source, online=True,
    description="Near-duplicate copies by perceptual hash and a VisualRank score (1.0 = the average image).",
    schema=[Field(name="dup_cluster_size", dtype=Int64), Field(name="dup_hosts", dtype=Int64),
            Field(name="dup_providers", dtype=Int64), Field(name="visualrank", dtype=Float64)],
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
