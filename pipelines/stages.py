"""The stage table: every stage of a recalculation, once, in the order a run executes them.

Read by :func:`pipelines.recalculate.recalculate` (which runs each stage whose input option is set) and by
``imagerank features FAMILY`` (which runs the one stage that names FAMILY among its ``commands``). A stage
names the datasets it reads and writes (names from :mod:`imagerank.datasets`), the run option it needs
(``when``), and the function that runs it on a :class:`StageContext`.

To find a stage: look it up here by its progress label, then follow ``run`` into its pipeline module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from imagerank.settings import DEFAULT_RETRAIN, ImageLimits

if TYPE_CHECKING:  # the CLI reads this table to build its parser: no pandas at import
    import pandas as pd

    from imagerank.popularity import StandardizationConfig


@dataclass
class StageContext:
    """What a stage may use: the cluster, the work directory, the run's time and settings, earlier results."""

    client: Any
    workdir: str | Path
    now: pd.Timestamp
    run_id: str | None = None
    catalog: list[str] = field(default_factory=list)
    ranks: list[str] = field(default_factory=list)
    images: str | None = None
    image_families: tuple[str, ...] = ("pixels", "exif")
    image_limits: ImageLimits = field(default_factory=ImageLimits)
    reuse_images: bool = True
    phash_threshold: int | None = None  # None: the visual module's default
    crawl: list[str] = field(default_factory=list)
    linkgraph: list[str] = field(default_factory=list)
    linkgraph_weights: str = "unweighted"
    standardization: StandardizationConfig | None = None  # None: the default percentile
    retrain: str = DEFAULT_RETRAIN
    feature_repo: Path | None = None
    materialize_views: list[str] | None = None
    manifest: dict = field(default_factory=dict)  # results of the stages before, by manifest key


@dataclass(frozen=True)
class Stage:
    name: str  # progress label and run-state key (a resumed run skips the names it finished)
    key: str  # where the result goes in the run manifest
    run: Callable[[StageContext], Any]
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    when: str | None = None  # the RecalculateOptions field that must be set for a recalculation to run it
    commands: tuple[str, ...] = ()  # `imagerank features FAMILY` names that run this stage
    manifest_field: str | None = None  # the result is stored as {manifest_field: result} under ``key``

    def runs(self, options) -> bool:
        """Whether a recalculation with these options runs this stage."""
        return self.when is None or bool(getattr(options, self.when))


# each function below is wiring only: it hands the context's fields to the stage's pipeline function

def _ingest(ctx: StageContext):
    from pipelines.ingest import run_ingest

    return run_ingest(ctx.client, ctx.catalog, ctx.workdir)


def _metadata(ctx: StageContext):
    from pipelines.features import run_metadata_features

    return run_metadata_features(ctx.client, ctx.workdir, ctx.now)


def _text(ctx: StageContext):
    from pipelines.text import run_text_features

    return run_text_features(ctx.client, ctx.workdir, ctx.now)


def _popularity(ctx: StageContext):
    from imagerank.popularity import StandardizationConfig
    from pipelines.features import run_popularity_labels

    return run_popularity_labels(ctx.client, ctx.workdir, ctx.standardization or StandardizationConfig(), ctx.now)


def _images(ctx: StageContext):
    from pipelines.images import run_image_features

    return run_image_features(ctx.client, ctx.workdir, ctx.images, ctx.image_families, event_timestamp=ctx.now,
                              reuse=ctx.reuse_images, **ctx.image_limits.to_dict())


def _visual(ctx: StageContext):
    from pipelines.visual import run_visual_features

    return run_visual_features(ctx.client, ctx.workdir, threshold=ctx.phash_threshold, event_timestamp=ctx.now)


def _graph(ctx: StageContext):
    from pipelines.graph import run_graph

    return run_graph(ctx.client, ctx.workdir, ctx.crawl)


def _links(ctx: StageContext):
    from pipelines.graph import run_link_features

    return run_link_features(ctx.client, ctx.workdir, event_timestamp=ctx.now)


def _linkgraph(ctx: StageContext):
    from pipelines.graph import run_linkgraph

    return run_linkgraph(ctx.client, ctx.workdir, ctx.linkgraph, ranks_files=ctx.ranks,
                         weighting=ctx.linkgraph_weights)


def _domains(ctx: StageContext):
    from pipelines.features import run_domain_features

    return run_domain_features(ctx.client, ctx.workdir, ctx.ranks, ctx.now)


