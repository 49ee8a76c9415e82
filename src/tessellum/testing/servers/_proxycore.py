"""The proxy engine behind :class:`~tessellum.testing.servers.LatencyProxy`.

An asyncio HTTP/1.1 forwarder whose delay and counters live in a small shared buffer, so
the same engine runs in a thread or in a child process
(``python -m tessellum.testing.servers._proxycore UPSTREAM COUNTERS_FILE``).
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["COUNTERS_SIZE", "Counters", "ProxyEngine"]

_READ = 256 * 1024
_HEAD_LIMIT = 1 << 20


class Counters:
    """Delay and statistics as int64 slots of a buffer that a child process can map too.

    One writer per slot at a time (aligned 8-byte stores are atomic on the platforms we
    run on), so no lock is needed.
    """

    DELAY_US, REQUESTS, BYTES_DOWN, BYTES_UP, PORT = range(5)

    def __init__(self, buffer: bytearray | mmap.mmap) -> None:
        self._buffer = buffer
        self._v = memoryview(buffer).cast("q")

    def get(self, slot: int) -> int:
        return int(self._v[slot])

    def set(self, slot: int, value: int) -> None:
        self._v[slot] = value

    def add(self, slot: int, value: int) -> None:
        self._v[slot] += value

    def release(self) -> None:
        self._v.release()


COUNTERS_SIZE = 8 * 8


@dataclass(slots=True)
class _Head:
    """A parsed request or response head (start line + headers), kept as raw bytes too."""

    raw: bytes
    start_line: str
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ","

    @classmethod
    def parse(cls, raw: bytes) -> _Head:
        lines = raw.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]},{value.strip()}" if key in headers else value.strip()
        return cls(raw, lines[0], headers)

    def keeps_alive(self) -> bool:
        return "close" not in self.headers.get("connection", "").lower()

    def is_chunked(self) -> bool:
        return "chunked" in self.headers.get("transfer-encoding", "").lower()


class ProxyEngine:
    """Accept connections on 127.0.0.1 and forward requests to one upstream."""

    def __init__(self, upstream_host: str, upstream_port: int, counters: Counters) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.counters = counters
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        """Listen on an ephemeral port; returns it."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, limit=_HEAD_LIMIT)
        return int(self._server.sockets[0].getsockname()[1])

    async def shutdown(self) -> None:
        """Stop listening and drop open connections."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def _counter(self, slot: int) -> Callable[[int], None]:
        return lambda n: self.counters.add(slot, n)

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                try:
                    raw = await creader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return  # client closed its keep-alive connection
                request = _Head.parse(raw)
                await asyncio.sleep(self.counters.get(Counters.DELAY_US) / 1e6)
                if upstream is None:
                    upstream = await asyncio.open_connection(
                        self.upstream_host, self.upstream_port, limit=_HEAD_LIMIT
                    )
                ureader, uwriter = upstream
                self.counters.add(Counters.REQUESTS, 1)
                uwriter.write(raw)
                self.counters.add(Counters.BYTES_UP, len(raw))
                await _relay_body(creader, uwriter, request, self._counter(Counters.BYTES_UP))
                await uwriter.drain()

                response = _Head.parse(await ureader.readuntil(b"\r\n\r\n"))
                cwriter.write(response.raw)
                method = request.start_line.split(" ", 1)[0].upper()
                status = int(response.start_line.split(" ", 2)[1])
                until_eof = False
                if not (method == "HEAD" or status in (204, 304) or 100 <= status < 200):
                    until_eof = await _relay_body(
                        ureader, cwriter, response, self._counter(Counters.BYTES_DOWN)
                    )
                await cwriter.drain()
                # A body delimited by the upstream closing cannot be followed by another.
                if until_eof or not (request.keeps_alive() and response.keeps_alive()):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        finally:
            self._tasks.discard(task)
            for writer in (cwriter, upstream[1] if upstream else None):
                if writer is not None:
                    writer.close()
                    with contextlib.suppress(Exception):
                        await writer.wait_closed()


async def _relay_body(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    head: _Head,
    count: Callable[[int], None],
) -> bool:
    """Copy one message body; returns whether the sender's EOF delimited it.

    ``count`` gets the size of every piece before it is written: a client that has the
    whole body sees it counted (counting after the last write raced the client's next
    look at the counters).
    """
    if head.is_chunked():
        await _relay_chunked(reader, writer, count)
        return False
    length = head.headers.get("content-length")
    if length is not None:
        remaining = int(length)
        while remaining:
            chunk = await reader.read(min(_READ, remaining))
            if not chunk:
                raise ConnectionError("peer closed mid-body")
            count(len(chunk))
            writer.write(chunk)
            remaining -= len(chunk)
            await writer.drain()
        return False
    if not head.start_line.startswith("HTTP/"):
        return False  # a request without length or chunking has no body
    while chunk := await reader.read(_READ):
        count(len(chunk))
        writer.write(chunk)
        await writer.drain()
    return True


async def _relay_chunked(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: Callable[[int], None]
) -> None:
    while True:
        size_line = await reader.readuntil(b"\r\n")
        writer.write(size_line)
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while True:  # trailers, then the empty line that ends the message
                line = await reader.readuntil(b"\r\n")
                writer.write(line)
                if line == b"\r\n":
                    return
        data = await reader.readexactly(size + 2)
        count(size)
        writer.write(data)
        await writer.drain()


def _child_main(upstream: str, counters_path: str) -> None:
    """Run the engine until SIGTERM, with counters in a memory-mapped file."""
    host, _, port = upstream.rpartition(":")
    with open(counters_path, "r+b") as fh:
        counters = Counters(mmap.mmap(fh.fileno(), COUNTERS_SIZE))
    engine = ProxyEngine(host, int(port), counters)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        counters.set(Counters.PORT, await engine.start())  # the parent polls for it
        await stop.wait()
        await engine.shutdown()

    asyncio.run(serve())


if __name__ == "__main__":
    _child_main(sys.argv[1], sys.argv[2])
