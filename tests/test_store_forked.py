"""Reading in a process forked after obstore's runtime started (DataLoader workers under
the default 'fork' start method): http(s) and local files through the fork-safe stores,
other schemes a clear error."""

from __future__ import annotations

import multiprocessing as mp
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from tessellum.errors import ConfigurationError, NotFoundError
from tessellum.store import RetryPolicy, object_size, open_store, read_range
from tessellum.store._forked import ForkedHTTPStore, ForkedLocalStore
from tessellum.testing.servers import HttpServer

BLOB = np.random.default_rng(3).integers(0, 256, 300_000, dtype=np.uint8).tobytes()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HttpServer, Path]]:
    root = tmp_path_factory.mktemp("forked")
    (root / "blob.bin").write_bytes(BLOB)
    with HttpServer(root) as http:
        yield http, root


def _in_forked_child(fn: Any, *args: Any) -> Any:
    read_range(*open_store(str(Path(__file__))), 0, 10)  # obstore is live in this process
    with mp.get_context("fork").Pool(1) as pool:
        return pool.apply_async(fn, args).get(timeout=60)


def _child_reads(url: str, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    store, key = open_store(url)
    out["http_store"] = type(store).__name__
    out["http"] = bytes(read_range(store, key, 1000, 201_000))
    out["http_size"] = object_size(store, key)
    out["tail"] = bytes(read_range(store, key, 299_990, 300_100, clip=True))
    missing, mkey = open_store(url.replace("blob.bin", "nope.bin"))
    try:
        read_range(missing, mkey, 0, 10, retry=RetryPolicy(max_attempts=1))
    except NotFoundError as exc:
        out["missing"] = str(exc)
    local, lkey = open_store(path)
    out["local"] = bytes(read_range(local, lkey, 5, 70_005))
    try:
        open_store("s3://bucket/key.tif")
    except ConfigurationError as exc:
        out["s3"] = str(exc)
    return out


def test_a_forked_child_reads_http_and_files_and_names_what_it_cannot(served):
    http, root = served
    got = _in_forked_child(_child_reads, f"{http.url}/blob.bin", str(root / "blob.bin"))
    assert got["http_store"] == "ForkedHTTPStore"
    assert got["http"] == BLOB[1000:201_000] and got["http_size"] == len(BLOB)
    assert got["tail"] == BLOB[299_990:]
    assert "not found" in got["missing"] and "nope.bin" in got["missing"]
    assert got["local"] == BLOB[5:70_005]
    assert "spawn" in got["s3"] and "s3://" in got["s3"]


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 to every other request and ignores Range (a plain 200)."""

    protocol_version = "HTTP/1.1"
    calls = 0
    agents: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).calls += 1
        type(self).agents.append(self.headers.get("User-Agent", ""))
        if type(self).calls % 2:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(BLOB)))
        self.end_headers()
        self.wfile.write(BLOB)

    def log_message(self, *args: Any) -> None:
        pass


def test_the_http_store_retries_and_slices_a_server_that_ignores_ranges():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        store = ForkedHTTPStore(url, {"user_agent": "ua-test/1", "timeout": "5s"})
        policy = RetryPolicy(base_delay=0.01)
        assert bytes(read_range(store, "blob.bin", 10, 5010, retry=policy)) == BLOB[10:5010]
        assert _Flaky.calls == 2  # one 503, then the answer
        assert _Flaky.agents == ["ua-test/1", "ua-test/1"]  # the client options apply
    finally:
        server.shutdown()
        server.server_close()


def test_the_local_store_reads_ranges_and_names_missing_files(tmp_path):
    path = tmp_path / "a b.bin"
    path.write_bytes(BLOB)
    store = ForkedLocalStore()
    assert bytes(read_range(store, str(path), 299_000, 300_000)) == BLOB[299_000:]
    assert object_size(store, str(path)) == len(BLOB)
    with pytest.raises(NotFoundError, match=r"missing\.bin"):
        read_range(store, str(tmp_path / "missing.bin"), 0, 4)


def test_urls_of_objects_are_quoted():
    store = ForkedHTTPStore("https://example.com/")
    assert store.url_of("a dir/b#1.tif") == "https://example.com/a%20dir/b%231.tif"
    assert ForkedHTTPStore("https://x.io/b.tif?sig=1").url_of("") == "https://x.io/b.tif?sig=1"


def test_obstore_durations_in_seconds():
    from datetime import timedelta

    from tessellum.store._forked import _seconds

    assert _seconds("5s", 1) == 5 and _seconds("250ms", 1) == 0.25 and _seconds("2m", 1) == 120
    assert _seconds(timedelta(seconds=3), 1) == 3 and _seconds(None, 7.5) == 7.5
    assert _seconds(12, 1) == 12
