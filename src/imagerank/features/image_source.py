"""Where the bytes of a catalog row's image live: templates, root confinement, one listing, concurrent fetches.

Image source (``--images``). One of

- a plain local folder ``/data/images`` meaning ``/data/images/{image_id}.jpg``;
- a template with ``{column}`` placeholders filled from the catalog row, local or any fsspec URL:
  ``/data/{provider}/{image_id}.jpg``, ``file:///data/{image_id}.jpg``, ``s3://bucket/{image_id}.jpg``,
  ``gs://...``; any catalog column can be used (``image_id``, ``provider``, ``filetype``, ...).

URLs are opened with :func:`imagerank.storage.storage_options` (``--storage-options`` /
``IMAGERANK_STORAGE_OPTIONS``; endpoint and credentials from the standard environment such as
``AWS_ENDPOINT_URL``), resolved where the source is used, so Dask workers use their own environment.
``http(s)``/``ftp`` templates are refused unless ``allow_remote=True``: nothing is fetched from
arbitrary web URLs by default. The *root* of a template is its fixed part up to the last ``/`` before
the first placeholder; a path built from catalog values must stay under it: values that are empty,
contain NUL or ``\\``, or make the normalized path leave the root (``..``, absolute values) are refused
with ``path_escape``, and for local files the real path (symlinks resolved) must stay under the real
root too.

At catalog scale the store is *listed* once (:meth:`ImageSource.listing`: the root prefix, streamed in
batches of path, size and version — the ETag on object stores, the modification time on disks), so that
a row whose image is not listed costs no request and an unchanged image is recognised without being
read; the images still needed are fetched many per call (:meth:`ImageSource.fetch`: ``fs.cat_ranges``,
concurrent on async filesystems such as s3, gcs and http), each capped at ``max_bytes + 1`` bytes.
"""

from __future__ import annotations

import os
import posixpath
import re
import string
from dataclasses import dataclass, field
from typing import Any, Iterator

import pyarrow as pa

REMOTE_WEB_PROTOCOLS = {"http", "https", "ftp", "ftps", "sftp", "ssh"}
LOCAL_PROTOCOLS = {"file", "local"}
#: columns of a listing batch: the path as the filesystem names it (no protocol), bytes, and a version that
#: changes whenever the object changes (ETag, generation or modification time)
LISTING_SCHEMA = pa.schema([pa.field("image.path", pa.string()), pa.field("image.size", pa.int64()),
                            pa.field("image.version", pa.string())])
_VERSION_KEYS = ("ETag", "etag", "md5Hash", "generation", "version_id", "mtime", "LastModified", "last_modified",
                 "updated", "created")


