"""The image stage reading from a real S3 API server (moto's standalone server over HTTP): the same features
and error codes as from local disk, no request for a row whose image is not listed, no re-read of an
unchanged image after a catalog change."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest

from imagerank.io import write_frame
from imagerank.testing import shared_fixture

pytestmark = pytest.mark.slow

BROKEN = {"truncated": lambda good, rng: good[: len(good) // 3], "random-bytes": lambda good, rng: rng.randbytes(5000),
          "zero-bytes": lambda good, rng: b"", "header-then-garbage": lambda good, rng: good[:600] + rng.randbytes(20000)}
PREFIX = "camera"  # s3://imagerank/camera/{image_id}.jpg
T1 = pd.Timestamp("2024-03-01T00:00:00Z")
T2 = pd.Timestamp("2024-04-01T00:00:00Z")


@pytest.fixture(scope="module")
def s3_client(s3_endpoint, dask_client):
    """The session's LocalCluster with the S3 environment on its workers, as a deployment sets it: the stage
    reaches the server through ``AWS_ENDPOINT_URL`` (nothing passed explicitly). Workers started after
    ``s3_endpoint`` inherit it; a cluster an earlier test started gets it here."""
    import os

    from imagerank.testing import WorkerEnvironment, s3_environment

    dask_client.register_plugin(WorkerEnvironment(s3_environment(s3_endpoint)))  # restarted workers too
    assert set(dask_client.run(lambda: os.environ.get("AWS_ENDPOINT_URL")).values()) == {s3_endpoint}
    return dask_client


@pytest.fixture(scope="module")
def images(s3_endpoint, tmp_path_factory):
    """The real camera JPEGs plus broken files, each under the same name on S3 and in a local folder;
    a catalog whose ids are those files plus ids that have no image anywhere."""
    from imagerank.features.image_source import ImageSource

    jpegs = sorted(p for p in shared_fixture("exif/exifpy/jpg").rglob("*") if p.suffix.lower() == ".jpg")
    rng = random.Random(18)
    files = {f"cam{i:03d}": p.read_bytes() for i, p in enumerate(jpegs)}
    for i, (kind, make) in enumerate(sorted(BROKEN.items())):
        for j in range(2):
            files[f"broken-{kind}-{j}"] = make(jpegs[(3 * i + j) % len(jpegs)].read_bytes(), rng)
    local = tmp_path_factory.mktemp("local-images")
    fs = ImageSource(f"s3://imagerank/{PREFIX}/{{image_id}}.jpg").fs
    for image_id, data in files.items():
        (local / f"{image_id}.jpg").write_bytes(data)
        fs.pipe(f"imagerank/{PREFIX}/{image_id}.jpg", data)
    absent = [f"absent{i:02d}" for i in range(12)]
    meta = {image_id: '{"date_taken": "2015-01-02 03:04:05"}' if n % 3 == 0 else "{}"
            for n, image_id in enumerate([*files, *absent])}
    return {"files": files, "absent": absent, "local": local, "meta": meta, "fs": fs}


def catalog(ids: list[str], meta: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({"image_id": ids, "provider": "flickr", "meta_data": [meta[i] for i in ids]})


def run(client, workdir: Path, template: str, **kwargs):
    from pipelines.images import run_image_features

    return run_image_features(client, str(workdir), template, images_per_task=16, progress=False, **kwargs)


def features(workdir: Path) -> dict[str, pd.DataFrame]:
    return {f: pd.read_parquet(workdir / "features" / f).sort_values("image_id", ignore_index=True)
            for f in ("pixels", "exif")}


def test_s3_gives_the_features_and_error_codes_of_local_disk(s3_client, images, tmp_path):
    ids = [*images["files"], *images["absent"]]
    on_s3, on_disk = tmp_path / "s3", tmp_path / "disk"
    for workdir in (on_s3, on_disk):
        write_frame(catalog(ids, images["meta"]), workdir / "catalog")
    s3 = run(s3_client, on_s3, f"s3://imagerank/{PREFIX}/{{image_id}}.jpg", event_timestamp=T1)
    disk = run(s3_client, on_disk, f"{images['local']}/{{image_id}}.jpg", event_timestamp=T1)

    for family in ("pixels", "exif"):
        assert s3[family]["errors"] == disk[family]["errors"] and s3[family]["ok"] == disk[family]["ok"]
    got, expected = features(on_s3), features(on_disk)
    for family in ("pixels", "exif"):
        # the digests differ by design (the listing's ETag on S3, size + modification time on disk), and so do
        # the messages of missing images (they name the path); every other message is the same
        message = f"{family}_error_message"
        pd.testing.assert_frame_equal(got[family].drop(columns=["input_digest", message]),
                                      expected[family].drop(columns=["input_digest", message]))
        decoded = got[family][f"{family}_error"].fillna("ok") != "missing"
        assert got[family].loc[decoded, message].equals(expected[family].loc[decoded, message])
    pixels = got["pixels"].set_index("image_id")
    assert len(pixels) == len(ids)  # every row ends with features or an error code
    cameras = [i for i in images["files"] if i.startswith("cam")]
    assert pixels.loc[cameras, "pixels_error"].isna().mean() > 0.9  # the real camera files decode
    assert pixels.loc[cameras, "phash"].notna().mean() > 0.9
    broken = [i for i in images["files"] if i.startswith("broken")]
    assert pixels.loc[broken, "pixels_error"].notna().all(), pixels.loc[broken, "pixels_error"]
    assert set(pixels.loc[[i for i in broken if "zero-bytes" in i], "pixels_error"]) == {"empty"}
    assert set(pixels.loc[[i for i in broken if "random-bytes" in i], "pixels_error"]) == {"not_image"}
    assert (pixels.loc[images["absent"], "pixels_error"] == "missing").all()
    exif = got["exif"].set_index("image_id")
    assert exif.loc[cameras, "make"].notna().sum() > 0.5 * len(cameras)  # real EXIF read through S3


def test_rows_without_an_image_cost_no_request(s3_client, images, tmp_path):
    ids = [*images["files"], *images["absent"]]
    write_frame(catalog(ids, images["meta"]), tmp_path / "catalog")
    counts = run(s3_client, tmp_path, f"s3://imagerank/{PREFIX}/{{image_id}}.jpg", event_timestamp=T1)
    files = images["files"]
    for family in ("pixels", "exif"):
        assert counts[family]["rows"] == len(ids)
        assert counts[family]["listed"] == len(files)
        assert counts[family]["errors"]["missing"] == len(images["absent"])
        # zero-byte objects are settled from their listed size: every other listed image, once
        assert counts[family]["fetched"] == sum(1 for data in files.values() if data)


def test_an_unchanged_image_is_not_read_again_after_a_catalog_change(s3_client, images, tmp_path):
    fs, meta = images["fs"], dict(images["meta"])
    extra = {f"late{i}": images["files"][f"cam{i:03d}"] for i in range(3)}  # objects no other test lists
    prefix = "incremental"
    for image_id, data in [*extra.items(), *((i, images["files"][i]) for i in ("cam010", "cam011", "cam012"))]:
        fs.pipe(f"imagerank/{prefix}/{image_id}.jpg", data)
    template = f"s3://imagerank/{prefix}/{{image_id}}.jpg"
    first_ids = ["cam010", "cam011", "cam012", "late0", "absent00"]
    meta.update({i: "{}" for i in extra})
    write_frame(catalog(first_ids, meta), tmp_path / "catalog")
    first = run(s3_client, tmp_path, template, event_timestamp=T1)
    assert first["pixels"]["fetched"] == 4 and first["pixels"]["reused"] == 0

    # the catalog changes: two new rows with images, one row's meta_data, and one image is replaced
    fs.pipe(f"imagerank/{prefix}/cam012.jpg", images["files"]["cam020"])
    meta["cam011"] = '{"date_taken": "2019-05-04 03:02:01"}'
    second_ids = first_ids + ["late1", "late2"]
    write_frame(catalog(second_ids, meta), tmp_path / "catalog")
    second = run(s3_client, tmp_path, template, event_timestamp=T2)
    # read again: cam012 (new bytes), cam011 (its EXIF depends on meta_data), late1, late2; not cam010, late0
    assert second["pixels"]["fetched"] == 4
    assert second["pixels"]["reused"] == 3  # cam010, late0, and cam011's pixels (bytes unchanged)
    assert second["exif"]["reused"] == 2  # cam010, late0
    incremental = features(tmp_path)
    stamps = incremental["pixels"].set_index("image_id")["event_timestamp"]
    assert (stamps[["cam010", "late0"]] == T1).all() and (stamps[["cam012", "late1", "late2"]] == T2).all()

    full = run(s3_client, tmp_path, template, event_timestamp=T2, reuse=False)
    assert full["pixels"]["fetched"] == 6 and full["pixels"]["reused"] == 0
    recomputed = features(tmp_path)
    for family in ("pixels", "exif"):
        pd.testing.assert_frame_equal(incremental[family].drop(columns="event_timestamp"),
                                      recomputed[family].drop(columns="event_timestamp"))


def test_storage_options_reach_the_source(s3_endpoint, images, monkeypatch):
    """``--storage-options`` (kept in IMAGERANK_STORAGE_OPTIONS for the workers) is how an endpoint given on
    the command line reaches the image source; without it and without AWS_ENDPOINT_URL, no server is found."""
    import fsspec

    from imagerank.features.image_source import ImageError, ImageSource
    from imagerank.storage import set_storage_options

    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("IMAGERANK_STORAGE_OPTIONS", "{}")
    fsspec.AbstractFileSystem.clear_instance_cache()  # a cached client would still know the endpoint
    row = {"image_id": "cam000"}
    set_storage_options({"endpoint_url": s3_endpoint})
    assert ImageSource(f"s3://imagerank/{PREFIX}/{{image_id}}.jpg").read(row, 10**7) == images["files"]["cam000"]
    set_storage_options({"endpoint_url": "http://127.0.0.1:9", "config_kwargs": {"retries": {"max_attempts": 1}}})
    fsspec.AbstractFileSystem.clear_instance_cache()
    with pytest.raises(ImageError) as err:
        ImageSource(f"s3://imagerank/{PREFIX}/{{image_id}}.jpg").read(row, 10**7)
    assert err.value.code == "read_error"
    fsspec.AbstractFileSystem.clear_instance_cache()
