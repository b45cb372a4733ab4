"""Local paths and S3 URLs through one interface, against a real S3 API server over HTTP."""

from __future__ import annotations

import pandas as pd
import pytest

from imagerank import storage


def test_paths_and_urls_join_and_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert storage.absolute("w") == str(tmp_path / "w")
    assert storage.absolute("file:///x/y") == "/x/y"
    assert storage.absolute("s3://b/w/") == "s3://b/w"
    assert storage.join("s3://b/w/", "scores", "part.0.parquet") == "s3://b/w/scores/part.0.parquet"
    assert storage.join("/w", "scores") == "/w/scores"
    assert storage.is_url("s3://b") and not storage.is_url("file:///x") and not storage.is_url("/x")
    with pytest.raises(ValueError, match="is a URL"):
        storage.local_path("s3://b/w")


def test_storage_options_are_checked_and_reach_urls_only(monkeypatch):
    monkeypatch.delenv(storage.OPTIONS_ENV, raising=False)
    with pytest.raises(ValueError, match="not JSON"):
        storage.parse_storage_options("{anon")
    with pytest.raises(ValueError, match="JSON object"):
        storage.parse_storage_options("[1]")
    storage.set_storage_options({"anon": False})
    try:
        assert storage.storage_options("s3://b/x") == {"anon": False, "use_listings_cache": False}
        assert storage.storage_options("/local") == {}
    finally:
        storage.set_storage_options(None)
    assert storage.OPTIONS_ENV not in __import__("os").environ


def test_s3_round_trip_through_a_real_server(s3_endpoint):
    frame = pd.DataFrame({"image_id": ["a", "b"], "popularity": [0.1, 0.9]})
    url = "s3://imagerank/storage-test/frame.parquet"
    with storage.open_file(url, "wb") as handle:
        frame.to_parquet(handle, index=False)
    assert storage.exists(url) and storage.isdir("s3://imagerank/storage-test")
    with storage.open_file(url) as handle:
        pd.testing.assert_frame_equal(pd.read_parquet(handle), frame)
    assert not storage.exists("s3://imagerank/storage-test/missing")
