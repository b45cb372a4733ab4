"""Pixel features: the numbers, the DCT-scaled decode, and every kind of bad file."""

from __future__ import annotations

import io
import struct
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageFilter

from imagerank.features.images import ImageLimits, analyse_bytes
from imagerank.features.pixels import (PIXELS_META, PIXELS_SCHEMA, decode_working, draft_size, hamming,
                                       packed_pixels, phash, pixel_stats)

PIXEL_ERRORS = {None, "truncated", "decode_error", "not_image", "empty", "too_many_pixels", "timeout"}


def natural(width=640, height=427, seed=0) -> Image.Image:
    """Smooth gradients + noise + shapes: JPEG-like natural-ish content."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    corners = rng.uniform(20, 235, (3, 3))
    arr = np.stack([c[0] + (c[1] - c[0]) * x / width + (c[2] - c[0]) * y / height for c in corners], -1)
    arr += rng.normal(0, 5, arr.shape)
    im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        box = [x0, y0, x0 + int(rng.integers(20, 200)), y0 + int(rng.integers(20, 150))]
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    return im


def encode(im: Image.Image, fmt="JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def pixels_of(data: bytes, **limits) -> dict:
    pix, _ = analyse_bytes(data, None, ("pixels",), ImageLimits(**limits))
    return pix


def test_schema_constants_agree():
    assert list(PIXELS_META.columns) == PIXELS_SCHEMA.names
    assert PIXELS_META.columns[0] == "image_id"
    assert "phash" in PIXELS_SCHEMA.names and str(PIXELS_SCHEMA.field("phash").type) == "int64"


def test_grey_image_has_no_colour_and_no_contrast():
    pix = pixels_of(encode(Image.new("RGB", (640, 427), (128, 128, 128)), quality=90))
    assert pix["pixels_error"] is None
    assert pix["colourfulness"] == pytest.approx(0.0, abs=1e-6)
    assert pix["saturation"] == pytest.approx(0.0, abs=1e-3)
    assert pix["contrast"] == pytest.approx(0.0, abs=1e-6)
    assert pix["entropy"] == pytest.approx(0.0, abs=1e-9)
    assert pix["brightness"] == pytest.approx(128 / 255, abs=2 / 255)
    assert pix["sharpness"] == pytest.approx(0.0, abs=1e-6) and pix["edge_density"] == 0.0


def test_brightness_clipping_and_entropy():
    white = pixels_of(encode(Image.new("RGB", (200, 100), "white")))
    black = pixels_of(encode(Image.new("RGB", (200, 100), "black")))
    assert white["brightness"] == pytest.approx(1.0, abs=0.01) and white["highlights_clipped"] == 1.0
    assert black["brightness"] == pytest.approx(0.0, abs=0.01) and black["shadows_clipped"] == 1.0
    halves = Image.new("L", (200, 100), 0)
    halves.paste(255, (0, 0, 100, 100))
    two = pixels_of(encode(halves, "PNG"))
    assert two["entropy"] == pytest.approx(1.0, abs=0.02)
    assert two["contrast"] == pytest.approx(0.5, abs=0.01)


def test_colourfulness_matches_hasler_suesstrunk_on_rgb():
    im = natural(seed=3)
    pix = pixels_of(encode(im, "PNG"))  # lossless: compare with the formula on the working pixels
    work = np.asarray(im.reduce(2).resize((160, 106), Image.Resampling.NEAREST), dtype=np.float64)
    r, g, b = work[..., 0], work[..., 1], work[..., 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    expected = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    assert pix["colourfulness"] == pytest.approx(expected, rel=0.05)
    assert pix["colourfulness"] > 20
    saturated = pixels_of(encode(Image.new("RGB", (64, 64), (255, 0, 0)), "PNG"))
    assert saturated["saturation"] == pytest.approx(1.0, abs=0.02)
    assert saturated["colourfulness"] == pytest.approx(0.3 * np.hypot(255, 127.5), abs=1.5)  # rg=255, yb=127.5


def test_blur_lowers_sharpness_and_edge_density():
    im = natural(seed=1)
    sharp = pixels_of(encode(im, quality=92))
    blurred = pixels_of(encode(im.filter(ImageFilter.GaussianBlur(3)), quality=92))
    assert blurred["sharpness"] < 0.5 * sharp["sharpness"]
    assert blurred["edge_density"] < sharp["edge_density"]
    assert sharp["edge_density"] > 0.005


@pytest.mark.parametrize("quality", [20, 50, 75, 85, 95])
def test_jpeg_quality_estimate(quality):
    pix = pixels_of(encode(natural(320, 240), quality=quality))
    assert abs(pix["jpeg_quality"] - quality) <= 3
    assert pixels_of(encode(natural(64, 48), "PNG"))["jpeg_quality"] is None


def test_phash_near_duplicates_and_different_images():
    im = natural(seed=5)
    original = pixels_of(encode(im, quality=85))["phash"]
    resized = pixels_of(encode(im.resize((320, 213), Image.Resampling.LANCZOS), quality=70))["phash"]
    other = pixels_of(encode(natural(seed=6), quality=85))["phash"]
    assert isinstance(original, int) and -(2 ** 63) <= original < 2 ** 63
    assert hamming(original, resized) <= 6
    assert hamming(original, other) >= 16
    # the stored value is the 64 hash bits reinterpreted as signed: bit 0 of the block is the sign bit
    grey = np.zeros((64, 64), np.uint8)
    grey[:32] = 255  # bright top half: the DC and the first vertical cosine are above the median
    value = phash(grey)
    assert value < 0 and (value & (2 ** 64 - 1)) >> 63 == 1


def test_reused_arrays_and_multi_block_images_do_not_change_the_numbers():
    """pixel_stats reuses per-thread work arrays from image to image and copies images that Pillow
    keeps in several memory blocks (> 16 MB) instead of viewing them: neither changes a number."""
    small = natural(300, 200, seed=7).convert("YCbCr")
    noise = [Image.effect_noise((2200, 2100), sigma) for sigma in (20, 40, 60)]
    large = Image.merge("RGB", noise).convert("YCbCr")
    assert np.array_equal(packed_pixels(large).view(np.uint8).reshape(2100, 2200, 4)[:, :, :3], np.asarray(large))
    assert np.array_equal(packed_pixels(small).view(np.uint8).reshape(200, 300, 4)[:, :, :3], np.asarray(small))
    first = pixel_stats(small)
    assert pixel_stats(large)["decoded_width"] == 2200
    assert pixel_stats(small) == first
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(pixel_stats, [small, large, small, large, small]))
    assert results[0] == results[2] == results[4] == first


def test_pixel_stats_allocates_no_image_sized_arrays_once_warm():
    """Dask workers run with MALLOC_TRIM_THRESHOLD_=65536, where every fresh array over 64 KB costs a
    page fault per 4 KB: after the first image of a size, the work arrays are reused."""
    work = decode_working(Image.open(io.BytesIO(encode(natural(1280, 854), quality=85))))
    assert work.size == (640, 427)  # full-size int16 luma: 546 KB, every-second-pixel float64: 546 KB
    first = pixel_stats(work)
    tracemalloc.start()
    try:
        again = pixel_stats(work)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert again == first
    assert peak < 160 * 1024  # numpy's casting buffers (64 KB) and small results only


def test_draft_decodes_non_square_at_half_scale():
    data = encode(natural(640, 427), quality=85)
    pix = pixels_of(data)
    assert (pix["image_width"], pix["image_height"]) == (640, 427)
    assert (pix["decoded_width"], pix["decoded_height"]) == (320, 214)
    assert draft_size(640, 427) == (320, 213)
    # the pitfall: a square box makes libjpeg keep the full size of a non-square image
    im = Image.open(io.BytesIO(data))
    im.draft("RGB", (320, 320))
    assert im.size == (640, 427)
    tall = pixels_of(encode(natural(300, 1000), quality=85))
    assert (tall["decoded_width"], tall["decoded_height"]) == (150, 500)
    big = pixels_of(encode(natural(6000, 400), quality=85))  # long side >= 4 x 1280: DCT scale 1/4
    assert (big["decoded_width"], big["decoded_height"]) == (1500, 100)


# --- bad files ---------------------------------------------------------------------------------------

def test_truncated_zero_byte_and_non_image():
    data = encode(natural(), quality=85)
    truncated = pixels_of(data[: len(data) // 2])
    assert truncated["pixels_error"] in ("truncated", "decode_error") and truncated["pixels_error_message"]
    assert truncated["sharpness"] is None
    assert pixels_of(b"")["pixels_error"] == "empty"
    assert pixels_of(b"<html>not an image</html>")["pixels_error"] == "not_image"
    assert pixels_of(data[:20])["pixels_error"] in ("not_image", "truncated", "decode_error")


def test_odd_but_valid_images_are_features_not_errors():
    png_named_jpg = pixels_of(encode(natural(120, 80), "PNG"))
    assert png_named_jpg["pixels_error"] is None and png_named_jpg["format"] == "PNG"

    cmyk = pixels_of(encode(natural(120, 80).convert("CMYK"), quality=90))
    assert cmyk["pixels_error"] is None and cmyk["mode"] == "CMYK" and cmyk["colourfulness"] > 5

    deep = Image.fromarray((np.linspace(0, 65535, 120 * 80).reshape(80, 120)).astype(np.uint16))
    sixteen = pixels_of(encode(deep, "PNG"))
    assert sixteen["pixels_error"] is None and sixteen["mode"].startswith("I")
    assert sixteen["brightness"] == pytest.approx(0.5, abs=0.03)

    palette = pixels_of(encode(natural(120, 80).convert("P", palette=Image.Palette.ADAPTIVE), "PNG"))
    assert palette["pixels_error"] is None and palette["mode"] == "P"

    frames = [Image.new("RGB", (40, 30), (i * 100, 50, 200 - i * 60)) for i in range(3)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=50)
    animated = pixels_of(gif.getvalue())
    assert animated["pixels_error"] is None and animated["n_frames"] == 3

    tiny = pixels_of(encode(Image.new("RGB", (1, 1), "red")))
    assert tiny["pixels_error"] is None


def _with_sof_size(data: bytes, width: int, height: int) -> bytes:
    i = data.index(b"\xff\xc0")
    return data[: i + 5] + struct.pack(">HH", height, width) + data[i + 9:]


def test_decompression_bomb_is_refused_from_the_header():
    data = encode(natural(64, 48), quality=80)
    bomb = _with_sof_size(data, 60000, 60000)
    pix = pixels_of(bomb)
    assert pix["pixels_error"] == "too_many_pixels"
    pix = pixels_of(_with_sof_size(data, 12000, 10000), max_pixels=100_000_000)  # between 1x and 2x
    assert pix["pixels_error"] == "too_many_pixels"
    assert pixels_of(data, max_pixels=1000)["pixels_error"] == "too_many_pixels"


def test_time_bound():
    pix = pixels_of(encode(natural(64, 48)), timeout_s=-1)
    assert pix["pixels_error"] == "timeout"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_corrupted_jpeg_bytes_never_raise(data):
    original = _FUZZ_BASE
    raw = bytearray(original)
    for _ in range(data.draw(st.integers(1, 12))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(len(raw) // 4, len(raw)))
    pix, ex = analyse_bytes(bytes(raw[:cut]), None, ("pixels", "exif"), ImageLimits(max_pixels=10_000_000))
    assert pix["pixels_error"] in PIXEL_ERRORS
    assert ex["exif_error"] in {None, "exif_malformed", "not_image", "empty", "too_many_pixels", "timeout"}
    if pix["pixels_error"] is None:
        assert 0 <= pix["brightness"] <= 1 and pix["sharpness"] >= 0


_FUZZ_BASE = encode(natural(160, 120, seed=9), quality=80)
