"""A run's inputs, checked before anything is written or a cluster is started.

A mistyped path or a malformed image template fails in a second with one clear line, and leaves no work
directory, lock or cluster behind. Local paths come back absolute: run records stay valid from any
directory, and workers whose working directory differs from the driver's read the same files.
"""

from __future__ import annotations

import os
from pathlib import Path


class InputError(ValueError):
    """An input or parameter a run cannot use."""


def absolute_location(location: str | Path) -> str:
    """A local path (or path template) made absolute; URLs (``s3://``, ``https://``, ...) as given."""
    text = str(location)
    if "://" in text:
        return text
    return os.path.abspath(os.path.expanduser(text))


def check_catalog(locations: list[str | Path]) -> list[str]:
    """Catalog files or folders made absolute, once each exists and is of a known format."""
    from imagerank.catalog.ingest import check_catalog_files, expand_catalog_paths
    from imagerank.catalog.postgres import TableError, check_table, is_postgres_url

    absolute = [absolute_location(c) for c in locations]
    try:  # PostgreSQL tables (postgresql://...?table=image): reachable, with the table, key and identifier
        tables = [check_table(c) for c in absolute if is_postgres_url(c)]
    except TableError as exc:
        raise InputError(str(exc)) from None
    if len(tables) < len(absolute) or not absolute:
        check_catalog_files(expand_catalog_paths([c for c in absolute if not is_postgres_url(c)]))
    return absolute


def check_local_files(kind: str, locations: list[str | Path], *, folders: bool = False) -> list[str]:
    """The locations made absolute, once every local one is an existing file (or folder, where ``folders``
    allows it; URLs are not checked)."""
    absolute = [absolute_location(f) for f in locations]
    exists = Path.exists if folders else Path.is_file
    missing = [f for f in absolute if "://" not in f and not exists(Path(f))]
    if missing:
        raise InputError(f"no such {kind} file: {', '.join(missing)}")
    return absolute


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
    return {"catalog": check_catalog(catalog), "crawl": check_local_files("crawl", crawl),
            "ranks": check_local_files("ranks", ranks),
            "linkgraph": check_local_files("linkgraph", linkgraph, folders=True),
            "images": check_image_template(images, allow_remote) if images else images}
