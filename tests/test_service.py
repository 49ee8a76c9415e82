"""The HTTP service through a real uvicorn server: every endpoint and error type."""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import pytest
from shapely.geometry import box, mapping

from _attr_world import RES, X0, Y0, UvicornThread, build_world
from tessellum.attributes import AttributeEngine, MemoryResultCache, StaticCollectionSource
from tessellum.errors import UpstreamError
from tessellum.service import ServiceSettings, create_app

DEM = "copernicus_dem:elevation"
LC = "esa_worldcover:land_cover"
KEY = "s3cret-key"
POLY = mapping(box(X0 + 0.1, Y0 - 0.2, X0 + 0.2, Y0 - 0.1))


@pytest.fixture(scope="module")
def aw(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("svc_world"))


def _engine(aw, **extra):
    return AttributeEngine(
        catalog=aw.catalog, cache=MemoryResultCache(),
        collections=StaticCollectionSource({**aw.collections, **extra}),
    )  # fmt: skip


@pytest.fixture(scope="module")
def server(aw):
    settings = ServiceSettings(
        api_keys=(KEY,), max_batch_size=50, max_vertices=200, max_datasets_per_request=3
    )
    eng = _engine(aw, **{"nasadem:elevation": UpstreamError("upstream said 503", url="http://up")})
    with UvicornThread(create_app(settings, engine=eng, catalog=aw.catalog)) as srv:
        yield srv


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=30) as c:
        yield c


def _envelope(r: httpx.Response, status: int, type_: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"type", "message", "request_id", "detail"}
    assert err["request_id"] == r.headers["x-request-id"]
    assert "Traceback" not in r.text
    if type_:
        assert err["type"] == type_
    return err


