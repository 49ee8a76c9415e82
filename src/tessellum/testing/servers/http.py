"""A read-only static HTTP server with byte ranges: nginx when installed, Python otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tessellum.errors import ValidationError

from ._process import ManagedServer, find_executable, free_port, spawn, stop_process, wait_tcp
from ._pyhttp import PythonRangeServer

__all__ = ["HttpServer", "RequestRecord", "find_nginx"]

_NGINX_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin")

# One JSON object per request; $http_range is "" when the header is absent.
_LOG_FORMAT = (
    '{"method":"$request_method","path":"$uri","range":"$http_range",'
    '"status":$status,"bytes":$body_bytes_sent,"time":$msec}'
)

_NGINX_CONF = """\
{user}
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    types {{
        image/tiff tif tiff;
        application/json json geojson;
        application/vnd.apache.parquet parquet;
        text/plain txt;
    }}
    default_type application/octet-stream;
    log_format tessellum escape=json '{log_format}';
    access_log {tmp}/access.log tessellum;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 120s;
    keepalive_requests 100000;
    max_ranges 1000;
    server_tokens off;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{
            limit_except GET {{ deny all; }}
        }}
    }}
}}
"""


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the server logged it."""

    method: str
    """HTTP method (``GET``, ``HEAD``)."""
    path: str
    """Decoded URL path, without the query string."""
    range: str | None
    """Raw ``Range`` header, ``None`` when absent."""
    status: int
    """Response status code."""
    bytes_sent: int
    """Body bytes sent (headers excluded)."""
    time: float
    """Unix time the request finished."""


def find_nginx() -> Path | None:
    """Locate the nginx binary (PATH, then the usual sbin folders)."""
    return find_executable("nginx", _NGINX_DIRS)


class HttpServer(ManagedServer):
    """Serve ``root_dir`` read-only over HTTP/1.1 with Range, multi-range and keep-alive.

    Uses nginx when installed (``backend == "nginx"``), else a threaded Python server with
    the same behaviour and log API (``backend == "python"``).

    Example:
        >>> with HttpServer(tmp_path) as http:
        ...     httpx.get(f"{http.url}/a.bin", headers={"Range": "bytes=0-9"})
        ...     http.requests()[-1].range
        'bytes=0-9'

    Args:
        root_dir: directory to serve.
        backend: ``"auto"`` (nginx if found), ``"nginx"`` or ``"python"``.
    """

    def __init__(
        self, root_dir: str | os.PathLike[str], backend: Literal["auto", "nginx", "python"] = "auto"
    ) -> None:
        super().__init__()
        self.root_dir = Path(root_dir).resolve()
        if not self.root_dir.is_dir():
            raise ValidationError(f"HttpServer root is not a directory: {self.root_dir}")
        nginx = find_nginx()
        if backend == "nginx" and nginx is None:
            from ._process import ServerUnavailable

            raise ServerUnavailable("nginx not installed: run scripts/setup-system.sh")
        self._nginx = nginx if backend in ("auto", "nginx") else None
        self.backend: Literal["nginx", "python"] = "nginx" if self._nginx else "python"
        """Which implementation serves requests."""
        self.port: int = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._py: PythonRangeServer | None = None
        self._records: list[RequestRecord] = []
        self._records_lock = threading.Lock()

    @property
    def url(self) -> str:
        """Base URL, ``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    def url_for(self, relpath: str | os.PathLike[str]) -> str:
        """URL of a file given by its path relative to ``root_dir``."""
        return f"{self.url}/{Path(relpath).as_posix().lstrip('/')}"

    # -- request log ---------------------------------------------------------------------

    def requests(self, settle: float = 0.005) -> list[RequestRecord]:
        """Requests served since start or the last :meth:`reset_log`, oldest first.

        A server writes its log line just after the last body byte leaves, so a client can
        see its response a moment before the line exists; this waits until the log has
        not grown for ``settle`` seconds (at most 0.5 s).
        """
        deadline = time.monotonic() + 0.5
        previous = self._read_records()
        while time.monotonic() < deadline:
            time.sleep(settle)
            current = self._read_records()
            if len(current) == len(previous):
                return current
            previous = current
        return previous

    def reset_log(self) -> None:
        """Forget all logged requests (e.g. at the start of a test)."""
        if self.backend == "nginx":
            self.requests()  # let in-flight lines land before truncating
            log = self.tmp_dir / "access.log"
            if log.exists():
                # nginx opened the log with O_APPEND, so truncating in place is safe.
                os.truncate(log, 0)
        else:
            with self._records_lock:
                self._records.clear()

    def _read_records(self) -> list[RequestRecord]:
        if self.backend == "python":
            with self._records_lock:
                return list(self._records)
        log = self.tmp_dir / "access.log"
        if not log.exists():
            return []
        records = []
        for line in log.read_text().splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            records.append(
                RequestRecord(
                    method=row["method"],
                    path=row["path"],
                    range=row["range"] or None,
                    status=int(row["status"]),
                    bytes_sent=int(row["bytes"]),
                    time=float(row["time"]),
                )
            )
        return records

    def _append(
        self, method: str, path: str, rng: str | None, status: int, sent: int, t: float
    ) -> None:
        with self._records_lock:
            self._records.append(RequestRecord(method, path, rng, status, sent, t))

    # -- lifecycle -----------------------------------------------------------------------

    def _start(self) -> None:
        if self.backend == "python":
            self._py = PythonRangeServer(self.root_dir, self._append)
            self.port = self._py.port
            return
        assert self._nginx is not None
        tmp = self.tmp_dir
        self.port = free_port()
        # As root the workers would drop to nobody and could not read private data dirs.
        user = "user root;" if os.geteuid() == 0 else ""
        conf = _NGINX_CONF.format(
            user=user, tmp=tmp, port=self.port, root=self.root_dir, log_format=_LOG_FORMAT
        )
        (tmp / "nginx.conf").write_text(conf)
        (tmp / "access.log").write_text("")
        log_path = tmp / "stdout.log"
        self._proc = spawn(
            [self._nginx, "-p", tmp, "-c", tmp / "nginx.conf", "-e", tmp / "error.log"],
            log_path=log_path,
        )
        # nginx writes its pid file only after binding: once it exists the port is ours,
        # not a stranger's that won the race for it.
        pid_file = tmp / "nginx.pid"
        deadline = time.monotonic() + 10
        while not pid_file.exists() and self._proc.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.005)
        wait_tcp("127.0.0.1", self.port, timeout=10, proc=self._proc, log_path=tmp / "error.log")

    def _stop(self) -> None:
        if self._py is not None:
            self._py.close()
            self._py = None
        # SIGTERM = fast shutdown for nginx; the master reaps its worker.
        stop_process(self._proc)
        self._proc = None
