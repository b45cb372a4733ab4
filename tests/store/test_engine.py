"""The Dask engine writes what Feast's own local engine writes, into SQLite and into a real Redis."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from feast import FeatureStore
from feast.value_type import ValueType

from imagerank.store.sqlite_writer import STAGE_FEATURES

from .conftest import FEATURES, PROJECT, T0, make_repo, synthetic_frame, write_source

N = 3000
START, END = T0 - timedelta(days=1), T0 + timedelta(days=3)
REFS = [f"synthetic:{f}" for f in FEATURES]


def _sqlite_rows(repo, view="synthetic"):
    with sqlite3.connect(repo / "online.db") as c:
        return sorted(c.execute(f"select entity_key, feature_name, value, value_text, event_ts, created_ts "
                                f"from {PROJECT}_{view}").fetchall())


def _online(repo, ids):
    return FeatureStore(repo_path=str(repo)).get_online_features(
        features=REFS, entity_rows=[{"image_id": i} for i in ids]).to_dict()


def _redis_dump(client):
    return {k: client.hgetall(k) for k in client.scan_iter(count=10000)}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    df = synthetic_frame(N, seed=1)
    src = write_source(df, root / "source", files=3, row_group_size=1000)
    return root, df, src


@pytest.fixture(scope="module")
def sqlite_pair(data, dask_client):
    root, df, src = data
    local = make_repo(root / "local", src, engine="local")
    dask = make_repo(root / "dask", src, engine="dask")
    for repo in (local, dask):
        FeatureStore(repo_path=str(repo)).materialize(START, END)
    return local, dask


def test_engine_is_loaded_from_yaml(sqlite_pair):
    from imagerank.store.engine import DaskEngine, DaskEngineConfig

    store = FeatureStore(repo_path=str(sqlite_pair[1]))
    assert isinstance(store.config.batch_engine, DaskEngineConfig)
    assert store.config.batch_engine.partition_rows == 3000
    assert isinstance(store._get_provider().batch_engine, DaskEngine)


def test_sqlite_rows_identical_to_local_engine(sqlite_pair):
    local, dask = sqlite_pair
    a, b = _sqlite_rows(local), _sqlite_rows(dask)
    assert len(a) == N * len(FEATURES)
    assert a == b
    assert not list(dask.glob(".online.db.staging*"))  # the staged partitions were published and removed


def _worker_staging_dirs(client) -> list[str]:
    import glob
    import os

    found = client.run(lambda dask_worker: glob.glob(os.path.join(dask_worker.local_directory, "imagerank-staging-*")))
    return [path for paths in found.values() for path in paths]


def test_worker_local_staging_writes_the_same_rows(sqlite_pair, data, dask_client):
    """``staging_dir: worker-local`` (no disk shared by driver and workers): each worker stages in its own
    Dask local directory and the driver fetches the files over Dask; the rows are the local engine's, nothing
    is staged beside the store and no staging directory is left on the workers."""
    root, _, src = data
    repo = make_repo(root / "worker-local", src, engine="dask", engine_options={"staging_dir": "worker-local"})
    FeatureStore(repo_path=str(repo)).materialize(START, END)
    assert _sqlite_rows(repo) == _sqlite_rows(sqlite_pair[0])
    assert not list(repo.glob(".online.db.staging*"))
    assert _worker_staging_dirs(dask_client) == []


def test_explicit_staging_dir_is_used_and_emptied(sqlite_pair, data, tmp_path):
    root, _, src = data
    staging = tmp_path / "scratch"
    repo = make_repo(root / "explicit-staging", src, engine="dask", engine_options={"staging_dir": f'"{staging}"'})
    FeatureStore(repo_path=str(repo)).materialize(START, END)
    assert _sqlite_rows(repo) == _sqlite_rows(sqlite_pair[0])
    assert not list(repo.glob(".online.db.staging*"))
    assert staging.is_dir() and not list(staging.iterdir())  # the run staged there, then removed its files


def test_staging_dirs_of_killed_runs_are_removed(tmp_path):
    import os
    import time

    from imagerank.store.sqlite_writer import new_stage_dir, remove_stage_dir

    db = tmp_path / "online.db"
    old, recent = new_stage_dir(str(db)), new_stage_dir(str(db))
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    current = new_stage_dir(str(db))
    assert not os.path.exists(old) and os.path.isdir(recent)  # a run staging now is left alone
    remove_stage_dir(current)
    remove_stage_dir(recent)
    assert not (tmp_path / ".online.db.staging").exists()


def test_online_features_identical_including_bad_ids(sqlite_pair, data):
    _, df, _ = data
    ids = list(df["image_id"].unique()[:200]) + ["no-such-id", "", "ünïcødé/?#&=\"' id", "%00\x00nul"]
    a, b = _online(sqlite_pair[0], ids), _online(sqlite_pair[1], ids)
    assert a == b
    assert a["f_int"][-4] is None and a["f_str"][-1] is None  # unknown ids: nulls, not errors
    latest = df.sort_values("event_timestamp").drop_duplicates("image_id", keep="last").set_index("image_id")
    row = latest.loc[ids[0]]
    assert a["f_str"][0] == (None if pd.isna(row["f_str"]) else row["f_str"])
    assert a["f_int32"][0] == int(row["f_int32"])


def test_empty_id_list_is_rejected_by_feast(sqlite_pair):
    """Feast 0.67 raises IndexError on an empty entity list: callers (imagerank lookup) must short-circuit."""
    with pytest.raises(IndexError):
        FeatureStore(repo_path=str(sqlite_pair[1])).get_online_features(features=REFS, entity_rows=[])


@pytest.mark.slow
def test_rematerialization_overwrites_older_values(sqlite_pair, data, dask_client):
    root, df, src = data
    newer = synthetic_frame(N, seed=2, t0=T0 + timedelta(days=1), versions=1)
    newer = newer[newer.index % 2 == 0]  # half the entities get newer values
    both = pd.concat([df, newer], ignore_index=True)
    write_source(both, src, files=3, row_group_size=1000)
    try:
        for repo in sqlite_pair:
            FeatureStore(repo_path=str(repo)).materialize(START, END)
        assert _sqlite_rows(sqlite_pair[0]) == _sqlite_rows(sqlite_pair[1])
        ids = list(newer["image_id"][:50])
        got = _online(sqlite_pair[1], ids)
        assert got["f_str"] == [None if pd.isna(v) else v for v in newer["f_str"][:50]]
    finally:
        write_source(df, src, files=3, row_group_size=1000)


WIDE = """
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, String