def test_extract_and_request_id(http):
    r = http.post(
        "/api/v1/extract",
        json={"geometry": POLY, "dataset_ids": [DEM, LC], "aggregation": "majority"},
        headers={"X-Request-ID": "abc-123"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert r.headers["x-request-id"] == "abc-123" == body["request_id"]
    assert [x["dataset_id"] for x in body["results"]] == [DEM, LC]
    assert body["results"][1]["class_names"]


def test_batch(http):
    geoms = [
        mapping(box(X0 + i * RES * 7, Y0 - 0.3, X0 + i * RES * 7 + 0.05, Y0 - 0.25))
        for i in range(20)
    ]
    r = http.post(
        "/api/v1/extract/batch",
        json={"geometries": geoms, "dataset_ids": [DEM], "ids": list(range(20))},
    )
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["geometry_id"] for i in items] == list(range(20))
    assert all(i["results"][0]["value"] is not None for i in items)


def test_failing_dataset_is_a_warning_and_all_failing_is_502(http):
    r = http.post(
        "/api/v1/extract", json={"geometry": POLY, "dataset_ids": [DEM, "nasadem:elevation"]}
    )
    assert r.status_code == 200
    assert r.json()["failed_datasets"] == ["nasadem:elevation"]
    assert "upstream said 503" in r.json()["warnings"][0]
    err = _envelope(
        http.post("/api/v1/extract", json={"geometry": POLY, "dataset_ids": ["nasadem:elevation"]}),
        502,
        "upstream_error",
    )
    assert err["detail"]["failed_datasets"] == ["nasadem:elevation"]


def test_validation_errors(http):
    err = _envelope(
        http.post(
            "/api/v1/extract", json={"geometry": POLY, "dataset_ids": [DEM], "output": "raster"}
        ),
        422,
        "validation_error",
    )
    assert "extract_raster_sync" in err["message"]
    _envelope(http.post("/api/v1/extract", json={"geometry": POLY}), 422, "validation_error")
    _envelope(
        http.post(
            "/api/v1/extract", content=b"{not json", headers={"content-type": "application/json"}
        ),
        400,
        "bad_request",
    )
    _envelope(
        http.post(
            "/api/v1/extract",
            json={
                "geometry": POLY,
                "dataset_ids": [DEM],
                "time_range": {"start": "2021-02-01", "end": "2021-01-01"},
            },
        ),
        422,
    )
    err = _envelope(
        http.post("/api/v1/extract", json={"geometry": POLY, "dataset_ids": ["nope:x"]}),
        422,
        "unknown_dataset",
    )
    assert err["detail"]["unknown"] == ["nope:x"]


@pytest.mark.parametrize(
    ("route", "key", "field"),
    [("/api/v1/extract", "geometry", "geometry"),
     ("/api/v1/extract/batch", "geometries", "geometries[0]")],
)  # fmt: skip
def test_422_messages_are_worded_as_in_process(http, aw, route, key, field):
    """A geometry is GeoJSON or a box: the 422 listed pydantic's complaint for each form,
    named by its internals ("geometry.function-after[_parse(), GeoJSONGeometry].type:
    Field required; ... BoundingBox]: min_lat must be < max_lat"). It now says what the
    in-process call says: the problem of the form the geometry was written in."""
    from tessellum.attributes import extract_sync
    from tessellum.errors import ValidationError

    bad = {"min_lon": 10.0, "min_lat": 46.95, "max_lon": 10.1, "max_lat": 46.9}
    geometry = bad if key == "geometry" else [bad]
    err = _envelope(
        http.post(route, json={key: geometry, "dataset_ids": [DEM]}), 422, "validation_error"
    )
    assert err["message"] == f"{field}: min_lat must be < max_lat (got {bad!r})"
    if key == "geometry":
        with pytest.raises(ValidationError) as ei:
            extract_sync(geometry, [DEM], engine=_engine(aw))
        assert str(ei.value) == f"invalid extract request: {err['message']}"


@pytest.mark.parametrize(
    ("geometry", "crs"),
    [
        ({"type": "Polygon", "coordinates": [[[0, 0], [1e300, 0], [1e300, 1e300], [0, 0]]]}, None),
        ({"type": "Polygon",
          "coordinates": [[[-1e8, -1e8], [1e8, -1e8], [1e8, 1e8], [-1e8, -1e8]]]}, "EPSG:32632"),
        ({"type": "Point", "coordinates": [500.0, 10.0]}, None),
        ({"type": "Point", "coordinates": [10.0, 10.0]},
         'LOCAL_CS["site grid",UNIT["metre",1],AXIS["X",EAST],AXIS["Y",NORTH]]'),
    ],
    ids=["1e300", "projected-1e8", "lon-500", "local-cs"],
)  # fmt: skip
def test_geometries_off_the_earth_are_a_422(http, aw, geometry, crs):
    """Coordinates or a CRS that do not map to lon/lat are the client's error (they
    failed deep in the engine as a 500, or a 502 for a point). In-process, the same
    check raises ValidationError with the same message (it used to fail the dataset
    with a warning about a search bbox the caller never sent)."""
    from tessellum.attributes import extract_sync
    from tessellum.errors import ValidationError

    body = {"geometry": geometry, "dataset_ids": [DEM]}
    if crs is not None:
        body["geometry_crs"] = crs
    err = _envelope(http.post("/api/v1/extract", json=body), 422, "validation_error")
    assert "geometry 0" in err["message"]
    assert err["detail"] == {"geometry": 0, "geometry_crs": crs or "OGC:CRS84"}
    eng = _engine(aw)
    with pytest.raises(ValidationError) as ei:
        extract_sync(geometry, [DEM], geometry_crs=crs, engine=eng)
    assert str(ei.value) == err["message"]
    assert eng.collections.calls == []  # refused before any search


@pytest.mark.parametrize("route", ["/api/v1/extract", "/api/v1/extract/batch"])
@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"\xff\x12\xfe", 400),  # not UTF-8
        (b"\xff\xfe", 400),  # a UTF-16 byte-order mark, nothing else
        (b"not json", 400),
        (b"{", 400),
        (b'{"geometry": ', 400),
        (b"", 400),
        (b"null", 422),  # JSON text, of the wrong type
        (b"[]", 422),
        (b'"text"', 422),
        (b"{}", 422),
    ],
)
def test_a_body_that_is_not_json_text_is_a_400(http, route, body, status):
    """docs/service.md: 400 for a body that is not JSON text, 422 for JSON that fails the
    schema. Text that is not JSON (or no body at all) was a 422 ``validation_error``."""
    r = http.post(route, content=body, headers={"content-type": "application/json"})
    err = _envelope(r, status, "bad_request" if status == 400 else "validation_error")
    if status == 400 and body:
        assert "body" in err["message"]


