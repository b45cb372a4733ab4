"""How the image stage plans its work: tasks sized by listed images (not catalog rows), contiguous catalog
slices with no shuffle, a few coalesced output files, and the listing streamed in bounded batches."""

from __future__ import annotations

import dask
import fsspec
import pandas as pd
import pyarrow.parquet as pq
import pytest
from badcorpus import jpeg_bytes as jpeg

from imagerank.features.image_source import LISTING_SCHEMA, ImageSource
from imagerank.io import write_frame
from pipelines.images import plan_slices, run_image_features, write_listing


@pytest.mark.parametrize("pieces, n_tasks", [
    ([("a", 0, 10)], 3),
    ([("a", 0, 7), ("a", 1, 5), ("b", 0, 13)], 4),
    ([("a", 0, 3), ("b", 0, 0), ("c", 0, 2)], 10),  # more tasks than rows: one row each
    ([("a", 0, 100)], 1),
])
def test_slices_cover_every_row_once_in_order_and_evenly(pieces, n_tasks):
    slices = plan_slices(pieces, n_tasks)
    covered = [(f, g, r) for task in slices for f, g, start, stop in task for r in range(start, stop)]
    assert covered == [(f, g, r) for f, g, rows in pieces for r in range(rows)]
    total = sum(rows for _, _, rows in pieces)
    assert len(slices) == min(n_tasks, total)
    sizes = [sum(stop - start for _, _, start, stop in task) for task in slices]
    assert max(sizes) - min(sizes) <= 1


def stage(workdir, folder, ids, **kwargs):
    write_frame(pd.DataFrame({"image_id": ids, "meta_data": "{}"}), workdir / "catalog")
    with dask.config.set(scheduler="synchronous"):
        return run_image_features(None, str(workdir), f"{folder}/{{image_id}}.jpg", progress=False, **kwargs)


@pytest.mark.slow
def test_tasks_grow_with_images_not_rows(tmp_path):
    folder = tmp_path / "img"
    folder.mkdir()
    for i in range(8):
        (folder / f"i{i}.jpg").write_bytes(jpeg(i, (16, 16)))
    few_rows = stage(tmp_path / "a", folder, [f"i{i}" for i in range(40)], images_per_task=2)
    many_rows = stage(tmp_path / "b", folder, [f"i{i}" for i in range(160)], images_per_task=2)
    assert few_rows["pixels"]["tasks"] == many_rows["pixels"]["tasks"] == 4  # 8 images / 2 per task
    assert many_rows["pixels"]["rows"] == 160 and many_rows["pixels"]["fetched"] == 8
    for i in range(8, 32):
        (folder / f"i{i}.jpg").write_bytes(jpeg(i, (16, 16)))
    more_images = stage(tmp_path / "c", folder, [f"i{i}" for i in range(40)], images_per_task=2)
    assert more_images["pixels"]["tasks"] == 16 and more_images["pixels"]["ok"] == 32
    capped = stage(tmp_path / "d", folder, [f"i{i}" for i in range(40)], images_per_task=100, max_rows_per_task=10)
    assert capped["pixels"]["tasks"] == 4  # no task holds more than max_rows_per_task catalog rows


@pytest.mark.slow
def test_outputs_are_coalesced_into_few_files(tmp_path):
    folder = tmp_path / "img"
    folder.mkdir()
    for i in range(12):
        (folder / f"i{i}.jpg").write_bytes(jpeg(i, (16, 16)))
    ids = [f"i{i}" for i in range(12)] + ["nothing"]
    one_file = stage(tmp_path / "w", folder, ids, images_per_task=2)
    assert one_file["pixels"]["tasks"] == 6 and one_file["pixels"]["files"] == 1
    for family in ("pixels", "exif"):
        files = list((tmp_path / "w" / "features" / family).glob("*.parquet"))
        assert len(files) == 1 and pq.read_metadata(files[0]).num_rows == 13
    three_files = stage(tmp_path / "w", folder, ids, images_per_task=2, rows_per_file=5, reuse=False)
    assert three_files["pixels"]["files"] == 3
    frame = pd.read_parquet(tmp_path / "w" / "features" / "pixels")
    assert len(list((tmp_path / "w" / "features" / "pixels").glob("*.parquet"))) == 3
    assert sorted(frame["image_id"]) == sorted(ids) and frame["pixels_error"].isna().sum() == 12
    assert not list((tmp_path / "w" / "features").glob(".image-listing-*"))  # listing removed


def test_listing_is_written_in_files_of_bounded_size(tmp_path):
    fs = fsspec.filesystem("memory")
    for i in range(25):
        fs.pipe(f"/listing-test-bucket/p/{i:03d}.jpg", b"x" * i)
    fs.pipe("/listing-test-bucket/elsewhere/z.jpg", b"z")
    source = ImageSource("memory://listing-test-bucket/p/{image_id}.jpg")
    local = fsspec.filesystem("file")
    n = write_listing(source, local, str(tmp_path / "listing"), rows_per_file=10)
    assert n == 25
    files = sorted((tmp_path / "listing").glob("*.parquet"))
    table = pq.read_table(tmp_path / "listing")
    assert table.schema.equals(LISTING_SCHEMA) and table.num_rows == 25 and len(files) == 3
    assert sorted(table["image.size"].to_pylist()) == list(range(25))
    assert all(p.startswith("listing-test-bucket/p/") for p in table["image.path"].to_pylist())
    empty = ImageSource("memory://listing-test-bucket/none/{image_id}.jpg")
    assert write_listing(empty, local, str(tmp_path / "empty")) == 0
    assert pq.read_table(tmp_path / "empty").num_rows == 0
