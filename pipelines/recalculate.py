"""The whole recalculation as one Dask job: ingest -> features -> train -> score -> Feast.

Each stage is a thin call into its own pipeline module; this file only orders them, times them, checks
the reconciliation (every input row scored or rejected, every score in [0, 1]) and writes the run manifest.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import dask.dataframe as dd
import pandas as pd

from imagerank.cluster import dask_client
from imagerank.io import write_json
from imagerank.popularity import StandardizationConfig
from imagerank.store.feast_repo import apply_and_materialize, default_feature_repo
from pipelines.graph import run_graph, run_link_features, run_visual_features
from pipelines.features import run_domain_features, run_metadata_features, run_popularity_labels
from pipelines.ingest import run_ingest
from pipelines.score import run_score
from pipelines.train import run_train


class ReconciliationError(RuntimeError):
    """Rows were lost or scores left [0, 1]: the run must not be published."""


@dataclass
class RecalculateOptions:
    catalog: list[str]
    workdir: Path
    images: str | None = None
    crawl: list[str] = field(default_factory=list)
    ranks: list[str] = field(default_factory=list)
    scheduler: str | None = None
    feature_repo: Path | None = None
    materialize: bool = True
    standardization: StandardizationConfig = field(default_factory=StandardizationConfig)


class StageClock:
    """Prints each stage as it starts and ends, and keeps the timings for the manifest."""

    def __init__(self, quiet: bool = False):
        self.timings: dict[str, float] = {}
        self.quiet = quiet

    def __call__(self, name: str, fn, *args, **kwargs):
        if not self.quiet:
            print(f"[imagerank] {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        self.timings[name] = round(time.perf_counter() - start, 3)
        if not self.quiet:
            print(f"[imagerank] {name} done in {self.timings[name]:.1f} s", file=sys.stderr, flush=True)
        return result


def recalculate(options: RecalculateOptions, *, quiet: bool = False) -> dict:
    workdir = Path(options.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    now = pd.Timestamp.now(tz="UTC").floor("s")
    run_id = now.strftime("%Y%m%dT%H%M%SZ")
    clock = StageClock(quiet)
    manifest: dict = {"run_id": run_id, "event_timestamp": now.isoformat(), "workdir": str(workdir.resolve()),
                      "inputs": {"catalog": options.catalog, "images": options.images, "crawl": options.crawl,
                                 "ranks": options.ranks}}
    with dask_client(options.scheduler) as client:
        manifest["ingest"] = clock("ingest", run_ingest, client, options.catalog, workdir)
        manifest["features"] = {"metadata_rows": clock("features: metadata", run_metadata_features, client, workdir, now)}
        manifest["popularity"] = clock("features: popularity", run_popularity_labels, client, workdir,
                                       options.standardization, now)
        if options.images:
            from pipelines.images import run_image_features

            manifest["images"] = clock("features: pixels + exif", run_image_features, client, workdir,
                                       options.images, event_timestamp=now)
            manifest["visual"] = clock("features: visual duplicates", run_visual_features, client, workdir,
                                       event_timestamp=now)
        if options.crawl:
            manifest["graph"] = clock("graph: extract + PageRank", run_graph, client, workdir, options.crawl)
            manifest["links"] = clock("features: links", run_link_features, client, workdir, event_timestamp=now)
        manifest["domains"] = clock("features: domains", run_domain_features, client, workdir, options.ranks, now)
        manifest["models"] = clock("train", run_train, client, workdir, run_id)
        manifest["scores"] = clock("score", run_score, client, workdir, run_id, now)
        manifest["reconciliation"] = reconcile(workdir, manifest["ingest"])
    if options.materialize:
        manifest["feast"] = clock("feast: apply + materialize", apply_and_materialize,
                                  options.feature_repo or default_feature_repo(), workdir, now.to_pydatetime())
    manifest["timings_s"] = clock.timings
    write_json(manifest, workdir / "runs" / f"{run_id}.json")
    return manifest


def reconcile(workdir: Path, ingest_counts: dict) -> dict:
    """input rows = catalog + rejects; catalog rows = score rows (same ids); both numbers within [0, 1]."""
    catalog_ids = dd.read_parquet(workdir / "catalog", columns=["image_id"])["image_id"]
    scores = dd.read_parquet(workdir / "scores", columns=["image_id", "popularity", "authority"])
    rejects = dd.read_parquet(workdir / "rejects", columns=["reason"])
    n_catalog, n_rejects, n_scores = (int(x) for x in dd.compute(catalog_ids.size, rejects.shape[0], scores.shape[0]))
    joined = catalog_ids.to_frame().merge(scores[["image_id"]].assign(scored=1), on="image_id", how="left")
    unscored = int(joined["scored"].isnull().sum().compute())
    lo = float(scores[["popularity", "authority"]].min().min().compute()) if n_scores else 0.0
    hi = float(scores[["popularity", "authority"]].max().max().compute()) if n_scores else 1.0
    nulls = int(scores[["popularity", "authority"]].isnull().sum().sum().compute())
    result = {"input_rows": ingest_counts["input_rows"], "catalog_rows": n_catalog, "rejected_rows": n_rejects,
              "score_rows": n_scores, "unscored_catalog_rows": unscored, "min_score": lo, "max_score": hi,
              "null_scores": nulls}
    problems = []
    if result["input_rows"] != n_catalog + n_rejects:
        problems.append(f"input rows {result['input_rows']} != catalog {n_catalog} + rejects {n_rejects}")
    if n_scores != n_catalog or unscored:
        problems.append(f"score rows {n_scores} for {n_catalog} catalog rows ({unscored} unscored)")
    if nulls or lo < 0 or hi > 1:
        problems.append(f"scores outside [0, 1] or null (min {lo}, max {hi}, nulls {nulls})")
    result["ok"] = not problems
    if problems:
        raise ReconciliationError("; ".join(problems))
    return result
