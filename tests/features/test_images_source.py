"""Image source templates, root confinement, and the Dask stage on a real LocalCluster."""

from __future__ import annotations

import io
import os

import fsspec
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imagerank.features.images import (EXIF_COLUMNS, IMAGE_FEATURES_META, PIXELS_COLUMNS, ImageError,
                                       ImageLimits, ImageSource, image_features)
from imagerank.io import write_frame


def jpeg(seed: int, size=(96, 64)) -> bytes:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, size[0], dtype=np.float32)[None, :, None].repeat(size[1], 0).repeat(3, 2)
    arr = np.clip(base + rng.normal(0, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=85)
    return buf.getvalue()


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    (root / "flickr").mkdir(parents=True)
    (root / "a.jpg").write_bytes(jpeg(1))
    (root / "flickr" / "b.jpg").write_bytes(jpeg(2))
    (tmp_path / "secret.jpg").write_bytes(jpeg(3))
    return root


def test_plain_folder_and_templates(folder):
    row = {"image_id": "a", "provider": "flickr"}
    assert ImageSource(str(folder)).read(row, 10**6) == (folder / "a.jpg").read_bytes()
    assert ImageSource(str(folder) + "/").read(row, 10**6) == (folder / "a.jpg").read_bytes()
    nested = ImageSource(f"{folder}/{{provider}}/{{image_id}}.jpg")
    assert nested.fields == ["image_id", "provider"]
    assert nested.read({"image_id": "b", "provider": "flickr"}, 10**6) == (folder / "flickr" / "b.jpg").read_bytes()
    url = ImageSource(f"file://{folder}/{{provider}}/{{image_id}}.jpg")
    assert url.read({"image_id": "b", "provider": "flickr"}, 10**6)[:2] == b"\xff\xd8"
    sharded = ImageSource(f"{folder}/{{image_id[0]}}.jpg")
    assert sharded.read({"image_id": "abc"}, 10**6)[:2] == b"\xff\xd8"


def test_fsspec_url_template():
    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket-imagerank-test/x1.jpg", jpeg(4))
    source = ImageSource("memory://bucket-imagerank-test/{image_id}.jpg")
    assert source.read({"image_id": "x1"}, 10**6)[:2] == b"\xff\xd8"
    with pytest.raises(ImageError) as err:
        source.read({"image_id": "nope"}, 10**6)
    assert err.value.code == "missing"
    with pytest.raises(ImageError) as err:
        source.read({"image_id": "../other/x1"}, 10**6)
    assert err.value.code == "path_escape"


def test_web_urls_are_refused_by_default():
    with pytest.raises(ValueError, match="refusing"):
        ImageSource("https://example.org/{image_id}.jpg")
    assert ImageSource("https://example.org/{image_id}.jpg", allow_remote=True).protocol == "https"


@pytest.mark.parametrize("image_id", ["../secret", "../../etc/passwd", "..", ".", "a\\..\\b", "a\x00b"])
def test_paths_never_escape_the_root(folder, image_id):
    with pytest.raises(ImageError) as err:
        ImageSource(str(folder)).read({"image_id": image_id}, 10**6)
    assert err.value.code == "path_escape"


def test_absolute_values_stay_under_the_root(folder):
    with pytest.raises(ImageError) as err:
        ImageSource(str(folder)).read({"image_id": str(folder.parent / "secret")}, 10**6)
    assert err.value.code == "missing"  # joined under the root, not read from the absolute path


def test_symlink_out_of_the_root_is_refused(folder):
    os.symlink(folder.parent / "secret.jpg", folder / "link.jpg")
    os.symlink(folder / "a.jpg", folder / "inside.jpg")
    source = ImageSource(str(folder))
    with pytest.raises(ImageError) as err:
        source.read({"image_id": "link"}, 10**6)
    assert err.value.code == "path_escape"
    assert source.read({"image_id": "inside"}, 10**6)[:2] == b"\xff\xd8"


def test_missing_field_and_size_bound(folder):
    with pytest.raises(ImageError) as err:
        ImageSource(f"{folder}/{{provider}}/{{image_id}}.jpg").read({"image_id": "b", "provider": None}, 10**6)
    assert err.value.code == "path_escape"
    with pytest.raises(ImageError) as err:
        ImageSource(str(folder)).read({"image_id": "a"}, 100)
    assert err.value.code == "too_large"


def test_partition_function_one_row_per_input_row(folder):
    catalog = pd.DataFrame({"image_id": ["a", "missing", "../secret", "a"], "provider": "flickr",
                            "meta_data": ['{"date_taken": "2018-06-12 10:26:00"}', "{}", None, "oops"]},
                           index=[10, 11, 12, 13])
    out = image_features(catalog, str(folder), limits={"max_bytes": 10**6})
    assert list(out.index) == [10, 11, 12, 13] and list(out.columns) == list(IMAGE_FEATURES_META.columns)
    assert dict(out.dtypes) == dict(IMAGE_FEATURES_META.dtypes)
    assert list(out["pixels_error"].fillna("ok")) == ["ok", "missing", "path_escape", "ok"]
    assert list(out["exif_error"].fillna("ok")) == ["ok", "missing", "path_escape", "ok"]
    assert out.loc[10, "taken_at_source"] == "meta_data.date_taken"
    assert out.loc[10, "decoded_width"] == 48 and out.loc[10, "phash"] == out.loc[13, "phash"]
    empty = image_features(catalog.iloc[:0], str(folder))
    assert len(empty) == 0 and list(empty.columns) == list(IMAGE_FEATURES_META.columns)


@pytest.mark.slow
def test_stage_on_local_cluster(tmp_path, folder, dask_client):
    from pipelines.images import run_image_features

    workdir = tmp_path / "W"
    ids = [f"img{i}" for i in range(12)]
    for i, image_id in enumerate(ids[:10]):
        (folder / "flickr" / f"{image_id}.jpg").write_bytes(jpeg(10 + i))
    truncated = jpeg(99)
    (folder / "flickr" / "img10.jpg").write_bytes(truncated[: len(truncated) // 2])  # img11 is missing
    catalog = pd.DataFrame({"image_id": ids, "provider": "flickr", "url": "https://example.org/x.jpg",
                            "meta_data": ['{"date_taken": "2015-01-02 03:04:05"}'] * 12})
    write_frame(catalog, workdir / "catalog")

    run_time = pd.Timestamp("2024-05-06T07:08:09Z")
    counts = run_image_features(dask_client, workdir, f"{folder}/{{provider}}/{{image_id}}.jpg",
                                images_per_task=4, progress=False, timeout_s=30, event_timestamp=run_time)
    pixels = pd.read_parquet(workdir / "features" / "pixels")
    exif = pd.read_parquet(workdir / "features" / "exif")
    assert list(pixels.columns) == PIXELS_COLUMNS and list(exif.columns) == EXIF_COLUMNS
    assert sorted(pixels["image_id"]) == sorted(ids) and sorted(exif["image_id"]) == sorted(ids)
    by_id = pixels.set_index("image_id")
    assert by_id.loc["img11", "pixels_error"] == "missing"
    assert by_id.loc["img10", "pixels_error"] in ("truncated", "decode_error")
    assert by_id.loc[ids[:10], "pixels_error"].isna().all()
    assert (by_id.loc[ids[:10], "decoded_width"] == 48).all()
    assert (exif["taken_at_source"] == "meta_data.date_taken").all()
    assert (pixels["event_timestamp"] == run_time).all() and (exif["event_timestamp"] == run_time).all()
    assert counts["pixels"]["rows"] == 12 and counts["pixels"]["ok"] == 10
    assert counts["exif"]["errors"] == {"missing": 1}  # a truncated scan still has its (empty) EXIF read

    with pytest.raises(TypeError, match="unknown image limits"):
        run_image_features(dask_client, workdir, str(folder), max_bites=10)
    only_exif = run_image_features(dask_client, workdir, f"{folder}/{{provider}}/{{image_id}}.jpg",
                                   families=("exif",), images_per_task=None, progress=False)
    assert set(only_exif) == {"exif"} and only_exif["exif"]["rows"] == 12
    left = [p.name for p in (workdir / "features").iterdir() if p.name.startswith(".") and not p.name.endswith(".v")]
    assert not left  # no temporaries left (only the datasets' version folders)
