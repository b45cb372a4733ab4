"""Fuzzing image bytes and EXIF blocks: every image gives a row, features are finite and in range, or an error code."""

from __future__ import annotations

import math
import uuid

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from badcorpus import (ExifSpec, IfdEntry, bit_flipped, exif_block, jpeg_bomb, jpeg_bytes, looping_exif, png_bomb,
                       truncated, with_app1)
from fuzzkit import examples, tried
from imagerank.features import exif as X
from imagerank.features import images as I
from imagerank.features import pixels as P

ERROR_CODES = {"path_escape", "missing", "read_error", "too_large", "empty", "not_image", "too_many_pixels",
               "truncated", "decode_error", "exif_malformed", "timeout"}  # internal_error means a bug
UNIT = ["brightness", "contrast", "saturation", "highlights_clipped", "shadows_clipped", "edge_density"]
BASES = [jpeg_bytes(s, size, mode=mode) for s, size, mode in
         [(1, (64, 48), "RGB"), (2, (17, 9), "L"), (3, (300, 200), "RGB"), (4, (8, 8), "CMYK"), (5, (2, 200), "RGB")]]


def check_rows(pix: dict, ex: dict) -> None:
    assert pix["pixels_error"] in ERROR_CODES | {None}, (pix["pixels_error"], pix["pixels_error_message"])
    assert ex["exif_error"] in ERROR_CODES | {None}, (ex["exif_error"], ex["exif_error_message"])
    for name, value in pix.items():
        if isinstance(value, float):
            assert math.isfinite(value), (name, value)
    for name in UNIT:
        assert pix[name] is None or 0.0 <= pix[name] <= 1.0 + 1e-6, (name, pix[name])
    assert pix["entropy"] is None or 0.0 <= pix["entropy"] <= 8.0 + 1e-6
    assert pix["jpeg_quality"] is None or 1 <= pix["jpeg_quality"] <= 100
    if pix["pixels_error"] is None:
        assert pix["phash"] is not None and -(1 << 63) <= pix["phash"] < (1 << 63)
    for name in ("focal_length", "f_number", "exposure_time", "latitude", "longitude"):
        assert ex[name] is None or (isinstance(ex[name], float) and math.isfinite(ex[name])), (name, ex[name])
    assert ex["latitude"] is None or abs(ex["latitude"]) <= 90
    assert ex["longitude"] is None or abs(ex["longitude"]) <= 180
    assert ex["orientation"] is None or 1 <= ex["orientation"] <= 8
    for name in ("make", "model", "software", "lens"):
        assert ex[name] is None or (len(ex[name]) <= X.MAX_TEXT and "\x00" not in ex[name])


