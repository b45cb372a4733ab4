"""The image stage's joins: the listing by path and the previous run's pixels and EXIF rows by image_id, the
previous families read side by side (their files written together) so that the catalog is joined twice, not
three times, and shuffled without the columns the next step does not need. Results and reuse are unchanged."""

from __future__ import annotations

import collections

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from badcorpus import jpeg_bytes as jpeg

import pipelines.images as stage
from imagerank import datasets, io
from imagerank.features.image_source import ImageSource
from imagerank.features.images import LISTED_PATH, PREVIOUS
from imagerank.io import write_frame

pytestmark = pytest.mark.slow

IDS = [f"i{i:02d}" for i in range(24)]
T1 = pd.Timestamp("2024-01-01T00:00:00Z")
T2 = pd.Timestamp("2024-02-01T00:00:00Z")


@pytest.fixture
def workdir(tmp_path, dask_client, monkeypatch):
    """A catalog of 24 rows (18 images, one broken, five absent) and a first run written in 3 files per family."""
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image_id in enumerate(IDS[:17]):
        (folder / f"{image_id}.jpg").write_bytes(jpeg(i))
    (folder / f"{IDS[17]}.jpg").write_bytes(b"not a jpeg")
    w = tmp_path / "W"
    write_frame(pd.DataFrame({"image_id": IDS, "meta_data": [f'{{"n": {i}}}' for i in range(len(IDS))]}),
                w / "catalog")
    monkeypatch.setattr(stage, "LISTING_ROWS_PER_FILE", 5)  # a listing of several files: a hash join
    first = stage.run_image_features(dask_client, str(w), f"{folder}/{{image_id}}.jpg", images_per_task=4,
                                     rows_per_file=8, progress=False, event_timestamp=T1)
    assert first["pixels"]["files"] == 3 and first["pixels"]["fetched"] == 18
    return w, f"{folder}/{{image_id}}.jpg"


def joined(w, template: str, tmp_path, targets=None):
    """The stage's joined catalog over 4 slices, with a listing of 4 files."""
    source = ImageSource(template)
    catalog = datasets.current(str(w), "catalog")
    listing = str(tmp_path / "listing")
    assert stage.write_listing(source, fsspec.filesystem("file"), listing, rows_per_file=5) == 18
    targets = targets if targets is not None else {f: datasets.location(str(w), f) for f in ("pixels", "exif")}
    return stage.joined_catalog(catalog, stage.plan_slices(io.parquet_pieces(catalog), 4),
                                ["image_id", "meta_data"], source, listing, targets)


def shuffles(frame) -> list[tuple[str, list[str], list[str]]]:
    """``(key, columns shuffled)`` of every frame the optimized graph hash-partitions (a P2P hash join
    shuffles both its sides; a shuffle node its input)."""
    out = []
    for expr in frame.optimize().expr.lower_completely().walk():
        name = type(expr).__name__
        if name == "HashJoinP2P":
            out += [(str(expr.left_on), list(expr.left.columns)), (str(expr.right_on), list(expr.right.columns))]
        elif "Shuffle" in name:
            out.append((str(expr.partitioning_index), list(expr.frame.columns)))
    return out


def read_side_by_side(frame) -> bool:
    """The frame's graph reads the families file by file (:func:`read_previous_side_by_side`), joining nothing."""
    keys = [k[0] if isinstance(k, tuple) else k for k in frame.__dask_graph__()]
    return any(str(k).startswith("previous-rows") for k in keys) and not shuffles(frame)


def test_previous_families_are_one_join_and_the_path_is_not_shuffled_twice(workdir, tmp_path):
    w, template = workdir
    frame = joined(w, template, tmp_path)
    shuffled = shuffles(frame)
    joins = collections.Counter(type(e).__name__ for e in frame.optimize().expr.lower_completely().walk())
    assert joins["HashJoinP2P"] == 2  # listing by path, previous rows (both families) by image_id: was 3
    assert len(shuffled) == 4  # catalog and listing by path, catalog and previous rows by image_id: was 6
    by_id = [columns for key, columns in shuffled if "image_id" in key]
    assert len(by_id) == 2
    catalog_side = next(c for c in by_id if "meta_data" in c)
    assert LISTED_PATH not in catalog_side and "image.size" in catalog_side  # the path served its join
    previous_side = next(c for c in by_id if "meta_data" not in c)
    assert {c.split(".")[1] for c in previous_side if c.startswith(PREVIOUS)} == {"pixels", "exif"}
    # one of the families alone still joins once; without a listing only the previous rows are joined
    assert len(shuffles(joined(w, template, tmp_path / "p", {"pixels": datasets.location(str(w), "pixels")}))) == 4


