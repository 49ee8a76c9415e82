"""An HTTP/1.1 proxy that adds a fixed delay to every request: a cloud region on localhost."""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import subprocess
import sys
import threading
import time
import urllib.parse

from tessellum.errors import UpstreamError, ValidationError

from ._process import ManagedServer, spawn, stop_process
from ._proxycore import COUNTERS_SIZE, Counters, ProxyEngine

__all__ = ["LatencyProxy"]


class LatencyProxy(ManagedServer):
    """Forward HTTP requests to ``upstream_url``, sleeping ``delay_ms`` before each one.

    The delay is added once per request (not per connection or per chunk), like the
    round trip to a distant server. Keep-alive and sequential/pipelined requests on one
    connection work; bodies stream through (multi-MB 206 responses, chunked encoding),
    on Linux spliced between the sockets without passing through Python, so the proxy
    takes next to no CPU from the client it measures.
    Each client connection gets its own upstream connection, so keep-alive behaviour
    upstream mirrors the client's. ``Host`` is passed through unchanged, so servers that
    build links from it (STAC APIs) point clients back at the proxy.

    By default the proxy runs in a thread of this process (starts in ~1 ms). Use
    ``isolated=True`` to run it in a child process when the client shares this process
    and holds the GIL while doing network I/O (rasterio's ``open`` does: an in-thread
    proxy then deadlocks), or when measuring CPU-bound clients (the proxy's Python code
    would compete with them for the GIL).

    Example:
        >>> with HttpServer(data) as http, LatencyProxy(http.url, delay_ms=20) as proxy:
        ...     httpx.get(f"{proxy.url}/a.tif", headers={"Range": "bytes=0-99"})
        ...     proxy.request_count
        1

    Args:
        upstream_url: ``http://host:port`` of the server to forward to.
        delay_ms: milliseconds added to every request; may be changed while running.
        isolated: run in a child process instead of a thread.
    """

    def __init__(self, upstream_url: str, delay_ms: float = 20.0, *, isolated: bool = False):
        super().__init__()
        parts = urllib.parse.urlsplit(upstream_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValidationError(f"LatencyProxy needs an http:// upstream, got {upstream_url!r}")
        self.upstream_host: str = parts.hostname
        self.upstream_port: int = parts.port or 80
        self.isolated = isolated
        self.port: int = 0
        self._buffer: bytearray | mmap.mmap = bytearray(COUNTERS_SIZE)
        self._counters = Counters(self._buffer)
        self.delay_ms = delay_ms
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._engine: ProxyEngine | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Proxy base URL; paths are the upstream's."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def delay_ms(self) -> float:
        """Delay added to each request, in milliseconds; settable while running."""
        return self._counters.get(Counters.DELAY_US) / 1000.0

    @delay_ms.setter
    def delay_ms(self, value: float) -> None:
        if value < 0:
            raise ValidationError(f"delay_ms must be >= 0, got {value}")
        self._counters.set(Counters.DELAY_US, round(value * 1000))

    @property
    def request_count(self) -> int:
        """Requests forwarded since start or :meth:`reset`."""
        return self._counters.get(Counters.REQUESTS)

    @property
    def bytes_down(self) -> int:
        """Response body bytes sent to clients since start or :meth:`reset`."""
        return self._counters.get(Counters.BYTES_DOWN)

    @property
    def bytes_up(self) -> int:
        """Request bytes (heads and bodies) sent upstream since start or :meth:`reset`."""
        return self._counters.get(Counters.BYTES_UP)

    def reset(self) -> None:
        """Zero the counters (call between requests, not during one)."""
        for slot in (Counters.REQUESTS, Counters.BYTES_DOWN, Counters.BYTES_UP):
            self._counters.set(slot, 0)

    # -- lifecycle -----------------------------------------------------------------------

    def _start(self) -> None:
        if self.isolated:
            self._start_process()
        else:
            self._start_thread()

    def _start_thread(self) -> None:
        loop = asyncio.new_event_loop()
        engine = ProxyEngine(self.upstream_host, self.upstream_port, self._counters)
        ready = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self.port = loop.run_until_complete(engine.start())
            except BaseException as err:
                error.append(err)
                return
            finally:
                ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._loop, self._engine = loop, engine
        self._thread = threading.Thread(target=run, name="tessellum-latency-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        if error:
            raise error[0]

    def _start_process(self) -> None:
        # Counters move to a memory-mapped file the child maps too.
        path = self.tmp_dir / "counters.bin"
        path.write_bytes(bytes(self._buffer))
        with open(path, "r+b") as fh:
            shared = mmap.mmap(fh.fileno(), COUNTERS_SIZE)
        self._counters.release()
        self._buffer, self._counters = shared, Counters(shared)
        log_path = self.tmp_dir / "proxy.log"
        upstream = f"{self.upstream_host}:{self.upstream_port}"
        self._proc = spawn(
            [sys.executable, "-m", "tessellum.testing.servers._proxycore", upstream, path],
            log_path=log_path,
        )
        deadline = time.monotonic() + 30
        while (port := self._counters.get(Counters.PORT)) == 0:
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise UpstreamError(f"latency proxy did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.005)
        self.port = port

    def _stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None
            # Keep the last counters readable after stop, in process memory again.
            local = bytearray(bytes(self._buffer))
            local[8 * Counters.PORT : 8 * Counters.PORT + 8] = bytes(8)
            self._counters.release()
            if isinstance(self._buffer, mmap.mmap):
                self._buffer.close()
            self._buffer, self._counters = local, Counters(local)
        loop, thread, engine = self._loop, self._thread, self._engine
        self._loop = self._thread = self._engine = None
        if loop is None or thread is None or engine is None:
            return
        if not loop.is_closed():
            fut = asyncio.run_coroutine_threadsafe(engine.shutdown(), loop)
            with contextlib.suppress(Exception):
                fut.result(timeout=5)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