@st.composite
def mutated_images(draw):
    data = draw(st.sampled_from(BASES))
    for _ in range(draw(st.integers(0, 3))):
        how = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "splice"]))
        if how == "truncate":
            data = truncated(data, draw(st.floats(0, 1)))
        elif how == "flip":
            data = bit_flipped(data, draw(st.integers(0, 10**6)), draw(st.integers(1, 20)))
        elif how == "insert" and data:
            i = draw(st.integers(0, len(data)))
            data = data[:i] + draw(st.binary(min_size=1, max_size=40)) + data[i:]
        elif how == "delete" and data:
            i = draw(st.integers(0, len(data) - 1))
            data = data[:i] + data[i + draw(st.integers(1, 200)):]
        elif how == "splice":
            other = draw(st.sampled_from(BASES))
            data = data[: len(data) // 2] + other[len(other) // 2:]
    return data


@settings(max_examples=examples(2))
@given(mutated_images(), st.sampled_from([None, '{"date_taken": "2019-01-02"}', '{"latitude": "NaN", "longitude": 1e999}',
                                          "[1]", "{", '{"date_taken": 12345678901234567890}']))
def test_mutated_jpegs_give_a_row_with_finite_features_or_an_error(data, meta):
    tried("jpeg", data)
    pix, ex = I.analyse_bytes(data, meta)
    check_rows(pix, ex)


TAGS = [0x010F, 0x0110, 0x0112, 0x0131, 0x829A, 0x829D, 0x8827, 0x920A, 0x9209, 0x8833, 0x9003, 0x9011, 0xA433,
        0xA434, 1, 2, 3, 4, 0x8769, 0x8825, 0xFFFF, 0]
VALUES = st.one_of(st.binary(max_size=4), st.binary(min_size=5, max_size=40),
                   st.sampled_from([b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x01\x00\x00\x00\x00\x00\x00\x00",
                                    b"2019:01:02 03:04:05\x00", b"0000:00:00 00:00:00\x00", b"Canon\x00EOS"]))


@st.composite
def ifd_entries(draw, max_size=8):
    return [IfdEntry(tag=draw(st.sampled_from(TAGS)), type=draw(st.integers(0, 14)),
                     count=draw(st.sampled_from([0, 1, 2, 3, 4, 8, 20, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF])),
                     value=draw(VALUES),
                     offset=draw(st.one_of(st.none(), st.sampled_from([0, 1, 8, 0xFFFF, 0xFFFFFFFF]),
                                           st.integers(0, 400))))
            for _ in range(draw(st.integers(0, max_size)))]


@st.composite
def exif_specs(draw):
    return ExifSpec(ifd0=draw(ifd_entries()), exif_ifd=draw(st.one_of(st.none(), ifd_entries())),
                    gps_ifd=draw(st.one_of(st.none(), ifd_entries(4))),
                    next_ifd=draw(st.sampled_from([0, None, 8, 0xFFFFFFFF, 3])), big_endian=draw(st.booleans()))


@settings(max_examples=examples(2))
@given(exif_specs(), st.integers(0, len(BASES) - 1))
def test_hostile_exif_blocks_never_crash(spec, base):
    block = exif_block(spec)
    tried("exif", block)
    pix, ex = I.analyse_bytes(with_app1(BASES[base], block), None)
    check_rows(pix, ex)
    assert pix["pixels_error"] is None  # a bad EXIF block never costs the pixels


def test_resource_bounds_are_reported():
    """Every image limit is configurable and reported as an error code when hit."""
    pix, ex = I.analyse_bytes(jpeg_bomb(), None)
    assert pix["pixels_error"] == "too_many_pixels"  # refused before any pixel is decoded
    pix, _ = I.analyse_bytes(png_bomb(), None)
    assert pix["pixels_error"] == "too_many_pixels"
    small = I.ImageLimits(max_pixels=1000)
    pix, _ = I.analyse_bytes(BASES[0], None, limits=small)
    assert pix["pixels_error"] == "too_many_pixels"
    pix, ex = I.analyse_bytes(BASES[2], None, limits=I.ImageLimits(timeout_s=0.0), deadline=0.0)
    assert pix["pixels_error"] == "timeout"
    pix, ex = I.analyse_bytes(with_app1(BASES[0], looping_exif()), None)
    check_rows(pix, ex)
    assert ex["make"] == "Canon" and pix["pixels_error"] is None


def test_partition_function_on_a_folder_of_hostile_files(tmp_path):
    """One output row per catalog row, in order, whatever sits in the image folder; limits reach the rows."""
    payloads = [BASES[0], truncated(BASES[2], 0.3), bit_flipped(BASES[2], 1, 50, 100), jpeg_bomb(), png_bomb(), b"",
                b"GIF89a" + b"\xff" * 20, with_app1(BASES[1], looping_exif()), None, BASES[2]]
    ids = [str(uuid.UUID(int=i + 1)) for i in range(len(payloads))]
    for image_id, data in zip(ids, payloads):
        if data is not None:
            (tmp_path / f"{image_id}.jpg").write_bytes(data)
    (tmp_path / "big").mkdir()
    catalog = pd.DataFrame({"image_id": ids, "meta_data": ['{"date_taken": "2001-02-03"}'] * len(ids)},
                           index=range(100, 100 + len(ids)))
    tried("jpeg", tuple(payloads))
    out = I.image_features(catalog, str(tmp_path), limits={"max_bytes": len(BASES[2]) - 1})
    assert list(out["image_id"]) == ids and list(out.index) == list(catalog.index)
    errors = list(out["pixels_error"])
    assert errors[0] is pd.NA and errors[-1] == "too_large" and errors[8] == "missing" and errors[5] == "empty"
    assert errors[3] == errors[4] == "too_many_pixels"
    assert not (out["pixels_error"] == "internal_error").any()
    assert (out["taken_at_source"].dropna() != "").all()
    for column in P.PIXEL_FEATURE_NAMES:
        if out[column].dtype.kind == "f":
            values = out[column].dropna()
            assert values.map(math.isfinite).all(), column
