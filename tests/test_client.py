"""Client / AsyncClient against a real uvicorn server return the engine's models."""

from __future__ import annotations

import geopandas as gpd
import pytest
from shapely.geometry import box

from _attr_world import X0, Y0, UvicornThread, build_world
from tessellum.attributes import (
    AttributeEngine,
    AttributeResponse,
    BatchAttributeResponse,
    MemoryResultCache,
    QualityFlag,
    StaticCollectionSource,
)
from tessellum.client import APIError, AsyncClient, Client
from tessellum.service import ServiceSettings, create_app

DEM = "copernicus_dem:elevation"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    aw = build_world(tmp_path_factory.mktemp("client_world"))
    eng = AttributeEngine(
        catalog=aw.catalog,
        cache=MemoryResultCache(),
        collections=StaticCollectionSource(aw.collections),
    )
    with UvicornThread(
        create_app(ServiceSettings(api_keys=("k",)), engine=eng, catalog=aw.catalog)
    ) as srv:
        yield srv


def test_sync_client(server):
    with Client(server.url, api_key="k") as c:
        r = c.extract(box(X0 + 0.1, Y0 - 0.2, X0 + 0.2, Y0 - 0.1), [DEM], aggregation="median")
        assert isinstance(r, AttributeResponse) and r.results[0].quality == QualityFlag.good
        gdf = gpd.GeoDataFrame(
            geometry=[
                box(X0 + 0.1 * i, Y0 - 0.2, X0 + 0.1 * i + 0.05, Y0 - 0.1) for i in range(1, 4)
            ],
            crs="EPSG:4326",
        )
        b = c.batch_extract(gdf, DEM, ids=["a", "b", "c"])
        assert isinstance(b, BatchAttributeResponse) and [i.geometry_id for i in b.items] == [
            "a",
            "b",
            "c",
        ]
        assert c.health()["status"] == "ok"
        assert c.datasets(variable="land_cover")["total"] == 1
        assert c.provider("esa_worldcover")["datasets"] == ["esa_worldcover:land_cover"]
        assert len(c.providers()) >= 5
        with pytest.raises(APIError) as ei:
            c.extract((10.1, 46.5, 10.2, 46.6), ["nope:x"])
        assert ei.value.status == 422 and ei.value.type == "unknown_dataset" and ei.value.request_id
    with Client(server.url) as c, pytest.raises(APIError, match="401"):
        c.providers()


async def test_async_client(server):
    async with AsyncClient(server.url, api_key="k") as c:
        r = await c.extract({"type": "Point", "coordinates": [X0 + 0.3, Y0 - 0.3]}, DEM)
        assert r.results[0].pixel_count == 1
        assert (await c.health())["status"] == "ok"
        assert (await c.datasets(bbox=(10, 46, 11, 47)))["total"] >= 1
        assert len(await c.providers()) >= 5
        assert (await c.provider("esa_worldcover"))["slug"] == "esa_worldcover"


