"""Image bytes for catalog rows, and the partition function that turns them into pixel + EXIF features.

Where the bytes come from (templates, root confinement, the listing, concurrent fetches) is
:mod:`imagerank.features.image_source`. A partition either carries the listing's columns (``image.path``,
``image.size``, ``image.version``, joined on by the pipeline) or not. With them, a row whose image is not
listed is ``missing`` without a request, a listed size over ``max_bytes`` is ``too_large`` without one, an
unchanged image (same path, size and version as the previous run's row) is reused without being read,
and the rest are fetched many per call, up to ``fetch_bytes`` of listed sizes at a time. Without them
(a direct call), every row's image is fetched, ``fetch_bytes // max_bytes`` (at least one) per call.

Error codes (columns ``pixels_error`` / ``exif_error``; null means the row is good):

==================  ==========================================================================================
``path_escape``     the path built from catalog values leaves the image root (``..``, absolute, symlink)
``missing``         no file at the path (with a listing: not in it, and no request is made)
``read_error``      the file exists but could not be read (permissions, network, ...)
``too_large``       more bytes than ``max_bytes``
``empty``           zero-byte file
``not_image``       Pillow cannot identify the bytes as an image
``too_many_pixels`` the header declares more than ``max_pixels`` pixels (refused before decoding)
``truncated``       the image data ends early
``decode_error``    any other failure while decoding pixels
``exif_malformed``  EXIF present but (partly) unreadable; the readable tags are still returned
``timeout``         the per-image time budget (``timeout_s``) ran out before this family was computed
``internal_error``  an unexpected exception (a bug): the message holds it
==================  ==========================================================================================

Reuse. Every row records ``input_digest``: a digest of what its family is computed from (the image —
its listed path, size and version when the partition carries the listing, else its bytes; for EXIF
also the catalog's ``meta_data``) and of the extractor version. When the partition
carries the previous run's rows (columns ``previous.<family>.<column>``, joined on by the pipeline),
a row whose digest is unchanged is copied instead of decoded, keeping its ``event_timestamp`` so that
``feast materialize-incremental`` does not push it again. Only rows that were good, or failed for a
reason that depends on the bytes alone, are reused; a missing file, a read error, a timeout or a
limit is always tried again.
"""

from __future__ import annotations

import hashlib
import io
import re
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any, Iterable

import pandas as pd
import pyarrow as pa
from PIL import Image, UnidentifiedImageError

from imagerank.features import exif as exif_mod
from imagerank.features import pixels as pixels_mod
from imagerank.features.image_source import (LOCAL_PROTOCOLS, REMOTE_WEB_PROTOCOLS, ImageError,  # noqa: F401
                                             ImageSource)
from imagerank.features.exif import EXIF_DTYPES, EXIF_FEATURE_NAMES, EXIF_META, EXIF_SCHEMA
from imagerank.features.pixels import PIXEL_FEATURE_NAMES, PIXELS_DTYPES, PIXELS_META, PIXELS_SCHEMA
from imagerank.settings import ImageLimits

FAMILIES = ("pixels", "exif")
#: part of every ``input_digest``: bump a family's version when its features change meaning, and the
#: next run recomputes that family instead of reusing its rows
EXTRACTOR_VERSIONS = {"pixels": "pixels/1", "exif": "exif/1"}
#: errors that depend only on the bytes: such a row is as reusable as a good one
BYTES_ERRORS = frozenset({"empty", "not_image", "truncated", "decode_error", "exif_malformed"})
PREVIOUS = "previous."  # prefix of the previous run's columns joined onto a catalog partition
#: the listing's columns joined onto a catalog partition (see :data:`image_source.LISTING_SCHEMA`)
LISTED_PATH, LISTED_SIZE, LISTED_VERSION = "image.path", "image.size", "image.version"

