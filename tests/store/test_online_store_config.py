"""Which online store a work directory gets: Redis by IMAGERANK_REDIS, SQLite only at a local path, and no
SQLite staging that assumes a disk shared with the workers when the work directory is on object storage."""

from __future__ import annotations

import pytest

from imagerank.store.feast_repo import ONLINE_DB_ENV, REDIS_ENV, STAGING_ENV, default_feature_repo, repo_config

BUCKET = "s3://imagerank/work"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in (REDIS_ENV, ONLINE_DB_ENV, STAGING_ENV):
        monkeypatch.delenv(name, raising=False)


def test_local_workdir_keeps_sqlite_beside_the_registry(tmp_path):
    config = repo_config(default_feature_repo(), tmp_path)
    assert config.online_store.type == "sqlite" and config.online_store.path == str(tmp_path / "feast" / "online.db")
    assert config.batch_engine.staging_dir is None  # staged beside the store, as a LocalCluster shares its disk


def test_object_storage_workdir_needs_redis_or_an_explicit_sqlite_path():
    with pytest.raises(ValueError, match=f"object storage.*{REDIS_ENV}.*{ONLINE_DB_ENV}"):
        repo_config(default_feature_repo(), BUCKET)


def test_object_storage_workdir_with_redis(monkeypatch):
    monkeypatch.setenv(REDIS_ENV, "127.0.0.1:6399")
    config = repo_config(default_feature_repo(), BUCKET)
    assert config.online_store.type == "redis" and config.online_store.connection_string == "127.0.0.1:6399"
    assert config.registry.path == f"{BUCKET}/feast/registry.db"


def test_object_storage_workdir_with_explicit_sqlite_stages_on_the_workers(monkeypatch, tmp_path):
    monkeypatch.setenv(ONLINE_DB_ENV, str(tmp_path / "online.db"))
    config = repo_config(default_feature_repo(), BUCKET)
    assert config.online_store.path == str(tmp_path / "online.db")
    assert config.batch_engine.staging_dir == "worker-local"
    monkeypatch.setenv(STAGING_ENV, str(tmp_path / "scratch"))
    assert repo_config(default_feature_repo(), BUCKET).batch_engine.staging_dir == str(tmp_path / "scratch")


def test_sqlite_path_must_be_local(monkeypatch):
    monkeypatch.setenv(ONLINE_DB_ENV, "s3://imagerank/online.db")
    with pytest.raises(ValueError, match=f"{ONLINE_DB_ENV} must be a local path"):
        repo_config(default_feature_repo(), BUCKET)
