"""Tests for tessellum.testing.servers: real servers on 127.0.0.1, no mocks."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tessellum.testing.servers import (
    HttpServer,
    LatencyProxy,
    PgStacServer,
    RustacServer,
    S3Server,
    ServerUnavailable,
    find_nginx,
    parse_multipart_byteranges,
    parse_range_header,
)

SMALL_SIZE = 50_000
BIG_SIZE = 3_000_000


def _known_bytes(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few files of known bytes plus a small tiled GeoTIFF."""
    import rasterio
    from affine import Affine

    root = tmp_path_factory.mktemp("serve")
    (root / "small.bin").write_bytes(_known_bytes(SMALL_SIZE, 1))
    (root / "sub").mkdir()
    (root / "sub" / "big.bin").write_bytes(_known_bytes(BIG_SIZE, 2))
    arr = (np.arange(256 * 256, dtype=np.uint16) % 997).reshape(256, 256)
    profile = {
        "driver": "GTiff",
        "width": 256,
        "height": 256,
        "count": 1,
        "dtype": "uint16",
        "crs": "EPSG:32633",
        "transform": Affine(10, 0, 500_000, 0, -10, 5_000_000),
        "tiled": True,
        "blockxsize": 128,
        "blockysize": 128,
        "compress": "deflate",
        "nodata": 0,
    }
    with rasterio.open(root / "small.tif", "w", **profile) as dst:
        dst.write(arr, 1)
    return root


def _start_or_skip(server: Any) -> Any:
    try:
        return server.start()
    except ServerUnavailable as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module", params=["nginx", "python"])
def http_server(request: pytest.FixtureRequest, data_dir: Path) -> Iterator[HttpServer]:
    if request.param == "nginx" and find_nginx() is None:
        pytest.skip("nginx not installed: run scripts/setup-system.sh")
    server = HttpServer(data_dir, backend=request.param)
    with server:
        assert server.backend == request.param
        yield server


@pytest.fixture
def http(http_server: HttpServer) -> HttpServer:
    http_server.reset_log()
    return http_server


# -- HttpServer ------------------------------------------------------------------------------


def _get(url: str, range_header: str | None = None, method: str = "GET"):
    import httpx

    headers = {"Range": range_header} if range_header else {}
    return httpx.request(method, url, headers=headers, timeout=10)


def test_http_single_range(http: HttpServer, data_dir: Path) -> None:
    expected = (data_dir / "small.bin").read_bytes()
    resp = _get(f"{http.url}/small.bin", "bytes=100-1099")
    assert resp.status_code == 206
    assert resp.headers["content-range"] == f"bytes 100-1099/{SMALL_SIZE}"
    assert resp.content == expected[100:1100]


def test_http_open_ended_and_suffix_ranges(http: HttpServer, data_dir: Path) -> None:
    expected = (data_dir / "small.bin").read_bytes()
    tail = _get(f"{http.url}/small.bin", f"bytes={SMALL_SIZE - 300}-")
    assert tail.status_code == 206
    assert tail.content == expected[-300:]
    suffix = _get(f"{http.url}/small.bin", "bytes=-64")
    assert suffix.status_code == 206
    assert suffix.content == expected[-64:]
    past_end = _get(f"{http.url}/small.bin", f"bytes={SMALL_SIZE - 10}-{SMALL_SIZE + 500}")
    assert past_end.content == expected[-10:]


def test_http_multi_range(http: HttpServer, data_dir: Path) -> None:
    expected = (data_dir / "sub" / "big.bin").read_bytes()
    wanted = [(0, 99), (5000, 5999), (2_000_000, 2_100_000)]
    header = "bytes=" + ",".join(f"{a}-{b}" for a, b in wanted)
    resp = _get(http.url_for("sub/big.bin"), header)
    assert resp.status_code == 206
    parts = parse_multipart_byteranges(resp.content, resp.headers["content-type"])
    assert [(a, b) for a, b, _ in parts] == wanted
    for first, last, body in parts:
        assert body == expected[first : last + 1]


