"""A plain-text summary of the latest run (for terminals and logs)."""

from __future__ import annotations

from pathlib import Path

from imagerank.reporting import data


def text_report(workdir: str | Path) -> str:
    workdir = Path(workdir)
    run = data.latest_run(workdir)
    summary = data.score_summary(workdir, top_k=0, browse_rows=0, sample_rows=0)
    lines = [f"run {run['run_id']}", "", "reconciliation:"]
    lines += [f"  {k}: {v}" for k, v in (run.get("reconciliation") or {}).items()]
    rejects = data.rejects_by_reason(workdir, run)
    lines += ["", "rejects by reason:"] + [f"  {k}: {v}" for k, v in rejects.items()]
    lines += ["", "popularity constants:"]
    lines += [f"  {p}: V={c['percentile_value']:g} C={c['constant']:.4g} (n={c['n_observed']})"
              for p, c in ((run.get("popularity") or {}).get("constants") or {}).items()]
    card = data.model_card(workdir, data.model_version(workdir, run))
    for name, entry in (card.get("models") or {}).items():
        evaluation = (entry.get("metrics") or {}).get("evaluation") or {}
        lines += ["", f"{name} model (cross-validated):"] + [f"  {k}: {v}" for k, v in evaluation.items()]
    if summary is not None:
        table = data.describe_scores(summary).round(3)
        lines += ["", "scores per provider:", table.to_string()]
    lines += ["", "timings (s):"] + [f"  {k}: {v}" for k, v in (run.get("timings_s") or {}).items()]
    return "\n".join(lines)