#: columns of the frame :func:`image_features` returns: both families side by side
IMAGE_FEATURES_DTYPES: dict[str, str] = {
    "image_id": "string",
    **{c: PIXELS_DTYPES[c] for c in PIXEL_FEATURE_NAMES + ["pixels_error", "pixels_error_message"]},
    "pixels_input_digest": "string",
    **{c: EXIF_DTYPES[c] for c in EXIF_FEATURE_NAMES + ["exif_error", "exif_error_message"]},
    "exif_input_digest": "string",
    "event_timestamp": "datetime64[ns, UTC]",
    "pixels_reused": "boolean",
    "exif_reused": "boolean",
    "image_fetched": "boolean",  # the image was requested from the store in this run (counted by the stage)
}
IMAGE_FEATURES_META = pd.DataFrame({c: pd.Series(dtype=t) for c, t in IMAGE_FEATURES_DTYPES.items()})
PIXELS_COLUMNS = list(PIXELS_DTYPES)
EXIF_COLUMNS = list(EXIF_DTYPES)

__all__ = ["ImageLimits", "ImageSource", "ImageError", "image_features", "pixel_features", "exif_features",
           "family_frame", "split_families", "input_digests", "analyse_bytes", "PIXELS_SCHEMA", "PIXELS_META", "EXIF_SCHEMA", "EXIF_META",
           "IMAGE_FEATURES_META", "PIXELS_COLUMNS", "EXIF_COLUMNS"]


# --- one image -----------------------------------------------------------------------------------------

def _message(exc: BaseException) -> str:
    """``Type: text`` with object addresses removed, so that a rerun writes the same message."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", f"{type(exc).__name__}: {exc}")[:500]


def input_digests(data: bytes, meta_data: Any = None) -> dict[str, str]:
    """Each family's ``input_digest``: pixels come from the bytes alone, EXIF from the bytes and the
    catalog's ``meta_data`` (resized copies carry their facts there); both include the extractor version."""
    return _digests(hashlib.blake2b(data, digest_size=16).digest(), meta_data)


def listed_digests(url: str, size: int, version: str, meta_data: Any = None) -> dict[str, str]:
    """Each family's ``input_digest`` from the listing (no bytes read): the image's URL, listed size and
    version (ETag / modification time) stand for its content."""
    key = f"listed\0{url}\0{size}\0{version}".encode("utf-8", "surrogatepass")
    return _digests(hashlib.blake2b(key, digest_size=16).digest(), meta_data)


def _digests(content: bytes, meta_data: Any) -> dict[str, str]:
    missing = meta_data is None or meta_data is pd.NA or (isinstance(meta_data, float) and meta_data != meta_data)
    meta = meta_data if isinstance(meta_data, str) else ("" if missing else repr(meta_data))
    extra = {"pixels": b"", "exif": meta.encode("utf-8", "surrogatepass")}
    return {family: hashlib.blake2b(version.encode() + content + extra[family], digest_size=16).hexdigest()
            for family, version in EXTRACTOR_VERSIONS.items()}


def _reusable(previous: dict | None, digest: str, family: str) -> bool:
    return (previous is not None and previous.get("input_digest") == digest
            and previous.get(f"{family}_error") in (None, *BYTES_ERRORS))


