"""Pixel features of one image (``W/features/pixels/``): decoded once, DCT-scaled, vectorized numpy.

Decoding. JPEGs are decoded with libjpeg's DCT scaling through ``Image.draft('YCbCr', (w // s, h // s))``
with a *per-axis* target (a square box would make libjpeg pick the scale from the short side and
decode non-square images at full size). ``s`` is 2 (the working image is 1/2 of the original, e.g.
640x427 -> 320x214), or 4 / 8 for originals whose long side exceeds 2 x :data:`WORK_LONG_SIDE`, so the
working image keeps a long side >= ``WORK_LONG_SIDE``. Other formats are decoded fully then box-reduced
by the same factor. The working image is YCbCr (JPEGs skip libjpeg's colour conversion; other
formats are converted): luma is the Y plane, colour statistics come from Cb/Cr. Sharpness and edge
density are computed on the full >= 1/2-scale working image (their ranking is not stable at 1/4);
the global colour statistics on every second pixel of it.

Features (see :data:`PIXELS_SCHEMA` for the dataset, one row per catalog row):

=====================  =======  =============================================================================
column                 type     definition
=====================  =======  =============================================================================
image_id               string   catalog identifier (key)
format                 string   container format detected from the bytes (JPEG, PNG, GIF, WEBP, ...)
mode                   string   Pillow mode of the file (RGB, L, CMYK, P, I;16, ...)
n_frames               Int32    frames in the file (animated GIF/WebP/APNG > 1; the first frame is used)
image_width/height     Int32    pixel size from the file header
decoded_width/height   Int32    size of the working image actually decoded (DCT-scaled)
file_bytes             Int64    size of the file
bytes_per_pixel        float32  file_bytes / (image_width * image_height)
jpeg_quality           Int32    IJG quality 1..100 whose standard tables (libjpeg ``jpeg_quality_scaling``)
                                are closest (L1) to the file's quantization tables; null for non-JPEG
brightness             float32  mean luma (JFIF Y = ITU-R 601, as Pillow's ``L``) / 255, in [0, 1]
contrast               float32  RMS contrast: standard deviation of luma / 255
colourfulness          float32  Hasler & Suesstrunk (2003) M: sqrt(sd(rg)^2 + sd(yb)^2) + 0.3 sqrt(mean(rg)^2
                                + mean(yb)^2), rg = R - G, yb = (R + G) / 2 - B, on the 0..255 scale
                                (0 for a grey image, ~15 "slightly", ~33 "moderately", > 59 "extremely")
saturation             float32  mean HSV saturation (max - min) / max of R, G, B (from YCbCr, gamut-clipped
                                max), in [0, 1]
entropy                float32  Shannon entropy of the 256-bin luma histogram, bits (0..8)
highlights_clipped     float32  fraction of pixels with luma >= 250
shadows_clipped        float32  fraction of pixels with luma <= 5
sharpness              float32  variance of the 4-neighbour Laplacian of luma (0..255 scale) on the
                                working image
edge_density           float32  fraction of working-image pixels whose central-difference gradient
                                |dx| + |dy| exceeds :data:`EDGE_THRESHOLD` (luma levels)
phash                  Int64    64-bit DCT perceptual hash (see :func:`phash`), stored as signed int64
pixels_error           string   null when the row is good, else an error code
pixels_error_message   string   detail for the error
input_digest           string   digest of image bytes + extractor version (reuse key)
event_timestamp        ts[UTC]  when the features were computed (Feast event time)
=====================  =======  =============================================================================

``phash`` is the imagehash ``phash`` algorithm (hash_size 8, highfreq_factor 4): luma resized to 32x32
(box filter), 2-D DCT-II, the top-left 8x8 coefficients compared with their median; bit ``i`` (row-major
over the 8x8 block) is bit ``63 - i`` of the unsigned 64-bit value, i.e. ``format(phash & (2**64 - 1),
'016x')`` is imagehash's hex string, and the unsigned value is reinterpreted as two's-complement signed
int64 for storage (``np.int64`` / Parquet INT64). Near-duplicates: Hamming distance
``bin((a ^ b) & (2**64 - 1)).count('1')`` (:func:`hamming`): 0-2 bits for resized / recompressed
copies of the test images, 20+ for different images; use <= 8-10 as "near duplicate". The 32x32 grey
image is a box average of the 1/4-scale luma (the working image sub-sampled 2x), so the hash can differ
by a few bits from imagehash run on the full-size decode; compare hashes made by this module only.
"""