class ImageError(Exception):
    """A row's image could not be had; ``code`` is its error code (see :mod:`imagerank.features.images`)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class ImageSource:
    """Where the bytes of a catalog row's image live (picklable: shipped to the workers as is).

    ``storage_options`` are added to (and override) :func:`imagerank.storage.storage_options` for URLs.
    """

    template: str
    allow_remote: bool = False
    storage_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        template = str(self.template)
        if "{" not in template:  # a plain folder
            template = template.rstrip("/") + "/{image_id}.jpg"
        protocol, _, rest = template.partition("://")
        if not _:
            protocol, rest = "file", template
        protocol = protocol.lower()
        if protocol in REMOTE_WEB_PROTOCOLS and not self.allow_remote:
            raise ValueError(f"refusing to fetch images over {protocol}:// (pass allow_remote=True to allow)")
        self.protocol = "file" if protocol in LOCAL_PROTOCOLS else protocol
        if self.protocol == "file":
            cut = rest.index("{")
            folder, slash, partial = rest[:cut].rpartition("/")
            folder = os.path.abspath(os.path.expanduser(folder or "/")) if slash else os.getcwd()
            rest = folder.rstrip("/") + "/" + partial + rest[cut:]
        self.path_template = rest
        self.fields = sorted({re.split(r"[.\[]", f)[0] for _, f, _, _ in string.Formatter().parse(rest) if f})
        prefix = rest[: rest.index("{")]
        self.root = prefix[: prefix.rfind("/")] if "/" in prefix else ""
        if self.protocol == "file":
            self.root = self.root or "/"
            self._real_root = os.path.realpath(self.root)
        self._fs = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_fs"] = None
        return state

    @property
    def url(self) -> str:
        """The template as a URL (``file://`` for local files)."""
        return f"{self.protocol}://{self.path_template}"

    @property
    def fs(self):
        if self._fs is None:
            import fsspec

            from imagerank.storage import storage_options

            options = {} if self.protocol == "file" else storage_options(self.url)
            self._fs = fsspec.filesystem(self.protocol, **{**options, **(self.storage_options or {})})
        return self._fs

    # --- paths -----------------------------------------------------------------------------------------

    def path_for(self, row: dict[str, Any]) -> str:
        """The path (without protocol) of a row's image, or ImageError(``path_escape``)."""
        values = {}
        for name in self.fields:
            value = row.get(name)
            if value is None or (isinstance(value, float) and value != value):
                raise ImageError("path_escape", f"catalog field {name!r} is empty")
            text = str(value)
            if not text or "\x00" in text or "\\" in text or text in (".", ".."):
                raise ImageError("path_escape", f"catalog field {name!r} = {text[:80]!r} is not a safe path part")
            values[name] = text
        try:
            path = self.path_template.format_map(values)
        except (KeyError, ValueError, IndexError, AttributeError) as exc:
            raise ImageError("path_escape", f"cannot fill template: {exc}") from None
        norm = posixpath.normpath(path) if self.protocol != "file" else os.path.normpath(path)
        root = self.root.rstrip("/")
        if self.protocol == "file":
            if os.path.commonpath([norm, self.root]) != self.root:
                raise ImageError("path_escape", f"{norm[:200]} is outside the image root {self.root}")
        elif root and not norm.startswith(root + "/"):
            raise ImageError("path_escape", f"{norm[:200]} is outside the image root {root}")
        elif not root and (norm.startswith("/") or norm.startswith("..")):
            raise ImageError("path_escape", f"{norm[:200]} leaves the bucket")
        return norm

    # --- reading -------------------------------------------------------------------------------------------

    def read(self, row: dict[str, Any], max_bytes: int) -> bytes:
        """The image bytes of one catalog row; ImageError on any failure."""
        result = self.fetch([self.path_for(row)], max_bytes)[0]
        if isinstance(result, ImageError):
            raise result
        return result

    def fetch(self, paths: list[str], max_bytes: int) -> list[bytes | ImageError]:
        """The bytes of many paths (from :meth:`path_for`), in order; an ImageError in place of each failure.

        Object stores and web servers get one ranged read per path (at most ``max_bytes + 1`` bytes), all
        issued at once on async filesystems; local files are read one after another (no latency to hide).
        The caller bounds the memory by the number (and listed sizes) of the paths it passes.
        """
        if self.protocol == "file":
            return [self._read_local_or_error(p, max_bytes) for p in paths]
        if not paths:
            return []
        try:
            results = self.fs.cat_ranges(list(paths), [0] * len(paths), [max_bytes + 1] * len(paths),
                                         on_error="return")
        except Exception as exc:  # noqa: BLE001 - the whole call failed (credentials, endpoint, ...)
            error = ImageError("read_error", f"{type(exc).__name__}: {exc}"[:500])
            return [error] * len(paths)
        out: list[bytes | ImageError] = []
        for path, result in zip(paths, results):
            if isinstance(result, BaseException) and not isinstance(result, FileNotFoundError):
                result = self._read_whole_remote(path, max_bytes, result)  # e.g. a range on a zero-byte object
            out.append(self._checked(path, result, max_bytes))
        return out

    def _checked(self, path: str, result: Any, max_bytes: int) -> bytes | ImageError:
        if isinstance(result, ImageError):
            return result
        if isinstance(result, FileNotFoundError):
            return ImageError("missing", f"no image at {self.protocol}://{path}"[:300])
        if isinstance(result, IsADirectoryError):
            return ImageError("missing", f"{path[:200]} is a directory")
        if isinstance(result, BaseException):
            return ImageError("read_error", f"{type(result).__name__}: {result}"[:500])
        data = bytes(result)
        if len(data) > max_bytes:
            return ImageError("too_large", f"more than max_bytes {max_bytes} bytes")
        return data

    def _read_whole_remote(self, path: str, max_bytes: int, first_error: BaseException) -> Any:
        """After a failed ranged read: the size first, then the whole object when it is small enough."""
        try:
            size = self.fs.size(path)
            if size is not None and size > max_bytes:
                return ImageError("too_large", f"{size} bytes > max_bytes {max_bytes}")
            return self.fs.cat_file(path)
        except FileNotFoundError as exc:
            return exc
        except Exception:  # noqa: BLE001 - report the first failure, the one that matters
            return first_error

    def _read_local_or_error(self, path: str, max_bytes: int) -> bytes | ImageError:
        try:
            return self._read_local(path, max_bytes)
        except ImageError as err:
            return err
        except Exception as exc:  # noqa: BLE001
            return self._checked(path, exc, max_bytes)

    def _read_local(self, path: str, max_bytes: int) -> bytes:
        real = os.path.realpath(path)
        if os.path.commonpath([real, self._real_root]) != self._real_root:
            raise ImageError("path_escape", f"{path[:200]} resolves outside the image root")
        with open(real, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > max_bytes:
                raise ImageError("too_large", f"{size} bytes > max_bytes {max_bytes}")
            data = fh.read(size + 1)  # read(max_bytes + 1) would allocate max_bytes (~150 us)
        if len(data) > max_bytes:
            raise ImageError("too_large", f"more than max_bytes {max_bytes} bytes")
        return data

    # --- listing -------------------------------------------------------------------------------------------

    def listing(self, batch_rows: int = 100_000) -> Iterator[pa.Table]:
        """Every file under the root, as tables of :data:`LISTING_SCHEMA` of up to ``batch_rows`` rows.

        On s3 the listing is streamed page by page (bounded memory whatever the number of objects);
        elsewhere folder by folder (``fs.walk``). A root that does not exist lists nothing.
        """
        root = self.root.rstrip("/") or self.root
        if self.protocol == "s3" and hasattr(self.fs, "_iterdir"):
            infos: Iterator[dict] = self._s3_infos(root)
        else:
            infos = self._walked_infos(root)
        paths, sizes, versions = [], [], []
        for info in infos:
            if info.get("type", "file") != "file":
                continue
            name = info["name"]
            paths.append(name.lstrip("/") if not root.startswith("/") else name)  # memory:// names start with /
            sizes.append(info.get("size"))
            versions.append(_version(info))
            if len(paths) >= batch_rows:
                yield pa.Table.from_arrays([paths, sizes, versions], schema=LISTING_SCHEMA)
                paths, sizes, versions = [], [], []
        if paths:
            yield pa.Table.from_arrays([paths, sizes, versions], schema=LISTING_SCHEMA)

    def _walked_infos(self, root: str) -> Iterator[dict]:
        try:
            for _, _, files in self.fs.walk(root, detail=True):
                yield from files.values()
        except FileNotFoundError:
            return

    def _s3_infos(self, root: str, page: int = 10_000) -> Iterator[dict]:
        """Object infos under ``root`` from s3fs's paged listing, ``page`` objects per round trip to the loop."""
        from fsspec.asyn import sync

        bucket, _, key = root.partition("/")
        prefix = key.rstrip("/") + "/" if key else ""
        stream = self.fs._iterdir(bucket, delimiter="", prefix=prefix)

        async def take() -> tuple[list[dict], bool]:
            items: list[dict] = []
            while len(items) < page:
                try:
                    items.append(await stream.__anext__())
                except StopAsyncIteration:
                    return items, True
            return items, False

        try:
            done = False
            while not done:
                try:
                    items, done = sync(self.fs.loop, take)
                except FileNotFoundError:
                    return
                yield from items
        finally:
            sync(self.fs.loop, stream.aclose)


def _version(info: dict) -> str | None:
    """What changes when a listed object changes: its ETag (object stores), generation, or modification time."""
    for key in _VERSION_KEYS:
        value = info.get(key)
        if value not in (None, ""):
            if key == "mtime" and "ino" in info:  # a local file: a copy that keeps the mtime (cp -p) gets a new inode
                return f"mtime={value!r};ino={info['ino']}"
            return f"{key}={value}"
    return None