def analyse_bytes(data: bytes, meta_data: Any = None, families: Iterable[str] = FAMILIES,
                  limits: ImageLimits = ImageLimits(), deadline: float | None = None
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pixel and EXIF features from one image's bytes, opened once. Never raises.

    Returns ``(pixels_row, exif_row)`` dicts holding the feature columns plus ``*_error`` /
    ``*_error_message`` (a family not asked for is left all-null).
    """
    families = set(families)
    pix, ex = pixels_mod.empty_pixel_row(), exif_mod.empty_exif_row()
    facts = exif_mod.catalog_facts(meta_data) if "exif" in families else {}
    deadline = deadline if deadline is not None else time.monotonic() + limits.timeout_s

    def fail(code: str, message: str, which: Iterable[str] = ("pixels", "exif")) -> None:
        if "pixels" in which and "pixels" in families and pix["pixels_error"] is None:
            pix["pixels_error"], pix["pixels_error_message"] = code, message
        if "exif" in which and "exif" in families and ex["exif_error"] is None:
            ex["exif_error"], ex["exif_error_message"] = code, message

    try:
        if not data:
            fail("empty", "zero-byte file")
            return pix, _finish_exif(ex, facts, families)
        pix["file_bytes"] = len(data)
        Image.MAX_IMAGE_PIXELS = limits.max_pixels
        try:
            im = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            fail("too_many_pixels", _message(exc))
            return pix, _finish_exif(ex, facts, families)
        except UnidentifiedImageError as exc:
            fail("not_image", _message(exc))
            return pix, _finish_exif(ex, facts, families)
        except Exception as exc:  # noqa: BLE001 - broken headers raise SyntaxError, struct.error, ...
            fail("not_image", _message(exc))
            return pix, _finish_exif(ex, facts, families)
        with im:
            width, height = im.size
            pix.update(format=im.format, mode=im.mode, image_width=width, image_height=height,
                       n_frames=int(getattr(im, "n_frames", 1) or 1) if im.format != "JPEG" else 1)
            if width * height > 0:
                pix["bytes_per_pixel"] = len(data) / (width * height)
            if im.format == "JPEG":
                pix["jpeg_quality"] = pixels_mod.jpeg_quality(getattr(im, "quantization", None))

            if "exif" in families:
                try:
                    values, code, message = exif_mod.read_exif(im)
                    ex.update(values)
                    if code:
                        fail(code, message, ("exif",))
                except Exception as exc:  # noqa: BLE001
                    fail("exif_malformed", _message(exc), ("exif",))

            if "pixels" in families:
                if width * height > limits.max_pixels or width <= 0 or height <= 0:
                    fail("too_many_pixels", f"{width}x{height} > max_pixels {limits.max_pixels}", ("pixels",))
                elif time.monotonic() > deadline:
                    fail("timeout", f"time budget {limits.timeout_s}s used before decoding", ("pixels",))
                else:
                    _pixels(im, pix, fail, deadline, limits)
    except MemoryError as exc:
        fail("too_many_pixels", _message(exc))
    except Exception as exc:  # noqa: BLE001 - a bug: keep the row, say what happened
        fail("internal_error", _message(exc))
    return pix, _finish_exif(ex, facts, families)


def _pixels(im: Image.Image, pix: dict, fail, deadline: float, limits: ImageLimits) -> None:
    try:
        work = pixels_mod.decode_working(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        fail("too_many_pixels", _message(exc), ("pixels",))
        return
    except OSError as exc:
        text = str(exc).lower()
        code = "truncated" if ("truncated" in text or "broken data stream" in text
                               or "premature end" in text) else "decode_error"
        fail(code, _message(exc), ("pixels",))
        return
    except Exception as exc:  # noqa: BLE001 - SyntaxError, ValueError, struct.error from broken streams
        fail("decode_error", _message(exc), ("pixels",))
        return
    if time.monotonic() > deadline:
        fail("timeout", f"time budget {limits.timeout_s}s used while decoding", ("pixels",))
        return
    pix.update(pixels_mod.pixel_stats(work))


def _finish_exif(ex: dict[str, Any], facts: dict[str, Any], families: set[str]) -> dict[str, Any]:
    if "exif" not in families:
        return ex
    if ex.get("has_exif") is None and ex.get("exif_error") is None:
        ex["has_exif"] = False
    if ex.get("has_exif") is None and ex.get("exif_error") in ("empty", "not_image", "too_many_pixels"):
        ex["has_exif"] = None
    return exif_mod.merge_exif(ex, facts)


# --- partition functions --------------------------------------------------------------------------------

def _as_source(images: ImageSource | str, limits: ImageLimits) -> ImageSource:
    if isinstance(images, ImageSource):
        return images
    return ImageSource(str(images), allow_remote=limits.allow_remote)


def image_features(catalog: pd.DataFrame, images: ImageSource | str, families: Iterable[str] = FAMILIES,
                   limits: ImageLimits | dict | None = None, event_timestamp: Any = None) -> pd.DataFrame:
    """Pixel and EXIF features of every row of a catalog partition (pure; never raises on bad data).

    ``catalog`` needs ``image_id`` and ``meta_data`` (JSON text) plus the columns the image template
    uses, and may carry the previous run's rows as ``previous.<family>.<column>`` (see *Reuse* above)
    and the listing's ``image.size`` / ``image.version`` (see above: no request for what the listing settles).
    Returns one row per input row, in order, with the columns of :data:`IMAGE_FEATURES_META`:
    ``image_id``, the pixel features + ``pixels_error(_message)`` + ``pixels_input_digest``, the EXIF
    features + ``exif_error(_message)`` + ``exif_input_digest``, ``event_timestamp`` (the given run
    time, else now, UTC; a row whose families were all reused keeps its previous time),
    ``pixels_reused`` / ``exif_reused``, and ``image_fetched`` (its image was requested). :func:`family_frame` gives a family's dataset.
    """
    if isinstance(limits, dict):
        limits = ImageLimits.from_kwargs(**limits)
    limits = limits or ImageLimits()
    families = tuple(f for f in FAMILIES if f in set(families))
    source = _as_source(images, limits)
    own = [c for c in catalog.columns if not str(c).startswith(PREVIOUS)]
    records = catalog[own].to_dict("records") if len(catalog) else []
    previous = _previous_rows(catalog, families)
    pixels_mod.reuse_pillow_blocks()
    with _quiet_and_single_threaded():
        rows = _rows(records, previous, source, families, limits, listed=LISTED_SIZE in catalog.columns)
    return _frame(catalog, rows, event_timestamp)


def _previous_rows(catalog: pd.DataFrame, families: tuple[str, ...]) -> list[dict[str, dict | None]]:
    """Per catalog row, each family's previous row as a dict (nulls as None), or None when there is none."""
    out: list[dict[str, dict | None]] = [{} for _ in range(len(catalog))]
    for family in families:
        prefix = f"{PREVIOUS}{family}."
        cols = [c for c in catalog.columns if str(c).startswith(prefix)]
        if not cols or not len(catalog):
            continue
        frame = catalog[cols].rename(columns=lambda c: c[len(prefix):]).astype(object)
        frame = frame.where(frame.notna(), None)
        for slot, record in zip(out, frame.to_dict("records")):
            slot[family] = record if record.get("input_digest") is not None else None
    return out


@contextmanager
def _quiet_and_single_threaded():
    """For one partition: Pillow's decompression-bomb warning is an error, other warnings from
    corrupt files are silenced, and BLAS runs single-threaded (one image per worker thread)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover
            yield
            return
        with threadpool_limits(limits=1, user_api="blas"):
            yield


def _rows(records: list[dict], previous: list[dict], source: ImageSource, families: tuple[str, ...],
          limits: ImageLimits, listed: bool) -> list[tuple[dict, dict, Any, bool]]:
    """``(pixels_row, exif_row, event_timestamp or None, fetched)`` per record.

    First every row is settled that needs no request: a path that leaves the root, an image the listing
    does not have (``listed``), a listed size over ``max_bytes``, a listed image whose every family is
    reusable. The others are fetched in batches (see :func:`_fetch_batches`), each image analysed once
    and decoded only for the families that cannot be reused.
    """
    out: list[tuple[dict, dict, Any, bool] | None] = [None] * len(records)
    todo: list[tuple[int, str, int | None, dict | None]] = []  # (row, path, listed size, listed digests)
    for i, (row, before) in enumerate(zip(records, previous)):
        try:
            path = source.path_for(row)
        except ImageError as err:
            out[i] = (*_failed(row, families, err.code, err.message), None, False)
            continue
        if not listed:
            todo.append((i, path, None, None))
            continue
        size, version = row.get(LISTED_SIZE), row.get(LISTED_VERSION)
        if _missing(size):
            out[i] = (*_failed(row, families, "missing", f"no image at {source.protocol}://{path}"[:300]
                               + " (not in the listing)"), None, False)
        elif int(size) > limits.max_bytes:
            out[i] = (*_failed(row, families, "too_large", f"{int(size)} bytes > max_bytes {limits.max_bytes}"),
                      None, False)
        elif _missing(version):  # the store gives no version: only the bytes can tell a change
            todo.append((i, path, int(size), None))
        else:
            digests = listed_digests(f"{source.protocol}://{path}", int(size), str(version), row.get("meta_data"))
            if all(_reusable(before.get(f), digests[f], f) for f in families):
                out[i] = (*_reuse_or_analyse(b"", row.get("meta_data"), before, families, limits, digests), False)
            elif int(size) == 0:
                out[i] = (*_reuse_or_analyse(b"", row.get("meta_data"), before, families, limits, digests), False)
            else:
                todo.append((i, path, int(size), digests))
    for batch, fetched in _fetch_batches(source, todo, limits):
        for (i, _path, _size, digests), data in zip(batch, fetched):
            row = records[i]
            if isinstance(data, ImageError):
                out[i] = (*_failed(row, families, data.code, data.message), None, True)
                continue
            try:
                out[i] = (*_reuse_or_analyse(data, row.get("meta_data"), previous[i], families, limits, digests), True)
            except Exception as exc:  # noqa: BLE001 - a bug: keep the row, say what happened
                out[i] = (*_failed(row, families, "internal_error", _message(exc), facts=False), None, True)
    for i, (pix, ex, stamp, fetched) in enumerate(out):
        if "pixels" not in families:
            pix = pixels_mod.empty_pixel_row()
        if "exif" not in families:
            ex = exif_mod.empty_exif_row()
        out[i] = (pix, ex, stamp, fetched)
    return out


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def _failed(row: dict, families: tuple[str, ...], code: str, message: str, facts: bool = True) -> tuple[dict, dict]:
    """The rows of an image that could not be had: the error on each family; EXIF keeps the catalog's facts."""
    pix, ex = pixels_mod.empty_pixel_row(), exif_mod.empty_exif_row()
    if "pixels" in families:
        pix["pixels_error"], pix["pixels_error_message"] = code, message
    if "exif" in families:
        ex["exif_error"], ex["exif_error_message"] = code, message
        if facts:
            ex = exif_mod.merge_exif(ex, exif_mod.catalog_facts(row.get("meta_data")))
    return pix, ex


def _fetch_batches(source: ImageSource, todo: list[tuple[int, str, int | None, dict | None]],
                   limits: ImageLimits) -> Iterable[tuple[list, list[bytes | ImageError]]]:
    """``todo`` in batches of at most ``fetch_bytes`` listed bytes (an unlisted image counts ``max_bytes``;
    a batch holds at least one image), each fetched in one call; the bytes of one batch at a time."""
    batch: list = []
    held = 0
    for item in todo:
        size = item[2] if item[2] is not None else limits.max_bytes
        if batch and held + size > limits.fetch_bytes:
            yield batch, source.fetch([b[1] for b in batch], limits.max_bytes)
            batch, held = [], 0
        batch.append(item)
        held += size
    if batch:
        yield batch, source.fetch([b[1] for b in batch], limits.max_bytes)


def _reuse_or_analyse(data: bytes, meta_data: Any, before: dict, families: tuple[str, ...], limits: ImageLimits,
                      digests: dict | None = None) -> tuple[dict, dict, Any]:
    """A family whose previous row has the same ``input_digest`` is copied, the others are computed from
    ``data``. ``digests`` (from the listing) default to the digests of ``data``."""
    deadline = time.monotonic() + limits.timeout_s
    digests = digests or input_digests(data, meta_data)
    reused = {f: dict(before[f], reused=True) for f in families if _reusable(before.get(f), digests[f], f)}
    todo = [f for f in families if f not in reused]
    pix, ex = (analyse_bytes(data, meta_data, todo, limits, deadline) if todo
               else (pixels_mod.empty_pixel_row(), exif_mod.empty_exif_row()))
    pix["input_digest"], ex["input_digest"] = digests["pixels"], digests["exif"]
    pix, ex = reused.get("pixels", pix), reused.get("exif", ex)
    stamp = next(iter(reused.values()))["event_timestamp"] if not todo else None
    return pix, ex, stamp


_ARROW_TO_PANDAS = {pa.string(): pd.StringDtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
                    pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
_ROW_SCHEMA = pa.schema([pa.field("image_id", pa.string()),
                         *(PIXELS_SCHEMA.field(c) for c in PIXEL_FEATURE_NAMES + ["pixels_error", "pixels_error_message"]),
                         pa.field("pixels_input_digest", pa.string()),
                         *(EXIF_SCHEMA.field(c) for c in EXIF_FEATURE_NAMES + ["exif_error", "exif_error_message"]),
                         pa.field("exif_input_digest", pa.string()),
                         PIXELS_SCHEMA.field("event_timestamp"),
                         pa.field("pixels_reused", pa.bool_()), pa.field("exif_reused", pa.bool_()),
                         pa.field("image_fetched", pa.bool_())])


def _frame(catalog: pd.DataFrame, rows: list[tuple[dict, dict, Any, bool]], event_timestamp: Any = None) -> pd.DataFrame:
    """Rows -> the typed frame of :data:`IMAGE_FEATURES_META` (one pyarrow conversion, no per-cell pandas)."""
    n = len(rows)
    pix_rows, exif_rows, stamps, fetched = zip(*rows) if n else ((), (), (), ())
    ids = pa.array(catalog["image_id"].astype(str).tolist() if n else [], type=pa.string())
    columns: list = [ids]
    for family, family_rows, names in (("pixels", pix_rows, PIXEL_FEATURE_NAMES),
                                       ("exif", exif_rows, EXIF_FEATURE_NAMES)):
        for name in names + [f"{family}_error", f"{family}_error_message"]:
            columns.append(pa.array([r[name] for r in family_rows], type=_ROW_SCHEMA.field(name).type))
        columns.append(pa.array([r.get("input_digest") for r in family_rows], type=pa.string()))
    now = pd.Timestamp(event_timestamp) if event_timestamp is not None else pd.Timestamp.now(tz="UTC")
    now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
    columns.append(pa.array([now if s is None else s for s in stamps], type=_ROW_SCHEMA.field("event_timestamp").type))
    for family_rows in (pix_rows, exif_rows):
        columns.append(pa.array([r.get("reused", False) for r in family_rows], type=pa.bool_()))
    columns.append(pa.array(list(fetched), type=pa.bool_()))
    table = pa.Table.from_arrays(columns, schema=_ROW_SCHEMA)
    result = table.to_pandas(types_mapper=_ARROW_TO_PANDAS.get)
    result.index = catalog.index
    return result


def family_frame(features: pd.DataFrame, family: str) -> pd.DataFrame:
    """The ``W/features/<family>/`` frame of an :func:`image_features` result."""
    digest = f"{family}_input_digest"
    columns = [digest if c == "input_digest" else c for c in (PIXELS_COLUMNS if family == "pixels" else EXIF_COLUMNS)]
    return features[columns].rename(columns={digest: "input_digest"})


def split_families(features: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``W/features/pixels`` and ``W/features/exif`` frames of an :func:`image_features` result."""
    return family_frame(features, "pixels"), family_frame(features, "exif")


def pixel_features(catalog: pd.DataFrame, images: ImageSource | str,
                   limits: ImageLimits | dict | None = None, event_timestamp: Any = None) -> pd.DataFrame:
    """Only the pixel family (columns of :data:`PIXELS_META`)."""
    return family_frame(image_features(catalog, images, ("pixels",), limits, event_timestamp), "pixels")


def exif_features(catalog: pd.DataFrame, images: ImageSource | str,
                  limits: ImageLimits | dict | None = None, event_timestamp: Any = None) -> pd.DataFrame:
    """Only the EXIF family (columns of :data:`EXIF_META`); pixels are not decoded."""
    return family_frame(image_features(catalog, images, ("exif",), limits, event_timestamp), "exif")


def limits_dict(limits: ImageLimits) -> dict[str, Any]:
    return asdict(limits)
