"""Authority candidates measured against a real-shaped link graph target, with domains as the sample size."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor

from imagerank.models import authority_evidence as AE


def _images(n_domains: int, per_domain: int = 4, seed: int = 0) -> pd.DataFrame:
    """Images whose landing domain's link score rises with its Common Crawl rank; museums are least linked."""
    rng = np.random.default_rng(seed)
    link = np.sort(rng.uniform(0.05, 0.95, n_domains))
    rows = []
    for d in range(n_domains):
        for i in range(per_domain):
            rows.append({"image_id": f"{d}-{i}", "landing_domain": f"d{d}.org",
                         "source": "rijksmuseum" if d < n_domains // 2 else "flickr",
                         "domain_authority": link[d] * 0.4 if d % 3 else np.nan,  # a third unranked: served 0
                         "domain_link_score": link[d], "width": float(rng.integers(100, 4000))})
    return pd.DataFrame(rows)


def test_candidates_are_scored_per_domain_and_small_samples_are_called_unsupported():
    result = AE.evaluate(_images(8), ["domain_authority", "width"], lambda: HistGradientBoostingRegressor(max_iter=20))
    assert result["landing_domains"] == 8 and result["rows"] == 32 and not result["supported"]
    ranks = result["candidates"]["domain_rank (Common Crawl, served)"]
    assert 0.3 < ranks["spearman_domains"] < 1.0  # unranked domains tie at the prior 0
    assert result["candidates"]["openverse_source_authority"]["spearman_domains"] < 0  # museums: least linked
    assert "authority model inputs (domain-grouped CV)" in result["candidates"]
    text = "\n".join(AE.card_lines(result))
    assert "8 domains, not 32 images" in text and "cannot validate" in text


def test_enough_domains_are_supported_and_the_best_named():
    frame = _images(30)
    frame["domain_authority"] = frame["domain_link_score"] * 0.5  # every domain ranked, same order
    result = AE.evaluate(frame, ["domain_authority"], lambda: HistGradientBoostingRegressor(max_iter=20))
    assert result["supported"]
    assert result["candidates"]["domain_rank (Common Crawl, served)"]["spearman_domains"] > 0.99
    assert result["best_by_domain"] in {"domain_rank (Common Crawl, served)", "authority model inputs (domain-grouped CV)"}
    assert "cannot validate" not in "\n".join(AE.card_lines(result))


def test_without_a_link_graph_nothing_is_claimed():
    frame = _images(5).drop(columns="domain_link_score")
    result = AE.evaluate(frame, ["width"], lambda: HistGradientBoostingRegressor(max_iter=20))
    assert result == {"evaluated": False, "reason": "no crawl-derived link graph (--linkgraph)"}
    assert AE.card_lines(result)[-1] == "- not evaluated: no crawl-derived link graph (--linkgraph)"
    assert AE.card_lines(None) == []
