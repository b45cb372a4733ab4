"""What a run produced, for people: a text summary of the latest run and per-image explanations."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def latest_run(workdir: str | Path) -> dict:
    runs = sorted((Path(workdir) / "runs").glob("*.json"))
    if not runs:
        raise FileNotFoundError(f"no runs in {workdir}/runs: run `imagerank recalculate` first")
    return json.loads(runs[-1].read_text())


def text_report(workdir: str | Path) -> str:
    run = latest_run(workdir)
    scores = pd.read_parquet(Path(workdir) / "scores")
    metadata = pd.read_parquet(Path(workdir) / "features" / "metadata", columns=["image_id", "provider"])
    both = scores.merge(metadata, on="image_id")
    lines = [f"run {run['run_id']}", "", "reconciliation:"]
    lines += [f"  {k}: {v}" for k, v in run["reconciliation"].items()]
    lines += ["", "rejects by reason:"] + [f"  {k}: {v}" for k, v in run["ingest"]["rejects_by_reason"].items()]
    lines += ["", "popularity constants:"]
    lines += [f"  {p}: V={c['percentile_value']:g} C={c['constant']:.4g} (n={c['n_observed']})"
              for p, c in run["popularity"]["constants"].items()]
    evaluation = run["models"]["models"]["popularity"]["metrics"].get("evaluation", {})
    lines += ["", "popularity model (creator-grouped CV):"] + [f"  {k}: {v}" for k, v in evaluation.items()]
    table = both.groupby("provider")[["popularity", "authority"]].describe(percentiles=[0.5]).round(3)
    lines += ["", "scores per provider:", table.to_string()]
    lines += ["", "timings (s):"] + [f"  {k}: {v}" for k, v in run["timings_s"].items()]
    return "\n".join(lines)


def explain(workdir: str | Path, image_id: str) -> dict:
    """The image's two numbers, where they came from, and the evidence behind them."""
    workdir = Path(workdir)
    filters = [("image_id", "==", image_id)]
    scores = pd.read_parquet(workdir / "scores", filters=filters)
    if scores.empty:
        raise KeyError(f"unknown image_id {image_id!r}: not in {workdir}/scores")
    out = {"scores": scores.iloc[0].to_dict()}
    for family in ("popularity", "domains", "metadata"):
        path = workdir / "features" / family
        if path.is_dir():
            rows = pd.read_parquet(path, filters=filters)
            if not rows.empty:
                out[family] = {k: v for k, v in rows.iloc[0].to_dict().items() if k not in ("image_id", "event_timestamp")}
    return out