def test_http_unsatisfiable_range_is_416(http: HttpServer) -> None:
    resp = _get(f"{http.url}/small.bin", f"bytes={SMALL_SIZE}-{SMALL_SIZE + 10}")
    assert resp.status_code == 416
    assert resp.headers["content-range"] == f"bytes */{SMALL_SIZE}"


def test_http_missing_file_is_404(http: HttpServer) -> None:
    assert _get(f"{http.url}/nope.tif").status_code == 404


def test_http_keep_alive_reuses_connection(http: HttpServer, data_dir: Path) -> None:
    expected = (data_dir / "small.bin").read_bytes()
    conn = HTTPConnection("127.0.0.1", http.port, timeout=10)
    try:
        conn.request("GET", "/small.bin", headers={"Range": "bytes=0-9"})
        first = conn.getresponse()
        assert first.read() == expected[:10]
        assert not first.will_close
        sock = conn.sock
        conn.request("GET", "/small.bin", headers={"Range": "bytes=10-19"})
        second = conn.getresponse()
        assert second.read() == expected[10:20]
        assert conn.sock is sock  # http.client reconnects (new socket) if the server closed
    finally:
        conn.close()


def test_http_log_records(http: HttpServer) -> None:
    _get(f"{http.url}/small.bin", "bytes=0-99")
    _get(f"{http.url}/small.bin", method="HEAD")
    _get(http.url_for("sub/big.bin"), "bytes=10-19,30-39")
    records = http.requests()
    assert [(r.method, r.path, r.range, r.status) for r in records] == [
        ("GET", "/small.bin", "bytes=0-99", 206),
        ("HEAD", "/small.bin", None, 200),
        ("GET", "/sub/big.bin", "bytes=10-19,30-39", 206),
    ]
    assert records[0].bytes_sent == 100
    assert records[1].bytes_sent == 0
    assert records[2].bytes_sent > 20  # multipart framing around the two parts
    assert abs(records[0].time - time.time()) < 60
    http.reset_log()
    assert http.requests() == []


def test_rasterio_vsicurl_reads_geotiff(http: HttpServer, data_dir: Path) -> None:
    import rasterio

    with rasterio.open(data_dir / "small.tif") as src:
        expected = src.read(1)
    with (
        rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", VSI_CACHE=False),
        rasterio.open(f"/vsicurl/{http.url}/small.tif") as src,
    ):
        assert src.crs.to_epsg() == 32633
        np.testing.assert_array_equal(src.read(1), expected)
    ranged = [r for r in http.requests() if r.path == "/small.tif" and r.range]
    assert ranged and all(r.status == 206 for r in ranged)


def test_parse_range_header_edge_cases() -> None:
    assert parse_range_header("bytes=0-9", 100) == [(0, 9)]
    assert parse_range_header("bytes=90-", 100) == [(90, 99)]
    assert parse_range_header("bytes=-5", 100) == [(95, 99)]
    assert parse_range_header("bytes=100-", 100) == []
    assert parse_range_header("bytes=5-2", 100) is None
    assert parse_range_header("items=0-1", 100) is None


# -- S3Server --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3(data_dir: Path) -> Iterator[S3Server]:
    server = _start_or_skip(S3Server())
    try:
        server.upload_dir(data_dir, bucket="world", prefix="data/")
        yield server
    finally:
        server.stop()


def test_s3_obstore_range_and_missing_key(s3: S3Server, data_dir: Path) -> None:
    import obstore

    store = s3.obstore("world")
    expected = (data_dir / "sub" / "big.bin").read_bytes()
    got = obstore.get_range(store, "data/sub/big.bin", start=1000, end=101_000)
    assert bytes(got) == expected[1000:101_000]
    with pytest.raises(FileNotFoundError):
        obstore.get_range(store, "data/missing.bin", start=0, end=10)


def test_s3_env_and_listing(s3: S3Server) -> None:
    keys = sorted(obj["Key"] for obj in s3.client().list_objects_v2(Bucket="world")["Contents"])
    assert keys == ["data/small.bin", "data/small.tif", "data/sub/big.bin"]
    assert s3.env["AWS_ENDPOINT_URL"] == s3.endpoint
    assert s3.env["AWS_S3_ENDPOINT"] == f"127.0.0.1:{s3.port}"


