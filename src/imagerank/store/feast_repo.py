"""The Feast side: apply the feature repository for a work directory, materialize, read online values."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

from imagerank.scoring import SCORE_FEATURES  # noqa: E402,F401  (one list, derived from SCORES_SCHEMA)
SCORES_VIEW = "image_scores"
RANKING_SERVICE = "ranking"
REDIS_ENV = "IMAGERANK_REDIS"
"""Feast's Redis connection string: the online store is Redis (feature_store.redis.yaml)."""
ONLINE_DB_ENV = "IMAGERANK_ONLINE_DB"
"""A local SQLite file for the online store (default: ``W/feast/online.db`` of a local work directory)."""
STAGING_ENV = "IMAGERANK_STAGING_DIR"
"""Where the workers stage SQLite partitions, reachable by the driver and every worker (default: beside the
store; with a work directory on object storage, each worker's own local directory)."""
ALL_VIEWS = "all"
"""``views=["all"]``: materialize every feature view with data, not only what search reads."""


def default_feature_repo() -> Path:
    """The Feast repository to use: $IMAGERANK_FEATURE_REPO if set, else the copy installed with the package.

    The wheel carries ``feature_repo/`` as ``imagerank/feature_repo`` (pyproject.toml), so an installed
    ``imagerank`` finds it from any directory; a source checkout (editable install) uses its top-level
    ``feature_repo/``, the source of that copy.
    """
    if os.environ.get("IMAGERANK_FEATURE_REPO"):
        return Path(os.environ["IMAGERANK_FEATURE_REPO"])
    from importlib.resources import files

    packaged = files("imagerank") / "feature_repo"
    if packaged.is_dir():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parents[3] / "feature_repo"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"no Feast repository: {packaged} is not installed and {checkout} does not exist; "
                            "set IMAGERANK_FEATURE_REPO or pass --feature-repo")


@contextmanager
def workdir_env(workdir: str | Path) -> Iterator[None]:
    """feature_store.yaml and sources.py read IMAGERANK_WORKDIR: point them at this work directory."""
    from imagerank import storage

    previous = os.environ.get("IMAGERANK_WORKDIR")
    os.environ["IMAGERANK_WORKDIR"] = storage.absolute(workdir)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("IMAGERANK_WORKDIR", None)
        else:
            os.environ["IMAGERANK_WORKDIR"] = previous