def test_limits(http):
    err = _envelope(
        http.post(
            "/api/v1/extract",
            json={
                "geometry": POLY,
                "dataset_ids": [DEM, LC, "nasadem:elevation", "alos_dem:elevation"],
            },
        ),
        422,
        "limit_exceeded",
    )
    assert err["detail"]["limit"] == "max_datasets_per_request"
    ring = [
        [X0 + 0.1 + 0.05 * np.cos(t), Y0 - 0.1 + 0.05 * np.sin(t)]
        for t in np.linspace(0, 2 * np.pi, 300)
    ]
    ring[-1] = ring[0]
    err = _envelope(
        http.post(
            "/api/v1/extract",
            json={"geometry": {"type": "Polygon", "coordinates": [ring]}, "dataset_ids": [DEM]},
        ),
        422,
        "limit_exceeded",
    )
    assert err["detail"]["limit"] == "max_vertices"
    err = _envelope(
        http.post("/api/v1/extract/batch", json={"geometries": [POLY] * 51, "dataset_ids": [DEM]}),
        422,
        "limit_exceeded",
    )
    _envelope(
        http.post(
            "/api/v1/extract/batch", json={"geometries": [POLY] * 1001, "dataset_ids": [DEM]}
        ),
        422,
        "validation_error",
    )


def test_found_by_schemathesis(http):
    # a near-global box (crosses the antimeridian) used to hold a worker past 10 s
    huge = {"min_lon": 1.5, "min_lat": 13.25, "max_lon": -1e-38, "max_lat": 88.57}
    err = _envelope(
        http.post("/api/v1/extract", json={"geometry": huge, "dataset_ids": [DEM]}),
        422,
        "limit_exceeded",
    )
    assert err["detail"]["limit"] == "max_pixels_per_geometry" and err["detail"]["dataset"] == DEM
    # a number is not a date (pydantic's lax mode read 0 as 1970-01-01)
    bad_time = {"start": 0, "end": "2000-01-01"}
    _envelope(
        http.post(
            "/api/v1/extract",
            json={"geometry": POLY, "dataset_ids": [DEM], "time_range": bad_time},
        ),
        422,
        "validation_error",
    )
    # a body that is not UTF-8 JSON: 400 in the envelope, documented in the spec
    _envelope(
        http.post(
            "/api/v1/extract/batch",
            content=b"\xff\x12\xfe",
            headers={"content-type": "application/json"},
        ),
        400,
    )
    spec = http.get("/openapi.json").json()
    responses = spec["paths"]["/api/v1/extract"]["post"]["responses"]
    assert {"200", "400", "401", "422", "429", "502"} <= set(responses)
    assert "ErrorEnvelope" in responses["422"]["content"]["application/json"]["schema"]["$ref"]


