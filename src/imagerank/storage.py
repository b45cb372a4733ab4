"""Where data lives: local paths and fsspec URLs (``s3://``, ``gs://``, ...) behind one small interface.

Every input and the work directory may be a URL. Endpoint and credentials come from the standard
environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ...); extra fsspec
options for every URL of a run come from ``--storage-options JSON``, kept in the environment variable
``IMAGERANK_STORAGE_OPTIONS`` so that local Dask workers inherit them (on Kubernetes the variable comes from
a Secret). Listings are not cached: a dataset published by one process must be visible to the next read.
"""

from __future__ import annotations

import json
import os
import posixpath
from pathlib import Path

OPTIONS_ENV = "IMAGERANK_STORAGE_OPTIONS"


def is_url(location: str | os.PathLike) -> bool:
    """True for ``scheme://...`` locations other than ``file://`` (those are local paths)."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def absolute(location: str | os.PathLike) -> str:
    """A local path made absolute (``~`` expanded, ``file://`` dropped); a URL as given, without a trailing ``/``."""
    text = str(location)
    if is_url(text):
        return text.rstrip("/")
    if text.startswith("file://"):
        text = text[len("file://"):]
    return os.path.abspath(os.path.expanduser(text))


def join(base: str | os.PathLike, *parts: str) -> str:
    """``base/part/...`` for a local path or a URL (URLs always join with ``/``)."""
    if is_url(base):
        return posixpath.join(str(base).rstrip("/"), *parts)
    return os.path.join(os.fspath(base), *parts)


def parse_storage_options(text: str | None) -> dict:
    """The ``--storage-options`` JSON object, checked (an error names what is wrong)."""
    if not text:
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--storage-options is not JSON: {exc.msg} at character {exc.pos}") from None
    if not isinstance(options, dict):
        raise ValueError("--storage-options must be a JSON object, e.g. '{\"anon\": false}'")
    return options


def set_storage_options(options: dict | None) -> None:
    """Use ``options`` for every URL this process and the workers it starts open (``None``/``{}`` clears)."""
    if options:
        os.environ[OPTIONS_ENV] = json.dumps(options, sort_keys=True)
    else:
        os.environ.pop(OPTIONS_ENV, None)


def storage_options(location: str | os.PathLike | None = None) -> dict:
    """The fsspec options for ``location`` (for ``dd.read_parquet(storage_options=...)`` and friends).

    Local paths take none; URLs take ``IMAGERANK_STORAGE_OPTIONS`` with listings caching off.
    """
    if location is not None and not is_url(location):
        return {}
    options = parse_storage_options(os.environ.get(OPTIONS_ENV))
    options.setdefault("use_listings_cache", False)
    return options


def filesystem(location: str | os.PathLike):
    """``(fs, path)`` for a local path or URL: the fsspec filesystem and the path within it."""
    import fsspec

    return fsspec.core.url_to_fs(absolute(location), **storage_options(location))


def exists(location: str | os.PathLike) -> bool:
    fs, path = filesystem(location)
    return fs.exists(path)


def isdir(location: str | os.PathLike) -> bool:
    fs, path = filesystem(location)
    return fs.isdir(path)


def open_file(location: str | os.PathLike, mode: str = "rb", **kwargs):
    """An open file object for a local path or URL (a context manager); parents are created for writes."""
    fs, path = filesystem(location)
    if "w" in mode and not is_url(location):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return fs.open(path, mode, **kwargs)


def read_text(location: str | os.PathLike) -> str:
    with open_file(location, "rt", encoding="utf-8") as handle:
        return handle.read()


def local_path(location: str | os.PathLike) -> Path:
    """The location as a local ``Path``; a clear error for a URL where only local files work."""
    if is_url(location):
        raise ValueError(f"{location} is a URL; this needs a local path")
    return Path(absolute(location))
