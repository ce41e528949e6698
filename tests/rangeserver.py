"""A real HTTP server for the remote-archive tests: files of one folder on the loopback
address, with single-range requests (``Range: bytes=a-b``, ``a-``, ``-n``), counting every
request it answers."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    range: str | None  # the Range header as sent, None for a whole-file request


class RangeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, folder: Path, ranges: bool = True) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.folder = Path(folder)
        self.ranges = ranges  # False: answer every GET with the whole file (a bad server)
        self.log: list[Request] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def requests(self, name: str | None = None, method: str | None = None) -> list[Request]:
        """The requests answered so far (for file ``name``, of ``method``)."""
        with self.lock:
            return [r for r in self.log if (name is None or r.path == f"/{name}")
                    and (method is None or r.method == method)]

    def reset(self) -> None:
        with self.lock:
            self.log.clear()


class _Handler(BaseHTTPRequestHandler):
    timeout = 10  # a stuck client cannot hold a handler thread past the test

    def log_message(self, format, *args) -> None:  # noqa: A002 - quiet
        pass

    def _file(self) -> bytes | None:
        path = (self.server.folder / self.path.lstrip("/").split("?")[0]).resolve()
        if self.server.folder.resolve() not in path.parents or not path.is_file():
            self.send_error(404)
            return None
        return path.read_bytes()

    def _record(self) -> None:
        with self.server.lock:
            self.server.log.append(Request(self.command, self.path.split("?")[0],
                                           self.headers.get("Range")))

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
        self._record()
        data = self._file()
        if data is None:
            return
        self.send_response(200)
        self._headers(len(data))
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        self._record()
        data = self._file()
        if data is None:
            return
        wanted = self.headers.get("Range")
        match = _RANGE.match(wanted or "") if self.server.ranges else None
        if not match:
            self.send_response(200)
            self._headers(len(data))
            self.end_headers()
            self.wfile.write(data)
            return
        first, last = match.groups()
        if first:
            start, end = int(first), min(int(last) + 1 if last else len(data), len(data))
        else:
            start, end = max(len(data) - int(last), 0), len(data)
        if start >= len(data) or start >= end:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206)
        self._headers(end - start)
        self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        self.end_headers()
        self.wfile.write(data[start:end])

    def _headers(self, length: int) -> None:
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")


@contextmanager
def range_server(folder: Path, ranges: bool = True) -> Iterator[RangeServer]:
    """A :class:`RangeServer` of ``folder`` running in a thread, shut down on exit."""
    server = RangeServer(folder, ranges)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
