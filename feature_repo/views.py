from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Float64, Int64, String

from entities import domain, image
from sources import domain_stats_source, domains_source, metadata_source, scores_source

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
    description="Rank evidence inherited from the landing page's host and registered domain.",
    schema=[Field(name=name, dtype=Float64) for name in (
        "host_rank_score", "domain_rank_score", "host_pr_val", "domain_pr_val", "domain_authority")],
)

domain_stats = FeatureView(
    name="domain_stats", entities=[domain], ttl=NO_EXPIRY, source=domain_stats_source, online=True,
    description="Per registered domain: its rank score and what the catalog holds from it.",
    schema=[Field(name="rank_score", dtype=Float64), Field(name="images", dtype=Int64),
            Field(name="providers", dtype=Int64), Field(name="observed_share", dtype=Float64)],
)
