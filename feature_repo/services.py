from feast import FeatureService

from views import image_domain, image_metadata, image_scores, rank_boost

#: Read by `imagerank lookup` and by search through `feast serve` (request data: boost_weight, boost_mode).
ranking = FeatureService(
    name="ranking", features=[image_scores, rank_boost,
                              image_domain[["domain_authority", "domain_link_score", "domain_link_in_domains"]],
                              image_metadata[["provider", "age_days"]]],
    description="What search ranking reads per image: the two scores, the per-request boost blended from them, "
                "and the context to explain them (domain rank and link authority, provider, age).",
)
