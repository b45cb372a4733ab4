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
from typing import Iterator

from imagerank.scoring import SCORE_FEATURES  # noqa: E402,F401  (one list, derived from SCORES_SCHEMA)
SCORES_VIEW = "image_scores"


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


def store_yaml(repo: Path, workdir: str | Path) -> Path:
    """The Feast configuration for a work directory: feature_store.yaml (SQLite online store inside it) for a
    local one; for a URL, feature_store.redis.yaml when IMAGERANK_REDIS is set, else feature_store.sqlite.yaml
    when IMAGERANK_SQLITE names a local file; else a clear error (nothing is written to the driver's disk)."""
    from imagerank import storage

    if not storage.is_url(workdir):
        return Path(repo) / "feature_store.yaml"
    if os.environ.get("IMAGERANK_REDIS"):
        return Path(repo) / "feature_store.redis.yaml"
    if os.environ.get("IMAGERANK_SQLITE"):
        return Path(repo) / "feature_store.sqlite.yaml"
    raise ValueError(f"work directory {workdir} is a URL: set IMAGERANK_REDIS (host:port[,password=...]) for the "
                     "online store, or IMAGERANK_SQLITE to a local SQLite file")


def _workdir_value(workdir: str | Path) -> str:
    from imagerank import storage

    return storage.absolute(workdir) if storage.is_url(workdir) else str(Path(workdir).resolve())


@contextmanager
def workdir_env(workdir: str | Path) -> Iterator[None]:
    """feature_store.yaml and sources.py read IMAGERANK_WORKDIR: point them at this work directory."""
    previous = os.environ.get("IMAGERANK_WORKDIR")
    os.environ["IMAGERANK_WORKDIR"] = _workdir_value(workdir)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("IMAGERANK_WORKDIR", None)
        else:
            os.environ["IMAGERANK_WORKDIR"] = previous


def apply_and_materialize(repo: Path, workdir: str | Path, end: datetime | None = None,
                          scheduler: str | None = None) -> dict:
    """``feast apply`` then ``materialize-incremental`` up to ``end`` (now): only new values are written.

    Both run in one child process, as the ``feast`` command would (the repository's definitions are
    imported fresh for this work directory, and the driver never pays Feast's import); the Dask engine
    there uses ``scheduler`` (else $DASK_SCHEDULER_ADDRESS, else its own LocalCluster).
    """
    end = end or datetime.now(timezone.utc)
    config = store_yaml(repo, workdir)
    env = {**os.environ, "IMAGERANK_WORKDIR": _workdir_value(workdir)}
    if scheduler:
        env["DASK_SCHEDULER_ADDRESS"] = scheduler
    from imagerank.cluster import show_progress

    if show_progress():  # the child's stderr is a pipe: tell it the bars are wanted
        env["IMAGERANK_PROGRESS"] = "1"
    from imagerank import storage

    if not storage.is_url(workdir):
        (Path(workdir) / "feast").mkdir(parents=True, exist_ok=True)
    child = subprocess.Popen([sys.executable, "-m", "imagerank.store.feast_repo", str(Path(repo).resolve()),
                              end.isoformat(), str(Path(config).resolve())], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = child.stdout.read, collections.deque(maxlen=200)
    for line in child.stderr:  # the engine's progress and counts, passed on as they come
        sys.stderr.write(line)
        stderr.append(line)
    result, returncode = stdout(), child.wait()
    if returncode != 0:
        raise RuntimeError(f"feast apply + materialize failed:\n{''.join(stderr).strip()[-4000:] or result.strip()}")
    views = json.loads(result.strip().splitlines()[-1])
    return {"repo": str(repo), "end": end.isoformat(), "materialized_views": views}


def _apply_and_materialize_here(repo: Path, end: datetime, config_file: Path | None = None) -> list[str]:
    """The child's work: what ``feast apply --skip-source-validation`` and ``feast materialize-incremental`` do."""
    from feast import FeatureStore
    from feast.repo_config import load_repo_config
    from feast.repo_operations import apply_total, cli_check_repo

    from imagerank import storage

    config_file = config_file or repo / "feature_store.yaml"
    cli_check_repo(repo, config_file)
    apply_total(load_repo_config(repo, config_file), repo, skip_source_validation=True)
    store = FeatureStore(repo_path=str(repo), fs_yaml_file=config_file)
    views = [v.name for v in store.list_feature_views() if storage.exists(v.batch_source.path)]
    store.materialize_incremental(end_date=end, feature_views=views)
    return views


def feature_store(repo: Path, workdir: str | Path):
    from feast import FeatureStore

    with workdir_env(workdir):
        return FeatureStore(repo_path=str(repo), fs_yaml_file=store_yaml(repo, workdir))


RANKING_SERVICE = "ranking"


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
        materialized = _apply_and_materialize_here(Path(sys.argv[1]), datetime.fromisoformat(sys.argv[2]),
                                                   Path(sys.argv[3]) if len(sys.argv) > 3 else None)
    print(json.dumps(materialized))
