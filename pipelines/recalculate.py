"""The whole recalculation as one Dask job: ingest -> features -> train -> score -> Feast.

Each stage is a thin call into its own pipeline module; this file only orders them, times them, checks
the reconciliation (every input row scored or rejected, every score in [0, 1]) and writes the run manifest.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import dask.dataframe as dd
import pandas as pd

from imagerank import __version__, datasets, storage
from imagerank.catalog.ingest import expand_catalog_paths
from imagerank.catalog.postgres import is_postgres_url, table_fingerprint
from imagerank.cluster import dask_client
from imagerank.features.metadata import RELATIVE_TO_RUN
from imagerank.features.registry import load_features
from imagerank.io import RUN_ID_ENV, row_digest
from imagerank.inputs import InputError, absolute_location, check_run_inputs, fingerprint as input_fingerprint
from imagerank.runs import RunState, last_finished_run, package_versions, run_key, workdir_lock
from imagerank.popularity import StandardizationConfig
from imagerank.settings import DEFAULT_RETRAIN, RETRAIN_POLICIES, ImageLimits, event_time
from imagerank.store.feast_repo import apply_and_materialize, default_feature_repo
from pipelines.graph import run_graph, run_link_features, run_linkgraph, run_visual_features
from pipelines.features import run_domain_features, run_metadata_features, run_popularity_labels
from pipelines.ingest import run_ingest
from pipelines.score import run_score
from pipelines.train import run_text_features, run_train


class ReconciliationError(RuntimeError):
    """Rows were lost or scores left [0, 1]: the run must not be published."""


@dataclass
class RecalculateOptions:
    catalog: list[str]
    workdir: str | Path  # a local path or a URL prefix (s3://bucket/w)
    images: str | None = None
    crawl: list[str] = field(default_factory=list)
    ranks: list[str] = field(default_factory=list)
    linkgraph: list[str] = field(default_factory=list)  # crawl-derived link graph files -> W/graph/domains/
    linkgraph_weights: str = "unweighted"
    scheduler: str | None = None
    feature_repo: Path | None = None
    materialize: bool = True
    materialize_views: list[str] | None = None  # None: what search reads (feast_repo.views_to_materialize); ["all"]
    force: bool = False  # recalculate even when inputs and parameters are unchanged since the last run
    image_limits: ImageLimits = field(default_factory=ImageLimits)
    reuse_images: bool = True  # keep the pixel/EXIF rows of images whose bytes (and meta_data) are unchanged
    report: bool = False  # write W/report/index.html at the end (the CLI does, unless --no-report)
    retrain: str = DEFAULT_RETRAIN  # one of RETRAIN_POLICIES
    standardization: StandardizationConfig = field(default_factory=StandardizationConfig)


class Stages:
    """Runs the stages of one run in order: prints them, times them, and skips those a resumed run finished."""

    def __init__(self, state: RunState, quiet: bool = False):
        self.state = state
        self.quiet = quiet
        self.timings: dict[str, float] = dict(state.stages.get("_timings", {}))

    def __call__(self, name: str, fn, *args, **kwargs):
        if self.state.done(name):
            self._say(f"{name}: finished before the interruption, kept")
            return self.state.stages[name]
        self._say(f"{name} ...")
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        self.timings[name] = round(time.perf_counter() - start, 3)
        self.state.stages["_timings"] = self.timings
        self.state.record(name, result)
        self._say(f"{name} done in {self.timings[name]:.1f} s")
        return result

    def _say(self, text: str) -> None:
        if not self.quiet:
            print(f"[imagerank] {text}", file=sys.stderr, flush=True)


def run_inputs(options: RecalculateOptions) -> dict:
    """Fingerprints of everything a run reads (image bytes are named by their template, not hashed).

    Local paths are recorded absolute, so the manifest (and the report's thumbnails, read through the
    image template) stays valid from any directory; URLs with the store's size and ETag / modification time
    (:func:`imagerank.inputs.fingerprint`), so a changed object changes the run key.
    """
    files = expand_catalog_paths([absolute_location(c) for c in options.catalog if not is_postgres_url(c)])
    tables = [table_fingerprint(c) for c in options.catalog if is_postgres_url(c)]  # password masked
    inputs = {"catalog": [input_fingerprint(f) for f in files] + tables,
              "crawl": [input_fingerprint(f) for f in options.crawl],
              "ranks": [input_fingerprint(f) for f in options.ranks],
              "images": absolute_location(options.images) if options.images else options.images}
    if options.linkgraph:  # only when given: runs without it keep their keys
        inputs["linkgraph"] = [input_fingerprint(f) for f in options.linkgraph]
        inputs["linkgraph_weights"] = options.linkgraph_weights
    return inputs


def checked_options(options: RecalculateOptions) -> RecalculateOptions:
    """The options with local inputs made absolute, once every input exists and every parameter is in range.

    Runs before anything is written: a mistyped path or parameter leaves no work directory, lock or cluster
    behind (see :mod:`imagerank.inputs`).
    """
    workdir = storage.absolute(options.workdir)
    if not storage.is_url(workdir) and os.path.exists(workdir) and not os.path.isdir(workdir):
        raise InputError(f"work directory {workdir} exists and is not a directory")
    inputs = check_run_inputs(options.catalog, options.crawl, options.ranks, options.images,
                              options.image_limits.allow_remote, options.linkgraph)
    for problem in options.image_limits.problems():
        raise InputError(problem)
    percentile = options.standardization.percentile
    if not 0 < percentile < 1:
        raise InputError(f"the standardization percentile must lie strictly between 0 and 1, not {percentile!r}")
    if options.retrain not in RETRAIN_POLICIES:
        raise InputError(f"retrain must be one of {', '.join(RETRAIN_POLICIES)}, not {options.retrain!r}")
    return replace(options, workdir=workdir, **inputs)


def run_parameters(options: RecalculateOptions) -> dict:
    return {"standardization": options.standardization.to_dict(), "image_limits": options.image_limits.to_dict(),
            "imagerank": __version__}


def recalculate(options: RecalculateOptions, *, quiet: bool = False) -> dict:
    """Run (or resume) the whole process on a work directory; returns the run manifest."""
    options = checked_options(options)
    workdir = options.workdir
    with workdir_lock(workdir):
        inputs, parameters = run_inputs(options), run_parameters(options)
        key = run_key(inputs, parameters)
        last = last_finished_run(workdir)
        forced = options.force or (options.images and not options.reuse_images)
        if last and last.get("key") == key and not forced and datasets.exists(workdir, "scores"):
            if not quiet:
                print(f"[imagerank] inputs and parameters unchanged since run {last['run_id']}: nothing to do "
                      "(--force recalculates anyway; image bytes changed under the same catalog need it)",
                      file=sys.stderr)
            return {**last, "unchanged": True}
        now = event_time()  # the run's one event time; a resumed run keeps its own (state.event_timestamp)
        state = RunState.start(workdir, now.strftime("%Y%m%dT%H%M%SZ"), now.isoformat(), key)
        if state.resumed and not quiet:
            print(f"[imagerank] resuming run {state.run_id} after its interruption", file=sys.stderr)
        previous_run = os.environ.get(RUN_ID_ENV)
        os.environ[RUN_ID_ENV] = state.run_id  # every version this run publishes carries its id (and workers')
        try:
            manifest = _run_stages(options, workdir, state, pd.Timestamp(state.event_timestamp), quiet)
        finally:
            if previous_run is None:
                os.environ.pop(RUN_ID_ENV, None)
            else:
                os.environ[RUN_ID_ENV] = previous_run
        manifest.update(key=key, inputs=inputs, parameters=parameters, packages=package_versions(),
                        resumed=state.resumed)
        datasets.write_json(manifest, workdir, "runs", f"{state.run_id}.json")
        state.finish()
        if options.report and storage.is_url(workdir):
            manifest["report"] = None
            if not quiet:
                print("[imagerank] no report: the report reads a local work directory (run `imagerank report` "
                      "on a local copy)", file=sys.stderr)
        elif options.report:
            from imagerank.report import write_report

            manifest["report"] = str(write_report(workdir))
            if not quiet:
                print(f"[imagerank] report: {manifest['report']}", file=sys.stderr)
        return manifest


def _run_stages(options: RecalculateOptions, workdir: str, state: RunState, now: pd.Timestamp, quiet: bool) -> dict:
    run_id = state.run_id
    stage = Stages(state, quiet)
    manifest: dict = {"run_id": run_id, "event_timestamp": now.isoformat(),
                      "workdir": workdir if storage.is_url(workdir) else str(Path(workdir).resolve())}
    with dask_client(options.scheduler) as client:
        manifest["ingest"] = stage("ingest", run_ingest, client, options.catalog, workdir)
        manifest["features"] = {"metadata_rows": stage("features: metadata", run_metadata_features, client, workdir, now)}
        manifest["text"] = stage("features: text", run_text_features, client, workdir, now)
        manifest["popularity"] = stage("features: popularity", run_popularity_labels, client, workdir,
                                       options.standardization, now)
        if options.images:
            from pipelines.images import run_image_features

            manifest["images"] = stage("features: pixels + exif", run_image_features, client, workdir,
                                       options.images, event_timestamp=now, reuse=options.reuse_images,
                                       **asdict(options.image_limits))
            manifest["visual"] = stage("features: visual duplicates", run_visual_features, client, workdir,
                                       event_timestamp=now)
        if options.crawl:
            manifest["graph"] = stage("graph: extract + PageRank", run_graph, client, workdir, options.crawl)
            manifest["links"] = stage("features: links", run_link_features, client, workdir, event_timestamp=now)
        if options.linkgraph:  # before the domain features, which join it by landing domain
            manifest["linkgraph"] = stage("graph: linkgraph", run_linkgraph, client, workdir, options.linkgraph,
                                          ranks_files=options.ranks, weighting=options.linkgraph_weights)
        manifest["domains"] = stage("features: domains", run_domain_features, client, workdir, options.ranks, now)
        manifest["models"] = stage("train", train_or_reuse, client, workdir, run_id, options.retrain)
        manifest["scores"] = stage("score", run_score, client, workdir, manifest["models"]["model_version"], now)
        manifest["reconciliation"] = stage("reconcile", reconcile, workdir, manifest["ingest"])
        if options.materialize:  # inside the cluster block: the Dask engine materializes on the same cluster
            manifest["feast"] = stage("feast: apply + materialize", apply_and_materialize,
                                      options.feature_repo or default_feature_repo(), workdir, now.to_pydatetime(),
                                      client.scheduler.address, options.materialize_views)
    manifest["timings_s"] = stage.timings
    return manifest


def train_or_reuse(client, workdir: str | Path, run_id: str, policy: str) -> dict:
    """Train a new model version, or keep the last one when the policy allows and nothing it learnt from changed."""
    if policy not in RETRAIN_POLICIES:
        raise ValueError(f"--retrain must be one of {', '.join(RETRAIN_POLICIES)}, not {policy!r}")
    fingerprint = training_fingerprint(workdir)
    last = last_finished_run(workdir)
    previous = (last or {}).get("models", {})
    previous_ok = bool(previous.get("model_version")) and datasets.exists(
        workdir, "models", previous["model_version"], "metrics.json")
    if policy == "never" and not previous_ok:
        raise FileNotFoundError("--retrain never, but no earlier model version exists in this work directory")
    if previous_ok and (policy == "never" or (policy == "auto" and previous.get("training_fingerprint") == fingerprint)):
        return {**previous, "reused": True, "training_fingerprint": fingerprint}
    return {**run_train(client, workdir, run_id), "reused": False, "training_fingerprint": fingerprint}


def training_fingerprint(workdir: str | Path) -> str:
    """Order-independent digest of every row a model learns from (labelled or with link evidence), all features.

    Ages are left out: they advance with the clock every run, which alone does not call for a new model.
    """
    features = load_features(workdir)
    links = "has_link_evidence" in features.columns

    def learnt(part: pd.DataFrame) -> pd.DataFrame:
        keep = part["observed_popularity"].notna()
        return part[keep | part["has_link_evidence"].fillna(False).astype(bool)] if links else part[keep]

    rows = features.map_partitions(learnt, meta=features._meta)
    columns = sorted(c for c in rows.columns if c != "event_timestamp" and c not in RELATIVE_TO_RUN)
    # 31 high bits per row, summed as int64: exact and independent of row order up to ~4e9 rows
    digests = rows.map_partitions(lambda p: pd.Series(row_digest(p, columns).to_numpy() >> 33, dtype="int64"),
                                  meta=("d", "int64"))
    count, total = dd.compute(digests.size, digests.sum())
    return f"{int(count)}:{int(total)}:{','.join(columns)}"


def reconcile(workdir: str | Path, ingest_counts: dict) -> dict:
    """input rows = catalog + rejects; catalog rows = score rows (same ids); both numbers within [0, 1]."""
    catalog_ids = datasets.read_ddf(workdir, "catalog", columns=["image_id"])["image_id"]
    scores = datasets.read_ddf(workdir, "scores", columns=["image_id", "popularity", "authority"])
    rejects = datasets.read_ddf(workdir, "rejects", columns=["reason"])
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