image = Entity(name="image", join_keys=["image_id"], value_type=ValueType.STRING)
wide = FeatureView(
    name="wide", entities=[image], ttl=timedelta(days=36500), online=True,
    source=FileSource(name="wide_source", path="{source}", timestamp_field="event_timestamp"),
    schema=[Field(name="image_id", dtype=String)] + [Field(name=f"w{{i:03d}}", dtype=Float64) for i in range(%d)],
)
""" % (STAGE_FEATURES + 8)


@pytest.mark.slow
def test_wide_view_staged_in_feature_groups(dask_client, tmp_path):
    """More features than one SQLite staging row holds: still Feast's rows, byte for byte."""
    rng = np.random.default_rng(3)
    n = 600
    df = pd.DataFrame({"image_id": [f"img-{i:05d}" for i in range(n)]})
    for i in range(STAGE_FEATURES + 8):
        df[f"w{i:03d}"] = rng.normal(size=n)
    df["event_timestamp"] = pd.Timestamp(T0) + pd.to_timedelta(rng.integers(0, 3600, n), unit="s")
    src = write_source(df, tmp_path / "wide", files=2, row_group_size=200)
    repos = [make_repo(tmp_path / engine, src, engine=engine, definitions=WIDE) for engine in ("local", "dask")]
    for repo in repos:
        FeatureStore(repo_path=str(repo)).materialize(START, END)
    local, dask = (_sqlite_rows(repo, "wide") for repo in repos)
    assert len(local) == n * (STAGE_FEATURES + 8) and local == dask


def test_materialize_incremental_records_intervals(data, dask_client, tmp_path):
    _, df, src = data
    repo = make_repo(tmp_path / "inc", src, engine="dask")
    store = FeatureStore(repo_path=str(repo))
    store.materialize_incremental(END)
    fv = store.get_feature_view("synthetic")
    assert fv.materialization_intervals and fv.materialization_intervals[-1][1] == END
    assert len(_sqlite_rows(repo)) == N * len(FEATURES)


@pytest.mark.slow
@pytest.mark.redis
def test_redis_identical_to_local_engine(data, redis_srv, dask_client, tmp_path):
    _, df, src = data
    client = redis_srv.client()
    client.flushall()
    local = make_repo(tmp_path / "rlocal", src, engine="local", online="redis",
                      redis=redis_srv.connection_string)
    FeatureStore(repo_path=str(local)).materialize(START, END)
    want = _redis_dump(client)
    ids = list(df["image_id"].unique()[:300]) + ["no-such-id", ""]
    want_online = _online(local, ids)
    client.flushall()
    dask = make_repo(tmp_path / "rdask", src, engine="dask", online="redis", redis=redis_srv.connection_string)
    FeatureStore(repo_path=str(dask)).materialize(START, END)
    assert len(want) == N
    assert _redis_dump(client) == want
    assert _online(dask, ids) == want_online
    # same window again: Feast's rule keeps the stored values (timestamps not newer), store unchanged
    FeatureStore(repo_path=str(dask)).materialize(START, END)
    assert _redis_dump(client) == want