def _join(ctx: StageContext):
    from imagerank.features.registry import write_joined_features

    return write_joined_features(ctx.workdir)


def _train(ctx: StageContext):
    from pipelines.train import train_or_reuse

    return train_or_reuse(ctx.client, ctx.workdir, ctx.run_id, ctx.retrain)


def _score(ctx: StageContext):
    from pipelines.score import run_score

    return run_score(ctx.client, ctx.workdir, ctx.manifest["models"]["model_version"], ctx.now)


def _reconcile(ctx: StageContext):
    from imagerank.runs import reconcile

    return reconcile(ctx.workdir, ctx.manifest["ingest"])


def _feast(ctx: StageContext):
    from imagerank.store.feast_repo import apply_and_materialize, default_feature_repo

    # inside the cluster block: the Dask engine materializes on the same cluster
    return apply_and_materialize(ctx.feature_repo or default_feature_repo(), ctx.workdir, ctx.now.to_pydatetime(),
                                 ctx.client.scheduler.address, ctx.materialize_views)


# what train, score and Feast read: every feature family (imagerank.features.registry.FAMILY_NAMES)
FEATURE_FAMILIES = ("metadata", "popularity", "domains", "pixels", "exif", "links", "visual", "text")

STAGES: tuple[Stage, ...] = (
    Stage("ingest", "ingest", _ingest, reads=(), writes=("catalog", "rejects")),
    Stage("features: metadata", "features", _metadata, reads=("catalog",), writes=("metadata",),
          commands=("metadata",), manifest_field="metadata_rows"),
    Stage("features: text", "text", _text, reads=("catalog",), writes=("text",), commands=("text",)),
    Stage("features: popularity", "popularity", _popularity, reads=("catalog",), writes=("popularity",),
          commands=("popularity",)),
    Stage("features: pixels + exif", "images", _images, reads=("catalog", "pixels", "exif"),
          writes=("pixels", "exif"), when="images", commands=("pixels", "exif")),
    Stage("features: visual duplicates", "visual", _visual, reads=("catalog", "pixels"),
          writes=("visual", "visual_summary"), when="images", commands=("visual",)),
    Stage("graph: extract + PageRank", "graph", _graph, reads=("graph_edges",),
          writes=("graph_edges", "graph_rejects", "graph_extract_counts", "graph_pages", "graph_hosts",
                  "graph_summary"), when="crawl"),
    Stage("features: links", "links", _links, reads=("catalog", "graph_pages", "graph_hosts"),
          writes=("links", "links_summary"), when="crawl", commands=("links",)),
    # before the domain features, which join it by landing domain
    Stage("graph: linkgraph", "linkgraph", _linkgraph, reads=(),
          writes=("graph_domains", "linkgraph_rejects", "linkgraph_summary"), when="linkgraph"),
    Stage("features: domains", "domains", _domains, reads=("metadata", "popularity", "graph_hosts", "graph_domains"),
          writes=("domains", "domain_stats"), commands=("domains",)),
    # every family joined once per run: train, score and the training fingerprint read it with no shuffle
    # (`imagerank features join` rejoins after a family is rerun by hand)
    Stage("features: join", "joined_features", _join, reads=FEATURE_FAMILIES, writes=("features",),
          commands=("join",)),
    # the joined features when current, else the families (train then rewrites the joined features first)
    Stage("train", "models", _train, reads=("catalog", "features", *FEATURE_FAMILIES, "linkgraph_summary", "runs",
                                             "models"), writes=("models", "features")),
    Stage("score", "scores", _score, reads=("catalog", "features", *FEATURE_FAMILIES, "models"), writes=("scores",)),
    Stage("reconcile", "reconciliation", _reconcile, reads=("catalog", "rejects", "scores"), writes=()),
    Stage("feast: apply + materialize", "feast", _feast, reads=("scores", *FEATURE_FAMILIES), writes=("feast",),
          when="materialize"),
)


def feature_commands() -> list[str]:
    """The families of ``imagerank features``, in stage order."""
    return [command for stage in STAGES for command in stage.commands]


def stage_for(command: str) -> Stage:
    """The stage ``imagerank features <command>`` runs."""
    for stage in STAGES:
        if command in stage.commands:
            return stage
    raise ValueError(f"no stage computes the {command!r} features; choose one of {', '.join(feature_commands())}")