# -- LatencyProxy ----------------------------------------------------------------------------


@pytest.fixture
def proxy(http_server: HttpServer) -> Iterator[LatencyProxy]:
    with LatencyProxy(http_server.url, delay_ms=50) as p:
        yield p


def test_proxy_adds_delay_per_request_and_counts(proxy: LatencyProxy, data_dir: Path) -> None:
    import httpx

    expected = (data_dir / "small.bin").read_bytes()
    with httpx.Client(timeout=10) as client:  # one keep-alive connection
        t0 = time.perf_counter()
        for i in range(10):
            resp = client.get(f"{proxy.url}/small.bin", headers={"Range": f"bytes={i}-{i + 99}"})
            assert resp.content == expected[i : i + 100]
        elapsed = time.perf_counter() - t0
    assert elapsed >= 0.5
    assert proxy.request_count == 10
    assert proxy.bytes_down == 1000
    proxy.reset()
    assert (proxy.request_count, proxy.bytes_down) == (0, 0)


def test_proxy_delay_changes_at_run_time(proxy: LatencyProxy) -> None:
    proxy.delay_ms = 150
    t0 = time.perf_counter()
    assert _get(f"{proxy.url}/small.bin", "bytes=0-9").status_code == 206
    assert time.perf_counter() - t0 >= 0.15


def test_proxy_streams_big_ranges_and_multirange(
    proxy: LatencyProxy, http_server: HttpServer, data_dir: Path
) -> None:
    expected = (data_dir / "sub" / "big.bin").read_bytes()
    proxy.delay_ms = 0
    http_server.reset_log()
    resp = _get(f"{proxy.url}/sub/big.bin", "bytes=100-2500099")
    assert resp.status_code == 206
    assert resp.content == expected[100:2_500_100]
    resp = _get(f"{proxy.url}/sub/big.bin", "bytes=0-9,1000-1009")
    parts = parse_multipart_byteranges(resp.content, resp.headers["content-type"])
    assert [p[2] for p in parts] == [expected[0:10], expected[1000:1010]]
    full = _get(f"{proxy.url}/sub/big.bin")
    assert full.content == expected
    assert proxy.request_count == 3
    assert proxy.bytes_down == 2_500_000 + len(resp.content) + BIG_SIZE
    assert len(http_server.requests()) == 3