from __future__ import annotations

import math
import os
import threading
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from PIL import Image

from imagerank.schemas import empty_frame, pandas_dtypes

# --- output schema ---------------------------------------------------------------------------------

#: The features of the ``W/features/pixels/`` dataset; every field is nullable (null on an error row).
PIXEL_FEATURES: pa.Schema = pa.schema([
    pa.field("format", pa.string()),
    pa.field("mode", pa.string()),
    pa.field("n_frames", pa.int32()),
    pa.field("image_width", pa.int32()),
    pa.field("image_height", pa.int32()),
    pa.field("decoded_width", pa.int32()),
    pa.field("decoded_height", pa.int32()),
    pa.field("file_bytes", pa.int64()),
    pa.field("bytes_per_pixel", pa.float32()),
    pa.field("jpeg_quality", pa.int32()),
    pa.field("brightness", pa.float32()),
    pa.field("contrast", pa.float32()),
    pa.field("colourfulness", pa.float32()),
    pa.field("saturation", pa.float32()),
    pa.field("entropy", pa.float32()),
    pa.field("highlights_clipped", pa.float32()),
    pa.field("shadows_clipped", pa.float32()),
    pa.field("sharpness", pa.float32()),
    pa.field("edge_density", pa.float32()),
    pa.field("phash", pa.int64()),
])
PIXEL_FEATURE_NAMES = PIXEL_FEATURES.names
PIXELS_ERROR_COLUMNS = ["pixels_error", "pixels_error_message"]

#: pyarrow schema of the ``W/features/pixels/`` dataset (pass to ``write_ddf(schema=...)``).
PIXELS_SCHEMA: pa.Schema = pa.schema([pa.field("image_id", pa.string()), *PIXEL_FEATURES,
                                      pa.field("pixels_error", pa.string()),
                                      pa.field("pixels_error_message", pa.string()),
                                      pa.field("input_digest", pa.string()),
                                      pa.field("event_timestamp", pa.timestamp("ns", tz="UTC"))])
#: pandas dtypes of the ``W/features/pixels/`` dataset, in column order.
PIXELS_DTYPES: dict[str, str] = pandas_dtypes(PIXELS_SCHEMA)
#: empty pandas frame with the dataset's columns and dtypes (``map_partitions(meta=PIXELS_META)``).
PIXELS_META: pd.DataFrame = empty_frame(PIXELS_SCHEMA)

WORK_LONG_SIDE = 1280   # large originals are DCT-scaled by 4 or 8 while the long side stays >= this
EDGE_THRESHOLD = 40.0   # |dx| + |dy| (central differences, luma levels) above which a pixel is an edge
SHADOW_LEVEL, HIGHLIGHT_LEVEL = 5, 250


def empty_pixel_row() -> dict[str, Any]:
    return dict.fromkeys(PIXEL_FEATURE_NAMES + PIXELS_ERROR_COLUMNS)


# --- decoding ----------------------------------------------------------------------------------------

def work_scale(width: int, height: int) -> int:
    """DCT scale denominator for an original of this size: 2, or 4 / 8 for very large originals."""
    scale = 2
    while scale < 8 and max(width, height) // (scale * 2) >= WORK_LONG_SIDE:
        scale *= 2
    return scale


