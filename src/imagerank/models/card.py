"""The model card: ``metrics.json`` (every figure, machine-readable) and ``model_card.md`` (the same, readable).

One writer for both models: the authority model's evaluation tables (:func:`evaluation_lines`), the popularity
model's served/evaluated account (:func:`popularity_lines`), the ablation tables they share and the
``--linkgraph`` domain graph's agreement with Common Crawl.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from imagerank.io import atomic_path
from imagerank.models import authority_evidence
from imagerank.models.popularity_model import EARN_MARGIN


def write_model_card(directory: str | Path, entries: dict[str, dict], version: str,
                     untrained: dict[str, dict] | None = None, extra: dict | None = None) -> None:
    """``metrics.json``: ``{model_version, models: {name: entry}, untrained: {name: metrics}, ...extra}``
    (only loadable models under ``models``: the scorer loads every one) and a readable ``model_card.md``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    card = {"model_version": version, "models": entries, "untrained": untrained or {}, **(extra or {})}
    with atomic_path(directory / "metrics.json") as tmp:
        Path(tmp).write_text(json.dumps(card, indent=2, default=_json_default))
    lines = [f"# imagerank models {version}", ""]
    for name, entry in entries.items():
        lines += [f"## {name}", "", f"- file: `{entry['file']}` (sha256 `{entry['sha256'][:16]}…`)",
                  f"- features ({len(entry['features'])}): {', '.join(entry['features'])}"
                  + (f" + text column `{entry['text_column']}`" if entry.get("text_column") else "")]
        metrics = entry["metrics"]
        for key in ("target", "training_rows", "training_rows_by_provider", "ensemble"):
            if key in metrics:
                lines.append(f"- {key}: {json.dumps(metrics[key], default=_json_default)}")
        if "served" in metrics:  # the popularity model: order per provider, level across providers
            lines += popularity_lines(metrics)
        else:
            lines += evaluation_lines(metrics.get("evaluation", {}))
        lines.append("")
    for name, metrics in (untrained or {}).items():
        lines += [f"## {name} (not trained)", "", f"- {metrics.get('reason', 'not trained')}", ""]
    lines += domain_link_lines(card.get("domain_link_authority"))
    lines += authority_evidence.card_lines(card.get("authority_against_link_graph"))
    with atomic_path(directory / "model_card.md") as tmp:
        Path(tmp).write_text("\n".join(lines))


def ablation_lines(ablations: dict) -> list[str]:
    """The card's "what these columns add" tables: Spearman with and without each ablation's columns."""
    lines = []
    for name, ablation in ablations.items():
        lines += ["", f"What {name} add ({len(ablation['removed_columns'])} columns: "
                      f"{', '.join(ablation['removed_columns'])}), Spearman with and without them:", "",
                  "| split | with | without | added |", "|---|---|---|---|"]
        lines += [f"| {split} | {_f(r['with'])} | {_f(r['without'])} | {r['added']:+.3f} |"
                  for split, r in ablation["spearman"].items()]
        lines.append("")
    return lines


def domain_link_lines(summary: dict | None) -> list[str]:
    """The card's account of the ``--linkgraph`` domain graph: its size and how it agrees with Common Crawl."""
    if not summary:
        return []
    lines = ["## domain link authority (--linkgraph)", "",
             f"- {summary.get('domains')} registered domains, {summary.get('domain_edges')} cross-domain edges "
             f"({summary.get('weighting')}), PageRank in {summary.get('pagerank_iterations')} iterations; joined "
             "to images by landing domain as `domain_link_*` (authority inputs; for popularity only evidence of a "
             "provider's level, never its order)"]
    for level, r in ((summary.get("ranks_agreement") or {}).items()):
        if isinstance(r, dict) and "spearman_pagerank" in r:
            lines.append(f"- agreement with Common Crawl's {level} ranks over {r['shared_domains']} shared domains: "
                         f"Spearman PageRank {_f(r['spearman_pagerank'])}, harmonic {_f(r['spearman_harmonic'])}")
    return lines + [""]


