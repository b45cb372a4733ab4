"""The catalog fields several stages read, each parsed by one function: ``meta_data`` and ``tags`` JSON,
dates (published, taken) and the location.

Ingest, the metadata, EXIF and text features and the popularity label all call these functions, so two
stages can no longer read the same field differently (``taken_age_days`` and ``taken_at`` both come from
:func:`date_taken`; ``has_geo`` and the EXIF ``location_source`` both from :func:`location`).

Error policy, the same for every parser here: a malformed value never raises. The parser returns the
empty value (``{}``, ``[]``, ``None``) and, where a caller may want it, the reason it gave up. Ingest is
the gate that acts on the reason: the row becomes a reject with it (nothing lost), so every ``meta_data``
and ``tags`` value in ``W/catalog/`` is canonical JSON. Feature stages read ingested rows; for them a
malformed value (only a hand-made frame can hold one) carries no facts, and the row still gets its one
output row.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any

import pandas as pd

#: Longest text handed to pandas/dateutil as a time: no timestamp is longer, and dateutil takes minutes
#: over a megabyte of text (then gives NaT). Ingest stores a longer ``created_on`` as null.
MAX_TIME_CHARS = 64
#: ``meta_data`` keys holding when the picture was taken, in order of preference (flickr and geograph
#: ``date_taken``, wikimedia ``date_originally_created``).
TAKEN_KEYS = ("date_taken", "date_originally_created")
#: ``meta_data`` keys holding when the picture was published (epoch seconds or text).
PUBLISHED_KEYS = ("pub_date", "date_published")
#: Years a catalog date may fall in; anything else is a typo or a placeholder, and stays within the
#: nanosecond timestamps pandas and the Parquet datasets hold (1677..2262).
DATE_YEARS = (1800, 2200)
_MAX_DATE_TEXT = 200  # a date-taken text is cut here (wikimedia wraps its dates in markup)


# --- JSON ---------------------------------------------------------------------------------------------

def parse_meta_data(value: Any) -> tuple[dict, str | None]:
    """``(object, None)`` for a JSON object (text, bytes or an already parsed dict); ``({}, None)`` for a
    missing value (None, NaN, empty text, ``null``); ``({}, reason)`` for anything else."""
    value = _json_value(value)
    if isinstance(value, _Malformed):
        return {}, value.reason
    if value is None:
        return {}, None
    if not isinstance(value, dict):
        return {}, f"is not a JSON object: got {type(value).__name__}"
    return value, None


def meta_object(value: Any) -> dict:
    """The row's ``meta_data`` as a dict; ``{}`` when missing or malformed (see the module's error policy)."""
    return parse_meta_data(value)[0]


def parse_tags(value: Any) -> tuple[list[str], str | None]:
    """``(tag names, None)`` from a JSON list of names or of ``{"name": ...}`` objects (blank names dropped,
    Openverse's empty ``{}`` is no tags); ``([], reason)`` when the value is not such a list."""
    value = _json_value(value)
    if isinstance(value, _Malformed):
        return [], value.reason
    if value is None or value == {}:
        return [], None
    if not isinstance(value, list):
        return [], f"is not a JSON list: got {type(value).__name__}"
    names = []
    for tag in value:
        name = tag.get("name") if isinstance(tag, dict) else tag if isinstance(tag, str) else None
        if isinstance(name, str) and name.strip():
            names.append(name.strip())
    return names, None


def tag_names(value: Any) -> list[str]:
    """The row's tag names; ``[]`` when missing or malformed (see the module's error policy)."""
    return parse_tags(value)[0]


class _Malformed:
    def __init__(self, reason: str):
        self.reason = reason


def _json_value(value: Any) -> Any:
    """Parsed JSON; None when missing; :class:`_Malformed` when not JSON text."""
    if isinstance(value, (dict, list)):
        return value
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            return _Malformed(f"is not valid JSON: {str(exc)[:80]}")
    if not isinstance(value, str):
        return _Malformed(f"is not JSON text: got {type(value).__name__}")
    text = value.strip()
    if not text or text == "null":
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        return _Malformed(f"is not valid JSON: {str(exc)[:80]}")


# --- dates --------------------------------------------------------------------------------------------

def parse_time(raw: Any) -> pd.Timestamp | None:
    """A publication/upload time -> UTC timestamp: epoch seconds (number or digits) or text pandas reads;
    None when unreadable, out of range or longer than :data:`MAX_TIME_CHARS`."""
    if isinstance(raw, str) and len(raw) > MAX_TIME_CHARS:
        return None
    try:
        if isinstance(raw, (int, float)) or (isinstance(raw, str) and raw.strip().isdigit()):
            seconds = float(raw)
            return pd.Timestamp(seconds, unit="s", tz="UTC") if 0 < seconds < 4e9 else None
        stamp = pd.Timestamp(str(raw))
        return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    except (ValueError, TypeError, OverflowError):
        return None


def published_time(meta: dict) -> pd.Timestamp | None:
    """When the provider published the picture: the first readable of :data:`PUBLISHED_KEYS`."""
    for key in PUBLISHED_KEYS:
        if meta.get(key) not in (None, ""):
            stamp = parse_time(meta.get(key))
            if stamp is not None:
                return stamp
    return None


_TAG = re.compile(r"<[^>]*>")
_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d", "%Y-%m",
                 "%Y:%m:%d %H:%M:%S", "%A, %d %B, %Y", "%d %B %Y, %H:%M:%S", "%d %B %Y, %H:%M",
                 "%d %B %Y", "%B %d, %Y", "%B %Y", "%Y")
