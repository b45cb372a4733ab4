"""How many bytes one image costs in Redis when only the served ``image_scores`` view is materialized.

Writes N score rows (shaped as ``W/scores/``: uuid ids, two floats, source labels, a model version) into a
fresh work directory, materializes them with the project's own path (``feast apply`` + the Dask engine's Redis
writer, the project's Feast repository with ``feature_store.redis.yaml``) into a throwaway ``redis-server``,
and reads ``INFO memory`` ``used_memory`` before and after. Prints one JSON line:

    python -m benchmarks.redis_scores_memory [--rows 100000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
CATALOG_ROWS = 500_000_000


def scores_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """Scores as the score stage writes them (value mix as in a real run: most popularity predicted)."""
    rng = np.random.default_rng(seed)
    ids = [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(rows)]
    return pd.DataFrame({
        "image_id": ids,
        "popularity": rng.random(rows),
        "authority": rng.random(rows),
        "popularity_source": rng.choice(["observed", "predicted", "prior"], rows, p=[0.3, 0.65, 0.05]),
        "authority_source": rng.choice(["links", "domain_rank", "predicted", "prior"], rows, p=[0.1, 0.3, 0.55, 0.05]),
        "model_version": "20261203T101500Z",
        "event_timestamp": pd.Timestamp("2026-12-03T10:15:00Z"),
    })


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args(argv)

    from imagerank.scoring import SCORES_SCHEMA
    from imagerank.store.feast_repo import apply_and_materialize
    from imagerank.store.redis_server import start_redis_server

    work = Path(tempfile.mkdtemp(prefix="redis-scores-"))
    server = start_redis_server()
    try:
        workdir, repo = work / "w", work / "feature_repo"
        (workdir / "scores").mkdir(parents=True)
        frame = scores_frame(args.rows)
        frame.to_parquet(workdir / "scores" / "part.0.parquet", schema=SCORES_SCHEMA, index=False)
        shutil.copytree(ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("__pycache__", "data"))
        shutil.copy(repo / "feature_store.redis.yaml", repo / "feature_store.yaml")
        (repo / "feature_store.redis.yaml").unlink()
        client = server.client()
        client.flushall()
        before = int(client.info("memory")["used_memory"])
        import os

        os.environ["IMAGERANK_REDIS"] = server.connection_string
        done = apply_and_materialize(repo, workdir)
        after = int(client.info("memory")["used_memory"])
        keys = int(client.dbsize())
        sample = client.randomkey()
        fields = client.hlen(sample)
        per_image = (after - before) / args.rows
        print(json.dumps({
            "rows": args.rows, "keys": keys, "hash_fields_per_key": fields,
            "key_bytes": len(sample), "materialized_views": done["materialized_views"],
            "used_memory_before": before, "used_memory_after": after,
            "bytes_per_image": round(per_image, 1),
            "projection_500M_GB": round(per_image * CATALOG_ROWS / 1e9, 1),
            "redis_version": client.info("server")["redis_version"],
        }))
        return 0 if keys == args.rows else 1
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
