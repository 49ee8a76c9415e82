"""The proxy engine behind :class:`~tessellum.testing.servers.LatencyProxy`.

An asyncio HTTP/1.1 forwarder whose delay and counters live in a small shared buffer, so
the same engine runs in a thread or in a child process
(``python -m tessellum.testing.servers._proxycore UPSTREAM COUNTERS_FILE``). Bodies of
known length move between the sockets with ``os.splice`` on Linux.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import mmap
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

__all__ = ["COUNTERS_SIZE", "Counters", "ProxyEngine"]

_READ = 256 * 1024  # copying relays (chunked bodies, bodies delimited by EOF)
_HEAD_READ = 16 * 1024  # heads: small, so a body behind one stays in the socket for splice
_HEAD_LIMIT = 1 << 20
_PIPE_SIZE = 1 << 20  # Linux's default limit for unprivileged pipes
_SPLICE = hasattr(os, "splice")


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
    """Accept connections on 127.0.0.1 and forward requests to one upstream.

    Sockets are driven directly with the loop's ``sock_*`` calls (no streams), so bodies
    of known length can move with ``os.splice`` from one socket to the other through a
    pipe, never entering Python. A relay that copied every body through Python buffers
    cost ~1.3 ms of CPU per MB on the cores the measured client runs on, which a distant
    server does not; splicing costs the kernel's copy only. Platforms without ``splice``
    copy through Python.
    """

    def __init__(self, upstream_host: str, upstream_port: int, counters: Counters) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.counters = counters
        self._listener: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        """Listen on an ephemeral port; returns it."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(512)
        listener.setblocking(False)
        self._listener = listener
        self._spawn(self._accept(listener))
        return int(listener.getsockname()[1])

    async def shutdown(self) -> None:
        """Stop listening and drop open connections."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            sock, _ = await loop.sock_accept(listener)
            self._spawn(self._handle(_Conn(sock)))

    def _counter(self, slot: int) -> Callable[[int], None]:
        return lambda n: self.counters.add(slot, n)

    async def _handle(self, client: _Conn) -> None:
        upstream: _Conn | None = None
        try:
            while True:
                try:
                    raw = await client.read_until(b"\r\n\r\n")
                except (EOFError, ConnectionError):
                    return  # client closed its keep-alive connection
                request = _Head.parse(raw)
                await asyncio.sleep(self.counters.get(Counters.DELAY_US) / 1e6)
                if upstream is None:
                    upstream = await _Conn.connect(self.upstream_host, self.upstream_port)
                self.counters.add(Counters.REQUESTS, 1)
                self.counters.add(Counters.BYTES_UP, len(raw))
                await upstream.send(raw)
                await _relay_body(client, upstream, request, self._counter(Counters.BYTES_UP))

                response = _Head.parse(await upstream.read_until(b"\r\n\r\n"))
                await client.send(response.raw)
                method = request.start_line.split(" ", 1)[0].upper()
                status = int(response.start_line.split(" ", 2)[1])
                until_eof = False
                if not (method == "HEAD" or status in (204, 304) or 100 <= status < 200):
                    until_eof = await _relay_body(
                        upstream, client, response, self._counter(Counters.BYTES_DOWN)
                    )
                # A body delimited by the upstream closing cannot be followed by another.
                if until_eof or not (request.keeps_alive() and response.keeps_alive()):
                    return
        except (OSError, EOFError, _HeadTooLarge):  # OSError: resets, broken pipes
            return
        finally:
            client.close()
            if upstream is not None:
                upstream.close()


class _HeadTooLarge(Exception):
    pass


class _Conn:
    """A non-blocking socket with a read-ahead buffer, driven by the running loop."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.buf = bytearray()  # received, not yet consumed
        self._pipe: tuple[int, int] | None = None

    @classmethod
    async def connect(cls, host: str, port: int) -> _Conn:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    async def fill(self, size: int = _HEAD_READ) -> None:
        data = await asyncio.get_running_loop().sock_recv(self.sock, size)
        if not data:
            raise EOFError("peer closed")
        self.buf += data

    async def read_until(self, sep: bytes) -> bytes:
        """Bytes up to and including ``sep`` (at most ``_HEAD_LIMIT``)."""
        start = 0
        while (i := self.buf.find(sep, start)) < 0:
            if len(self.buf) > _HEAD_LIMIT:
                raise _HeadTooLarge
            start = max(len(self.buf) - len(sep) + 1, 0)
            await self.fill()
        return self.take(i + len(sep))

    async def read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            await self.fill()
        return self.take(n)

    async def read_some(self) -> bytes:
        """Buffered bytes, or the next received ones; ``b""`` at EOF."""
        if not self.buf:
            data = await asyncio.get_running_loop().sock_recv(self.sock, _READ)
            return data
        return self.take(len(self.buf))

    def take(self, n: int) -> bytes:
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def send(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self.sock, data)

    def pipe(self) -> tuple[int, int]:
        """This connection's splice pipe (read end, write end), made on first use."""
        if self._pipe is None:
            r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            with contextlib.suppress(OSError):  # a bigger pipe moves more per call
                fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
            self._pipe = (r, w)
        return self._pipe

    def close(self) -> None:
        self.sock.close()
        if self._pipe is not None:
            for fd in self._pipe:
                os.close(fd)
            self._pipe = None


