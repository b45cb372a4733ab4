"""The whole recalculation as one Dask job: ingest -> features -> train -> score -> Feast.

The stages and their order are :data:`pipelines.stages.STAGES`; this file runs those the options call for,
times them, skips those an interrupted run finished, and writes the run manifest. The reconciliation (every
input row scored or rejected, every score in [0, 1]) is :func:`imagerank.runs.reconcile`.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from imagerank import __version__, datasets, storage
from imagerank.catalog.ingest import expand_catalog_paths
from imagerank.catalog.postgres import is_postgres_url, table_fingerprint
from imagerank.cluster import dask_client
from imagerank.inputs import InputError, absolute_location, check_run_inputs, fingerprint as input_fingerprint
from imagerank.io import RUN_ID_ENV
from imagerank.popularity import StandardizationConfig
from imagerank.runs import RunState, last_finished_run, package_versions, run_key, workdir_lock
from imagerank.settings import DEFAULT_RETRAIN, RETRAIN_POLICIES, ImageLimits, event_time
from pipelines.stages import STAGES, StageContext


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
        # one cluster for the stages and the report: the report's Dask aggregations run on the workers (the
        # client is the default), so only their small results reach this process
        with dask_client(options.scheduler) as client:
            try:
                manifest = _run_stages(options, client, state, pd.Timestamp(state.event_timestamp), quiet)
            finally:
                if previous_run is None:
                    os.environ.pop(RUN_ID_ENV, None)
                else:
                    os.environ[RUN_ID_ENV] = previous_run
            manifest.update(key=key, inputs=inputs, parameters=parameters, packages=package_versions(),
                            resumed=state.resumed)
            datasets.write_json(manifest, workdir, "runs", f"{state.run_id}.json")
            state.finish()
            if options.report:
                manifest["report"] = _write_report(workdir, quiet)
        return manifest


def _write_report(workdir: str, quiet: bool) -> str | None:
    """The run's HTML report, built on the current client's cluster; None for a URL work directory."""
    if storage.is_url(workdir):
        if not quiet:
            print("[imagerank] no report: the report reads a local work directory (run `imagerank report` "
                  "on a local copy)", file=sys.stderr)
        return None
    from imagerank.report import write_report

    path = str(write_report(workdir))
    if not quiet:
        print(f"[imagerank] report: {path}", file=sys.stderr)
    return path


def _run_stages(options: RecalculateOptions, client, state: RunState, now: pd.Timestamp, quiet: bool) -> dict:
    """Every stage of :data:`pipelines.stages.STAGES` these options call for, in the table's order."""
    stage = Stages(state, quiet)
    workdir = options.workdir
    manifest: dict = {"run_id": state.run_id, "event_timestamp": now.isoformat(),
                      "workdir": workdir if storage.is_url(workdir) else str(Path(workdir).resolve())}
    context = StageContext(
        client=client, workdir=workdir, now=now, run_id=state.run_id, catalog=options.catalog,
        ranks=options.ranks, images=options.images, image_limits=options.image_limits,
        reuse_images=options.reuse_images, crawl=options.crawl, linkgraph=options.linkgraph,
        linkgraph_weights=options.linkgraph_weights, standardization=options.standardization,
        retrain=options.retrain, feature_repo=options.feature_repo,
        materialize_views=options.materialize_views, manifest=manifest)
    for spec in STAGES:
        if spec.runs(options):
            result = stage(spec.name, spec.run, context)
            manifest[spec.key] = {spec.manifest_field: result} if spec.manifest_field else result
    manifest["timings_s"] = stage.timings
    return manifest