def evaluation_lines(evaluation: dict) -> list[str]:
    lines = []
    if "protocol" in evaluation:
        lines.append(f"- protocol: {evaluation['protocol']}")
    tables = [("grouped CV", evaluation.get("grouped_cv", {}))]
    tables += [(f"transfer {k}", v) for k, v in evaluation.get("provider_transfer", {}).items()]
    if "temporal" in evaluation:
        tables.append(("temporal", evaluation["temporal"]))
    head = "| split | model | rows | spearman | per-day | mae_log | same-creator pairs | auc>0 |"
    body = []
    for split, table in tables:
        if not isinstance(table, dict):
            continue
        if "spearman" in table:  # one model's figures (the authority model's domain-grouped CV)
            table = {"ensemble": table}
        for model, r in table.items():
            if isinstance(r, dict) and "spearman" in r:
                body.append(f"| {split} | {model} | {r.get('rows', '')} | {_f(r.get('spearman'))} | "
                            f"{_f(r.get('spearman_per_day'))} | {_f(r.get('mae_log'))} | "
                            f"{_f(r.get('pairwise_same_creator'))} | {_f(r.get('auc_nonzero'))} |")
    if body:
        lines += ["", head, "|" + "---|" * 8, *body, ""]
    for key in ("baselines_spearman", "leak_ablation", "holdout"):
        if key in evaluation:
            lines.append(f"- {key}: {json.dumps(evaluation[key], default=_json_default)}")
    lines += ablation_lines(evaluation.get("ablations") or {})
    if "published_bars" in evaluation:
        lines.append(f"- published content-only bars: {json.dumps(evaluation['published_bars'])}")
    return lines


def _f(value) -> str:
    return "" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.3f}"


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)




