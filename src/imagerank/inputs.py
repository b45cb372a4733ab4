"""A run's inputs, checked before anything is written or a cluster is started.

A mistyped path or URL, an unreachable object store or a malformed image template fails in a second with
one clear line, and leaves no work directory, lock or cluster behind. Every input may be a local path or an
fsspec URL (``s3://bucket/key``; endpoint and credentials from the standard environment or
``--storage-options``). Local paths come back absolute: run records stay valid from any directory, and
workers whose working directory differs from the driver's read the same files.
"""

from __future__ import annotations

import os
from pathlib import Path

from imagerank import storage


class InputError(ValueError):
    """An input or parameter a run cannot use."""


def absolute_location(location: str | Path) -> str:
    """A local path (or path template) made absolute; URLs (``s3://``, ``https://``, ...) as given."""
    text = str(location)
    if "://" in text:
        return text
    return os.path.abspath(os.path.expanduser(text))


def _unreachable(kind: str, location: str, exc: Exception) -> InputError:
    """One line for an input that cannot be read: missing, forbidden, or the store itself unreachable."""
    if isinstance(exc, FileNotFoundError):
        return InputError(f"no such {kind} file: {location}")
    if isinstance(exc, PermissionError):
        return InputError(f"cannot read {kind} file {location}: permission denied (check the credentials)")
    detail = " ".join(str(exc).split())[:300] or type(exc).__name__
    return InputError(f"cannot read {kind} file {location}: {type(exc).__name__}: {detail}")


def check_catalog(locations: list[str | Path]) -> list[str]:
    """Catalog files, directories or URL prefixes made absolute, once each file exists, is readable and of a
    known format; PostgreSQL tables (``postgresql://...?table=image``) once reachable, with the table, its key
    and ``identifier``."""
    from imagerank.catalog.ingest import CatalogError, check_catalog_files, expand_catalog_paths
    from imagerank.catalog.postgres import TableError, check_table, is_postgres_url

    absolute = [absolute_location(c) for c in locations]
    try:
        tables = [check_table(c) for c in absolute if is_postgres_url(c)]
    except TableError as exc:
        raise InputError(str(exc)) from None
    files = [c for c in absolute if not is_postgres_url(c)]
    if len(tables) < len(absolute) or not absolute:
        try:
            check_catalog_files(expand_catalog_paths(files))
        except CatalogError:
            raise
        except Exception as exc:  # noqa: BLE001 - an object store's errors (credentials, endpoint) as one line
            raise _unreachable("catalog", ", ".join(files), exc) from None
    return absolute


def check_files(kind: str, locations: list[str | Path], *, folders: bool = False) -> list[str]:
    """The locations made absolute, once every one is a readable file (or a folder / URL prefix, where
    ``folders`` allows it). Local paths and URLs alike; the first byte of each file is read, so a file the
    credentials may not read fails here, not on a worker."""
    absolute = [absolute_location(f) for f in locations]
    missing = []
    for location in absolute:
        try:
            fs, path = storage.filesystem(location)
            kind_found = fs.info(path)["type"]  # raises for a missing file, a forbidden one, an unreachable store
            if kind_found == "directory" and folders:
                continue
            if kind_found != "file":
                missing.append(location)
                continue
            with fs.open(path, "rb") as handle:
                handle.read(1)
        except FileNotFoundError:
            missing.append(location)
        except Exception as exc:  # noqa: BLE001 - every storage error becomes one line
            raise _unreachable(kind, location, exc) from None
    if missing:
        raise InputError(f"no such {kind} file: {', '.join(missing)}")
    return absolute


def check_local_files(kind: str, locations: list[str | Path], *, folders: bool = False) -> list[str]:
    """Former name of :func:`check_files` (it now checks URLs too)."""
    return check_files(kind, locations, folders=folders)


def fingerprint(location: str | Path) -> dict:
    """What identifies an input's content cheaply, for run keys: a local file's size, mtime and edge hashes
    (:func:`imagerank.runs.file_fingerprint`); a URL's size and the store's ETag / modification time."""
    from imagerank.runs import file_fingerprint

    location = absolute_location(location)
    if not storage.is_url(location):
        return file_fingerprint(location)
    fs, path = storage.filesystem(location)
    if fs.isdir(path):
        return {"path": location, "directory": True,
                "files": [fingerprint(f"{location.split('://', 1)[0]}://{f}") for f in sorted(fs.find(path))]}
    info = fs.info(path)
    modified = info.get("LastModified") or info.get("mtime") or info.get("updated")
    return {"path": location, "size": int(info.get("size") or 0),
            "etag": str(info.get("ETag") or info.get("etag") or info.get("md5Hash") or "").strip('"') or None,
            "modified": None if modified is None else str(modified)}


def check_image_template(template: str, allow_remote: bool = False) -> str:
    """The image template made absolute, once it parses, names only catalog columns and its local folder exists."""
    from imagerank.catalog.schema import CATALOG_SCHEMA
    from imagerank.features.images import ImageSource

    location = absolute_location(template)
    try:
        source = ImageSource(location, allow_remote=allow_remote)
    except ValueError as exc:
        hint = " (the CLI's --allow-remote-images)" if "allow_remote" in str(exc) else ""
        raise InputError(f"image template {template!r}: {exc}{hint}") from None
    unknown = sorted(set(source.fields) - set(CATALOG_SCHEMA.names))
    if unknown or not source.fields:
        raise InputError(f"image template {template!r} must name catalog columns such as {{image_id}}"
                         + (f" (not catalog columns: {', '.join(unknown)})" if unknown else ""))
    if source.protocol == "file" and not os.path.isdir(source.root):
        raise InputError(f"image template {template!r}: no such folder {source.root}")
    return location


def check_run_inputs(catalog: list, crawl: list, ranks: list, images: str | None, allow_remote: bool = False,
                     linkgraph: list = ()) -> dict:
    """Everything ``recalculate`` reads, checked and made absolute (keys as in its options)."""
    return {"catalog": check_catalog(catalog), "crawl": check_files("crawl", crawl),
            "ranks": check_files("ranks", ranks),
            "linkgraph": check_files("linkgraph", linkgraph, folders=True),
            "images": check_image_template(images, allow_remote) if images else images}
