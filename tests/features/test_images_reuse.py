"""Incremental image features: unchanged bytes (and meta_data) are reused, anything else is recomputed."""

from __future__ import annotations

import pandas as pd
import pytest
from badcorpus import jpeg_bytes as jpeg

from imagerank.features import images as images_mod
from imagerank.features.images import PREVIOUS, family_frame, image_features, input_digests
from imagerank.io import write_frame
from imagerank.testing import shared_fixture


T1 = pd.Timestamp("2024-01-01T00:00:00Z")
T2 = pd.Timestamp("2024-02-01T00:00:00Z")


def with_previous(catalog: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """What the pipeline's join puts on a partition: each family's previous row, prefixed."""
    out = catalog
    for family in ("pixels", "exif"):
        previous = family_frame(features, family).set_index("image_id").add_prefix(f"{PREVIOUS}{family}.")
        out = out.join(previous, on="image_id")
    return out


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    for i in range(4):
        (root / f"i{i}.jpg").write_bytes(jpeg(i))
    (root / "broken.jpg").write_bytes(b"not a jpeg at all")
    return root


def catalog(ids, meta="{}"):
    return pd.DataFrame({"image_id": ids, "meta_data": meta})


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["event_timestamp", "pixels_reused", "exif_reused"]).reset_index(drop=True)


def test_unchanged_rows_are_copied_with_their_time(folder):
    ids = ["i0", "i1", "i2", "i3", "broken", "absent"]
    first = image_features(catalog(ids), str(folder), event_timestamp=T1)
    again = image_features(with_previous(catalog(ids), first), str(folder), event_timestamp=T2)
    pd.testing.assert_frame_equal(comparable(again), comparable(first))
    reusable = again["image_id"] != "absent"  # a missing file is always looked for again
    assert again["pixels_reused"].tolist() == reusable.tolist() == again["exif_reused"].tolist()
    assert (again.loc[reusable, "event_timestamp"] == T1).all()
    assert (again.loc[~reusable, "event_timestamp"] == T2).all()


def test_changed_bytes_or_meta_data_are_recomputed(folder):
    ids = ["i0", "i1", "i2"]
    first = image_features(catalog(ids), str(folder), event_timestamp=T1)
    (folder / "i1.jpg").write_bytes(jpeg(11, size=(120, 80)))
    changed = catalog(ids)
    changed.loc[2, "meta_data"] = '{"date_taken": "2019-05-04 03:02:01"}'
    again = image_features(with_previous(changed, first), str(folder), event_timestamp=T2).set_index("image_id")
    assert again["pixels_reused"].to_dict() == {"i0": True, "i1": False, "i2": True}
    assert again["exif_reused"].to_dict() == {"i0": True, "i1": False, "i2": False}
    assert again.loc["i1", "decoded_width"] == 60 and again.loc["i2", "taken_at_source"] == "meta_data.date_taken"
    assert again["event_timestamp"].to_dict() == {"i0": T1, "i1": T2, "i2": T2}
    fresh = image_features(changed, str(folder), event_timestamp=T2).set_index("image_id")
    pd.testing.assert_frame_equal(comparable(again), comparable(fresh))


def test_digest_covers_bytes_meta_data_and_extractor_version(monkeypatch):
    data = (shared_fixture("exif/exifpy/jpg/Canon_40D.jpg")).read_bytes()
    base = input_digests(data, "{}")
    assert input_digests(data, "{}") == base
    assert input_digests(data[:-1], "{}")["pixels"] != base["pixels"]
    moved = input_digests(data, '{"latitude": 1}')
    assert moved["pixels"] == base["pixels"] and moved["exif"] != base["exif"]
    assert input_digests(data, None) == input_digests(data, float("nan"))
    monkeypatch.setitem(images_mod.EXTRACTOR_VERSIONS, "pixels", "pixels/next")
    bumped = input_digests(data, "{}")
    assert bumped["pixels"] != base["pixels"] and bumped["exif"] == base["exif"]


@pytest.mark.slow
def test_stage_reuses_and_equals_a_full_run(tmp_path, folder, dask_client):
    from pipelines.images import run_image_features

    workdir = tmp_path / "W"
    ids = ["i0", "i1", "i2", "broken", "absent"]
    write_frame(catalog(ids), workdir / "catalog")
    template = f"{folder}/{{image_id}}.jpg"
    first = run_image_features(dask_client, workdir, template, images_per_task=2, progress=False,
                               event_timestamp=T1)
    assert first["pixels"]["reused"] == 0 and first["exif"]["reused"] == 0

    (folder / "i2.jpg").write_bytes(jpeg(22))
    write_frame(catalog(ids + ["i3"]), workdir / "catalog")
    second = run_image_features(dask_client, workdir, template, images_per_task=2, progress=False,
                                event_timestamp=T2)
    assert second["pixels"]["rows"] == 6 and second["pixels"]["reused"] == 3  # i0, i1, broken
    assert second["exif"]["reused"] == 3 and second["pixels"]["errors"] == first["pixels"]["errors"]

    incremental = {f: pd.read_parquet(workdir / "features" / f).sort_values("image_id", ignore_index=True)
                   for f in ("pixels", "exif")}
    full = run_image_features(dask_client, workdir, template, progress=False, event_timestamp=T2, reuse=False)
    assert full["pixels"]["reused"] == 0
    for family, frame in incremental.items():
        recomputed = pd.read_parquet(workdir / "features" / family).sort_values("image_id", ignore_index=True)
        pd.testing.assert_frame_equal(frame.drop(columns="event_timestamp"),
                                      recomputed.drop(columns="event_timestamp"))
        stamps = frame.set_index("image_id")["event_timestamp"]
        assert (stamps[["i0", "i1", "broken"]] == T1).all() and (stamps[["i2", "i3", "absent"]] == T2).all()
