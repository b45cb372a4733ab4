"""EXIF features of one image (``W/features/exif/``), read with Pillow's ``getexif()`` / ``get_ifd``.

Pillow is used rather than piexif: piexif can allocate unbounded memory on corrupt EXIF and kill a
worker, while Pillow reads IFD0 and the Exif (0x8769) / GPS (0x8825) sub-IFDs one directory at a time
(no endless IFD chains) and turns zero denominators into NaN. Every value read from EXIF is checked
for its type and range; a wrong-typed or out-of-range tag becomes null, never an exception.

Resized 640 px copies in the catalog often carry no EXIF at all, so the EXIF-like facts providers put
in the catalog's ``meta_data`` JSON are folded in too: ``date_taken`` (flickr, geograph) and
``date_originally_created`` (wikimedia) for ``taken_at``, ``latitude`` / ``longitude`` (geograph) for
the location.

Output dataset ``W/features/exif/`` (one row per catalog row; see :data:`EXIF_SCHEMA`):

=====================  ==============  =====================================================================
column                 type            meaning
=====================  ==============  =====================================================================
image_id               string          catalog identifier (key)
has_exif               bool            the file carries an EXIF block with at least one readable tag
make, model            string          camera maker / model (IFD0 0x010F / 0x0110), stripped
camera_class           string          phone / compact / dslr_mirrorless / scanner / software_only / unknown
                                       (rule: :func:`camera_class`)
lens                   string          LensModel (0xA434), else LensMake (0xA433)
focal_length           float32         mm (0x920A)
f_number               float32         (0x829D)
exposure_time          float32         seconds (0x829A)
iso                    Int32           ISOSpeedRatings (0x8827), else PhotographicSensitivity / ISOSpeed
flash                  Int32           raw Flash bit field (0x9209); ``flash_fired`` = bit 0
flash_fired            bool
orientation            Int16           1..8 (0x0112), null if absent or invalid
software               string          (0x0131)
edited                 bool            ``software`` names an image editor (:data:`EDITOR_PATTERNS`);
                                       null when there is no software tag
gps_present            bool            the GPS IFD holds a valid latitude/longitude (not 0,0)
datetime_original      datetime64[ns]  DateTimeOriginal (0x9003); converted to UTC when OffsetTimeOriginal
                                       (0x9011) is present, else the camera's local time; stored naive
taken_at               datetime64[ns]  datetime_original, else meta_data ``date_taken``, else
                                       ``date_originally_created`` (year-only / month-only dates map to the
                                       first day of the period)
taken_at_source        string          ``exif`` / ``meta_data.date_taken`` /
                                       ``meta_data.date_originally_created`` / null
latitude, longitude    float64         EXIF GPS position, else meta_data latitude/longitude (WGS84 degrees)
location_source        string          ``exif`` / ``meta_data`` / null
exif_error             string          null when the row is good; else an error code (see
                                       :mod:`imagerank.features.images`), e.g. ``exif_malformed``
exif_error_message     string          human-readable detail for the error
input_digest           string          digest of image bytes + meta_data + extractor version (reuse key)
event_timestamp        timestamp[UTC]  when the features were computed (Feast event time)
=====================  ==============  =====================================================================
"""

from __future__ import annotations

import math
import re
import warnings
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import pandas as pd
import pyarrow as pa

from imagerank.catalog.fields import clean_text, date_taken, location, meta_object, valid_location
from imagerank.catalog.fields import parse_catalog_date  # noqa: F401  (its home before catalog.fields)
from imagerank.schemas import empty_frame, pandas_dtypes

# --- output schema ---------------------------------------------------------------------------------

