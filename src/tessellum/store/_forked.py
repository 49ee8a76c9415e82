"""Stores for a process forked from one whose obstore runtime was running.

obstore's tokio runtime does not survive ``fork()`` (its worker threads are not copied;
a child that uses it hangs). A forked child — a ``DataLoader`` worker under Linux's
default start method — reads ``http(s)://`` objects and local files through these
stores instead: blocking reads (httpx, ``os.pread``) on a small thread pool of the
child, behind the same :class:`~tessellum.store.RangeStore` methods, so retries,
limits, statistics and the short-response checks stay those of :mod:`._read`.
Cloud schemes (``s3``, ``gs``, ``az``) still need ``spawn`` or ``forkserver`` workers.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

__all__ = ["ForkedHTTPStore", "ForkedLocalStore"]

_IO_THREADS = 8
_pool: ThreadPoolExecutor | None = None
_clients: dict[tuple[tuple[str, Any], ...], Any] = {}
_lock = threading.Lock()


def _forget_after_fork() -> None:
    # a child forked again has none of these threads or connections
    global _pool, _clients, _lock
    _pool, _clients, _lock = None, {}, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def _io_pool() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_IO_THREADS, thread_name_prefix="tessellum-forked-io")
        return _pool


def _http_client(options: tuple[tuple[str, Any], ...]) -> Any:
    """One connection-pooling client per (forked) process and client options."""
    import httpx

    with _lock:
        client = _clients.get(options)
        if client is None:
            opts = dict(options)
            timeout = httpx.Timeout(
                _seconds(opts.get("timeout"), 60.0),
                connect=_seconds(opts.get("connect_timeout"), 5.0),
                read=_seconds(opts.get("read_timeout"), 20.0),
            )
            headers = {"User-Agent": str(opts["user_agent"])} if "user_agent" in opts else None
            client = _clients[options] = httpx.Client(
                timeout=timeout,
                headers=headers,
                verify=str(opts.get("allow_invalid_certificates", "")).lower() not in _TRUE,
                proxy=opts.get("proxy_url"),
                limits=httpx.Limits(max_connections=_IO_THREADS),
                follow_redirects=True,
            )
        return client


_TRUE = ("1", "true", "yes", "on")


def _seconds(value: Any, default: float) -> float:
    """obstore durations ("5s", "250ms", a timedelta, a number of seconds) in seconds."""
    if value is None:
        return default
    if hasattr(value, "total_seconds"):
        return float(value.total_seconds())
    text = str(value).strip().lower()
    if text.endswith("ms"):
        return float(text[:-2]) / 1000
    if text.endswith("s"):
        return float(text[:-1])
    if text.endswith("m"):
        return float(text[:-1]) * 60
    return float(text)


async def _blocking(fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(_io_pool(), fn, *args)


@dataclass(frozen=True)
class _Result:
    """A ranged GET's answer (obstore ``GetResult``'s three members that tessellum reads)."""

    meta: Mapping[str, Any]
    range: tuple[int, int]
    body: bytes

    async def bytes_async(self) -> bytes:
        return self.body


class ForkedStoreError(OSError):
    """A failed request; the message carries the HTTP status like obstore's do."""


class ForkedHTTPStore:
    """``http(s)://`` objects under ``root`` (an origin, or a whole signed URL), with
    obstore's client options that apply to plain HTTP (``user_agent``, the timeouts,
    ``allow_invalid_certificates``, ``proxy_url``)."""

    def __init__(self, root: str, client_options: Mapping[str, Any] | None = None) -> None:
        self.url = root.rstrip("/")
        self._options = tuple(sorted((client_options or {}).items()))

    def url_of(self, path: str) -> str:
        """The object's URL (``path`` is unquoted, as :func:`resolve_url` returns it)."""
        return f"{self.url}/{quote(path, safe='/:@!$&()*+,;=~')}" if path else self.url

    async def get_async(self, path: str, *, options: Mapping[str, Any] | None = None) -> _Result:
        start, end = (options or {})["range"]
        url = self.url_of(path)
        resp = await _blocking(
            lambda: _http_client(self._options).get(
                url, headers={"Range": f"bytes={start}-{end - 1}"}
            )
        )
        _raise_for_status(resp, url)
        if resp.status_code == 206:
            first, last, size = _content_range(resp.headers.get("content-range", ""), url)
            return _Result({"size": size}, (first, last + 1), resp.content)
        body = resp.content  # 200: the server ignored the range
        return _Result({"size": len(body)}, (start, min(end, len(body))), body[start:end])

    async def head_async(self, path: str) -> Mapping[str, Any]:
        url = self.url_of(path)
        resp = await _blocking(lambda: _http_client(self._options).head(url))
        _raise_for_status(resp, url)
        if "content-length" in resp.headers:
            return {"size": int(resp.headers["content-length"])}
        # no length on HEAD (some servers): the total of a one-byte range
        return {"size": (await self.get_async(path, options={"range": (0, 1)})).meta["size"]}


class ForkedLocalStore:
    """Local files (absolute paths)."""

    url = "file://"

    def url_of(self, path: str) -> str:
        return f"file://{path}"

    async def get_async(self, path: str, *, options: Mapping[str, Any] | None = None) -> _Result:
        start, end = (options or {})["range"]

        def read() -> _Result:
            fd = os.open(path, os.O_RDONLY)
            try:
                size = os.fstat(fd).st_size
                if start >= size > 0 or (size == 0 and start > 0):
                    raise ForkedStoreError(f"{path}: range not satisfiable (status code: 416)")
                data = os.pread(fd, max(min(end, size) - start, 0), start)
            finally:
                os.close(fd)
            return _Result({"size": size}, (start, start + len(data)), data)

        return await _blocking(read)

    async def head_async(self, path: str) -> Mapping[str, Any]:
        return {"size": (await _blocking(os.stat, path)).st_size}


def _raise_for_status(resp: Any, url: str) -> None:
    if resp.status_code >= 400:
        raise ForkedStoreError(
            f"GET {url}: HTTP status code: {resp.status_code} {resp.reason_phrase}"
        )


def _content_range(value: str, url: str) -> tuple[int, int, int]:
    """``bytes first-last/size`` -> ``(first, last, size)``."""
    try:
        unit, _, rest = value.partition(" ")
        span, _, size = rest.partition("/")
        first, _, last = span.partition("-")
        if unit.lower() != "bytes":
            raise ValueError(unit)
        return int(first), int(last), int(size)
    except ValueError:
        raise ForkedStoreError(f"GET {url}: bad Content-Range {value!r}") from None
