"""Pure-Python fallback for :class:`~tessellum.testing.servers.HttpServer` (no nginx).

A threaded HTTP/1.1 server with keep-alive that serves a directory read-only and honours
single and multiple byte ranges like nginx does. Slower than nginx, same behaviour.
"""

from __future__ import annotations

import contextlib
import mimetypes
import posixpath
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO

from ._ranges import build_multipart, parse_range_header

__all__ = ["PythonRangeServer"]

# (method, path, range header, status, bytes sent, unix time)
LogFn = Callable[[str, str, str | None, int, int, float], None]
_CHUNK = 1 << 20


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: connections persist unless told otherwise
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle + delayed ACK
    # add ~40 ms to every keep-alive response.
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def log_message(self, format: str, *args: object) -> None:  # silence stderr
        pass

    def _resolve(self) -> Path | None:
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        norm = posixpath.normpath(path).lstrip("/")
        if norm.startswith("..") or "/../" in f"/{norm}/":
            return None
        target = self.server.root / norm
        return target if target.is_file() else None

    def _serve(self, *, body: bool) -> None:
        range_header = self.headers.get("Range")
        target = self._resolve()
        if target is None:
            self._send_simple(404, b"not found\n", range_header, body=body)
            return
        size = target.stat().st_size
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        ranges = parse_range_header(range_header, size) if range_header else None
        if ranges is not None and not ranges:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self._log(range_header, 416, 0)
            self.end_headers()
            return
        with open(target, "rb") as fh:
            if ranges is None:
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(size))
                self.send_header("Accept-Ranges", "bytes")
                self._log(range_header, 200, size if body else 0)
                self.end_headers()
                if body:
                    self._copy(fh, 0, size)
                return
            if len(ranges) == 1:
                first, last = ranges[0]
                self.send_response(206)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
                self.send_header("Content-Length", str(last - first + 1))
                self.send_header("Accept-Ranges", "bytes")
                self._log(range_header, 206, last - first + 1 if body else 0)
                self.end_headers()
                if body:
                    self._copy(fh, first, last - first + 1)
                return
            data = fh.read()
        boundary = uuid.uuid4().hex
        payload = build_multipart(data, ranges, size=size, content_type=ctype, boundary=boundary)
        self.send_response(206)
        self.send_header("Content-Type", f"multipart/byteranges; boundary={boundary}")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Accept-Ranges", "bytes")
        self._log(range_header, 206, len(payload) if body else 0)
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def _copy(self, fh: BinaryIO, offset: int, length: int) -> int:
        fh.seek(offset)
        sent = 0
        while sent < length:
            chunk = fh.read(min(_CHUNK, length - sent))
            if not chunk:
                break
            self.wfile.write(chunk)
            sent += len(chunk)
        return sent

    def _send_simple(self, status: int, payload: bytes, range_header: str | None, *, body: bool):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self._log(range_header, status, len(payload) if body else 0)
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def _log(self, range_header: str | None, status: int, sent: int) -> None:
        # Logged before the body goes out (with the planned size), so the record exists
        # by the time the client has its response: tests can count requests at once.
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        self.server.log(self.command, path, range_header, status, sent, time.time())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, root: Path, log: LogFn) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.log = log
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    def process_request(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:  # type: ignore[no-untyped-def]
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake handler threads blocked on idle keep-alive connections."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class PythonRangeServer:
    """A threaded HTTP/1.1 range server bound to 127.0.0.1 on an ephemeral port."""

    def __init__(self, root: Path, log: LogFn) -> None:
        self._server = _Server(root, log)
        self.port: int = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"tessellum-http-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving, close idle connections and the listening socket."""
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join(timeout=5)