async def _relay_body(src: _Conn, dst: _Conn, head: _Head, count: Callable[[int], None]) -> bool:
    """Copy one message body; returns whether the sender's EOF delimited it.

    ``count`` gets the size of every piece before it is written: a client that has the
    whole body sees it counted (counting after the last write raced the client's next
    look at the counters).
    """
    if head.is_chunked():
        await _relay_chunked(src, dst, count)
        return False
    length = head.headers.get("content-length")
    if length is not None:
        await _relay_exactly(src, dst, int(length), count)
        return False
    if not head.start_line.startswith("HTTP/"):
        return False  # a request without length or chunking has no body
    while chunk := await src.read_some():
        count(len(chunk))
        await dst.send(chunk)
    return True


async def _relay_exactly(src: _Conn, dst: _Conn, n: int, count: Callable[[int], None]) -> None:
    """Move ``n`` body bytes: first what ``src`` has buffered, then straight between the
    sockets."""
    if src.buf and n:
        piece = src.take(min(n, len(src.buf)))
        count(len(piece))
        await dst.send(piece)
        n -= len(piece)
    if n and _SPLICE:
        await _splice(src, dst, n, count)
        return
    while n:
        if not src.buf:
            await src.fill(_READ)
        piece = src.take(min(n, len(src.buf)))
        count(len(piece))
        await dst.send(piece)
        n -= len(piece)


async def _splice(src: _Conn, dst: _Conn, n: int, count: Callable[[int], None]) -> None:
    """``n`` bytes from ``src``'s socket to ``dst``'s through ``dst``'s pipe."""
    r, w = dst.pipe()
    src_fd, dst_fd = src.sock.fileno(), dst.sock.fileno()
    flags = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
    while n:
        try:
            got = os.splice(src_fd, w, min(n, _PIPE_SIZE), flags=flags)
        except BlockingIOError:
            await _ready(src_fd, readable=True)
            continue
        if got == 0:
            raise ConnectionError("peer closed mid-body")
        count(got)
        n -= got
        while got:
            try:
                got -= os.splice(r, dst_fd, got, flags=flags)
            except BlockingIOError:
                await _ready(dst_fd, readable=False)


async def _ready(fd: int, *, readable: bool) -> None:
    """Wait until ``fd`` can be read (or written) without blocking."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not fut.done():
            fut.set_result(None)

    if readable:
        loop.add_reader(fd, wake)
    else:
        loop.add_writer(fd, wake)
    try:
        await fut
    finally:
        if readable:
            loop.remove_reader(fd)
        else:
            loop.remove_writer(fd)


async def _relay_chunked(src: _Conn, dst: _Conn, count: Callable[[int], None]) -> None:
    while True:
        size_line = await src.read_until(b"\r\n")
        await dst.send(size_line)
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while True:  # trailers, then the empty line that ends the message
                line = await src.read_until(b"\r\n")
                await dst.send(line)
                if line == b"\r\n":
                    return
        data = await src.read_exactly(size + 2)
        count(size)
        await dst.send(data)


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