#: The features of the ``W/features/exif/`` dataset; every field is nullable (null when not read).
EXIF_FEATURES: pa.Schema = pa.schema([
    pa.field("has_exif", pa.bool_()),
    pa.field("make", pa.string()),
    pa.field("model", pa.string()),
    pa.field("camera_class", pa.string()),
    pa.field("lens", pa.string()),
    pa.field("focal_length", pa.float32()),
    pa.field("f_number", pa.float32()),
    pa.field("exposure_time", pa.float32()),
    pa.field("iso", pa.int32()),
    pa.field("flash", pa.int32()),
    pa.field("flash_fired", pa.bool_()),
    pa.field("orientation", pa.int16()),
    pa.field("software", pa.string()),
    pa.field("edited", pa.bool_()),
    pa.field("gps_present", pa.bool_()),
    pa.field("datetime_original", pa.timestamp("ns")),
    pa.field("taken_at", pa.timestamp("ns")),
    pa.field("taken_at_source", pa.string()),
    pa.field("latitude", pa.float64()),
    pa.field("longitude", pa.float64()),
    pa.field("location_source", pa.string()),
])
EXIF_FEATURE_NAMES = EXIF_FEATURES.names
EXIF_ERROR_COLUMNS = ["exif_error", "exif_error_message"]

#: pyarrow schema of the ``W/features/exif/`` dataset (pass to ``write_ddf(schema=...)``).
EXIF_SCHEMA: pa.Schema = pa.schema([pa.field("image_id", pa.string()), *EXIF_FEATURES,
                                    pa.field("exif_error", pa.string()), pa.field("exif_error_message", pa.string()),
                                    pa.field("input_digest", pa.string()),
                                    pa.field("event_timestamp", pa.timestamp("ns", tz="UTC"))])
#: pandas dtypes of the ``W/features/exif/`` dataset, in column order.
EXIF_DTYPES: dict[str, str] = pandas_dtypes(EXIF_SCHEMA)
#: empty pandas frame with the dataset's columns and dtypes (``map_partitions(meta=EXIF_META)``).
EXIF_META: pd.DataFrame = empty_frame(EXIF_SCHEMA)

# --- EXIF tag numbers ------------------------------------------------------------------------------
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
MAKE, MODEL, ORIENTATION, SOFTWARE = 0x010F, 0x0110, 0x0112, 0x0131
EXPOSURE_TIME, F_NUMBER, ISO_SPEED, FOCAL_LENGTH, FLASH = 0x829A, 0x829D, 0x8827, 0x920A, 0x9209
SENSITIVITY_ISO, DATETIME_ORIGINAL, OFFSET_TIME_ORIGINAL = 0x8833, 0x9003, 0x9011
LENS_MAKE, LENS_MODEL = 0xA433, 0xA434
GPS_LAT_REF, GPS_LAT, GPS_LON_REF, GPS_LON = 1, 2, 3, 4

_IFD0_WANTED = (MAKE, MODEL, ORIENTATION, SOFTWARE, FOCAL_LENGTH, F_NUMBER, EXPOSURE_TIME, ISO_SPEED,
                SENSITIVITY_ISO, FLASH, DATETIME_ORIGINAL, OFFSET_TIME_ORIGINAL, LENS_MAKE, LENS_MODEL)
MAX_TEXT = 200  # longest string kept from a tag


def empty_exif_row() -> dict[str, Any]:
    return dict.fromkeys(EXIF_FEATURE_NAMES + EXIF_ERROR_COLUMNS)


# --- value coercion: every tag value is untrusted -----------------------------------------------------

def _text(value: Any) -> str | None:
    return clean_text(value, MAX_TEXT)


def _number(value: Any) -> float | None:
    if isinstance(value, (tuple, list)):
        if not value:
            return None
        value = value[0]
    if isinstance(value, (bytes, str)) or value is None:
        return None
    try:
        number = float(value)  # IFDRational with a zero denominator gives nan
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _positive(value: Any, upper: float) -> float | None:
    number = _number(value)
    return number if number is not None and 0 < number <= upper else None


def _integer(value: Any, lower: int, upper: int) -> int | None:
    number = _number(value)
    if number is None or number != int(number) or not lower <= number <= upper:
        return None
    return int(number)