def _extract_requests(c: Client) -> int:
    """``POST /api/v1/extract*`` requests the server has answered (its /metrics)."""
    text = c._http.get("/metrics").text
    return sum(
        int(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("tessellum_requests_total") and "/api/v1/extract" in line
    )


async def test_bad_arguments_are_a_validation_error_before_sending(server):
    """The clients validate arguments with the request models before sending: a bad one
    is a tessellum ValidationError naming the field and value (pydantic's escaped the
    TessellumError hierarchy), and the server sees no request."""
    import pydantic

    import tessellum

    point = {"type": "Point", "coordinates": [X0 + 0.3, Y0 - 0.3]}
    with Client(server.url, api_key="k") as c:
        before = _extract_requests(c)
        with pytest.raises(tessellum.ValidationError, match=r"aggregation.*'mode'") as ei:
            c.extract(point, [DEM], aggregation="mode")
        assert isinstance(ei.value.__cause__, pydantic.ValidationError)
        with pytest.raises(tessellum.ValidationError, match="dataset_ids"):
            c.extract(point, [])
        with pytest.raises(tessellum.ValidationError, match=r"geometries\[1\].*\(10, 46, 11\)"):
            c.batch_extract([point, (10, 46, 11)], DEM)
        async with AsyncClient(server.url, api_key="k") as ac:
            with pytest.raises(tessellum.ValidationError, match=r"point_method.*'cubic'"):
                await ac.extract(point, DEM, point_method="cubic")
        assert _extract_requests(c) == before


def test_idle_connections_close_on_the_client_first(monkeypatch):
    """The client drops idle connections before the server closes them (a request
    sent on a connection the server is closing fails with a read error), and
    ``tessellum serve`` keeps them open for ``keep_alive_s``."""
    import uvicorn

    from tessellum.client import _LIMITS
    from tessellum.service.cli import serve

    server_idle = ServiceSettings().keep_alive_s
    assert _LIMITS.keepalive_expiry < 5 < server_idle  # 5 s: uvicorn's and httpx's default
    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: seen.update(kw))
    serve(host="127.0.0.1", port=0, workers=1, log_level="warning")
    assert seen["timeout_keep_alive"] == server_idle


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_transport_failures_are_tessellum_errors_naming_the_url():
    """A refused connection and a service that never answers (timeout) raise an
    UpstreamError naming the URL, not a bare httpx exception; error answers name it too."""
    import socket
    import time

    from tessellum.errors import UpstreamError

    refused = f"http://127.0.0.1:{_free_port()}"
    with Client(refused, timeout=5) as c, pytest.raises(UpstreamError) as ei:
        c.health()
    assert f"{refused}/health" in str(ei.value) and ei.value.url == f"{refused}/health"
    async with AsyncClient(refused, timeout=5) as ac:
        with pytest.raises(UpstreamError, match="cannot reach"):
            await ac.providers()

    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        t0 = time.perf_counter()
        with Client(url, timeout=0.5) as c, pytest.raises(UpstreamError, match="timeout") as ei:
            c.datasets(provider="x")
        assert time.perf_counter() - t0 < 5
        assert ei.value.url.startswith(f"{url}/api/v1/datasets")
        async with AsyncClient(url, timeout=0.5) as ac:
            with pytest.raises(UpstreamError, match="timeout"):
                await ac.extract({"type": "Point", "coordinates": [10, 46]}, DEM)


def test_api_errors_name_the_url(server):
    from tessellum.errors import TessellumError

    with Client(server.url) as c, pytest.raises(APIError) as ei:
        c.providers()
    assert ei.value.status == 401 and ei.value.url == f"{server.url}/api/v1/providers"
    assert f"({server.url}/api/v1/providers)" in str(ei.value)
    assert isinstance(ei.value, TessellumError)


def test_provider_slug_is_one_path_segment(server):
    """A slug holding "/", ".." or "?" asks for that (unknown) provider: a 404, not
    another route's answer (``../../../health``) or another provider (``x?y``)."""
    with Client(server.url, api_key="k") as c:
        for slug in ("../../../health", "esa_worldcover?x=1", "a/b"):
            with pytest.raises(APIError) as ei:
                c.provider(slug)
            assert ei.value.status == 404, slug


def test_comma_separated_ids_read_as_in_process(server):
    """``"A, B,"`` names datasets A and B, as for :func:`tessellum.attributes.extract`
    (a trailing comma sent an empty id, answered as an unknown dataset)."""
    point = {"type": "Point", "coordinates": [X0 + 0.3, Y0 - 0.3]}
    with Client(server.url, api_key="k") as c:
        r = c.extract(point, f"{DEM}, esa_worldcover:land_cover,")
        assert [x.dataset_id for x in r.results] == [DEM, "esa_worldcover:land_cover"]
        b = c.batch_extract([point], f" {DEM},")
        assert [x.dataset_id for x in b.items[0].results] == [DEM]


@pytest.mark.parametrize("key", ["", "  ", "a,b"])
def test_serve_refuses_a_key_that_would_not_be_required(monkeypatch, key):
    """``--api-key ""`` was dropped (an open service); ``"a,b"`` became two keys."""
    import typer
    import uvicorn

    from tessellum.service.cli import serve

    monkeypatch.delenv("TESSELLUM_SERVICE_API_KEYS", raising=False)
    ran = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: ran.append(kw))
    with pytest.raises(typer.BadParameter, match="keys must be non-empty"):
        serve(host="127.0.0.1", port=0, workers=1, log_level="warning", api_key=[key])
    assert not ran