def test_auth(server):
    r = httpx.post(server.url + "/api/v1/extract", json={"geometry": POLY, "dataset_ids": [DEM]})
    _envelope(r, 401, "unauthorized")
    r = httpx.get(server.url + "/api/v1/datasets", headers={"X-API-Key": KEY + "x"})
    _envelope(r, 401)
    r = httpx.get(server.url + "/api/v1/datasets", headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200
    assert httpx.get(server.url + "/health").status_code == 200  # health stays open


def test_catalog_endpoints(http, aw):
    body = http.get("/api/v1/datasets").json()
    assert body["total"] == len(aw.catalog)
    assert "stac_api" not in body["datasets"][0]  # endpoints are not published
    page = http.get("/api/v1/datasets", params={"limit": 2, "offset": 1}).json()
    assert [d["id"] for d in page["datasets"]] == [d["id"] for d in body["datasets"][1:3]]
    assert {
        d["id"]
        for d in http.get("/api/v1/datasets", params={"variable": "land_cover"}).json()["datasets"]
    } == {LC}
    assert all(
        d["provider"] == "nasadem"
        for d in http.get("/api/v1/datasets", params={"provider": "nasadem"}).json()["datasets"]
    )
    assert http.get("/api/v1/datasets", params={"bbox": "10,46,11,47"}).json()["total"] >= 1
    _envelope(http.get("/api/v1/datasets", params={"bbox": "1,2,3"}), 422)
    _envelope(http.get("/api/v1/datasets", params={"limit": 0}), 422)
    provs = http.get("/api/v1/providers").json()["providers"]
    assert "copernicus_dem" in {p["slug"] for p in provs}
    one = http.get("/api/v1/providers/esa_worldcover").json()
    assert one["datasets"] == [LC] and one["datasets_info"][0]["classes"]["10"] == "Tree cover"
    _envelope(http.get("/api/v1/providers/nope"), 404, "DatasetNotFoundError")


def test_routing_errors_use_the_envelope(http):
    _envelope(http.get("/nope"), 404, "not_found")
    _envelope(http.get("/api/v1/extract"), 405, "method_not_allowed")


def test_health_metrics_openapi(http):
    h = http.get("/health").json()
    assert h["status"] == "ok" and h["cache"] == "MemoryResultCache"
    http.post("/api/v1/extract", json={"geometry": POLY, "dataset_ids": [DEM]})
    m = http.get("/metrics")
    assert m.headers["content-type"].startswith("text/plain")
    assert 'tessellum_requests_total{method="POST",route="/api/v1/extract",status="200"}' in m.text
    assert "tessellum_cache_hits_total" in m.text and "tessellum_results_total" in m.text
    spec = http.get("/openapi.json").json()
    assert {
        "/api/v1/extract",
        "/api/v1/extract/batch",
        "/api/v1/datasets",
        "/api/v1/providers",
        "/api/v1/providers/{slug}",
        "/health",
        "/metrics",
    } <= set(spec["paths"])
    assert http.get("/docs").status_code == 200


def test_rate_limit_and_internal_error(aw):
    class Broken(AttributeEngine):
        async def extract(self, request, *, request_id=None):
            raise RuntimeError("secret internal detail")

    app = create_app(
        ServiceSettings(rate_limit_per_minute=60, rate_limit_burst=3),
        engine=Broken(catalog=aw.catalog, cache=MemoryResultCache()),
        catalog=aw.catalog,
    )
    with UvicornThread(app) as srv, httpx.Client(base_url=srv.url) as c:
        err = _envelope(
            c.post("/api/v1/extract", json={"geometry": POLY, "dataset_ids": [DEM]}),
            500,
            "internal_error",
        )
        assert "secret" not in err["message"]
        codes = [c.get("/api/v1/providers").status_code for _ in range(4)]
        assert codes[:2] == [200, 200] and codes[-1] == 429
        r = c.get("/api/v1/providers")
        _envelope(r, 429, "rate_limited")
        assert int(r.headers["retry-after"]) >= 1


@pytest.mark.parametrize(
    "per_client",
    [8, pytest.param(40, marks=pytest.mark.slow, id="issue-scale")],
)
def test_load(aw, per_client):
    """50 concurrent clients; at the issue's scale 2,000 requests (``-m slow``, ≈25 s
    here). A quarter of the requests are on geometries nobody asked for before; every
    request is answered and accounted for."""
    app = create_app(ServiceSettings(), engine=_engine(aw), catalog=aw.catalog)
    rng = np.random.default_rng(0)
    geoms = []
    for i in range(540):  # 40 hot polygons (cached after their first use), 500 cold ones
        x, y = X0 + rng.uniform(0.05, 0.9), Y0 - rng.uniform(0.05, 0.9)
        if i % 4 == 3:
            geoms.append({"type": "Point", "coordinates": [x, y]})
        else:
            geoms.append(mapping(box(x, y - 0.04, x + 0.04, y)))
    clients = 50
    lat: list[float] = []
    seen: dict[str, int] = {}

    async def worker(client, k):
        for i in range(per_client):
            n = k * per_client + i
            g = geoms[40 + n // 4] if n % 4 == 0 else geoms[(k * 7 + i) % 40]
            body = {"geometry": g, "dataset_ids": [DEM, LC], "aggregation": "majority"}
            rid = f"load-{n}"
            t0 = time.perf_counter()
            r = await client.post("/api/v1/extract", json=body, headers={"X-Request-ID": rid})
            lat.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
            assert r.json()["request_id"] == rid and len(r.json()["results"]) == 2, r.json()[
                "warnings"
            ]
            seen[rid] = r.status_code

    async def main(url):
        limits = httpx.Limits(max_connections=clients)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
            await asyncio.gather(*(worker(client, k) for k in range(clients)))
            metrics = (await client.get("/metrics")).text
        return metrics

    with UvicornThread(app) as srv:
        t0 = time.perf_counter()
        metrics = asyncio.run(main(srv.url))
        wall = time.perf_counter() - t0
    total = clients * per_client
    assert len(seen) == total  # no lost request, no duplicate
    line = f'tessellum_requests_total{{method="POST",route="/api/v1/extract",status="200"}} {total}'
    assert line in metrics  # the server counted each one once
    p50, p99 = np.percentile(lat, [50, 99]) * 1000
    print(
        f"\nload: {clients} clients x {per_client} requests ({total}): {total / wall:.0f} req/s, "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, {wall:.1f} s"
    )