_EXIF_DATETIME = re.compile(r"^\s*(\d{4})[:\-/](\d{2})[:\-/](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET = re.compile(r"^\s*([+-])(\d{2}):(\d{2})\s*$")


def parse_exif_datetime(value: Any, offset: Any = None) -> datetime | None:
    """``YYYY:MM:DD HH:MM:SS`` -> naive datetime (UTC when an ``+HH:MM`` offset is given), else None."""
    text = _text(value)
    if not text:
        return None
    match = _EXIF_DATETIME.match(text)
    if not match:
        return None
    try:
        moment = datetime(*(int(g) for g in match.groups()))
    except ValueError:  # 0000:00:00 00:00:00 and other impossible dates
        return None
    if not 1826 <= moment.year <= 2200:
        return None
    offset_match = _OFFSET.match(_text(offset) or "")
    if offset_match:
        sign = 1 if offset_match.group(1) == "+" else -1
        moment -= sign * timedelta(hours=int(offset_match.group(2)), minutes=int(offset_match.group(3)))
    return moment


# --- camera class and editing software ------------------------------------------------------------

PHONE_MAKERS = re.compile(
    r"\b(apple|google|huawei|honor|xiaomi|redmi|oneplus|oppo|vivo|realme|motorola|lge|htc|zte|meizu|"
    r"hmd global|nokia|blackberry|research in motion|rim|jolla|essential|nothing|tecno|infinix|"
    r"asus|lenovo|alcatel|tcl|wiko|fairphone)\b", re.I)
PHONE_MODELS = re.compile(
    r"(iphone|ipad|ipod|pixel|nexus|galaxy|\bsm-[a-z]\d|\bgt-[a-z]\d|\bsgh-|\bsch-|\bsph-|xperia|lumia|"
    r"redmi|\bmi \d|moto|oneplus|\blg-|zenfone|\bphone\b|\bmobile\b|\bcphone|\bnokia|jolla|\bhuawei|"
    r"\bta-\d{4})", re.I)
SCANNER = re.compile(
    r"(scan|coolscan|perfection|canoscan|plustek|epson expression|film scanner|imacon|flextight|"
    r"nikon super|hasselblad x[15]|microtek|avision|fujitsu fi-|vuescan|silverfast)", re.I)
CAMERA_MAKERS = re.compile(
    r"\b(canon|nikon|sony|olympus|om digital|panasonic|fujifilm|fuji|kodak|eastman kodak|casio|pentax|"
    r"asahi|ricoh|konica|minolta|samsung|sanyo|polaroid|leica|hewlett|hp|vivitar|gopro|dji|sigma|"
    r"hasselblad|phase one|mamiya|sea ?& ?sea|reconyx|bushnell|agfa|praktica|rollei|toshiba|epson|"
    r"jvc|sharp|benq|premier|traveler|aiptek|medion|general imaging|ge|yashica|contax|zeiss)\b", re.I)
#: (maker, interchangeable-lens body models of that maker); a model matches only under its own maker
DSLR_MIRRORLESS: list[tuple[re.Pattern, re.Pattern]] = [(re.compile(m, re.I), re.compile(b, re.I)) for m, b in [
    (r"canon", r"\beos\b|rebel|\bkiss\b"),
    (r"nikon", r"\bd\d{1,4}[a-z]*\b|\bdf\b|\bz ?\d{1,2}\b|\bz ?fc?\b|\b1 [jvs]\d"),
    (r"sony", r"\bilce|\bilca|\bnex-|\bslt-|\bdslr|\balpha\b"),
    (r"pentax|asahi|ricoh imaging", r"\bk-?\d|\bk\d{1,3}d\b|\*ist|\bkp\b|\bk-[rsx]\b|\b645|\bq\d*\b"),
    (r"olympus|om digital", r"\be-(?:m|p|pl)?\d|\bom-\d"),
    (r"panasonic", r"\bdmc-g|\bdc-g|\bdc-s\d|\bdmc-l1"),
    (r"fuji", r"\bx-(?:t|pro|e|h|s|a|m)\d|\bgfx|\bs\d ?pro"),
    (r"leica", r"\bm\d|\bm \(typ|\bsl\d?\b|\bs\d?\b|\bcl\b|\btl\d?\b"),
    (r"sigma", r"\bsd\d|\bsd quattro|\bfp\b"),
    (r"samsung", r"\bnx\d"),
    (r"minolta", r"dynax|maxxum|\balpha"),
    (r"hasselblad|phase one|mamiya|leaf", r"."),
    (r".", r"dslr"),
]]

EDITOR_PATTERNS = re.compile(
    r"(photoshop|lightroom|gimp|paint\.net|painttool|paint shop|paintshop|corel|affinity|pixelmator|"
    r"capture one|darktable|rawtherapee|acdsee|picasa|snapseed|vsco|instagram|aperture|iphoto|"
    r"dxo|luminar|on1 |irfanview|photoscape|fotor|polarr|photo ?editor|photo gallery|faststone|"
    r"photoimpact|photodirector|lightzone|digikam|shotwell|fotoxx|krita|photopea|canva|inkscape|"
    r"imagemagick|graphicsmagick|xnview|photofiltre|paintshop|microsoft photos|photos \d|"
    r"nx studio|capture nx|digital photo professional|silkypix|luminance hdr|photomatix|hugin|ptgui)",
    re.I)


@lru_cache(maxsize=8192)
def camera_class(make: str | None, model: str | None, software: str | None) -> str:
    """Classify the capture device from EXIF make / model / software.

    Rule, first match wins:

    1. no make and no model: ``software_only`` if a software tag is present, else ``unknown``;
    2. ``scanner`` if make, model or software names a scanner (CanoScan, Coolscan, Perfection,
       VueScan, SilverFast, ...);
    3. ``phone`` if the make is a phone maker (Apple, Google, Huawei, Xiaomi, OnePlus, HMD/Nokia, ...)
       or the model names a phone line (iPhone, Pixel, Galaxy / SM-xxxx, Xperia, Lumia, ...);
    4. ``dslr_mirrorless`` if the model names an interchangeable-lens body (Canon EOS, Nikon Dxx / Z,
       Sony ILCE / NEX / SLT / DSLR, Pentax K / *ist, Olympus E-/OM, Panasonic G / GH / S, Fujifilm X- /
       GFX, Leica M / SL, ...);
    5. ``compact`` if the make is a known camera maker (Canon, Nikon, Kodak, Casio, Fujifilm, ...);
    6. ``unknown`` otherwise.
    """
    make_s, model_s, soft_s = make or "", model or "", software or ""
    if not make_s and not model_s:
        return "software_only" if soft_s else "unknown"
    both = f"{make_s} {model_s}"
    if SCANNER.search(both) or SCANNER.search(soft_s):
        return "scanner"
    if PHONE_MODELS.search(model_s) or (PHONE_MAKERS.search(make_s) and not CAMERA_MAKERS.search(make_s)):
        return "phone"
    if any(maker.search(both) and body.search(model_s) for maker, body in DSLR_MIRRORLESS):
        return "dslr_mirrorless"
    if CAMERA_MAKERS.search(both):
        return "compact"
    return "unknown"


@lru_cache(maxsize=8192)
def software_is_editor(software: str | None) -> bool | None:
    if not software:
        return None
    return bool(EDITOR_PATTERNS.search(software))


# --- EXIF from the image -----------------------------------------------------------------------------

def _gps_degrees(values: Any, ref: Any, limit: float) -> float | None:
    if not isinstance(values, (tuple, list)) or not 1 <= len(values) <= 3:
        return None
    parts = [_number(v) for v in values]
    if any(p is None or p < 0 for p in parts):
        return None
    degrees = sum(p / 60 ** i for i, p in enumerate(parts))
    ref_s = (_text(ref) or "").upper()[:1]
    if ref_s in ("S", "W"):
        degrees = -degrees
    return degrees if abs(degrees) <= limit else None


def read_exif(im) -> tuple[dict[str, Any], str | None, str | None]:
    """EXIF features of an opened (not necessarily decoded) Pillow image.

    Returns ``(features, error_code, error_message)``; on malformed EXIF the features hold whatever
    could be read and the error is ``exif_malformed``.
    """
    out: dict[str, Any] = dict.fromkeys(EXIF_FEATURE_NAMES)
    out["has_exif"] = False
    problems: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            exif = im.getexif()
        except Exception as exc:  # noqa: BLE001 - corrupt EXIF may raise anything
            return out, "exif_malformed", f"getexif: {type(exc).__name__}: {exc}"[:500]
        try:
            keys = set(exif)
        except Exception as exc:  # noqa: BLE001
            return out, "exif_malformed", f"IFD0: {type(exc).__name__}: {exc}"[:500]
        sub: dict[int, dict] = {}
        for ifd in (EXIF_IFD, GPS_IFD):
            try:
                sub[ifd] = dict(exif.get_ifd(ifd)) if ifd in keys else {}
            except Exception as exc:  # noqa: BLE001
                sub[ifd] = {}
                problems.append(f"IFD {ifd:#06x}: {type(exc).__name__}: {exc}")
        try:
            ifd0 = {tag: exif[tag] for tag in _IFD0_WANTED if tag in keys}
            n_ifd0 = len(keys)
        except Exception as exc:  # noqa: BLE001
            ifd0, n_ifd0 = {}, 0
            problems.append(f"IFD0: {type(exc).__name__}: {exc}")
    exif_ifd, gps = sub[EXIF_IFD], sub[GPS_IFD]
    # an Exif IFD pointer alone does not count as EXIF, nor does orientation lifted from XMP
    n_pointers = (EXIF_IFD in keys) + (GPS_IFD in keys)
    real_tags = n_ifd0 - n_pointers + len(exif_ifd) + len(gps)
    out["has_exif"] = real_tags > 0 and bool(im.info.get("exif") or hasattr(im, "tag_v2")
                                               or "Raw profile type exif" in im.info)

    def tag(name: int) -> Any:  # Exif-IFD tags sometimes sit in IFD0
        return exif_ifd[name] if name in exif_ifd else ifd0.get(name)

    out["make"] = _text(ifd0.get(MAKE))
    out["model"] = _text(ifd0.get(MODEL))
    out["software"] = _text(ifd0.get(SOFTWARE))
    out["orientation"] = _integer(ifd0.get(ORIENTATION), 1, 8)
    out["lens"] = _text(tag(LENS_MODEL)) or _text(tag(LENS_MAKE))
    out["focal_length"] = _positive(tag(FOCAL_LENGTH), 10_000)
    out["f_number"] = _positive(tag(F_NUMBER), 1_000)
    out["exposure_time"] = _positive(tag(EXPOSURE_TIME), 100_000)
    iso = _integer(tag(ISO_SPEED), 1, 10_000_000)
    out["iso"] = iso if iso is not None else _integer(tag(SENSITIVITY_ISO), 1, 10_000_000)
    flash = _integer(tag(FLASH), 0, 0xFFFF)
    out["flash"] = flash
    out["flash_fired"] = None if flash is None else bool(flash & 1)
    out["datetime_original"] = parse_exif_datetime(tag(DATETIME_ORIGINAL), tag(OFFSET_TIME_ORIGINAL))
    lat = _gps_degrees(gps.get(GPS_LAT), gps.get(GPS_LAT_REF), 90)
    lon = _gps_degrees(gps.get(GPS_LON), gps.get(GPS_LON_REF), 180)
    out["gps_present"] = valid_location(lat, lon)
    if out["gps_present"]:
        out["latitude"], out["longitude"], out["location_source"] = lat, lon, "exif"
    out["camera_class"] = camera_class(out["make"], out["model"], out["software"])
    out["edited"] = software_is_editor(out["software"])
    if problems:
        return out, "exif_malformed", "; ".join(problems)[:500]
    return out, None, None


# --- EXIF-like facts from the catalog's meta_data ---------------------------------------------------

def catalog_facts(meta_data: Any) -> dict[str, Any]:
    """EXIF-like facts from the catalog's ``meta_data`` JSON text: dates and position (parsers in
    :mod:`imagerank.catalog.fields`, shared with the metadata features)."""
    meta = meta_object(meta_data)
    out: dict[str, Any] = {}
    moment, key = date_taken(meta)
    if moment is not None:
        out["taken_at"], out["taken_at_source"] = moment, f"meta_data.{key}"
    place = location(meta)
    if place is not None:
        out["latitude"], out["longitude"] = place
        out["location_source"] = "meta_data"
    return out


def merge_exif(exif: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    """Fill ``taken_at`` and the location: EXIF first, the catalog's meta_data second."""
    if exif.get("datetime_original") is not None:
        exif["taken_at"], exif["taken_at_source"] = exif["datetime_original"], "exif"
    elif "taken_at" in facts:
        exif["taken_at"], exif["taken_at_source"] = facts["taken_at"], facts["taken_at_source"]
    if exif.get("location_source") is None and "location_source" in facts:
        for key in ("latitude", "longitude", "location_source"):
            exif[key] = facts[key]
    return exif
