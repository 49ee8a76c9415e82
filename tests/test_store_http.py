"""Reads over real HTTP/1.1 from a local server with injectable faults."""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tessellum.errors import DataFormatError, NotFoundError, ProtocolError, UpstreamError
from tessellum.store import (
    CloudConfig,
    CoalescePolicy,
    IOStats,
    Limiter,
    RetryPolicy,
    coalesce_ranges,
    collect_stats,
    object_size_async,
    open_store,
    open_store_async,
    read_range_async,
    read_ranges,
    read_ranges_async,
)

BLOB = random.Random(2).randbytes(200_000)
FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05)


class FaultServer(ThreadingHTTPServer):
    """Serves BLOB at every path; honours single ranges; faults are queued per path.

    Faults: ``"503"``, ``"429"`` (Retry-After: 1), ``"404"``, ``"403"``, ``"truncate"``
    (Content-Length promised, half sent, connection closed), ``"short"`` (a correct 206
    for half the range), ``"slow"`` (sleep 2 s), ``"full"`` (ignore Range, 200).
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.faults: dict[str, list[str]] = defaultdict(list)
        self.sticky: dict[str, str] = {}
        self.hits: dict[str, int] = defaultdict(int)
        self.queries: list[str] = []
        self.delay = 0.0
        self.active = 0
        self.peak = 0

    def reset(self) -> None:
        with self.lock:
            self.faults.clear()
            self.sticky.clear()
            self.hits.clear()
            self.queries.clear()
            self.delay = 0.0
            self.active = self.peak = 0

    def next_fault(self, path: str) -> str | None:
        with self.lock:
            self.hits[path] += 1
            if self.faults[path]:
                return self.faults[path].pop(0)
            return self.sticky.get(path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultServer

    def log_message(self, *args: object) -> None:
        pass

    def _empty(self, status: int, **headers: str) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k.replace("_", "-"), v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, *, body: bool) -> None:
        srv = self.server
        path, _, query = self.path.partition("?")
        if query:
            srv.queries.append(query)
        with srv.lock:
            srv.active += 1
            srv.peak = max(srv.peak, srv.active)
        try:
            if srv.delay:
                time.sleep(srv.delay)
            self._respond(path, srv.next_fault(path), body)
        finally:
            with srv.lock:
                srv.active -= 1

    def _respond(self, path: str, fault: str | None, body: bool) -> None:
        if fault in ("503", "404", "403"):
            return self._empty(int(fault))
        if fault == "429":
            return self._empty(429, Retry_After="1")
        if fault == "slow":
            time.sleep(2)
        size = len(BLOB)
        m = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        if not body or m is None or fault == "full":
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if body:
                self.wfile.write(BLOB)
            return None
        start, end = int(m[1]), min(int(m[2]), size - 1)
        if start >= size:
            return self._empty(416, Content_Range=f"bytes */{size}")
        if fault == "short":
            end = start + (end - start) // 2
        data = BLOB[start : end + 1]
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if fault == "truncate":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return None
        self.wfile.write(data)
        return None


@pytest.fixture(scope="module")
def server() -> Iterator[FaultServer]:
    srv = FaultServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def srv(server: FaultServer) -> FaultServer:
    server.reset()
    return server


async def test_ranges_over_http(srv: FaultServer) -> None:
    store, path = open_store(f"{srv.url}/data/a.tif")
    rng = random.Random(5)
    starts = [rng.randrange(len(BLOB) - 100) for _ in range(30)]
    ends = [s + rng.randint(1, 100) for s in starts]
    policy = CoalescePolicy(max_gap=1000, max_request=50_000)
    with collect_stats() as stats:
        got = await read_ranges_async(store, path, starts, ends, policy=policy)
    assert [bytes(g) for g in got] == [BLOB[s:e] for s, e in zip(starts, ends, strict=True)]
    assert stats.requests == len(coalesce_ranges(starts, ends, policy)) == srv.hits["/data/a.tif"]
    assert await object_size_async(store, path) == len(BLOB)


async def test_503_twice_then_success(srv: FaultServer) -> None:
    srv.faults["/a.tif"] = ["503", "503"]
    store, path = open_store(f"{srv.url}/a.tif")
    stats = IOStats()
    got = await read_range_async(store, path, 10, 20, retry=FAST, stats=stats)
    assert bytes(got) == BLOB[10:20]
    assert (stats.requests, stats.retries, stats.errors) == (3, 2, 2)
    assert srv.hits["/a.tif"] == 3


async def test_503_forever_gives_upstream_error(srv: FaultServer) -> None:
    srv.sticky["/a.tif"] = "503"
    store, path = open_store(f"{srv.url}/a.tif")
    with pytest.raises(UpstreamError, match=r"\[10, 20\) of .*/a\.tif.*4 attempts.*503") as info:
        await read_range_async(store, path, 10, 20, retry=FAST)
    assert info.value.status == 503 and info.value.url == f"{srv.url}/a.tif"
    assert srv.hits["/a.tif"] == 4


async def test_429_waits_for_retry_after(srv: FaultServer) -> None:
    srv.faults["/a.tif"] = ["429"]
    store, path = open_store(f"{srv.url}/a.tif")
    stats = IOStats()
    t0 = time.perf_counter()
    got = await read_range_async(store, path, 0, 5, retry=FAST, stats=stats)
    elapsed = time.perf_counter() - t0
    assert bytes(got) == BLOB[:5] and stats.retries == 1
    assert 0.9 <= elapsed < 3


async def test_404_is_not_retried(srv: FaultServer) -> None:
    srv.sticky["/missing.tif"] = "404"
    store, path = open_store(f"{srv.url}/missing.tif")
    with pytest.raises(NotFoundError, match=re.escape(f"{srv.url}/missing.tif")) as info:
        await read_range_async(store, path, 0, 5, retry=FAST)
    assert info.value.status == 404
    assert srv.hits["/missing.tif"] == 1


async def test_403_is_a_protocol_error(srv: FaultServer) -> None:
    srv.sticky["/secret.tif"] = "403"
    store, path = open_store(f"{srv.url}/secret.tif")
    with pytest.raises(ProtocolError, match=r"secret\.tif") as info:
        await read_range_async(store, path, 0, 5, retry=FAST)
    assert not isinstance(info.value, UpstreamError) and info.value.status == 403
    assert srv.hits["/secret.tif"] == 1


async def test_truncated_body(srv: FaultServer) -> None:
    srv.sticky["/t.tif"] = "truncate"
    store, path = open_store(f"{srv.url}/t.tif")
    with pytest.raises((UpstreamError, DataFormatError), match=r"\[100, 1100\) of .*/t\.tif"):
        await read_range_async(store, path, 100, 1100, retry=FAST)
    srv.reset()
    srv.faults["/t.tif"] = ["truncate"]  # transient: the retry gets the whole body
    assert bytes(await read_range_async(store, path, 100, 1100, retry=FAST)) == BLOB[100:1100]


async def test_short_response_is_a_data_format_error(srv: FaultServer) -> None:
    srv.sticky["/s.tif"] = "short"
    store, path = open_store(f"{srv.url}/s.tif")
    with pytest.raises(DataFormatError, match=r"\[100, 1100\) of .*/s\.tif") as info:
        await read_range_async(store, path, 100, 1100, retry=FAST)
    assert info.value.url == f"{srv.url}/s.tif"
    assert srv.hits["/s.tif"] == 1


async def test_server_ignoring_range(srv: FaultServer) -> None:
    srv.sticky["/f.tif"] = "full"
    store, path = open_store(f"{srv.url}/f.tif")
    with pytest.raises(ProtocolError, match=r"f\.tif"):
        await read_range_async(store, path, 0, 10, retry=FAST)


async def test_beyond_eof_over_http(srv: FaultServer) -> None:
    store, path = open_store(f"{srv.url}/a.tif")
    n = len(BLOB)
    with pytest.raises(DataFormatError, match=rf"\[{n + 1}, {n + 9}\).*{n} bytes"):
        await read_range_async(store, path, n + 1, n + 9, retry=FAST)
    assert bytes(await read_range_async(store, path, n - 4, n + 9, clip=True)) == BLOB[-4:]


async def test_slow_server_times_out(srv: FaultServer) -> None:
    srv.sticky["/slow.tif"] = "slow"
    cfg = CloudConfig(client_options={"timeout": "300ms"})
    store, path = open_store(f"{srv.url}/slow.tif", cloud_config=cfg)
    t0 = time.perf_counter()
    with pytest.raises(UpstreamError, match=r"slow\.tif.*2 attempts"):
        await read_range_async(
            store, path, 0, 10, retry=RetryPolicy(max_attempts=2, base_delay=0.01)
        )
    assert time.perf_counter() - t0 < 2.5
    assert srv.hits["/slow.tif"] == 2


async def test_settings_set_the_timeout_and_retries(srv: FaultServer) -> None:
    """``request_timeout_s``, ``retries`` and ``retry_backoff_s`` govern range reads that
    are given no policy (they were fixed: 20 s stalls, 4 attempts)."""
    from tessellum.config import settings_override

    srv.sticky["/slow.tif"] = "slow"
    with settings_override(request_timeout_s=0.3, retries=1, retry_backoff_s=0.01):
        store, path = open_store(f"{srv.url}/slow.tif")
        t0 = time.perf_counter()
        with pytest.raises(UpstreamError, match=r"slow\.tif.*2 attempts"):
            await read_range_async(store, path, 0, 10)
        assert time.perf_counter() - t0 < 2.5
    assert srv.hits["/slow.tif"] == 2
    srv.sticky["/a.tif"] = "503"
    with settings_override(retries=0):
        store, path = open_store(f"{srv.url}/a.tif")
        with pytest.raises(UpstreamError, match=r"1 attempt"):
            await read_range_async(store, path, 10, 20)
    assert srv.hits["/a.tif"] == 1


async def test_limiter_bounds_requests_at_the_server(srv: FaultServer) -> None:
    srv.delay = 0.03
    store, path = open_store(f"{srv.url}/a.tif")
    starts = [i * 5000 for i in range(20)]
    limiter = Limiter(3)
    got = await read_ranges_async(
        store, path, starts, lengths=[10] * 20, policy=CoalescePolicy.none(), limiter=limiter
    )
    assert [bytes(g) for g in got] == [BLOB[s : s + 10] for s in starts]
    assert srv.hits["/a.tif"] == 20
    assert 2 <= srv.peak <= 3

    # one limit across paths and concurrent calls
    srv.reset()
    srv.delay = 0.03
    other, opath = open_store(f"{srv.url}/b.tif")
    await asyncio.gather(
        read_ranges_async(
            store, path, starts, lengths=[10] * 20, policy=CoalescePolicy.none(), limiter=limiter
        ),
        read_ranges_async(
            other, opath, starts, lengths=[10] * 20, policy=CoalescePolicy.none(), limiter=limiter
        ),
    )
    assert srv.hits["/a.tif"] == srv.hits["/b.tif"] == 20
    assert 2 <= srv.peak <= 3


async def test_without_a_tight_limit_the_server_sees_more(srv: FaultServer) -> None:
    """Control for the test above: the server can observe concurrency above 3."""
    srv.delay = 0.03
    store, path = open_store(f"{srv.url}/a.tif")
    starts = [i * 5000 for i in range(20)]
    await read_ranges_async(
        store, path, starts, lengths=[10] * 20, policy=CoalescePolicy.none(), limiter=Limiter(20)
    )
    assert srv.peak > 3


def test_limiter_shared_by_sync_and_async_callers(srv: FaultServer) -> None:
    """Sync calls (asyncio.run loops in threads) and one limiter: still at most 2."""
    srv.delay = 0.02
    store, path = open_store(f"{srv.url}/a.tif")
    limiter = Limiter(2)
    starts = [i * 5000 for i in range(10)]
    kw = {"lengths": [10] * 10, "policy": CoalescePolicy.none(), "limiter": limiter}
    threads = [
        threading.Thread(target=read_ranges, args=(store, path, starts), kwargs=kw)
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert srv.hits["/a.tif"] == 30
    assert srv.peak == 2
    assert limiter.in_use == 0


async def test_signed_url_keeps_its_query(srv: FaultServer) -> None:
    class SasSigner:
        async def sign(self, url: str) -> str:
            return f"{url}?sv=2024&sig=abc%2Fdef"

    store, path = await open_store_async(f"{srv.url}/signed/x.tif", signer=SasSigner())
    assert bytes(await read_range_async(store, path, 0, 10)) == BLOB[:10]
    assert srv.queries == ["sv=2024&sig=abc%2Fdef"]
