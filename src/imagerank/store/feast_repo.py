"""The Feast side: apply the feature repository for a work directory, materialize, read online values."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

SCORE_FEATURES = ["popularity", "authority", "popularity_source", "authority_source", "model_version"]
SCORES_VIEW = "image_scores"


def default_feature_repo() -> Path:
    """IMAGERANK_FEATURE_REPO, else the repository's ``feature_repo/`` next to the source tree, else ./feature_repo."""
    if os.environ.get("IMAGERANK_FEATURE_REPO"):
        return Path(os.environ["IMAGERANK_FEATURE_REPO"])
    beside_source = Path(__file__).resolve().parents[3] / "feature_repo"
    return beside_source if beside_source.is_dir() else Path.cwd() / "feature_repo"


@contextmanager
def workdir_env(workdir: str | Path) -> Iterator[None]:
    """feature_store.yaml and sources.py read IMAGERANK_WORKDIR: point them at this work directory."""
    previous = os.environ.get("IMAGERANK_WORKDIR")
    os.environ["IMAGERANK_WORKDIR"] = str(Path(workdir).resolve())
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("IMAGERANK_WORKDIR", None)
        else:
            os.environ["IMAGERANK_WORKDIR"] = previous


def feast_cli(repo: Path, workdir: str | Path, *args: str) -> str:
    """Run the ``feast`` command exactly as a user would, for this work directory."""
    env = {**os.environ, "IMAGERANK_WORKDIR": str(Path(workdir).resolve())}
    (Path(workdir) / "feast").mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "feast.cli.cli", "-c", str(repo), *args], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"feast {' '.join(args)} failed:\n{done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def feature_store(repo: Path, workdir: str | Path):
    from feast import FeatureStore

    with workdir_env(workdir):
        return FeatureStore(repo_path=str(repo))


def apply_and_materialize(repo: Path, workdir: str | Path, end: datetime | None = None) -> dict:
    """``feast apply`` then ``materialize-incremental`` up to ``end`` (now): only new values are written."""
    end = end or datetime.now(timezone.utc)
    feast_cli(repo, workdir, "apply", "--skip-source-validation")
    store = feature_store(repo, workdir)
    views = [v.name for v in store.list_feature_views() if Path(v.batch_source.path).exists()]
    with workdir_env(workdir):
        store.materialize_incremental(end_date=end, feature_views=views)
    return {"repo": str(repo), "end": end.isoformat(), "materialized_views": views}


def lookup(repo: Path, workdir: str | Path, image_ids: list[str]) -> list[dict]:
    """Scores of each id from the online store, in the order asked; unknown ids say so."""
    if not image_ids:
        return []
    store = feature_store(repo, workdir)
    with workdir_env(workdir):
        values = store.get_online_features(features=[f"{SCORES_VIEW}:{f}" for f in SCORE_FEATURES],
                                           entity_rows=[{"image_id": i} for i in image_ids]).to_dict()
    rows = []
    for i, image_id in enumerate(image_ids):
        row = {"image_id": image_id, **{f: values[f][i] for f in SCORE_FEATURES}}
        if row["popularity"] is None and row["authority"] is None:
            row = {"image_id": image_id, "found": False, "error": "unknown image_id: not in the online store"}
        else:
            row["found"] = True
        rows.append(row)
    return rows
