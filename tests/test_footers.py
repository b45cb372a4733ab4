"""Footers of a many-file Parquet dataset read together (``imagerank.io.parquet_row_groups``): the same row
groups and row counts as opening every file in turn, on a local disk and on a real S3 API server (moto's
standalone server over HTTP), including footers longer than the first tail read and files smaller than it."""

from __future__ import annotations

import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.bench_footers import sequential_pieces  # the reading the shared helper replaces
from imagerank import io, storage
from pipelines.images import catalog_pieces
from pipelines.ingest import parquet_rows


def write_dataset(location: str, n_files: int = 7) -> None:
    """Files of 0 to a few hundred rows in 1 to 5 row groups, one with a wide schema (a long footer)."""
    fs, root = storage.filesystem(location)
    fs.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(18)
    for i in range(n_files):
        rows = int(rng.integers(0, 400)) if i else 0
        width = 300 if i == 3 else 3
        table = pa.table({f"c{j}": pa.array(rng.integers(0, 1000, rows)) for j in range(width)}
                         | {"image_id": pa.array([f"id{i}-{k}" for k in range(rows)])})
        with fs.open(f"{root}/part.{i}.parquet", "wb") as handle:
            pq.write_table(table, handle, row_group_size=max(1, int(rng.integers(1, 200))))
    fs.makedirs(f"{root}/nested", exist_ok=True)
    with fs.open(f"{root}/nested/part.9.parquet", "wb") as handle:  # a dataset may have sub-folders
        pq.write_table(pa.table({"image_id": ["x", "y"]}), handle)


def check_equal_to_sequential(location: str, monkeypatch) -> None:
    expected = sequential_pieces(location)
    assert len({f for f, _, _ in expected}) == 8 and len(expected) > 8  # several files, several groups in some
    assert io.parquet_pieces(location) == expected
    assert catalog_pieces(location) == expected
    # a first tail shorter than every footer (each file then needs its second request) and small batches
    monkeypatch.setattr(io, "FOOTER_TAIL_BYTES", 16)
    monkeypatch.setattr(io, "FOOTER_FILES_AT_ONCE", 3)
    assert io.parquet_pieces(location) == expected
    top_level = sum(rows for f, _, rows in expected if "/" not in f)
    assert parquet_rows(location) == top_level  # ingest counts the files of one folder


def test_footers_read_together_equal_the_sequential_reading_locally(tmp_path, monkeypatch):
    location = str(tmp_path / "dataset")
    write_dataset(location)
    fs, root = storage.filesystem(location)
    assert max(fs.size(f) for f in fs.find(root)) > 1024  # the wide file's footer alone is over a KiB
    check_equal_to_sequential(location, monkeypatch)


@pytest.mark.slow
def test_footers_read_together_equal_the_sequential_reading_on_s3(s3_endpoint, monkeypatch):
    location = f"s3://imagerank/footers-{uuid.uuid4().hex[:8]}/dataset"
    write_dataset(location)
    check_equal_to_sequential(location, monkeypatch)


def test_a_file_that_is_not_parquet_is_named_in_the_error(tmp_path):
    location = tmp_path / "dataset"
    location.mkdir()
    pq.write_table(pa.table({"a": [1]}), location / "part.0.parquet")
    (location / "part.1.parquet").write_bytes(b"a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"part\.1\.parquet: not a Parquet file"):
        io.parquet_pieces(str(location))