@pytest.mark.slow
@pytest.mark.redis
def test_redis_keys_carry_feast_ttl(data, redis_srv, dask_client, tmp_path):
    """``key_ttl_seconds``: every hash expires as when Feast's own store writes it, and an entity Feast's
    timestamp rule skips on a re-run keeps its running TTL (no EXPIRE without an HSET)."""
    _, _, src = data
    client = redis_srv.client()
    ttl = 3600
    seen = {}
    for engine in ("local", "dask"):
        client.flushall()
        repo = make_repo(tmp_path / f"ttl-{engine}", src, engine=engine, online="redis",
                         redis=redis_srv.connection_string, online_options={"key_ttl_seconds": ttl})
        store = FeatureStore(repo_path=str(repo))
        store.materialize(START, END)
        keys = sorted(client.scan_iter(count=10000))
        ttls = [client.ttl(k) for k in keys]
        assert len(keys) == N and all(ttl - 60 < t <= ttl for t in ttls), engine
        client.expire(keys[0], 50)
        store.materialize(START, END)  # nothing newer: no entity is written again
        assert 0 < client.ttl(keys[0]) <= 50, engine
        assert all(ttl - 120 < client.ttl(k) <= ttl for k in keys[1:20]), engine
        seen[engine] = (keys, _redis_dump(client))
    assert seen["dask"] == seen["local"]


@pytest.mark.slow
@pytest.mark.redis
def test_unreachable_redis_fails_clearly(data, dask_client, tmp_path):
    from imagerank.store.redis_server import free_port

    _, _, src = data
    repo = make_repo(tmp_path / "down", src, engine="dask", online="redis",
                     redis=f"127.0.0.1:{free_port()},password=s3cret")
    store = FeatureStore(repo_path=str(repo))
    with pytest.raises(ConnectionError) as err:
        store.materialize(START, END)
    assert "unreachable" in str(err.value) and "s3cret" not in str(err.value)
    assert not store.get_feature_view("synthetic").materialization_intervals


@pytest.mark.slow
@pytest.mark.redis
def test_redis_error_reply_fails_the_run(data, redis_srv, dask_client, tmp_path):
    """An error reply (here WRONGTYPE: a plain string where an entity's hash belongs) fails the run
    loudly; the view's interval is not recorded, so a later run writes the window again."""
    from redis.exceptions import ResponseError

    from imagerank.store.encoding import encode_entity_keys

    _, df, src = data
    client = redis_srv.client()
    client.flushall()
    key = encode_entity_keys(df.iloc[:1], {"image_id": ValueType.STRING}, 3)[0] + PROJECT.encode()
    client.set(key, b"not a hash")
    repo = make_repo(tmp_path / "wrongtype", src, engine="dask", online="redis",
                     redis=redis_srv.connection_string)
    store = FeatureStore(repo_path=str(repo))
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        store.materialize(START, END)
    assert not store.get_feature_view("synthetic").materialization_intervals
    client.delete(key)
    store.materialize(START, END)
    assert len(list(client.scan_iter(count=10000))) == N


@pytest.mark.parametrize("value_type, values", [
    (ValueType.STRING, ["a", "", "ünïcødé/?#&=\"' id", "x" * 300, "%00\x00nul"]),
    (ValueType.INT64, np.array([0, -1, 2 ** 62, -2 ** 63, 5], dtype=np.int64)),
])
def test_vectorized_entity_keys_are_feasts(value_type, values):
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.type_map import python_values_to_proto_values

    from imagerank.store.encoding import encode_entity_keys

    got = encode_entity_keys(pd.DataFrame({"k": values}), {"k": value_type}, 3)
    protos = python_values_to_proto_values(list(values), value_type)
    assert got == [serialize_entity_key(EntityKey(join_keys=["k"], entity_values=[v]),
                                        entity_key_serialization_version=3) for v in protos]


@pytest.mark.parametrize("switch", ["1", "0"])
def test_materialize_progress_bar_on_stderr_follows_the_switch(data, dask_client, tmp_path, monkeypatch, capsys,
                                                              switch):
    """IMAGERANK_PROGRESS=1: a bar per view on stderr, up to every task done; =0: none. Never on stdout."""
    _, _, src = data
    repo = make_repo(tmp_path / "progress", src, engine="dask")
    monkeypatch.setenv("IMAGERANK_PROGRESS", switch)
    capsys.readouterr()
    FeatureStore(repo_path=str(repo)).materialize(START, END)
    out, err = capsys.readouterr()
    assert "materialize synthetic" not in out
    if switch == "1":
        final = err.replace("\r", "\n").strip().splitlines()[-1]
        assert final.startswith("materialize synthetic: 100%"), err[-500:]
    else:
        assert "materialize synthetic" not in err
    assert len(_sqlite_rows(repo)) == N * len(FEATURES)