def draft_size(width: int, height: int, scale: int = 2) -> tuple[int, int]:
    """The per-axis ``Image.draft`` target that makes libjpeg decode at exactly ``1/scale``."""
    return max(1, width // scale), max(1, height // scale)


def reuse_pillow_blocks(blocks: int = 4) -> None:
    """Let Pillow keep a few freed image buffers for the next image (unless ``PILLOW_BLOCKS_MAX`` is set).

    Pillow frees every image buffer by default; in Dask workers (``MALLOC_TRIM_THRESHOLD_=65536``,
    see :class:`_Scratch`) each new working image then costs ~70 page faults. Process-wide, called by
    the partition function; a few blocks of at most Pillow's block size (16 MB) each.
    """
    if "PILLOW_BLOCKS_MAX" not in os.environ and Image.core.get_blocks_max() < blocks:
        Image.core.set_blocks_max(blocks)


def decode_working(im: Image.Image) -> Image.Image:
    """Decode an opened image to its YCbCr working image (>= 1/2 scale, first frame).

    JPEGs are decoded straight to YCbCr (libjpeg skips its colour conversion; luma is the Y plane).
    Raises whatever Pillow raises on broken data (OSError for truncated files, ...); the caller turns
    that into an error code.
    """
    width, height = im.size
    scale = work_scale(width, height)
    if im.format == "JPEG" and width >= 2 and height >= 2:
        im.draft("YCbCr", draft_size(width, height, scale))
        scale = 1 if im.size != (width, height) else scale  # libjpeg scaled it already
    im.load()
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im)
        if mode == "F" or mode == "I":
            lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
            lo, hi = (0.0, 255.0) if hi <= 255 and lo >= 0 else (lo, hi)
            arr = (arr.astype(np.float32) - lo) * (255.0 / max(hi - lo, 1e-9))
        else:
            arr = arr.astype(np.float32) * (255.0 / 65535.0)
        im = Image.fromarray(np.clip(np.nan_to_num(arr) + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode != "YCbCr":
        im = (im if im.mode == "RGB" else im.convert("RGB")).convert("YCbCr")
    if scale > 1 and min(im.size) >= scale:
        im = im.reduce(scale)
    return im


# --- JPEG quality --------------------------------------------------------------------------------------

_IJG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.int64)
_IJG_CHROMA = np.array(
    [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
     24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32, dtype=np.int64)


def _ijg_tables(base: np.ndarray) -> np.ndarray:
    """(100, 64) quantization tables libjpeg writes for quality 1..100 (``jpeg_quality_scaling``)."""
    q = np.arange(1, 101)
    scale = np.where(q < 50, 5000 // q, 200 - 2 * q)
    return np.clip((base[None, :] * scale[:, None] + 50) // 100, 1, 255)


_LUMA_TABLES, _CHROMA_TABLES = _ijg_tables(_IJG_LUMA), _ijg_tables(_IJG_CHROMA)


def jpeg_quality(quantization: dict | None) -> int | None:
    """IJG quality whose standard tables best match the file's (natural-order) quantization tables."""
    if not quantization:
        return None
    try:
        luma = tuple(map(int, quantization.get(0) or ()))
        chroma = tuple(map(int, quantization.get(1) or ()))
    except (TypeError, ValueError):
        return None
    return _quality_of(luma, chroma)


@lru_cache(maxsize=4096)
def _quality_of(luma: tuple[int, ...], chroma: tuple[int, ...]) -> int | None:
    if len(luma) != 64:
        return None
    error = np.abs(_LUMA_TABLES - np.minimum(np.asarray(luma, dtype=np.int64), 255)).sum(axis=1)
    if len(chroma) == 64:
        error += np.abs(_CHROMA_TABLES - np.minimum(np.asarray(chroma, dtype=np.int64), 255)).sum(axis=1)
    best = np.flatnonzero(error == error.min())
    return int(best[-1]) + 1  # on a tie (saturated tables) the highest quality


# --- perceptual hash -----------------------------------------------------------------------------------

#: rows 0..7 of the unnormalized 32-point DCT-II matrix (scipy.fftpack.dct's default norm, as imagehash)
_DCT8 = 2.0 * np.cos(np.pi * np.outer(np.arange(8), 2 * np.arange(32) + 1) / 64.0)


@lru_cache(maxsize=256)
def _phash_projection(n: int) -> np.ndarray:
    """(8, n) float32: 32-bin box averaging of n pixels (fractional overlaps, as Pillow's BOX resize)
    followed by the first 8 rows of the 32-point DCT-II."""
    edges = np.arange(33) * (n / 32.0)
    lo, hi = edges[:-1, None], edges[1:, None]
    pix = np.arange(n)[None, :]
    overlap = np.clip(np.minimum(hi, pix + 1) - np.maximum(lo, pix), 0.0, None) / (n / 32.0)
    return (_DCT8 @ overlap).astype(np.float32)


def phash(luma: np.ndarray | Image.Image) -> int:
    """64-bit DCT pHash of a greyscale image (2-D uint8 array or Pillow image), as a signed int64.

    Same steps as imagehash's ``phash``: grey resized to 32x32, 2-D DCT-II, top-left 8x8 block
    compared with its median; the 32x32 box resize and the DCT are fused in two small matrix
    products (``P_h @ luma @ P_w.T``), so no 32x32 image is materialised.
    """
    arr = np.asarray(luma, dtype=np.float32)
    h, w = arr.shape
    low = ((_phash_projection(h) @ arr) @ _phash_projection(w).T).ravel()
    ordered = np.sort(low)
    bits = low > 0.5 * (ordered[31] + ordered[32])  # > median
    value = int.from_bytes(np.packbits(bits).tobytes(), "big")  # bit 0 = most significant
    return value - (1 << 64) if value >= 1 << 63 else value


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two stored (signed) phash values."""
    return bin((int(a) ^ int(b)) & 0xFFFFFFFFFFFFFFFF).count("1")


# --- the features --------------------------------------------------------------------------------------

_LEVELS = np.arange(256, dtype=np.int64)
#: rows: luma level, level squared, shadow bins, highlight bins: one exact integer product with the histogram
_HIST_WEIGHTS = np.stack([_LEVELS, _LEVELS ** 2, _LEVELS <= SHADOW_LEVEL, _LEVELS >= HIGHLIGHT_LEVEL])
# JFIF: R = Y + 1.402 Cr', G = Y - 0.344136 Cb' - 0.714136 Cr', B = Y + 1.772 Cb' (Cb' = Cb - 128, ...)
# so rg = R - G and yb = (R + G) / 2 - B do not depend on Y:
_RG = (0.344136, 1.402 + 0.714136)            # rg = 0.344136 Cb' + 2.116136 Cr'
_YB = (-0.344136 / 2 - 1.772, (1.402 - 0.714136) / 2)  # yb = -1.944068 Cb' + 0.343932 Cr'
_PIXEL = np.dtype("<u4")  # one YCbCr pixel as Pillow stores it: Y, Cb, Cr, pad (low byte first)


def packed_pixels(work: Image.Image) -> np.ndarray:
    """(h, w) uint32 pixels of a YCbCr image (Y in the low byte, then Cb, Cr), without a copy if possible.

    Pillow keeps YCbCr as 4 bytes per pixel and its Arrow export hands that buffer over as is, where
    ``np.asarray`` would copy it through ``tobytes``. Whole-pixel words also keep the numpy passes
    below contiguous: per-channel byte views make numpy loop over 3-4 bytes at a time. Images Pillow
    spread over several memory blocks (> 16 MB), and Pillow without Arrow export, are copied.
    """
    w, h = work.size
    try:
        return np.frombuffer(pa.array(work).buffers()[2], _PIXEL, count=w * h).reshape(h, w)  # list's child data
    except (ValueError, TypeError, AttributeError):
        copy = np.zeros((h, w, 4), np.uint8)
        copy[:, :, :3] = np.asarray(work)
        return copy.view(_PIXEL).reshape(h, w)


SCRATCH_PIXELS = 1 << 19  # working images up to 0.5 Mpx (~900x580) reuse their arrays: <= ~11 MB a thread


class _Scratch(threading.local):
    """Work arrays reused from one image to the next, one set per thread.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``: glibc then returns every freed
    block over 64 KB to the kernel, and each fresh full-image temporary costs a page fault per 4 KB
    page (~350 faults per image, more CPU than the statistics themselves). Arrays of up to
    :data:`SCRATCH_PIXELS` elements are kept per thread; larger ones are allocated each time.
    """

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.views: dict[tuple, np.ndarray] = {}  # (name, shape, dtype) -> view: one lookup per call

    def array(self, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        view = self.views.get((name, shape, dtype))
        if view is not None:
            return view
        size = math.prod(shape)
        if size > SCRATCH_PIXELS:
            return np.empty(shape, dtype)
        buf = self.arrays.get(name)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = self.arrays[name] = np.empty(size, dtype)
            self.views.clear()  # views of the old array would keep it alive
        if len(self.views) > 256:
            self.views.clear()
        view = self.views[(name, shape, dtype)] = buf[:size].reshape(shape)
        return view


_scratch = _Scratch()


def pixel_stats(work: Image.Image) -> dict[str, Any]:
    """All pixel statistics of a YCbCr working image (see the module docstring for definitions).

    Sharpness and edges use every pixel of the working image's luma; the global luma and colour
    statistics and the pHash use every second pixel in each direction (strided views: global means and
    variances; with 4:2:0 JPEGs that is the native chroma resolution anyway), saturation every fourth.
    Colourfulness comes from the Cb/Cr moments through the exact linear JFIF relation above (no RGB
    gamut clipping). Every step is one numpy call into a reused array (:class:`_Scratch`).
    """
    w, h = work.size
    out: dict[str, Any] = {"decoded_width": w, "decoded_height": h}
    ycc = packed_pixels(work)
    luma8 = _scratch.array("luma8", (h, w), np.uint8)
    np.copyto(luma8, ycc, casting="unsafe")  # the low byte of each pixel: Y
    luma = _scratch.array("luma", (h, w), np.int16)
    np.copyto(luma, luma8)
    step = 2 if min(w, h) >= 8 else 1
    sub = luma[::step, ::step]  # every second pixel (a view)

    # luma histogram of every second pixel -> brightness, contrast, entropy, clipping
    index = _scratch.array("index", sub.shape, np.intp)
    np.copyto(index, sub)
    hist = np.bincount(index.ravel(), minlength=256)
    count = sub.size
    level_sum, square_sum, shadows, highlights = (int(v) / count for v in _HIST_WEIGHTS @ hist)
    nz = hist[hist > 0]
    out["brightness"] = level_sum / 255.0
    out["contrast"] = math.sqrt(max(square_sum - level_sum * level_sum, 0.0)) / 255.0
    out["entropy"] = max(math.log2(count) - float(nz @ np.log2(nz)) / count, 0.0)  # -sum p log2 p
    out["shadows_clipped"], out["highlights_clipped"] = float(shadows), float(highlights)

    # colourfulness on every second pixel, from the Cb/Cr moments; float32 (half the memory traffic of
    # float64, ~3% of the whole extraction on a loaded machine): pairwise sums of these small integers
    # stay exact, dot products round at ~1e-7 relative
    sub_bytes = ycc.view(np.uint8).reshape(h, w, 4)[::step, ::step]
    cb = np.subtract(sub_bytes[:, :, 1], np.float32(128.0), out=_scratch.array("cb", sub.shape, np.float32))
    cr = np.subtract(sub_bytes[:, :, 2], np.float32(128.0), out=_scratch.array("cr", sub.shape, np.float32))
    flat_b, flat_r = cb.ravel(), cr.ravel()
    s_b, s_r = float(flat_b.sum()) / count, float(flat_r.sum()) / count
    s_bb, s_rr, s_br = (float(flat_b @ flat_b) / count, float(flat_r @ flat_r) / count,
                        float(flat_b @ flat_r) / count)
    v_bb, v_rr, c_br = s_bb - s_b * s_b, s_rr - s_r * s_r, s_br - s_b * s_r
    (a1, b1), (a2, b2) = _RG, _YB
    mean_rg, mean_yb = a1 * s_b + b1 * s_r, a2 * s_b + b2 * s_r
    var_rg = max(a1 * a1 * v_bb + b1 * b1 * v_rr + 2 * a1 * b1 * c_br, 0.0)
    var_yb = max(a2 * a2 * v_bb + b2 * b2 * v_rr + 2 * a2 * b2 * c_br, 0.0)
    out["colourfulness"] = math.sqrt(var_rg + var_yb) + 0.3 * math.sqrt(mean_rg ** 2 + mean_yb ** 2)

    # saturation on every fourth pixel: HSV (max - min) / max of R, G, B; with X - Y linear in Cb/Cr,
    # max - min = max(X - Y) - min(X - Y) and max = Y + max(X - Y)
    q = 2 if min(sub.shape) >= 8 else 1
    cb4, cr4, y4 = cb[::q, ::q], cr[::q, ::q], sub[::q, ::q]
    r_y, g_y, b_y, part = (_scratch.array(name, y4.shape, np.float32) for name in ("r_y", "g_y", "b_y", "part"))
    np.multiply(cr4, 1.402, out=r_y)
    np.multiply(cb4, 1.772, out=b_y)
    np.multiply(cb4, -0.344136, out=g_y)
    g_y -= np.multiply(cr4, 0.714136, out=part)
    top = np.maximum(r_y, g_y, out=part)
    np.maximum(top, b_y, out=top)
    bottom = np.minimum(r_y, g_y, out=r_y)
    np.minimum(bottom, b_y, out=bottom)
    value = np.add(top, y4, out=g_y)
    np.maximum(value, 1.0, out=value)
    np.minimum(value, 255.0, out=value)
    spread = np.subtract(top, bottom, out=b_y)
    spread /= value
    np.minimum(spread, 1.0, out=spread)
    out["saturation"] = float(spread.sum()) / spread.size

    # sharpness and edges on every pixel of the working image (>= 1/2 scale): int16 arithmetic on
    # the flattened luma, neighbours at offsets +-1 and +-w; the two border columns (whose +-1
    # neighbours wrap to the other side) are zeroed and left out of the counts.
    if h >= 3 and w >= 3:
        f = luma.ravel()
        n = f.size
        centre = f[w:n - w]
        up, down, left, right = f[: n - 2 * w], f[2 * w:], f[w - 1:n - w - 1], f[w + 1:n - w + 1]
        lap = np.add(up, down, out=_scratch.array("lap", centre.shape, np.int16))
        lap += left
        lap += right
        lap -= np.left_shift(centre, 2, out=_scratch.array("part16", centre.shape, np.int16))
        rows = lap.reshape(h - 2, w)
        rows[:, 0] = 0
        rows[:, -1] = 0
        k = (h - 2) * (w - 2)
        lap_f = _scratch.array("lap_f", centre.shape, np.float32)
        np.copyto(lap_f, lap)
        lap_mean = float(lap_f.sum()) / k
        out["sharpness"] = max(float(np.dot(lap_f, lap_f)) / k - lap_mean * lap_mean, 0.0)
        grad = np.subtract(right, left, out=lap)
        np.abs(grad, out=grad)
        grad_y = np.subtract(down, up, out=_scratch.array("part16", centre.shape, np.int16))
        np.abs(grad_y, out=grad_y)
        grad += grad_y
        rows = grad.reshape(h - 2, w)
        rows[:, 0] = 0
        rows[:, -1] = 0
        # an integer threshold keeps the comparison in int16 (a float one would cast every pixel)
        edges = np.greater(grad, math.floor(EDGE_THRESHOLD), out=_scratch.array("edges", centre.shape, bool))
        out["edge_density"] = np.count_nonzero(edges) / k
    else:
        out["sharpness"], out["edge_density"] = 0.0, 0.0
    sub_f = _scratch.array("sub_f", sub.shape, np.float32)
    np.copyto(sub_f, sub)
    out["phash"] = phash(sub_f)  # 32x32 box bins of the 1/4-scale luma: >= 2.5 pixels per bin
    return out
