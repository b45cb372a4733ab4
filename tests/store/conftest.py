"""Store tests: temporary Feast repos over synthetic parquet data (the session redis-server, ``redis_srv``, is
in tests/conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.request
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pytest


PROJECT = "imagerank_test"
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def synthetic_frame(n: int, seed: int = 0, *, t0: datetime = T0, versions: int = 2,
                    odd_ids: bool = True) -> pd.DataFrame:
    """``versions`` rows per entity at increasing event timestamps, every feature type, with nulls."""
    rng = np.random.default_rng(seed)
    ids = [f"img-{i:07d}" for i in range(n)]
    if odd_ids and n >= 4:
        ids[1] = "ünïcødé/?#&=\"' id"
        ids[2] = "with space and ; semicolon"
        ids[3] = "x" * 300
    frames = []
    for v in range(versions):
        m = n
        f_int = pd.array(rng.integers(-10**12, 10**12, m), dtype="Int64")
        f_int[rng.random(m) < 0.1] = pd.NA
        f_double = rng.normal(size=m)
        f_double[rng.random(m) < 0.1] = np.nan
        f_float = rng.random(m).astype(np.float32)
        f_bool = pd.array(rng.random(m) < 0.5, dtype="boolean")
        f_bool[rng.random(m) < 0.1] = pd.NA
        f_str = pd.array([f"s{v}-{x}" if x % 7 else None for x in rng.integers(0, 10**6, m)], dtype=object)
        f_ts = pd.Series(pd.to_datetime(rng.integers(1_500_000_000, 1_700_000_000, m), unit="s", utc=True))
        f_ts[rng.random(m) < 0.1] = pd.NaT
        frames.append(pd.DataFrame({
            "image_id": ids,
            "f_int": f_int,
            "f_int32": rng.integers(-2**31, 2**31, m).astype(np.int32),
            "f_double": f_double,
            "f_float": f_float,
            "f_bool": f_bool,
            "f_str": f_str,
            "f_ts": f_ts,
            "event_timestamp": pd.Series([t0 + timedelta(hours=v, seconds=i % 3600) for i in range(m)]),
            "created": pd.Series([t0 + timedelta(days=1)] * m),
        }))
    df = pd.concat(frames, ignore_index=True)
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def write_source(df: pd.DataFrame, path: Path, *, files: int = 3, row_group_size: int = 2000) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.parquet"):
        old.unlink()
    for i, part in enumerate(np.array_split(np.arange(len(df)), files)):
        pq.write_table(pa.Table.from_pandas(df.iloc[part], preserve_index=False),
                       path / f"part-{i}.parquet", row_group_size=row_group_size)
    return path


DEFINITIONS = '''
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Bool, Float32, Float64, Int32, Int64, String, UnixTimestamp

image = Entity(name="image", join_keys=["image_id"], value_type=ValueType.STRING)
source = FileSource(name="synthetic", path="{source}", timestamp_field="event_timestamp",
                    created_timestamp_column="created")
synthetic = FeatureView(
    name="synthetic", entities=[image], ttl=timedelta(days=36500), source=source, online=True,
    schema=[Field(name="image_id", dtype=String), Field(name="f_int", dtype=Int64),
            Field(name="f_int32", dtype=Int32), Field(name="f_double", dtype=Float64),
            Field(name="f_float", dtype=Float32), Field(name="f_bool", dtype=Bool),
            Field(name="f_str", dtype=String), Field(name="f_ts", dtype=UnixTimestamp)],
)
'''
FEATURES = ["f_int", "f_int32", "f_double", "f_float", "f_bool", "f_str", "f_ts"]


def make_repo(root: Path, source: Path, *, engine: str = "dask", online: str = "sqlite",
              redis: str | None = None, engine_options: dict | None = None,
              online_options: dict | None = None, definitions: str = DEFINITIONS) -> Path:
    """Write a Feast repo (yaml + definitions) and ``feast apply`` its entities and views; returns its path."""
    root.mkdir(parents=True, exist_ok=True)
    if online == "sqlite":
        online_yaml = "online_store:\n  type: sqlite\n  path: online.db\n"
    else:
        online_yaml = f"online_store:\n  type: redis\n  connection_string: \"{redis}\"\n"
    online_yaml += "".join(f"  {k}: {v}\n" for k, v in (online_options or {}).items())
    if engine == "dask":
        opts = {"scheduler_address": None, "partition_rows": 3000, "write_batch_size": 1000,
                **(engine_options or {})}
        lines = "".join(f"  {k}: {'null' if v is None else v}\n" for k, v in opts.items())
        engine_yaml = f"batch_engine:\n  type: imagerank.store.engine.DaskEngine\n{lines}"
    else:
        engine_yaml = "batch_engine: local\n"
    (root / "feature_store.yaml").write_text(
        f"project: {PROJECT}\nregistry: registry.db\nprovider: local\n{online_yaml}"
        f"offline_store:\n  type: file\n{engine_yaml}entity_key_serialization_version: 3\n"
    )
    (root / "definitions.py").write_text(textwrap.dedent(definitions.format(source=str(source))))
    from feast import Entity, FeatureStore, FeatureView

    namespace: dict = {}
    exec(compile((root / "definitions.py").read_text(), str(root / "definitions.py"), "exec"), namespace)
    FeatureStore(repo_path=str(root)).apply([v for v in namespace.values() if isinstance(v, (Entity, FeatureView))])
    return root


@contextmanager
def feast_serve(repo: Path, *, env: dict | None = None, timeout: float = 180) -> Iterator[str]:
    """``feast -c repo serve`` on a free 127.0.0.1 port, stopped on exit; yields its base URL once /health
    answers (a server that exits or never answers fails the test with its stderr)."""
    from imagerank.store.redis_server import free_port

    port = free_port()
    feast = Path(sys.executable).with_name("feast")
    proc = subprocess.Popen([str(feast), "-c", str(repo), "serve", "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(base + "/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"feast serve did not start: {proc.stderr.read().decode()[-2000:]}")
                time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def get_online_features(base: str, body: dict) -> dict:
    """POST ``body`` to the server's /get-online-features; its columns by feature name."""
    request = urllib.request.Request(base + "/get-online-features", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    got = json.load(urllib.request.urlopen(request, timeout=60))
    return {name: result["values"] for name, result in zip(got["metadata"]["feature_names"], got["results"])}