def test_proxy_pipelined_requests_on_one_connection(proxy: LatencyProxy, data_dir: Path) -> None:
    expected = (data_dir / "small.bin").read_bytes()
    proxy.delay_ms = 30
    req = "GET /small.bin HTTP/1.1\r\nHost: x\r\nRange: bytes={}-{}\r\n\r\n"
    payload = (req.format(0, 4) + req.format(10, 14) + req.format(20, 24)).encode()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        t0 = time.perf_counter()
        sock.sendall(payload)
        buf = b""
        bodies: list[bytes] = []
        while len(bodies) < 3:
            chunk = sock.recv(65536)
            assert chunk, "proxy closed the connection early"
            buf += chunk
            while b"\r\n\r\n" in buf:
                head, rest = buf.split(b"\r\n\r\n", 1)
                length = int(
                    next(
                        line.split(b":")[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    )
                )
                if len(rest) < length:
                    break
                bodies.append(rest[:length])
                buf = rest[length:]
        elapsed = time.perf_counter() - t0
    assert bodies == [expected[0:5], expected[10:15], expected[20:25]]
    assert elapsed >= 0.09  # three requests, each delayed
    assert proxy.request_count == 3


class _EchoHandler(BaseHTTPRequestHandler):
    """POST /len echoes the body (Content-Length); /chunked answers in chunks; /eof
    answers HTTP/1.0 without a length (the body ends when the server closes)."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 70_000):
                piece = body[i : i + 70_000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/eof":
            self.protocol_version = "HTTP/1.0"
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
        else:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def echo_proxy() -> Iterator[LatencyProxy]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with LatencyProxy(f"http://127.0.0.1:{server.server_port}", delay_ms=0) as proxy:
            yield proxy
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("splice", [True, False], ids=["splice", "copy"])
@pytest.mark.parametrize("path", ["/len", "/chunked", "/eof"])
def test_proxy_relays_request_bodies_and_every_response_framing(
    echo_proxy: LatencyProxy, path: str, splice: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    from tessellum.testing.servers import _proxycore

    if splice and not _proxycore._SPLICE:
        pytest.skip("os.splice is Linux-only")
    monkeypatch.setattr(_proxycore, "_SPLICE", splice)  # the proxy runs in this process

    body = _known_bytes(2_500_000, seed=7)  # larger than the proxy's splice pipe
    resp = httpx.post(f"{echo_proxy.url}{path}", content=body, timeout=10)
    assert resp.status_code == 200
    assert resp.content == body
    assert echo_proxy.bytes_up > len(body)  # head + body
    assert echo_proxy.bytes_down == len(body)


def test_proxy_survives_a_client_dropping_mid_body(proxy: LatencyProxy, data_dir: Path) -> None:
    proxy.delay_ms = 0
    request = b"GET /sub/big.bin HTTP/1.1\r\nHost: x\r\n\r\n"
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sock.sendall(request)
            assert sock.recv(1000)  # the head and the first bytes, then hang up
    expected = (data_dir / "sub" / "big.bin").read_bytes()
    assert _get(f"{proxy.url}/sub/big.bin", "bytes=5-1000004").content == expected[5:1_000_005]


def test_proxy_isolated_serves_rasterio_in_process(http_server: HttpServer, data_dir: Path) -> None:
    # rasterio holds the GIL while opening over HTTP: an in-thread proxy would deadlock,
    # a child-process proxy must not.
    import rasterio

    with rasterio.open(data_dir / "small.tif") as src:
        expected = src.read(1)
    http_server.reset_log()
    with LatencyProxy(http_server.url, delay_ms=10, isolated=True) as proxy:
        proc = proxy._proc
        with (
            rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"),
            rasterio.open(f"/vsicurl/{proxy.url}/small.tif") as src,
        ):
            np.testing.assert_array_equal(src.read(1), expected)
        assert proxy.request_count == len(http_server.requests()) > 0
        assert proxy.bytes_down == sum(r.bytes_sent for r in http_server.requests())
        proxy.delay_ms = 120
        t0 = time.perf_counter()
        assert _get(f"{proxy.url}/small.bin", "bytes=0-9").status_code == 206
        assert time.perf_counter() - t0 >= 0.12
        count = proxy.request_count
    assert proc is not None and proc.poll() is not None
    assert proxy.request_count == count  # counters stay readable after stop


# -- STAC APIs -------------------------------------------------------------------------------

T0 = datetime(2024, 1, 1, 6, 0, tzinfo=UTC)


def _collection(cid: str) -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": cid,
        "description": f"test collection {cid}",
        "license": "proprietary",
        "links": [],
        "extent": {
            "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
            "temporal": {"interval": [["2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z"]]},
        },
    }


def _item(i: int) -> dict[str, Any]:
    # Spread over a 5x5 grid of cells 10° apart; even items are points, odd are 2° boxes.
    x, y = -40.0 + 20.0 * (i % 5), -40.0 + 20.0 * (i // 5)
    if i % 2 == 0:
        geometry: dict[str, Any] = {"type": "Point", "coordinates": [x, y]}
        bbox = [x, y, x, y]
    else:
        ring = [[x - 1, y - 1], [x + 1, y - 1], [x + 1, y + 1], [x - 1, y + 1], [x - 1, y - 1]]
        geometry = {"type": "Polygon", "coordinates": [ring]}
        bbox = [x - 1, y - 1, x + 1, y + 1]
    when = T0 + timedelta(days=i, hours=i % 7)
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [],
        "id": f"item-{i:02d}",
        "collection": "alpha" if i % 3 else "beta",
        "geometry": geometry,
        "bbox": bbox,
        "properties": {"datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ")},
        "links": [],
        "assets": {"data": {"href": f"http://example.invalid/{i}.tif", "type": "image/tiff"}},
    }


COLLECTIONS = [_collection("alpha"), _collection("beta")]
ITEMS = [_item(i) for i in range(25)]


def _expected(
    bbox: list[float] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    collections: list[str] | None = None,
) -> set[str]:
    out = set()
    for item in ITEMS:
        b = item["bbox"]
        when = datetime.fromisoformat(item["properties"]["datetime"])
        if bbox and (b[2] < bbox[0] or b[0] > bbox[2] or b[3] < bbox[1] or b[1] > bbox[3]):
            continue
        if (start and when < start) or (end and when > end):
            continue
        if collections and item["collection"] not in collections:
            continue
        out.add(item["id"])
    return out


@pytest.fixture(scope="module")
def rustac_server() -> Iterator[RustacServer]:
    server = _start_or_skip(RustacServer(COLLECTIONS, ITEMS))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pgstac_server() -> Iterator[PgStacServer]:
    server = _start_or_skip(PgStacServer(COLLECTIONS, ITEMS))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["rustac", pytest.param("pgstac", marks=pytest.mark.pgstac)])
def stac_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_server").url


def _search(url: str, **kwargs: Any) -> list[str]:
    from pystac_client import Client

    search = Client.open(url).search(method="POST", limit=10, **kwargs)
    return [item.id for item in search.items()]


def test_stac_paging_returns_every_item(stac_url: str) -> None:
    ids = _search(stac_url, collections=["alpha", "beta"])
    assert len(ids) == len(set(ids)) == 25  # limit=10: three pages followed via `next`


def test_stac_filters(stac_url: str) -> None:
    bbox = [-45.0, -45.0, 5.0, 1.5]  # the lower-left 3x3 cells of the 5x5 grid
    assert set(_search(stac_url, bbox=bbox)) == _expected(bbox=bbox)
    start, end = datetime(2024, 1, 8, tzinfo=UTC), datetime(2024, 1, 20, 23, 59, 59, tzinfo=UTC)
    dt = "2024-01-08T00:00:00Z/2024-01-20T23:59:59Z"
    assert set(_search(stac_url, datetime=dt)) == _expected(start=start, end=end)
    combined = set(_search(stac_url, bbox=bbox, datetime=dt, collections=["alpha"]))
    assert combined == _expected(bbox=bbox, start=start, end=end, collections=["alpha"])
    assert combined  # the filters must leave something to compare
    assert set(_search(stac_url, collections=["beta"])) == _expected(collections=["beta"])


def test_stac_pages_have_next_links(stac_url: str) -> None:
    import httpx

    body: dict[str, Any] | None = {"collections": ["alpha", "beta"], "limit": 10}
    url, pages, seen = f"{stac_url}/search", 0, []
    while body is not None:
        page = httpx.post(url, json=body, timeout=10).json()
        seen += [f["id"] for f in page["features"]]
        pages += 1
        nxt = next((link for link in page.get("links", []) if link["rel"] == "next"), None)
        body = {**body, **nxt.get("body", {})} if nxt else None
        url = nxt["href"] if nxt else url
    assert pages == 3
    assert sorted(seen) == sorted(i["id"] for i in ITEMS)


# -- lifecycle -------------------------------------------------------------------------------


def _pids_listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_servers_stop_cleanly(data_dir: Path) -> None:
    if find_nginx() is None:
        pytest.skip("nginx not installed: run scripts/setup-system.sh")
    server = HttpServer(data_dir).start()
    port, tmp, proc = server.port, server.tmp_dir, server._proc
    assert proc is not None and _pids_listening(port)
    server.stop()
    server.stop()  # idempotent
    assert proc.poll() is not None
    assert not tmp.exists()
    assert not _pids_listening(port)  # the worker, which holds the socket, is gone too


def test_http_server_rejects_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        HttpServer(tmp_path / "missing")


def test_nginx_serves_private_dirs_as_root(tmp_path: Path) -> None:
    if find_nginx() is None:
        pytest.skip("nginx not installed: run scripts/setup-system.sh")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "x.bin").write_bytes(b"0123456789")
    (private / "x.bin").chmod(0o600)
    with HttpServer(private) as server:
        assert _get(f"{server.url}/x.bin", "bytes=2-4").content == b"234"