def popularity_lines(metrics: dict) -> list[str]:
    """Readable model-card section of the popularity model."""
    evaluation = metrics.get("evaluation") or {}
    lines = []
    if "protocol" in evaluation:
        lines += [f"- protocol: {evaluation['protocol']}", ""]
    head = evaluation.get("headline")
    if head:
        lines += [f"**Headline (the served model)**: {head['provider']} `{head['model']}`, creator-grouped CV "
                  f"Spearman {_f(head.get('spearman'))}, within-creator pairwise accuracy "
                  f"{_f(head.get('pairwise_same_creator'))} over {head.get('same_creator_pairs')} pairs, "
                  f"{head.get('rows')} rows.", ""]
    lines += ["### What is served", "", "| provider | source | model | level | why |", "|---|---|---|---|---|"]
    for provider, s in (metrics.get("served") or {}).items():
        lines.append(f"| {provider} | {s['source']} | {s['model']} | {_f(s.get('level'))} | {s['reason']} |")
    lines.append("")
    for provider, entry in (evaluation.get("providers") or {}).items():
        best = entry.get("best_single_feature") or {}
        lines += [f"### {provider}: {entry['rows']} rows, {entry['creators']} creators", "",
                  f"- best single raw feature: `{best.get('column')}` Spearman {_f(best.get('spearman'))} "
                  f"(sign {best.get('sign')}, chosen on all rows: an optimistic bar), pairwise "
                  f"{_f(best.get('pairwise_same_creator'))}",
                  f"- served: `{entry['served_model']}` ({'validated' if entry['validated'] else 'NOT validated'}): "
                  f"{entry['served_reason']}"]
        if entry.get("served_column"):
            lines.append(f"- served column: {entry['served_column']}")
        table = [("grouped CV", entry.get("grouped_cv") or {}), ("grouped CV, views per day", entry.get("per_day_variant") or {})]
        lines += ["", "| split | model | rows | spearman | per-day | mae_log | pairwise (pairs) | auc>0 |",
                  "|---|---|---|---|---|---|---|---|"]
        for split, reports in table:
            for name, r in reports.items():
                lines.append(f"| {split} | {name} | {r.get('rows')} | {_f(r.get('spearman'))} | "
                             f"{_f(r.get('spearman_per_day'))} | {_f(r.get('mae_log'))} | "
                             f"{_f(r.get('pairwise_same_creator'))} ({r.get('same_creator_pairs')}) | "
                             f"{_f(r.get('auc_nonzero'))} |")
        for name, r in (entry.get("baselines") or {}).items():
            lines.append(f"| baseline | {name} | | {_f(r.get('spearman'))} | | | {_f(r.get('pairwise_same_creator'))} | |")
        for column, r in list((entry.get("single_features") or {}).items())[:8]:
            lines.append(f"| single raw feature (all rows) | {column} | {entry['rows']} | {_f(r['spearman'])} | | | "
                         f"{_f(r['pairwise_same_creator'])} | |")
        lines.append("")
        ceiling = entry.get("ceiling")
        if ceiling:
            lines += ["Why the single feature is served (what this sample can support):", ""]
            for name, r in (entry.get("grouped_cv") or {}).items():
                folds = [v for v in r.get("fold_spearman", []) if v is not None and np.isfinite(v)]
                if folds:
                    lines.append(f"- {name}: Spearman per creator fold {', '.join(f'{v:.3f}' for v in folds)} "
                                 f"(sd {np.std(folds):.3f} across folds)")
            for name, (lo, hi) in ceiling["spearman_gain_over_single_feature_ci95"].items():
                lines.append(f"- {name}: Spearman gain over the single feature, 95% creator-bootstrap interval "
                             f"[{lo:+.3f}, {hi:+.3f}] ({ceiling['creators']} creators)")
            for name, (lo, hi) in ceiling["pairwise_same_creator_ci95"].items():
                lines.append(f"- {name}: within-creator pairwise accuracy 95% interval [{lo:.3f}, {hi:.3f}]")
            curve = ceiling["learning_curve_cv_spearman"]
            resolution = ceiling.get("resolution")
            if resolution is not None and np.isfinite(resolution):
                lines.append(f"- resolution: the narrowest 95% interval of a Spearman gain is +/-{resolution:.3f}, "
                             + ("wider than" if resolution > EARN_MARGIN else "within")
                             + f" the {EARN_MARGIN} a richer model must add: this sample "
                             + ("cannot tell such a gain from noise" if resolution > EARN_MARGIN else "can resolve it"))
            lines.append("- learning curve (CV Spearman when each training fold keeps a share of its creators): "
                         + "; ".join(f"{share}: " + ", ".join(f"{n} {_f(v)}" for n, v in r.items())
                                     for share, r in curve.items()))
            lines.append("")
    transfer = evaluation.get("transfer") or {}
    if transfer:
        lines += ["", "### Leave-one-provider-out transfer", "",
                  f"- {transfer.get('reason')}", "",
                  "| held-out provider | trained on | model | spearman | pairwise | auc>0 | columns |",
                  "|---|---|---|---|---|---|---|"]
        for held, r in transfer["leave_one_provider_out"].items():
            if "skipped" in r:
                lines.append(f"| {held} | skipped: {r['skipped']} | | | | | |")
                continue
            for name in ("transfer_model", "single_feature", "rank_linear"):
                x = r[name]
                cols = x.get("columns", x.get("column", ""))
                lines.append(f"| {held} | {', '.join(r['trained_on'])} | {name} | {_f(x.get('spearman'))} | "
                             f"{_f(x.get('pairwise_same_creator'))} | {_f(x.get('auc_nonzero'))} | {cols} |")
    directions = evaluation.get("feature_directions") or {}
    if len(directions) >= 2:
        shared = sorted(set.intersection(*(set(d) for d in directions.values())))
        flips = [c for c in shared if len({np.sign(d[c]) for d in directions.values()}) > 1
                 and min(abs(d[c]) for d in directions.values()) >= 0.1]
        lines += ["", f"- columns whose direction flips between providers (|rho| >= 0.1 in each): {', '.join(flips) or 'none'}"]
    lines += ablation_lines(evaluation.get("ablations") or {})
    levels = metrics.get("levels") or {}
    if levels:
        lines += [f"- prior level: {levels.get('method')} = {_f(levels.get('typical_level'))} "
                  f"(medians of providers with a metric: {levels.get('observed_medians')})"
                  + (f"; {levels['why_not_evidence']}" if levels.get("why_not_evidence") else "")]
    if evaluation.get("openverse_behaviour"):
        lines.append(f"- baseline, Openverse's behaviour: {evaluation['openverse_behaviour']}")
    return lines
