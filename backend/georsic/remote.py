"""Where an archive's bytes come from: a local file, or a URL read with range requests.

A URL (``https://``, ``s3://``, ``gs://``, ``az://``, any fsspec protocol or chain) is read
through `fsspec <https://filesystem-spec.readthedocs.io>`_, with its usual credentials
(environment, configuration files, or ``storage_options``).  Opening costs one metadata
request (the size, and an ETag where the store gives one) and the header and index come with
at most two range requests, fetched together (:data:`HEAD_BYTES`, :data:`TAIL_BYTES`); tiles
come one request per run of adjacent records, the runs concurrently
(:meth:`RemoteSource.read_ranges`).  The parsing and checksums above this module are the same
for both sources, so a damaged remote archive fails with a local one's message.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import json
import mmap
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from georsic.errors import GeorsicError, InputError

#: First bytes fetched when a remote archive is opened: the prefix and header (a header is
#: a few hundred bytes to a few KiB; a longer one costs one more request).
HEAD_BYTES = 64 * 2**10
#: Last bytes fetched with them: the footer and index (16 bytes a tile: 4,094 tiles fit), or
#: :func:`tail_bytes` of a larger archive; a longer index costs one more request.
TAIL_BYTES = 64 * 2**10
#: Most bytes :func:`tail_bytes` fetches for the index.
MAX_TAIL_BYTES = 8 * 2**20


def tail_bytes(size: int, least: int = TAIL_BYTES) -> int:
    """How many of the last bytes of a ``size``-byte archive to fetch for its index: at least
    ``least``, or 1/128 of the archive up to :data:`MAX_TAIL_BYTES`, which holds the whole
    index of any archive whose tile records average 2 KiB or more."""
    return max(least, min(size // 128, MAX_TAIL_BYTES))

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def is_url(location: object) -> bool:
    """Whether ``location`` is a URL (``scheme://...``, or an fsspec chain ``a::b://...``)
    rather than a local path."""
    return isinstance(location, str) and bool(_SCHEME.match(location) or
                                              ("::" in location and "://" in location))


def shown(url: str) -> str:
    """A URL as messages show it: without its query (a signed URL's signature)."""
    parts = urlsplit(url)
    return url.split("?", 1)[0] if parts.query else url


def url_name(url: str) -> str:
    """The file name of a URL (its last path component), as messages name an archive."""
    path = urlsplit(url.rsplit("::", 1)[-1]).path.rstrip("/")
    return path.rsplit("/", 1)[-1] or shown(url)


def merge_runs(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Byte ranges ``[start, end)`` sorted and merged where they touch or overlap: one
    request per run of adjacent tile records."""
    runs: list[list[int]] = []
    for start, end in sorted(spans):
        if runs and start <= runs[-1][1]:
            runs[-1][1] = max(runs[-1][1], end)
        else:
            runs.append([start, end])
    return [(start, end) for start, end in runs]


@dataclass(frozen=True)
class RemoteLocation:
    """A remote archive as a task carries it to a thread or a Dask worker, which opens it
    itself: the URL, fsspec's storage options, and the identity (size and ETag or
    modification time) the client saw, so that a worker never mixes two versions."""

    url: str
    options: dict = field(default_factory=dict, hash=False, compare=False)
    identity: tuple = ()

    @property
    def key(self) -> str:
        """What identifies the opened archive in a process's cache."""
        return json.dumps([self.url, self.options, list(self.identity)], sort_keys=True,
                          default=repr)


class FileSource:
    """The bytes of a local archive file (a reader's own file position: one per thread)."""

    remote = False

    def __init__(self, path: str | Path) -> None:
        self.location = Path(path)
        self.name = self.location.name
        if not self.location.exists():
            raise InputError(f"archive {self.location} does not exist")
        if not self.location.is_file():
            raise InputError(f"archive {self.location} is not a file")
        try:
            self._file = open(self.location, "rb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise InputError(f"cannot read {self.location}: {exc.strerror}") from None

    @property
    def size(self) -> int:
        return os.fstat(self._file.fileno()).st_size

    @property
    def identity(self) -> tuple:
        stat = os.fstat(self._file.fileno())
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    @property
    def modified(self) -> dt.datetime:
        """When the file was last written (UTC)."""
        return dt.datetime.fromtimestamp(os.fstat(self._file.fileno()).st_mtime,
                                         tz=dt.timezone.utc)

    def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset`` (fewer at the end of the file)."""
        self._file.seek(offset)
        return self._file.read(length)

    def read_ranges(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        return [self.read(start, end - start) for start, end in ranges]

    def prime(self, ranges: list[tuple[int, int]]) -> None:
        """Nothing to fetch ahead in a local file."""

    @contextlib.contextmanager
    def whole(self) -> Iterator[bytes | mmap.mmap]:
        """The whole file, mapped (a recovering reader scans it)."""
        if self.size == 0:
            yield b""
            return
        with mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            yield data

    def close(self) -> None:
        self._file.close()


class RemoteSource:
    """The bytes of an archive at a URL, read with range requests through fsspec.

    Thread-safe: requests hold no file position, so the threads of a process share one.
    Bytes fetched ahead (:meth:`prime`) serve the reads they contain.
    """

    remote = True

    def __init__(self, url: str, storage_options: dict | None = None) -> None:
        self.location = url
        self.name = url_name(url)
        self.options = dict(storage_options or {})
        self._spans: list[tuple[int, bytes]] = []
        self._lock = threading.Lock()
        try:
            import fsspec
        except ImportError:
            raise InputError(f"reading {shown(url)} needs fsspec: pip install "
                             "'georsic[remote]'") from None
        self._fs, self._path = self._call(lambda: fsspec.core.url_to_fs(url, **self.options))
        info = self._call(lambda: self._fs.info(self._path))
        if info.get("type") == "directory":
            raise InputError(f"archive {shown(url)} is not a file")
        if info.get("size") is None:
            raise InputError(f"cannot read {shown(url)}: the server does not give its size")
        self.size = int(info["size"])
        version = next((info[k] for k in ("ETag", "etag", "generation", "version_id",
                                          "Last-Modified", "LastModified", "last_modified",
                                          "mtime", "created") if info.get(k)), None)
        self.identity = (self.size, str(version) if version is not None else None)
        self.modified = _modified(info)

    def _call(self, fn):
        """``fn()``, its failures (a missing object, no permission, a network or a missing
        fsspec backend) as one-line :class:`InputError`\\ s naming the URL."""
        try:
            return fn()
        except GeorsicError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the store's client raises
            raise self._failure(exc) from None

    def _failure(self, exc: BaseException) -> InputError:
        cause, status = exc.__cause__, getattr(exc.__cause__, "status", None)
        unreachable = isinstance(cause, (OSError, TimeoutError)) and \
            not isinstance(cause, FileNotFoundError)
        if isinstance(exc, FileNotFoundError) and (unreachable or status not in (None, 404, 410)):
            exc = cause  # fsspec's HTTP "not found" for a server unreachable or refusing
        if isinstance(exc, FileNotFoundError):
            return InputError(f"archive {shown(self.location)} does not exist")
        if isinstance(exc, PermissionError):
            return InputError(f"cannot read {shown(self.location)}: permission denied")
        text = " ".join(str(exc).split())[:200] or type(exc).__name__
        return InputError(f"cannot read {shown(self.location)}: {text}")

    def _cached(self, start: int, end: int) -> bytes | None:
        for offset, data in self._spans:
            if offset <= start and end <= offset + len(data):
                return data[start - offset:end - offset]
        return None

    def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset`` (fewer at the end of the object)."""
        return self.read_ranges([(offset, offset + length)])[0]

    def read_ranges(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """The bytes of each ``[start, end)`` (clipped to the object, as a file read is): one
        request each, all of them at once (fsspec ``cat_ranges``), none for bytes
        :meth:`prime` fetched."""
        clipped = [(min(max(start, 0), self.size), min(max(end, 0), self.size))
                   for start, end in ranges]
        out: list[bytes | None] = [b"" if start >= end else self._cached(start, end)
                                   for start, end in clipped]
        todo = [i for i, data in enumerate(out) if data is None]
        if todo:
            starts, ends = [clipped[i][0] for i in todo], [clipped[i][1] for i in todo]
            blobs = self._call(lambda: self._fs.cat_ranges([self._path] * len(todo), starts,
                                                           ends, on_error="return"))
            for i, start, end, blob in zip(todo, starts, ends, blobs, strict=True):
                out[i] = self._checked(blob, start, end)
        return out  # type: ignore[return-value]

    def _checked(self, blob, start: int, end: int) -> bytes:
        """One range's answer: an error raised as one line; the whole object (a server that
        ignores ranges) cut to the range; any other length refused."""
        if isinstance(blob, BaseException):
            raise self._failure(blob)
        if len(blob) == end - start:
            return bytes(blob)
        if len(blob) == self.size:
            return bytes(blob[start:end])
        raise InputError(f"cannot read {shown(self.location)}: asked for bytes {start}-{end - 1}"
                         f", got {len(blob)} bytes; the server must support range requests "
                         "(or the object changed while it was read)")

    def prime(self, ranges: list[tuple[int, int]]) -> None:
        """Fetch ``ranges`` now (merged where they touch, all at once), so that the reads
        they contain need no request."""
        runs = merge_runs([(max(s, 0), min(e, self.size)) for s, e in ranges if s < self.size])
        blobs = self.read_ranges(runs)
        with self._lock:
            self._spans.extend((start, blob) for (start, _), blob in zip(runs, blobs,
                                                                         strict=True))

    @contextlib.contextmanager
    def whole(self) -> Iterator[bytes]:
        """The whole object, in one request (a recovering reader scans it)."""
        yield self.read(0, self.size)

    def close(self) -> None:
        with self._lock:
            self._spans.clear()


def _modified(info: dict) -> dt.datetime | None:
    """When a remote object was last written, from what its store's ``info`` says (an HTTP
    Last-Modified header, an object store's LastModified or mtime), or None."""
    for key in ("Last-Modified", "LastModified", "last_modified", "mtime", "updated"):
        value = info.get(key)
        try:
            if isinstance(value, dt.datetime):
                return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
            if isinstance(value, (int, float)):
                return dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)
            if isinstance(value, str) and value:
                try:
                    return email.utils.parsedate_to_datetime(value)
                except (TypeError, ValueError):
                    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
                    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
        except (ValueError, OverflowError, OSError):
            continue
    return None


def open_source(location: str | Path,
                storage_options: dict | None = None) -> FileSource | RemoteSource:
    """The byte source of an archive at a local path or a URL."""
    if isinstance(location, RemoteLocation):
        return RemoteSource(location.url, location.options)
    if is_url(location):
        return RemoteSource(str(location), storage_options)
    return FileSource(location)
