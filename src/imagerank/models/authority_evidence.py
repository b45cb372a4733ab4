"""What real data can say about authority when no catalog image carries link evidence.

The authority model learns from images that crawled pages link to (``link_authority``). Real catalogs
crawled against a monthly crawl have such images; a small sample usually has none, and then the model is
not trained. What every image still has is its landing domain's place in a crawl-derived link graph
(``--linkgraph``, e.g. Creative Commons' CC-MAIN-2018-22 extraction). That is the target here: the landing
domain's link-graph position score. The candidates are what serving can use without that crawl — Openverse's
static source-type authority, Common Crawl's domain ranks of another season (the served ``domain_rank``),
and the authority model's inputs fitted with folds grouped by landing domain. Nothing here changes what is
served; it measures, on real rows, how far each candidate agrees with independent link evidence, and how
many landing domains back each figure (a catalog sample has a handful; every image of a domain shares one
target value, so domains, not images, are the sample size).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from imagerank.models.evaluation import grouped_cv_predictions, spearman
from imagerank.models.source_authority import SOURCE_AUTHORITY_COLUMN, source_authority

TARGET_COLUMN = "domain_link_score"
#: Fewer landing domains than this and a domain-grouped figure is reported but called unsupported.
MIN_DOMAINS = 20


def candidate_values(rows: pd.DataFrame) -> dict[str, pd.Series]:
    """Per-image values of the candidates that need no link graph (NaN where a candidate has nothing)."""
    out: dict[str, pd.Series] = {}
    if "source" in rows:
        out["openverse_source_authority"] = source_authority(rows["source"])
    if "domain_authority" in rows:  # served as ``domain_rank``; 0 (the prior) where no ranks file has the domain
        out["domain_rank (Common Crawl, served)"] = pd.to_numeric(rows["domain_authority"], errors="coerce").fillna(0.0)
    return out


def evaluate(features: pd.DataFrame, model_columns: list[str], make_model, *, min_domains: int = MIN_DOMAINS) -> dict:
    """Agreement of each candidate (and of the authority model's inputs, fitted with domain-grouped folds) with
    the landing domain's link-graph position score, per image and per landing domain."""
    if TARGET_COLUMN not in features or "landing_domain" not in features:
        return {"evaluated": False, "reason": "no crawl-derived link graph (--linkgraph)"}
    rows = features[features[TARGET_COLUMN].notna() & features["landing_domain"].notna()].reset_index(drop=True)
    domains = rows["landing_domain"].astype("string")
    n_domains = int(domains.nunique())
    out = {"evaluated": True, "target": f"{TARGET_COLUMN} of the landing domain (--linkgraph)",
           "rows": int(len(rows)), "landing_domains": n_domains,
           "rows_without_graph_domain": int(len(features) - len(rows)),
           "supported": n_domains >= min_domains, "min_domains": min_domains}
    if n_domains < 3:
        out["reason"] = f"only {n_domains} landing domains in the link graph"
        return out
    y = rows[TARGET_COLUMN].astype("float64")
    values = candidate_values(rows)
    # never the target's own crawl: the domain_link_* columns are the link graph the target comes from
    columns = [c for c in model_columns if c in rows and c != SOURCE_AUTHORITY_COLUMN and not c.startswith("domain_link")]
    if columns:
        X = rows[columns].astype("float64")
        if "source" in rows:
            X = X.assign(**{SOURCE_AUTHORITY_COLUMN: source_authority(rows["source"]).to_numpy()})
        values["authority model inputs (domain-grouped CV)"] = pd.Series(
            grouped_cv_predictions(make_model(), X, y, domains, pass_groups=False))
    per_domain = pd.DataFrame({"domain": domains, "target": y, **{k: v.to_numpy() for k, v in values.items()}}) \
        .groupby("domain").mean()
    out["candidates"] = {name: {"spearman_images": spearman(v, y), "spearman_domains": spearman(per_domain[name], per_domain["target"]),
                                "distinct_values": int(pd.Series(v).nunique())}
                         for name, v in values.items()}
    best = max(out["candidates"].items(), key=lambda kv: np.nan_to_num(kv[1]["spearman_domains"], nan=-2.0))
    out["best_by_domain"] = best[0]
    return out


def evaluate_sample(rows: pd.DataFrame, feature_columns: list[str], random_state: int = 0) -> dict:
    """:func:`evaluate` with the authority model's inputs and a small ensemble (a bounded sample of rows)."""
    from imagerank.models.ensemble import ScoreEnsemble
    from imagerank.models.train import authority_columns

    return evaluate(rows, authority_columns(feature_columns),
                    lambda: ScoreEnsemble(random_state=random_state, calibrate="isotonic", max_iter=40, n_estimators=30))


def card_lines(result: dict | None) -> list[str]:
    """The model card's section: the figures, and plainly what they can and cannot support."""
    if not result:
        return []
    lines = ["", "## authority against a real link graph (--linkgraph)", ""]
    if not result.get("evaluated") or "candidates" not in result:
        return lines + [f"- not evaluated: {result.get('reason', 'no link graph')}"]
    lines += [f"- target: {result['target']}; {result['rows']} images on {result['landing_domains']} landing domains "
              f"({result['rows_without_graph_domain']} images whose domain the graph does not hold)", "",
              "| candidate | spearman (images) | spearman (domains) | distinct values |", "|---|---|---|---|"]
    for name, figures in result["candidates"].items():
        lines.append(f"| {name} | {_fmt(figures['spearman_images'])} | {_fmt(figures['spearman_domains'])} | "
                     f"{figures['distinct_values']} |")
    lines += ["", f"- best agreement across landing domains: {result['best_by_domain']}"]
    if not result["supported"]:
        lines.append(f"- what this supports: every image of a landing domain shares its target, so the sample size is "
                     f"{result['landing_domains']} domains, not {result['rows']} images; below {result['min_domains']} "
                     f"domains these figures cannot validate a candidate, and the served authority stays the Common "
                     f"Crawl domain rank. A trained authority model needs images that crawled pages link to (--crawl "
                     f"over the catalog's landing pages)")
    return lines


def _fmt(value) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"