def apply_and_materialize(repo: Path, workdir: str | Path, end: datetime | None = None,
                          scheduler: str | None = None, views: Sequence[str] | None = None) -> dict:
    """``feast apply`` then ``materialize-incremental`` up to ``end`` (now): only new values are written.

    ``views``: None pushes what search reads (:func:`views_to_materialize`), ``["all"]`` every view with data,
    else exactly the named views. Both steps run in one child process, as the ``feast`` command would (the
    repository's definitions are imported fresh for this work directory, and the driver never pays Feast's
    import); the Dask engine there uses ``scheduler`` (else $DASK_SCHEDULER_ADDRESS, else its own LocalCluster).
    """
    from imagerank import storage

    end = end or datetime.now(timezone.utc)
    online_store_choice(workdir)  # a work directory without a usable online store fails here, before any work
    env = {**os.environ, "IMAGERANK_WORKDIR": storage.absolute(workdir)}
    if scheduler:
        env["DASK_SCHEDULER_ADDRESS"] = scheduler
    from imagerank.cluster import show_progress

    if show_progress():  # the child's stderr is a pipe: tell it the bars are wanted
        env["IMAGERANK_PROGRESS"] = "1"
    if not storage.is_url(workdir):  # the registry's (and SQLite store's) directory; object stores need none
        (Path(workdir) / "feast").mkdir(parents=True, exist_ok=True)
    child = subprocess.Popen([sys.executable, "-m", "imagerank.store.feast_repo", str(Path(repo).resolve()),
                              storage.absolute(workdir), end.isoformat(),
                              json.dumps(None if views is None else list(views))], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = child.stdout.read, collections.deque(maxlen=200)
    for line in child.stderr:  # the engine's progress and counts, passed on as they come
        sys.stderr.write(line)
        stderr.append(line)
    result, returncode = stdout(), child.wait()
    if returncode != 0:
        raise RuntimeError(f"feast apply + materialize failed:\n{''.join(stderr).strip()[-4000:] or result.strip()}")
    views = json.loads(result.strip().splitlines()[-1])
    return {"repo": str(repo), "end": end.isoformat(), "materialized_views": views}


def views_to_materialize(store, requested: Sequence[str] | None) -> list[str]:
    """The feature views to push to the online store.

    By default what search reads: ``image_scores`` and the views behind the ``ranking`` feature service (an
    on-demand view counts through its sources), those with data (every run writes them). At catalog scale the
    other views (pixels, EXIF, links, ...) would multiply the online store's size and the materialization time
    for values no request reads. ``["all"]``: every view with data. Named views: exactly those, each of which
    must exist and have data.
    """
    from imagerank import storage

    batch = {v.name: v for v in store.list_feature_views()}
    has_data = lambda name: storage.exists(batch[name].batch_source.path)  # noqa: E731
    if requested is None:
        wanted = [SCORES_VIEW]
        for projection in store.get_feature_service(RANKING_SERVICE).feature_view_projections:
            if projection.name in batch:
                wanted.append(projection.name)
            else:  # an on-demand view: the batch views it reads
                odfv = store.get_on_demand_feature_view(projection.name)
                wanted += [p.name for p in odfv.source_feature_view_projections.values()]
        return [name for name in dict.fromkeys(wanted) if name in batch and has_data(name)]
    requested = list(dict.fromkeys(requested))
    if requested == [ALL_VIEWS]:
        return [name for name in batch if has_data(name)]
    unknown = [name for name in requested if name not in batch]
    if unknown:
        raise ValueError(f"unknown feature view(s) {', '.join(unknown)}: pass '{ALL_VIEWS}' or some of "
                         f"{', '.join(sorted(batch))}")
    empty = [name for name in requested if not has_data(name)]
    if empty:
        raise FileNotFoundError(f"no data for feature view(s) {', '.join(empty)} in this work directory yet "
                                "(run the stage that writes them first)")
    return requested


def online_store_choice(workdir: str | Path) -> tuple[bool, str | None, str | None]:
    """``(redis, sqlite path, staging directory)`` from the environment, checked (see :func:`repo_config`)."""
    from imagerank import storage
    from imagerank.store.sqlite_writer import WORKER_LOCAL

    redis, online_db = bool(os.environ.get(REDIS_ENV)), os.environ.get(ONLINE_DB_ENV) or None
    remote = storage.is_url(workdir)
    if remote and not (redis or online_db):
        raise ValueError(f"the work directory {workdir} is on object storage, where SQLite cannot live: set "
                         f"{REDIS_ENV} (a Redis online store, host:port) or {ONLINE_DB_ENV} (a local SQLite file)")
    if redis:
        return True, None, None
    if online_db and storage.is_url(online_db):
        raise ValueError(f"{ONLINE_DB_ENV} must be a local path (SQLite), not {online_db}")
    staging = os.environ.get(STAGING_ENV) or (WORKER_LOCAL if remote else None)
    return False, storage.absolute(online_db) if online_db else None, staging


def repo_config(repo: Path, workdir: str | Path):
    """Feast's configuration for this work directory, with its online store.

    Redis when ``IMAGERANK_REDIS`` is set (``feature_store.redis.yaml``); else SQLite (``feature_store.yaml``)
    at ``IMAGERANK_ONLINE_DB`` when given, else in the work directory. A work directory on object storage has
    no disk for SQLite: it needs one of the two, and its SQLite partitions are staged in each worker's own
    directory (no disk shared by the driver and the workers), unless ``IMAGERANK_STAGING_DIR`` names one.
    """
    import yaml
    from feast.repo_config import RepoConfig

    redis, online_db, staging = online_store_choice(workdir)
    path = Path(repo) / ("feature_store.redis.yaml" if redis else "feature_store.yaml")
    with workdir_env(workdir):
        raw = yaml.safe_load(os.path.expandvars(path.read_text()))  # as Feast's load_repo_config reads it
    if online_db:
        raw["online_store"]["path"] = online_db
    if staging and isinstance(raw.get("batch_engine"), dict):
        raw["batch_engine"]["staging_dir"] = staging
    config = RepoConfig(**raw)
    config.repo_path = Path(repo)
    return config


def _apply_and_materialize_here(repo: Path, workdir: str, end: datetime, requested: Sequence[str] | None) -> list[str]:
    """The child's work: what ``feast apply --skip-source-validation`` and ``feast materialize-incremental`` do."""
    from feast import FeatureStore
    from feast.repo_operations import apply_total, cli_check_repo

    cli_check_repo(repo, repo / "feature_store.yaml")
    config = repo_config(repo, workdir)
    apply_total(config, repo, skip_source_validation=True)
    store = FeatureStore(repo_path=str(repo), config=config)
    views = views_to_materialize(store, requested)
    store.materialize_incremental(end_date=end, feature_views=views)
    return views


def feature_store(repo: Path, workdir: str | Path):
    from feast import FeatureStore

    config = repo_config(repo, workdir)
    with workdir_env(workdir):
        return FeatureStore(repo_path=str(repo), config=config)


def lookup(repo: Path, workdir: str | Path, image_ids: list[str], *, boost_weight: float = 0.5,
           boost_mode: str = "min", service: str = RANKING_SERVICE) -> list[dict]:
    """Each id's values through the ``ranking`` feature service, as search reads them, in the order asked.

    The service carries the scores, the per-request ``boost`` (``rank_boost``: ``boost_mode`` ``min`` or
    ``weighted`` with ``boost_weight``) and the context columns; unknown ids say so.
    """
    if not image_ids:
        return []
    from imagerank.store.boost import rank_boost

    rank_boost([0.0], [0.0], boost_weight, boost_mode)  # a bad mode or weight fails here, with its reason
    store = feature_store(repo, workdir)
    with workdir_env(workdir):
        features = store.get_feature_service(service)
        values = store.get_online_features(
            features=features,
            entity_rows=[{"image_id": i, "boost_weight": float(boost_weight), "boost_mode": boost_mode}
                         for i in image_ids]).to_dict()
    names = [n for n in values if n not in ("image_id", "boost_weight", "boost_mode")]
    rows = []
    for i, image_id in enumerate(image_ids):
        row = {"image_id": image_id, **{n: _plain(values[n][i]) for n in names}}
        if row.get("popularity") is None and row.get("authority") is None:
            row = {"image_id": image_id, "found": False, "error": "unknown image_id: not in the online store"}
        else:
            row["found"] = True
        rows.append(row)
    return rows


def _plain(value):
    """JSON-friendly value: NaN (an ODFV's "no value") becomes None like Feast's own missing values."""
    if isinstance(value, float) and value != value:
        return None
    return value.item() if hasattr(value, "item") else value


if __name__ == "__main__":  # the child process of apply_and_materialize
    with contextlib.redirect_stdout(sys.stderr):  # Feast's progress output; stdout carries only the result
        materialized = _apply_and_materialize_here(Path(sys.argv[1]), sys.argv[2], datetime.fromisoformat(sys.argv[3]),
                                                   json.loads(sys.argv[4]))
    print(json.dumps(materialized))