_ISO_IN_TEXT = re.compile(r"\+?(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2}):(\d{2}))?")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}))?)?$")
_YEAR = re.compile(r"(?<!\d)(1[6-9]\d\d|20\d\d|21\d\d)(?!\d)")


def parse_catalog_date(value: Any) -> datetime | None:
    """Provider date text -> naive datetime (read as UTC); year- or month-only dates map to the period's
    first day; None outside :data:`DATE_YEARS` or when unreadable.

    Handles flickr ``2018-06-12 10:26:00``, geograph ``Saturday, 23 January, 2010`` / ``January 2010``,
    wikimedia ``2019-12-25``, ``1890``, ``circa 1890 <div ...>+1890-00-00T00:00:00Z/9</div>``.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(int(value)) if math.isfinite(value) else None
    text = _date_text(value)
    if not text:
        return None
    fast = _ISO_DATE.match(text)
    if fast:
        try:
            moment = datetime(*(int(g) for g in fast.groups() if g is not None))
        except ValueError:
            moment = None
        if moment is not None:
            return _in_range(moment)
    plain = _TAG.sub(" ", text).strip() if "<" in text else text
    for candidate in (plain, plain.split(" <")[0]):
        for fmt in _DATE_FORMATS:
            try:
                moment = datetime.strptime(candidate, fmt)
            except ValueError:
                continue
            return _in_range(moment)
    match = _ISO_IN_TEXT.search(text)
    if match:
        year, month, day = (int(g) for g in match.groups()[:3])
        hms = [int(g) for g in match.groups()[3:] if g is not None] or [0, 0, 0]
        try:
            return _in_range(datetime(year, month or 1, day or 1, *hms))
        except ValueError:
            pass
    match = _YEAR.search(plain)
    return _in_range(datetime(int(match.group(1)), 1, 1)) if match else None


def date_taken(meta: dict) -> tuple[datetime | None, str | None]:
    """When the picture was taken according to the catalog: ``(naive UTC datetime, meta_data key)`` from
    the first readable of :data:`TAKEN_KEYS`, else ``(None, None)``. The one source of ``taken_at``'s
    catalog fallback and of ``taken_age_days``."""
    for key in TAKEN_KEYS:
        moment = parse_catalog_date(meta.get(key))
        if moment is not None:
            return moment, key
    return None, None


def _in_range(moment: datetime) -> datetime | None:
    return moment if DATE_YEARS[0] <= moment.year <= DATE_YEARS[1] else None


def clean_text(value: Any, max_chars: int) -> str | None:
    """An untrusted text value (str, or bytes as UTF-8): up to its first NUL (a C string), printable characters
    only, at most ``max_chars``, stripped; None when nothing is left or it is not text."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.split("\x00", 1)[0]  # C string: the text ends at the first NUL
    if not value.isprintable():
        value = "".join(ch for ch in value if ch.isprintable())
    return value[:max_chars].strip() or None


def _date_text(value: Any) -> str | None:
    return clean_text(value, _MAX_DATE_TEXT)


# --- place --------------------------------------------------------------------------------------------

def valid_location(latitude: float | None, longitude: float | None) -> bool:
    """WGS84 degrees within range, and not ``(0, 0)``.

    ``(0, 0)`` is in the Gulf of Guinea, where practically no catalog picture is taken, but it is what a GPS
    without a fix and upload forms with zero defaults write: counting it as a place would mark those rows
    as geotagged. EXIF GPS and the catalog's ``latitude``/``longitude`` follow this one rule.
    """
    if latitude is None or longitude is None:
        return False
    return (math.isfinite(latitude) and math.isfinite(longitude) and abs(latitude) <= 90
            and abs(longitude) <= 180 and (latitude, longitude) != (0.0, 0.0))


def location(meta: dict) -> tuple[float, float] | None:
    """``(latitude, longitude)`` from the catalog's ``meta_data`` (numbers or numeric text) when
    :func:`valid_location`, else None."""
    lat, lon = _coordinate(meta.get("latitude")), _coordinate(meta.get("longitude"))
    return (lat, lon) if valid_location(lat, lon) else None


def _coordinate(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None
