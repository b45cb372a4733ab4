"""``imagerank``: recalculate and read popularity and authority for a Creative Commons image catalog."""

from __future__ import annotations

import argparse
import json
import math
import sys
from contextlib import nullcontext
from pathlib import Path

from imagerank import __version__
from imagerank.settings import DEFAULT_RETRAIN, PAGERANK, RETRAIN_POLICIES, STANDARDIZATION_PERCENTILE, ImageLimits

DEFAULT_WORKDIR = "imagerank-data"


# argparse types: a value out of range is a usage error (exit 2) before anything starts

def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def fraction(text: str) -> float:
    """A number strictly between 0 and 1 (a percentile, a damping factor)."""
    value = _finite(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, not {text}")
    return value


def positive_float(text: str) -> float:
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def positive_int(text: str) -> int:
    value = _whole(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def storage_options_json(text: str) -> dict:
    """``--storage-options``: a JSON object of fsspec options, checked before anything starts."""
    from imagerank.storage import parse_storage_options

    try:
        return parse_storage_options(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--storage-options ")) from None


STORAGE_HELP = ("fsspec options (a JSON object) for every URL input and output, e.g. "
                "'{\"client_kwargs\": {\"region_name\": \"eu-west-1\"}}'; local Dask workers inherit them "
                "(environment variable IMAGERANK_STORAGE_OPTIONS). The endpoint and credentials of s3:// URLs come "
                "from the standard environment: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
                "AWS_SESSION_TOKEN, AWS_DEFAULT_REGION, AWS_PROFILE")

STORAGE_EPILOG = ("Every input (--catalog, --crawl, --ranks, --linkgraph, --images) may be a local path or a URL "
                  "such as s3://bucket/export/ (gs:// and other fsspec URLs alike). For s3:// the endpoint and "
                  "credentials come from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and the rest "
                  "of the standard AWS environment); extra options from --storage-options JSON.")


def workdir_location(text: str) -> Path | str:
    """A local work directory as a Path; a URL (s3://bucket/w) kept as text (a Path would mangle its //)."""
    from imagerank import storage

    return storage.absolute(text) if storage.is_url(text) else Path(text)


def _workdir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", "-w", type=workdir_location, default=Path(DEFAULT_WORKDIR),
                        help=f"work directory holding every stage's Parquet datasets: a local path or a URL such as "
                             f"s3://bucket/w (default ./{DEFAULT_WORKDIR})")


def _scheduler(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="Dask scheduler address (default: $DASK_SCHEDULER_ADDRESS, else a LocalCluster sized to this machine)")


def _materialize_views(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--materialize-views", nargs="+", default=None, metavar="VIEW",
                        help="feature views pushed to the online store: by default image_scores and the views of "
                             "the `ranking` feature service (what search reads: image_domain, image_metadata); "
                             "'all' pushes every view with data, named views (e.g. image_pixels domain_stats) push "
                             "exactly those")


def _feature_repo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--feature-repo", type=Path, default=None,
                        help="Feast repository (default: $IMAGERANK_FEATURE_REPO, else the project's feature_repo/)")


def _image_limits(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("image limits (bad or hostile files become feature rows with an error code)")
    limits = ImageLimits()
    group.add_argument("--max-image-bytes", type=positive_int, default=None,
                       help=f"refuse larger files (default {limits.max_bytes >> 20} MiB)")
    group.add_argument("--max-image-pixels", type=positive_int, default=None,
                       help=f"refuse images whose header declares more pixels, before decoding (default {limits.max_pixels:,})")
    group.add_argument("--image-timeout", type=positive_float, default=None,
                       help=f"per-image time budget in seconds (default {limits.timeout_s:g})")
    group.add_argument("--allow-remote-images", action="store_true",
                       help="allow http(s)/ftp image templates (off: nothing is fetched from the web by default)")
    group.add_argument("--recompute-images", action="store_true",
                       help="decode every image again; by default a row whose image bytes (and meta_data) are "
                            "unchanged since the last run keeps its pixel and EXIF features")


def _linkgraph(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--linkgraph", nargs="+", default=[], metavar="PATH",
                        help="crawl-derived link graph: cccatalog extraction Parquet (html_metadata links) or domain "
                             "edge lists source,target[,count] (CSV or Parquet), files, directories or URL "
                             "prefixes (s3://bucket/linkgraph/) -> "
                             "W/graph/domains/ (PageRank, harmonic centrality, in-domains per registered domain)")
    parser.add_argument("--linkgraph-weights", choices=["unweighted", "links", "log"], default="unweighted",
                        help="domain edge weight for PageRank: one vote per linking domain (default), link "
                             "occurrences, or 1 + log(occurrences)")


def image_limits(args) -> ImageLimits:
    return ImageLimits.from_kwargs(max_bytes=args.max_image_bytes, max_pixels=args.max_image_pixels,
                                   timeout_s=args.image_timeout, allow_remote=args.allow_remote_images)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagerank",
        description="Popularity and authority in [0, 1] for every image of a Creative Commons catalog, "
                    "recalculated on a Dask cluster and served through Feast.",
        epilog="Start with `imagerank recalculate --catalog FILE --workdir W`, then `imagerank lookup --workdir W ID`. "
               + STORAGE_EPILOG)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("--storage-options", type=storage_options_json, default=None, metavar="JSON",
                        help=STORAGE_HELP)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("recalculate", help="run the whole process: ingest, features, train, score, materialize",
                       description="Run every stage on the Dask cluster and publish the scores to the Feast online store.",
                       epilog=STORAGE_EPILOG)
    p.add_argument("--catalog", nargs="+", required=True, metavar="FILE",
                   help="catalog files, directories or URL prefixes of them (s3://bucket/export/): Openverse image "
                        "rows as .csv, .tsv (optionally .gz) or .parquet; or the table itself: "
                        "'postgresql://USER[:PASS]@HOST:PORT/DB?table=image' (read in parallel on the workers, in "
                        "ranges of its integer key id; &key=NAME for another)")
    _workdir(p)
    p.add_argument("--images", metavar="TEMPLATE",
                   help="image bytes: a local folder of {image_id}.jpg or an fsspec URL template such as s3://bucket/{image_id}.jpg")
    p.add_argument("--crawl", nargs="+", default=[], metavar="FILE",
                   help="WARC/WAT files (local paths or URLs) for link evidence")
    p.add_argument("--ranks", nargs="+", default=[], metavar="FILE",
                   help="Common Crawl host/domain ranks files (tab-separated, gzip; local paths or URLs)")
    _linkgraph(p)
    p.add_argument("--percentile", type=fraction, default=STANDARDIZATION_PERCENTILE,
                   help=f"percentile r of the popularity standardization (Openverse uses {STANDARDIZATION_PERCENTILE})")
    p.add_argument("--no-materialize", action="store_true", help="stop after writing W/scores/")
    _materialize_views(p)
    _image_limits(p)
    p.add_argument("--retrain", choices=RETRAIN_POLICIES, default=DEFAULT_RETRAIN,
                   help="train new models always, never (reuse the last version), or when the rows they learn "
                        "from changed (auto, the default)")
    p.add_argument("--no-report", action="store_true", help="do not write the HTML report W/report/index.html")
    p.add_argument("--force", action="store_true",
                   help="recalculate even if inputs and parameters are unchanged since the last finished run")
    _scheduler(p)
    _feature_repo(p)

    p = sub.add_parser("ingest", help="validate catalog files into W/catalog/ and W/rejects/", epilog=STORAGE_EPILOG)
    p.add_argument("catalog", nargs="+", metavar="FILE",
                   help="catalog files, directories or URL prefixes (.csv, .tsv, optionally .gz, or .parquet)")
    _workdir(p)
    _scheduler(p)

    p = sub.add_parser("features", help="compute one feature family from W/catalog/ (one stage of a recalculation)",
                       description="Compute one feature family into W/features/<family>/, as the recalculation's "
                                   "stage of that name (pipelines/stages.py). pixels and exif need "
                                   "--images; links needs `imagerank graph` first; visual needs pixels first; join "
                                   "writes every family joined into W/features/joined/ (train and score read it).")
    from pipelines.stages import feature_commands

    p.add_argument("family", choices=feature_commands())
    _workdir(p)
    p.add_argument("--ranks", nargs="+", default=[], metavar="FILE",
                   help="ranks files, local paths or URLs (domains family)")
    p.add_argument("--percentile", type=fraction, default=STANDARDIZATION_PERCENTILE,
                   help="standardization percentile (popularity family)")
    p.add_argument("--images", metavar="TEMPLATE", help="image folder or fsspec URL template (pixels, exif)")
    _image_limits(p)
    p.add_argument("--phash-threshold", type=non_negative_int, default=None,
                   help="near-duplicate Hamming distance of 64-bit perceptual hashes (visual; default 10)")
    _scheduler(p)

    p = sub.add_parser("graph", help="link graph from web crawls: extract edges, PageRank pages and hosts",
                       description="extract: WARC/WAT files -> W/graph/edges/; build: edges -> W/graph/pages/ and "
                                   "W/graph/hosts/ with PageRank (both: extract then build).")
    p.add_argument("action", choices=["extract", "build", "both"])
    p.add_argument("crawl", nargs="*", metavar="CRAWL", help="WARC or WAT files, local paths or URLs (extract, both)")
    _workdir(p)
    p.add_argument("--damping", type=fraction, default=PAGERANK.damping,
                   help=f"PageRank damping factor (default {PAGERANK.damping})")
    p.add_argument("--tol", type=positive_float, default=PAGERANK.tol,
                   help=f"PageRank L1 convergence tolerance (default {PAGERANK.tol:g})")
    p.add_argument("--max-iter", type=positive_int, default=PAGERANK.max_iter,
                   help=f"PageRank iteration cap (default {PAGERANK.max_iter})")
    _linkgraph(p)
    p.add_argument("--ranks", nargs="+", default=[], metavar="FILE",
                   help="Common Crawl ranks files (local paths or URLs) to compare the --linkgraph domain ranks "
                        "with (Spearman)")
    _scheduler(p)

    p = sub.add_parser("train", help="train the ensemble on the features into W/models/<version>/")
    _workdir(p)
    p.add_argument("--model-version", help="name of the model version (default: a UTC timestamp)")
    _scheduler(p)

    p = sub.add_parser("score", help="score every catalog image with a model version into W/scores/")
    _workdir(p)
    p.add_argument("--model-version", help="model version to use (default: the newest in W/models/)")
    _scheduler(p)

    p = sub.add_parser("materialize", help="feast apply + materialize-incremental for this work directory")
    _workdir(p)
    _materialize_views(p)
    _feature_repo(p)

    p = sub.add_parser("lookup", help="print each image's scores from the online store as JSON lines",
                       description="Read popularity and authority through Feast's online store. Ids come from the "
                                   "arguments, or from --file (one per line; '-' reads standard input).")
    p.add_argument("ids", nargs="*", metavar="ID")
    p.add_argument("--file", "-f", help="file of ids, one per line ('-' for standard input)")
    p.add_argument("--boost-mode", choices=["min", "weighted"], default="min",
                   help="rank boost: min(popularity, authority) as Openverse (default), or weighted")
    p.add_argument("--boost-weight", type=float, default=0.5,
                   help="popularity's share of the boost in weighted mode, in [0, 1] (default 0.5)")
    _workdir(p)
    _feature_repo(p)

    p = sub.add_parser("export", help="upsert W/scores into a PostgreSQL table for the API's database",
                       description="Upsert every row of W/scores (identifier, popularity, authority, popularity_source, "
                                   "authority_source, model_version, event_timestamp) into a PostgreSQL table, "
                                   "created when missing (identifier uuid primary key). Each partition is written by "
                                   "a task on the Dask workers: COPY into a temporary table, then INSERT ... ON "
                                   "CONFLICT (identifier) DO UPDATE where a value changed. Idempotent: exporting the "
                                   "same scores again changes nothing. Rows of images no longer scored are kept.")
    _workdir(p)
    p.add_argument("--to", required=True, metavar="URL",
                   help="target table: 'postgresql://USER[:PASS]@HOST:PORT/DB?table=image_popularity' (the password "
                        "is never printed)")
    _scheduler(p)

    p = sub.add_parser("runs", help="list past runs of a work directory")
    _workdir(p)

    p = sub.add_parser("report", help="write the latest run's HTML report to W/report/index.html",
                       description="Write one self-contained HTML file (plots, model evaluation, coverage, rejects, "
                                   "timings, top and bottom images) for the newest run of the work directory and "
                                   "print its path. Open it in any browser; it needs no network.")
    _workdir(p)
    p.add_argument("--output", "-o", type=Path, default=None,
                   help="write the HTML here instead of W/report/index.html")
    p.add_argument("--text", action="store_true", help="print a plain-text summary instead of writing HTML")
    p.add_argument("--no-thumbnails", action="store_true", help="do not embed image thumbnails")
    p.add_argument("--importance-rows", type=non_negative_int, default=400, metavar="N",
                   help="labelled rows sampled for permutation importance (default 400)")
    p.add_argument("--oof-rows", type=non_negative_int, default=0, metavar="N",
                   help="when the model card stores no out-of-fold predictions, refit the saved estimator on up to N "
                        "labelled rows (5 creator-grouped folds) for the observed-vs-predicted scatter (default 0: "
                        "no refits)")
    p.add_argument("--check", action="store_true",
                   help="also open the report in headless chromium: fail on console errors or network requests, "
                        "save screenshots next to the report")

    p = sub.add_parser("explain", help="why one image has the scores it has",
                       description="An image's popularity and authority, their sources (observed / predicted / "
                                   "links / domain_rank / prior), the features that moved its predictions most, its "
                                   "domain's rank, its link evidence and its near-duplicate copies.")
    p.add_argument("image_id", metavar="ID")
    _workdir(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--top", type=non_negative_int, default=10, metavar="N", help="features to show per model (default 10)")
    p.add_argument("--no-contributions", action="store_true",
                   help="skip the per-feature contributions (no model is loaded)")

    p = sub.add_parser("demo", help="generate the embedded sample catalog, recalculate it, and show lookups")
    _workdir(p)
    p.add_argument("--rows", type=positive_int, default=400, help="rows of the generated catalog (default 400)")
    _scheduler(p)

    for command in sub.choices.values():  # `imagerank runs --debug` as well as `imagerank --debug runs`
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show full tracebacks on errors")
        command.add_argument("--storage-options", type=storage_options_json, default=argparse.SUPPRESS,
                             metavar="JSON", help=STORAGE_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exit 0 on success, 1 when the command fails, 2 for a usage error (argparse), 130 when interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.storage_options is not None:  # through the environment, so that local Dask workers inherit them
        from imagerank.storage import set_storage_options

        set_storage_options(args.storage_options)
    try:
        return COMMANDS[args.command](args) or 0
    except KeyboardInterrupt:
        print("imagerank: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's one place to turn errors into messages
        if args.debug:
            raise
        print(f"imagerank {args.command}: error: {exc}", file=sys.stderr)
        return 1


def _now():
    from imagerank.settings import event_time

    return event_time()


def cmd_recalculate(args) -> int:
    from imagerank.inputs import check_run_inputs

    # fail fast on a typo, before the pipeline's heavy imports (recalculate checks again, for library callers)
    check_run_inputs(args.catalog, args.crawl, args.ranks, args.images, args.allow_remote_images, args.linkgraph)
    from imagerank.popularity import StandardizationConfig
    from pipelines.recalculate import RecalculateOptions, recalculate

    options = RecalculateOptions(catalog=args.catalog, workdir=args.workdir, images=args.images, crawl=args.crawl,
                                 ranks=args.ranks, scheduler=args.scheduler, feature_repo=args.feature_repo,
                                 linkgraph=args.linkgraph, linkgraph_weights=args.linkgraph_weights,
                                 materialize=not args.no_materialize, materialize_views=args.materialize_views,
                                 force=args.force, retrain=args.retrain,
                                 report=not args.no_report, image_limits=image_limits(args),
                                 reuse_images=not args.recompute_images,
                                 standardization=StandardizationConfig(percentile=args.percentile))
    manifest = recalculate(options)
    print(json.dumps({"run_id": manifest["run_id"], "unchanged": manifest.get("unchanged", False),
                      "resumed": manifest.get("resumed", False), "reconciliation": manifest["reconciliation"],
                      "timings_s": manifest["timings_s"]}, indent=2))
    return 0


def cmd_ingest(args) -> int:
    from imagerank.cluster import dask_client
    from imagerank.inputs import check_catalog
    from pipelines.ingest import run_ingest

    catalog = check_catalog(args.catalog)  # before a cluster starts or anything is written
    with dask_client(args.scheduler) as client:
        print(json.dumps(run_ingest(client, catalog, args.workdir), indent=2))
    return 0


def require_dataset(workdir: Path | str, name: str, how: str) -> None:
    """A stage's input dataset must exist before a cluster is started for it."""
    from imagerank import datasets

    if not datasets.exists(workdir, name):
        raise FileNotFoundError(f"{datasets.location(workdir, name)} does not exist: {how}")


def cmd_features(args) -> int:
    """Run the one stage of :data:`pipelines.stages.STAGES` that computes ``args.family``."""
    from imagerank.cluster import dask_client
    from imagerank.inputs import check_files, check_image_template
    from imagerank.popularity import StandardizationConfig
    from pipelines.stages import StageContext, stage_for

    stage = stage_for(args.family)
    require_dataset(args.workdir, "catalog", "run `imagerank ingest` first")
    if args.family in ("pixels", "exif"):
        if not args.images:
            raise ValueError(f"the {args.family} features need --images (a folder or URL template)")
        args.images = check_image_template(args.images, bool(args.allow_remote_images))
    args.ranks = check_files("ranks", args.ranks)
    now = _now()
    with dask_client(args.scheduler) as client:
        context = StageContext(client=client, workdir=args.workdir, now=now, ranks=args.ranks, images=args.images,
                               image_families=(args.family,), image_limits=image_limits(args),
                               reuse_images=not args.recompute_images, phash_threshold=args.phash_threshold,
                               standardization=StandardizationConfig(percentile=args.percentile))
        result = stage.run(context)
    if not isinstance(result, dict):  # a row count
        result = {"rows": result}
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_graph(args) -> int:
    from imagerank.cluster import dask_client
    from imagerank.inputs import check_files
    from pipelines.graph import run_extract, run_graph, run_linkgraph

    if args.action in ("extract", "both") and not args.crawl:
        raise ValueError(f"graph {args.action} needs at least one WARC/WAT file")
    args.crawl = check_files("crawl", args.crawl)
    args.linkgraph = check_files("linkgraph", args.linkgraph, folders=True)
    args.ranks = check_files("ranks", args.ranks)
    # `graph build --linkgraph PATH` alone builds only the domain graph when no crawl edges exist yet
    from imagerank import datasets

    crawl_graph = not (args.linkgraph and args.action == "build" and not datasets.exists(args.workdir, "graph_edges"))
    result: dict = {}
    with dask_client(args.scheduler) as client:
        if args.action == "extract":
            result = run_extract(client, args.workdir, args.crawl)
        elif crawl_graph:
            result = run_graph(client, args.workdir, args.crawl, damping=args.damping, tol=args.tol,
                               max_iter=args.max_iter, extract=args.action == "both")
        if args.linkgraph:
            result["linkgraph"] = run_linkgraph(client, args.workdir, args.linkgraph, ranks_files=args.ranks,
                                                weighting=args.linkgraph_weights, damping=args.damping,
                                                tol=args.tol, max_iter=args.max_iter)
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_train(args) -> int:
    from imagerank.cluster import dask_client
    from pipelines.train import run_train

    version = args.model_version or _now().strftime("%Y%m%dT%H%M%SZ")
    require_dataset(args.workdir, "catalog", "run `imagerank ingest` and `imagerank features` first")
    with dask_client(args.scheduler) as client:
        print(json.dumps(run_train(client, args.workdir, version), indent=2, default=str))
    return 0


def latest_model_version(workdir: Path | str) -> str:
    from imagerank import datasets, storage

    fs, models = storage.filesystem(datasets.location(workdir, "models"))
    versions = sorted(p.rstrip("/").rsplit("/", 2)[-2] for p in fs.glob(f"{models}/*/metrics.json")) \
        if fs.isdir(models) else []
    if not versions:
        raise FileNotFoundError(f"no trained models under {workdir}/models: run `imagerank train` first")
    return versions[-1]


def cmd_score(args) -> int:
    from imagerank.cluster import dask_client
    from pipelines.score import run_score

    version = args.model_version or latest_model_version(args.workdir)
    with dask_client(args.scheduler) as client:
        print(json.dumps(run_score(client, args.workdir, version, _now()), indent=2))
    return 0


def cmd_materialize(args) -> int:
    from imagerank.store.feast_repo import apply_and_materialize, default_feature_repo

    require_dataset(args.workdir, "scores", "run `imagerank recalculate` (or `imagerank score`) first")
    print(json.dumps(apply_and_materialize(args.feature_repo or default_feature_repo(), args.workdir,
                                           scheduler=getattr(args, "scheduler", None),
                                           views=args.materialize_views), indent=2))
    return 0


def read_ids(args) -> list[str]:
    ids = list(args.ids)
    if args.file:
        source = nullcontext(sys.stdin) if args.file == "-" else open(args.file, encoding="utf-8")
        with source as handle:
            ids += [line.strip() for line in handle if line.strip()]
    return ids


def cmd_lookup(args) -> int:
    from imagerank.store.feast_repo import default_feature_repo, lookup

    ids = read_ids(args)
    if not ids:
        raise ValueError("no image ids given (pass them as arguments or with --file)")
    from imagerank import datasets

    if not datasets.exists(args.workdir, "feast", "registry.db"):
        raise FileNotFoundError(f"{args.workdir} has no Feast registry: run `imagerank recalculate` or `imagerank materialize` first")
    rows = lookup(args.feature_repo or default_feature_repo(), args.workdir, ids, boost_weight=args.boost_weight,
                  boost_mode=args.boost_mode)
    for row in rows:
        print(json.dumps(row))
    return 0 if all(r["found"] for r in rows) else 1


def cmd_export(args) -> int:
    from imagerank.catalog.postgres import TableSource
    from imagerank.cluster import dask_client
    from pipelines.export import run_export

    TableSource.parse(args.to)  # a malformed URL fails before a cluster starts
    require_dataset(args.workdir, "scores", "run `imagerank recalculate` (or `imagerank score`) first")
    with dask_client(args.scheduler) as client:
        print(json.dumps(run_export(client, args.workdir, args.to), indent=2))
    return 0


def cmd_runs(args) -> int:
    from imagerank import datasets, storage
    from imagerank.runs import finished_runs

    if not storage.isdir(args.workdir):
        raise FileNotFoundError(f"no work directory {args.workdir}")
    if not storage.isdir(datasets.location(args.workdir, "runs")):
        raise FileNotFoundError(f"{args.workdir} holds no runs: run `imagerank recalculate --workdir {args.workdir}` first")
    paths = finished_runs(args.workdir)
    if not paths:
        print(f"imagerank runs: no finished run in {args.workdir} yet", file=sys.stderr)
    for path in paths:
        run = json.loads(storage.read_text(path))
        rec = run.get("reconciliation", {})
        print(f"{run['run_id']}  input={rec.get('input_rows')} scored={rec.get('score_rows')} "
              f"rejected={rec.get('rejected_rows')}  {sum(run.get('timings_s', {}).values()):.1f} s")
    return 0


def cmd_report(args) -> int:
    from imagerank import report

    if args.text:
        print(report.text_report(args.workdir))
        return 0
    path = report.write_report(args.workdir, args.output, importance_rows=args.importance_rows,
                               oof_rows=args.oof_rows, thumbnails=not args.no_thumbnails, quiet=False)
    print(path)
    if args.check:
        from imagerank.reporting.browser import check_page

        check = check_page(path, path.parent)
        print(json.dumps({"facts": check.facts, "console_errors": check.console_errors,
                          "network_requests": check.network_requests,
                          "screenshots": {k: str(v) for k, v in check.screenshots.items()}}, indent=2))
        if check.console_errors or check.network_requests:
            raise RuntimeError("the report has console errors or loads network resources (see above)")
    return 0


def cmd_explain(args) -> int:
    from imagerank import report

    result = report.explain(args.workdir, args.image_id, contributions=not args.no_contributions, top=args.top)
    print(report.to_json(result) if args.json else report.format_text(result))
    return 0


def cmd_demo(args) -> int:
    from imagerank.demo import generate
    from imagerank.store.feast_repo import default_feature_repo, lookup
    from pipelines.recalculate import RecalculateOptions, recalculate

    from imagerank import datasets

    sample = generate(datasets.location(args.workdir, "demo_input"), rows=args.rows)
    print(f"generated a sample catalog of {sample['rows']} rows (+ broken rows) in {args.workdir}/demo-input", file=sys.stderr)
    manifest = recalculate(RecalculateOptions(catalog=sample["catalog"], workdir=args.workdir, ranks=sample["ranks"],
                                              images=sample["images"], crawl=sample["crawl"], scheduler=args.scheduler,
                                              report=True))
    print(json.dumps({"reconciliation": manifest["reconciliation"], "timings_s": manifest["timings_s"]}, indent=2))
    import pandas as pd

    scores = datasets.read_frame(args.workdir, "scores")
    picks = pd.concat([scores.nlargest(2, "popularity"), scores.groupby("popularity_source").head(1)])["image_id"]
    print("\nonline lookups through Feast (imagerank lookup):")
    for row in lookup(default_feature_repo(), args.workdir, list(dict.fromkeys(picks))):
        print(json.dumps(row))
    print(f"\nreport: {manifest['report']}  (open it in a browser)")
    return 0


COMMANDS = {
    "recalculate": cmd_recalculate, "ingest": cmd_ingest, "features": cmd_features, "graph": cmd_graph, "train": cmd_train,
    "score": cmd_score, "materialize": cmd_materialize, "lookup": cmd_lookup, "runs": cmd_runs, "export": cmd_export,
    "report": cmd_report, "explain": cmd_explain, "demo": cmd_demo,
}

if __name__ == "__main__":
    sys.exit(main())
