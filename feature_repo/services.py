from feast import FeatureService

from views import image_domain, image_metadata, image_scores

ranking = FeatureService(
    name="ranking", features=[image_scores, image_domain[["domain_authority"]],
                              image_metadata[["provider", "age_days"]]],
    description="What search ranking reads per image: the two scores and the context to explain them.",
)
