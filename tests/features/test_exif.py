"""EXIF features: real camera files against exifread's dump, catalog dates, malformed EXIF, fuzzing."""

from __future__ import annotations

import io
import struct
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from imagerank.testing import shared_fixture
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from imagerank.features.exif import (EXIF_META, EXIF_SCHEMA, camera_class, catalog_facts,
                                     parse_catalog_date, software_is_editor)
from imagerank.features.images import ImageLimits, analyse_bytes, exif_features, image_features

EXIF_ERRORS = {None, "exif_malformed", "not_image", "empty", "too_many_pixels", "timeout"}


def parse_dump(text: str) -> dict[str, dict[str, str]]:
    """exifread's dump: ``Opening: tests/resources/<path>`` then ``<IFD> <Tag> (<Type>): <value>`` lines."""
    files: dict[str, dict[str, str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("Opening: "):
            current = files.setdefault(line[len("Opening: "):].strip().removeprefix("tests/resources/"), {})
        elif current is not None and " (" in line and "): " in line:
            key, rest = line.split(" (", 1)
            current[key] = rest.split("): ", 1)[1]
    return files


@pytest.fixture(scope="module")
def exifpy():
    root = shared_fixture("exif/exifpy/dump.txt").parent
    dump = parse_dump((root / "dump.txt").read_text(encoding="utf-8", errors="replace"))
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    catalog = pd.DataFrame({"image_id": [f"id-{i}" for i in range(len(files))],
                            "relpath": [str(p.relative_to(root)) for p in files],
                            "meta_data": ["{}"] * len(files)})
    return root, dump, catalog


def test_schema_constants_agree():
    assert list(EXIF_META.columns) == EXIF_SCHEMA.names
    assert {"has_exif", "camera_class", "taken_at", "taken_at_source", "exif_error"} <= set(EXIF_SCHEMA.names)


def test_make_model_and_datetime_agree_with_exifread_dump(exifpy):
    root, dump, catalog = exifpy
    out = exif_features(catalog, f"{root}/{{relpath}}")
    assert len(out) == len(catalog) and list(out["image_id"]) == list(catalog["image_id"])
    checked = 0
    for rel, (_, row) in zip(catalog["relpath"], out.iterrows()):
        expected = dump.get(rel)
        if expected is None:
            continue
        for tag, column in (("Image Make", "make"), ("Image Model", "model")):
            if tag in expected and expected[tag].strip():
                assert row[column] == expected[tag].strip(), (rel, tag)
                checked += 1
        if "EXIF DateTimeOriginal" in expected:
            want = datetime.strptime(expected["EXIF DateTimeOriginal"].strip(), "%Y:%m:%d %H:%M:%S")
            assert row["datetime_original"] == pd.Timestamp(want), rel
            assert row["taken_at"] == pd.Timestamp(want) and row["taken_at_source"] == "exif"
            checked += 1
        # "No EXIF information found" is not checked: exifread reads only the first APP1 segment, and
        # jpg/xmp/no_exif.jpg carries its EXIF in a second APP1 after the XMP one (Pillow finds it)
    assert checked >= 100


def test_real_files_features(exifpy):
    root, _, catalog = exifpy
    out = image_features(catalog, f"{root}/{{relpath}}").set_index(catalog["relpath"])
    assert out["exif_error"].isna().sum() >= len(out) - 3
    d70 = out.loc["jpg/Nikon_D70.jpg"]
    assert d70["camera_class"] == "dslr_mirrorless" and d70["has_exif"]
    assert out.loc["jpg/Canon_PowerShot_S40.jpg", "camera_class"] == "compact"
    assert out.loc["jpg/tests/67-0_length_string.jpg", "camera_class"] == "phone"
    gps = out.loc["jpg/gps/DSCN0010.jpg"]
    assert gps["gps_present"] and gps["location_source"] == "exif"
    assert 40 < gps["latitude"] < 50 and 10 < gps["longitude"] < 15  # Tuscany (Nikon P6000 sample)
    assert out.loc["jpg/Canon_40D.jpg", "edited"]  # GIMP
    assert out.loc["jpg/Sony_alpha_a58.JPG", "edited"] == False  # noqa: E712 - camera firmware
    assert out.loc["jpg/orientation/portrait_6.jpg", "orientation"] == 6
    assert out.loc["heic/heic_hdlr_box.jpg", "exif_error"] == "not_image"
    # every readable file also has pixel features
    ok = out["pixels_error"].isna()
    assert ok.sum() >= len(out) - 3 and (out.loc[ok, "decoded_width"] > 0).all()


def test_camera_class_rule():
    assert camera_class("Apple", "iPhone 13 Pro Max", "15.3") == "phone"
    assert camera_class("samsung", "SM-G930F", None) == "phone"
    assert camera_class("Google", "Pixel 7", None) == "phone"
    assert camera_class("Canon", "Canon EOS 40D", None) == "dslr_mirrorless"
    assert camera_class("SONY", "ILCE-7M3", None) == "dslr_mirrorless"
    assert camera_class("NIKON CORPORATION", "NIKON Z 6", None) == "dslr_mirrorless"
    assert camera_class("OLYMPUS CORPORATION", "E-PL8", None) == "dslr_mirrorless"
    assert camera_class("Canon", "Canon PowerShot S40", None) == "compact"
    assert camera_class("OLYMPUS OPTICAL CO.,LTD", "C960Z,D460Z", None) == "compact"
    assert camera_class("EPSON", "Perfection V600", None) == "scanner"
    assert camera_class(None, None, "VueScan 9.7") == "software_only"
    assert camera_class(None, None, "Adobe Photoshop CC") == "software_only"
    assert camera_class(None, None, None) == "unknown"
    assert camera_class("Polyphony Digital Inc.", "Gran Turismo 5", None) == "unknown"
    assert software_is_editor("Adobe Photoshop Lightroom 6.0") and software_is_editor("GIMP 2.10")
    assert software_is_editor("DSLR-A200 v1.00") is False and software_is_editor(None) is None


def test_catalog_dates_and_positions():
    assert parse_catalog_date("2018-06-12 10:26:00") == datetime(2018, 6, 12, 10, 26)
    assert parse_catalog_date("Saturday, 23 January, 2010") == datetime(2010, 1, 23)
    assert parse_catalog_date("1890") == datetime(1890, 1, 1)
    assert parse_catalog_date("2019-12") == datetime(2019, 12, 1)
    assert parse_catalog_date("circa 1890 <div style='display: none;'>date QS:P,+1890-00-00T00:00:00Z/9</div>") \
        == datetime(1890, 1, 1)
    assert parse_catalog_date("unknown") is None and parse_catalog_date(None) is None
    facts = catalog_facts('{"date_taken": "Saturday, 23 January, 2010", "latitude": "51.18113", '
                          '"longitude": "0.14528"}')
    assert facts["taken_at_source"] == "meta_data.date_taken"
    assert facts["latitude"] == pytest.approx(51.18113) and facts["location_source"] == "meta_data"
    assert catalog_facts('{"date_originally_created": "2019-12-25"}')["taken_at_source"] \
        == "meta_data.date_originally_created"
    assert catalog_facts("not json") == {} and catalog_facts("[1, 2]") == {}


def jpeg_with_exif(exif_bytes: bytes | Image.Exif | None, size=(64, 48)) -> bytes:
    rng = np.random.default_rng(1)
    im = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    buf = io.BytesIO()
    kw = {"exif": exif_bytes} if exif_bytes is not None else {}
    im.save(buf, "JPEG", quality=80, **kw)
    return buf.getvalue()


def test_generated_exif_round_trip_and_meta_data_fallback():
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0131], exif[0x0112] = "Canon", "Canon EOS 5D", "Adobe Lightroom", 6
    sub = exif.get_ifd(0x8769)
    sub[0x9003], sub[0x9011] = "2020:05:17 14:03:09", "+02:00"
    sub[0x829D], sub[0x829A], sub[0x8827], sub[0x920A], sub[0x9209] = 2.8, 0.004, 400, 50.0, 1
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "S", (33.0, 51.0, 54.0), "E", (151.0, 12.0, 36.0)
    meta = '{"date_taken": "2001-01-01 00:00:00", "latitude": "1.0", "longitude": "2.0"}'
    _, ex = analyse_bytes(jpeg_with_exif(exif), meta, ("exif",))
    assert ex["exif_error"] is None and ex["has_exif"]
    assert (ex["make"], ex["model"], ex["orientation"], ex["iso"]) == ("Canon", "Canon EOS 5D", 6, 400)
    assert ex["f_number"] == pytest.approx(2.8) and ex["exposure_time"] == pytest.approx(0.004)
    assert ex["flash"] == 1 and ex["flash_fired"] and ex["edited"]
    assert ex["datetime_original"] == datetime(2020, 5, 17, 12, 3, 9)  # converted to UTC
    assert ex["taken_at_source"] == "exif"
    assert ex["gps_present"] and ex["latitude"] == pytest.approx(-33.865) and ex["location_source"] == "exif"
    # no EXIF: the catalog's meta_data fills taken_at and the position
    _, bare = analyse_bytes(jpeg_with_exif(None), meta, ("exif",))
    assert bare["has_exif"] is False and bare["exif_error"] is None
    assert bare["taken_at"] == datetime(2001, 1, 1) and bare["taken_at_source"] == "meta_data.date_taken"
    assert bare["location_source"] == "meta_data" and bare["latitude"] == 1.0


def tiff(entries: list[tuple[int, int, int, bytes]], next_ifd: int = 0, extra: bytes = b"") -> bytes:
    """A little-endian TIFF header + one IFD at offset 8 (entries: tag, type, count, 4-byte value)."""
    body = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        body += struct.pack("<HHI", tag, typ, count) + value.ljust(4, b"\0")[:4]
    return b"Exif\0\0" + b"II*\0" + struct.pack("<I", 8) + body + struct.pack("<I", next_ifd) + extra


def test_malformed_exif_never_kills_the_row():
    ifd_end = 8 + 2 + 12 * 3 + 4
    cases = {
        # RATIONAL FNumber 5/0 in an Exif IFD that points back at IFD0 (an endless IFD loop)
        "loop_and_zero_denominator": tiff([(0x010F, 2, 4, b"Nik\0"), (0x8769, 4, 1, struct.pack("<I", 8)),
                                           (0x829D, 5, 1, struct.pack("<I", ifd_end))], next_ifd=8,
                                          extra=struct.pack("<II", 5, 0)),
        # value offsets far beyond the block, Make stored as SHORT, GPS IFD pointer out of range
        "bad_offsets_wrong_types": tiff([(0x010F, 3, 1, struct.pack("<H", 7)),
                                         (0x0110, 2, 400, struct.pack("<I", 99999)),
                                         (0x8825, 4, 1, struct.pack("<I", 123456))]),
        "huge_count": tiff([(0x010F, 2, 0x7FFFFFFF, struct.pack("<I", 26))]),
        "garbage": b"Exif\0\0" + bytes(range(256)) * 4,
        "truncated_header": b"Exif\0\0II*\0\x08",
    }
    for name, raw in cases.items():
        pix, ex = analyse_bytes(jpeg_with_exif(raw), '{"date_taken": "2010-01-02"}')
        assert ex["exif_error"] in EXIF_ERRORS, name
        assert pix["pixels_error"] is None, (name, pix["pixels_error_message"])
        assert ex["taken_at"] == datetime(2010, 1, 2), name
        assert ex["make"] is None or isinstance(ex["make"], str)
    _, looped = analyse_bytes(jpeg_with_exif(cases["loop_and_zero_denominator"]), None)
    assert looped["make"] == "Nik" and looped["f_number"] is None


_VALID_EXIF = None


def _valid_exif() -> bytes:
    global _VALID_EXIF
    if _VALID_EXIF is None:
        exif = Image.Exif()
        exif[0x010F], exif[0x0110], exif[0x0131] = "NIKON", "D70", "Ver.1.00"
        sub = exif.get_ifd(0x8769)
        sub[0x9003], sub[0x829D], sub[0x8827] = "2004:01:02 03:04:05", 4.5, 200
        exif.get_ifd(0x8825)[2] = (10.0, 20.0, 30.0)
        _VALID_EXIF = b"Exif\0\0" + exif.tobytes()[6:] if exif.tobytes().startswith(b"Exif") else \
            b"Exif\0\0" + exif.tobytes()
    return _VALID_EXIF


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzzed_exif_bytes(data):
    raw = bytearray(_valid_exif())
    for _ in range(data.draw(st.integers(1, 16), label="flips")):
        pos = data.draw(st.integers(6, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    raw = raw[: data.draw(st.integers(8, len(raw)), label="cut")]
    pix, ex = analyse_bytes(jpeg_with_exif(bytes(raw)), None, ("pixels", "exif"), ImageLimits())
    assert ex["exif_error"] in EXIF_ERRORS
    assert pix["pixels_error"] is None  # the pixels do not depend on the EXIF block
    for column in ("make", "model", "software", "lens"):
        assert ex[column] is None or (isinstance(ex[column], str) and len(ex[column]) <= 200)
    assert ex["orientation"] is None or 1 <= ex["orientation"] <= 8