def test_side_by_side_rows_equal_a_merge_of_the_two_families(workdir):
    w, _ = workdir
    targets = {f: datasets.location(str(w), f) for f in ("pixels", "exif")}
    together = stage.previous_rows(targets)
    assert together.npartitions == 3 and read_side_by_side(together)
    merged = None
    for family in ("pixels", "exif"):
        frame = io.read_frame(targets[family]).astype({"image_id": "string"})
        frame = frame.rename(columns=lambda c: c if c == "image_id" else f"{PREVIOUS}{family}.{c}")
        merged = frame if merged is None else merged.merge(frame, on="image_id", how="outer")
    got = together.compute().sort_values("image_id", ignore_index=True)
    want = merged.sort_values("image_id", ignore_index=True)[list(got.columns)]
    assert len(got) == len(IDS) and got["image_id"].is_unique
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_families_written_apart_are_merged_not_put_side_by_side(workdir, tmp_path):
    """The footers decide: an EXIF version in other files (here: 2 files, not 3) is merged on image_id."""
    w, template = workdir
    exif = io.read_frame(datasets.location(str(w), "exif"))
    with io.publishing(datasets.location(str(w), "exif")) as version:
        for k, part in enumerate((exif.iloc[:10], exif.iloc[10:])):
            pq.write_table(pa.Table.from_pandas(part, preserve_index=False), f"{version}/part.{k}.parquet")
    targets = {f: datasets.location(str(w), f) for f in ("pixels", "exif")}
    apart = stage.previous_rows(targets)
    assert not read_side_by_side(apart)
    got = apart.compute().sort_values("image_id", ignore_index=True)
    assert len(got) == len(IDS) and got["image_id"].is_unique
    digests = got.set_index("image_id")[f"{PREVIOUS}exif.input_digest"]
    expected = exif.astype({"image_id": "string"}).set_index("image_id")["input_digest"].reindex(digests.index)
    pd.testing.assert_series_equal(digests, expected, check_names=False, check_dtype=False)
    assert digests.notna().sum() == 18  # the rows with an image (or broken bytes) have a digest to reuse
    assert len(shuffles(joined(w, template, tmp_path))) == 6  # the two families' merge shuffles both


def test_files_of_equal_rows_but_other_ids_never_duplicate_or_mismatch_a_row(tmp_path):
    """Side by side only when the ids agree; otherwise each file's first-family rows keep the others' by id."""
    pixels, exif = tmp_path / "pixels", tmp_path / "exif"
    pixels.mkdir(), exif.mkdir()
    pq.write_table(pa.table({"image_id": ["a", "b", "c"], "input_digest": ["pa", "pb", "pc"]}), pixels / "part.0.parquet")
    pq.write_table(pa.table({"image_id": ["c", "a", "z"], "input_digest": ["ec", "ea", "ez"]}), exif / "part.0.parquet")
    metas = {f: pd.DataFrame({"image_id": pd.Series(dtype="string"),
                              f"{PREVIOUS}{f}.input_digest": pd.Series(dtype="string")}) for f in ("pixels", "exif")}
    rows = stage.read_previous_side_by_side(
        "part.0.parquet", {"pixels": (str(pixels), ["input_digest"]), "exif": (str(exif), ["input_digest"])}, metas)
    assert rows["image_id"].tolist() == ["a", "b", "c"]
    assert rows[f"{PREVIOUS}exif.input_digest"].tolist() == ["ea", pd.NA, "ec"]


def test_a_second_run_reuses_every_unchanged_row_through_the_joins(workdir, dask_client, monkeypatch):
    w, template = workdir
    monkeypatch.setattr(stage, "LISTING_ROWS_PER_FILE", 5)
    before = {f: io.read_frame(datasets.location(str(w), f)).sort_values("image_id", ignore_index=True)
              for f in ("pixels", "exif")}
    again = stage.run_image_features(dask_client, str(w), template, images_per_task=4, rows_per_file=8,
                                     progress=False, event_timestamp=T2)
    for family in ("pixels", "exif"):
        assert again[family]["reused"] == 18 and again[family]["fetched"] == 0  # 17 images and the broken one
        after = io.read_frame(datasets.location(str(w), family)).sort_values("image_id", ignore_index=True)
        pd.testing.assert_frame_equal(after.drop(columns="event_timestamp"),
                                      before[family].drop(columns="event_timestamp"))
        stamps = after.set_index("image_id")["event_timestamp"]
        assert (stamps[IDS[:18]] == T1).all() and (stamps[IDS[18:]] == T2).all()  # reused rows keep their time
