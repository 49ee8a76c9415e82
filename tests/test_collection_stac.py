"""Builds from STAC: rustac and pgstac APIs with paging, query/CQL2 filters, static
catalogs, the build cache, inclusive date ranges and the antimeridian."""

from __future__ import annotations

import copy
import functools
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import shapely

import tessellum.collection.stac as stac_mod
from tessellum.collection import build_from_stac
from tessellum.errors import ValidationError
from tessellum.testing.servers import PgStacServer, RustacServer, ServerUnavailable

N_EXTRA = 130  # more than one default page (100)


def _many_items(world: Any, base_url: str) -> list[dict[str, Any]]:
    """``N_EXTRA`` copies of the DEM items (new ids and dates, same assets) in a
    collection of their own, so one search needs two pages of 100."""
    dem = [i for i in world.items(base_url) if i["collection"] == "cop-dem-glo-30"]
    out = []
    for n in range(N_EXTRA):
        item = copy.deepcopy(dem[n % len(dem)])
        item["id"] = f"dem-copy-{n:03d}"
        item["collection"] = "dem-copies"
        item["properties"]["datetime"] = f"2022-01-{1 + n % 28:02d}T00:00:00Z"
        item["links"] = []
        out.append(item)
    return out


def _copies_collection(world: Any, base_url: str) -> dict[str, Any]:
    coll = copy.deepcopy(
        next(c for c in world.collections(base_url) if c["id"] == "cop-dem-glo-30")
    )
    coll["id"] = "dem-copies"
    coll["links"] = []
    return coll


def _start(server: Any) -> Any:
    try:
        server.start()
    except ServerUnavailable as exc:
        pytest.skip(f"server unavailable: {exc}")
    return server


@pytest.fixture(scope="module")
def rustac_many(world: Any, served: Any) -> Iterator[RustacServer]:
    """A second rustac with the world plus 130 extra items."""
    cols = [*world.collections(served.data_url), _copies_collection(world, served.data_url)]
    items = [*world.items(served.data_url), *_many_items(world, served.data_url)]
    server = _start(RustacServer(cols, items))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pgstac(world: Any, served: Any) -> Iterator[PgStacServer]:
    """stac-fastapi-pgstac over the same items (started once for this module)."""
    cols = [*world.collections(served.data_url), _copies_collection(world, served.data_url)]
    items = [*world.items(served.data_url), *_many_items(world, served.data_url)]
    server = _start(PgStacServer(cols, items))
    yield server
    server.stop()


def _ids(coll: Any) -> list[str]:
    return sorted(coll.table.column("id").to_pylist())


def _api(request: pytest.FixtureRequest, which: str) -> str:
    return request.getfixturevalue("rustac_many" if which == "rustac" else "pgstac").url


APIS = ["rustac", pytest.param("pgstac", marks=pytest.mark.pgstac)]


# -- paging -------------------------------------------------------------------------------


@pytest.mark.parametrize("which", APIS)
def test_default_paging_returns_every_item(which: str, request: pytest.FixtureRequest) -> None:
    coll = build_from_stac(
        name="copies", stac_api=_api(request, which), collection="dem-copies", progress=False
    )
    assert len(coll) == N_EXTRA  # > 100: a second page was followed
    assert len(set(coll.table.column("id").to_pylist())) == N_EXTRA
    assert coll.valid().bands == ["data"] and len(coll.valid()) == N_EXTRA


@pytest.mark.parametrize("which", APIS)
def test_small_pages_are_all_followed(
    which: str, request: pytest.FixtureRequest, world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        stac_mod, "search_items", functools.partial(stac_mod.search_items, page_size=3)
    )
    coll = build_from_stac(
        name="edge", stac_api=_api(request, which), collection="edge-cases", progress=False
    )
    expected = {f.item_id for f in world.files_of("edge-cases") if f.item_id}
    assert set(_ids(coll)) == expected and len(expected) > 3


def test_max_items_caps_explicitly(rustac_many: RustacServer) -> None:
    coll = build_from_stac(
        name="copies", stac_api=rustac_many.url, collection="dem-copies", max_items=7,
        progress=False,
    )  # fmt: skip
    assert len(coll) == 7


# -- query / CQL2 (pgstac; rustac's memory backend ignores them) ----------------------------


@pytest.mark.pgstac
def test_query_extension_on_pgstac(pgstac: PgStacServer) -> None:
    coll = build_from_stac(
        name="s2", stac_api=pgstac.url, collection="sentinel-2-l2a",
        query={"eo:cloud_cover": {"lt": 10}}, progress=False,
    )  # fmt: skip
    assert _ids(coll) == ["S2A_11TQG_20240107_0_L2A", "S2B_12TTM_20240131_0_L2A"]
    assert max(coll.table.column("eo:cloud_cover").to_pylist()) < 10


@pytest.mark.pgstac
@pytest.mark.parametrize(
    "cql2",
    [
        {"op": "=", "args": [{"property": "platform"}, "sentinel-2a"]},
        "platform = 'sentinel-2a'",
    ],
    ids=["json", "text"],
)
def test_cql2_filter_on_pgstac(pgstac: PgStacServer, cql2: Any) -> None:
    coll = build_from_stac(
        name="s2", stac_api=pgstac.url, collection="sentinel-2-l2a", filter=cql2, progress=False
    )
    assert len(coll) == 3
    assert set(coll.table.column("platform").to_pylist()) == {"sentinel-2a"}


@pytest.mark.pgstac
def test_pgstac_and_rustac_agree(pgstac: PgStacServer, rustac_many: RustacServer) -> None:
    kw = dict(
        collection="sentinel-2-l2a", bbox=(-114.1, 41.9, -113.9, 42.2),
        date_range=("2024-01-10", "2024-01-31"), progress=False,
    )  # fmt: skip
    a = build_from_stac(name="a", stac_api=pgstac.url, **kw)
    b = build_from_stac(name="b", stac_api=rustac_many.url, **kw)
    assert _ids(a) == _ids(b) and len(a) == 3
    assert a.bands == b.bands == ["B02", "B03", "B04", "B05", "B08", "SCL"]


# -- static catalogs ------------------------------------------------------------------------


def test_static_catalog_local_and_over_http(world: Any, served: Any) -> None:
    local = build_from_stac(
        name="s2", stac_api=str(world.static_catalog), collection="sentinel-2-l2a",
        static_catalog=True, progress=False,
    )  # fmt: skip
    remote = build_from_stac(
        name="s2", stac_api=f"{served.data_url}/stac/catalog.json", collection="sentinel-2-l2a",
        static_catalog=True, progress=False,
    )  # fmt: skip
    assert _ids(local) == _ids(remote) and len(local) == 6
    assert not len(local.errors()) and not len(remote.errors())
    href = local.table.column("assets")[0].as_py()[0][1]["href"]
    assert href.startswith(str(world.root))
    remote_href = remote.table.column("assets")[0].as_py()[0][1]["href"]
    assert remote_href.startswith(served.data_url)


def test_static_catalog_filters_bbox_and_dates(world: Any) -> None:
    coll = build_from_stac(
        name="s2", stac_api=str(world.static_catalog), collection="sentinel-2-l2a",
        static_catalog=True, bbox=(-114.2, 41.9, -114.1, 42.2),
        date_range=("2024-01-01", "2024-01-31"), progress=False,
    )  # fmt: skip
    # zone 12 scenes reach west of -114.1, zone 11 scenes do not; 23:10 on the 31st is kept
    assert _ids(coll) == [
        "S2A_12TTM_20240120_0_L2A",
        "S2B_12TTM_20240105_0_L2A",
        "S2B_12TTM_20240131_0_L2A",
    ]


def test_static_catalog_refuses_query(world: Any) -> None:
    with pytest.raises(ValidationError, match="static catalog"):
        build_from_stac(
            name="x", stac_api=str(world.static_catalog), collection="naip",
            static_catalog=True, query={"gsd": {"lt": 1}}, progress=False,
        )  # fmt: skip


def _pystac_catalog(root: Any) -> Any:
    """A nested pystac catalog (catalog -> catalog -> collection) with relative hrefs:
    a dated item, an item with only a start/end interval, one at 23:10 on Jan 31st, one
    dated Feb 5th whose interval starts in January, one with a 3D bbox and one split at
    the antimeridian (EPSG:3832, across 180)."""
    import datetime as dt

    import pystac
    from rasterio.transform import from_origin

    from _cogfactory import write_cog

    utc = dt.UTC
    ext = pystac.Extent(
        pystac.SpatialExtent([[-180, -90, 180, 90]]), pystac.TemporalExtent([[None, None]])
    )
    coll = pystac.Collection("C", "test collection", extent=ext)

    def add(name: str, bbox: list[float], geom: Any, crs: str, origin: tuple, res: float,
            when: Any = None, **props: Any) -> None:  # fmt: skip
        path, _ = write_cog(
            root / "data" / f"{name}.tif", shape=(64, 64), blocksize=16, overviews=(),
            crs=crs, transform=from_origin(*origin, res, res),
        )  # fmt: skip
        item = pystac.Item(name, shapely.geometry.mapping(geom), bbox, when, {}, **props)
        item.add_asset("data", pystac.Asset(str(path), media_type=pystac.MediaType.COG))
        coll.add_item(item)

    def t(*args: int) -> dt.datetime:
        return dt.datetime(*args, tzinfo=utc)

    geo = "EPSG:4326"
    (root / "data").mkdir(parents=True)
    add("dated", [10, 49.36, 10.64, 50], shapely.box(10, 49.36, 10.64, 50), geo, (10, 50),
        0.01, t(2024, 1, 15, 12))  # fmt: skip
    add("interval", [11, 49.36, 11.64, 50], shapely.box(11, 49.36, 11.64, 50), geo, (11, 50),
        0.01, start_datetime=t(2023, 12, 20), end_datetime=t(2024, 1, 10))  # fmt: skip
    add("late", [12, 49.36, 12.64, 50], shapely.box(12, 49.36, 12.64, 50), geo, (12, 50),
        0.01, t(2024, 1, 31, 23, 10))  # fmt: skip
    add("feb", [13, 49.36, 13.64, 50], shapely.box(13, 49.36, 13.64, 50), geo, (13, 50),
        0.01, t(2024, 2, 5), start_datetime=t(2024, 1, 25), end_datetime=t(2024, 2, 10))  # fmt: skip
    add("3d", [20, 49.36, 0, 20.64, 50, 500], shapely.box(20, 49.36, 20.64, 50), geo, (20, 50),
        0.01, t(2024, 1, 2))  # fmt: skip
    parts = [shapely.box(179.55, 0.1, 180, 0.9), shapely.box(-180, 0.1, -179.55, 0.9)]
    add("am", [179.55, 0.1, -179.55, 0.9], shapely.MultiPolygon(parts), "EPSG:3832",
        (-50000, 100000), 1000, t(2024, 1, 3))  # fmt: skip
    cat = pystac.Catalog("root", "root")
    sub = pystac.Catalog("sub", "sub")
    cat.add_child(sub)
    sub.add_child(coll)
    cat.normalize_hrefs(str(root))
    cat.make_all_asset_hrefs_relative()
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    return cat


@pytest.fixture(scope="module")
def pystac_catalog(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _pystac_catalog(tmp_path_factory.mktemp("pystac-catalog"))


_SEARCHES = [
    ((-10, -10, 30, 60), ("2024-01-01", "2024-01-31")),
    (None, ("2024-01-05", None)),
    (None, (None, "2023-12-31")),
    (None, ("2024-02-01", "2024-02-01")),
    ((20.1, 49.5, 20.2, 49.6), None),  # inside the 3D bbox
    ((-179.9, 0.2, -179.7, 0.4), ("2024-01-03", "2024-01-03")),
    ((179.6, 0.2, 179.7, 0.4), None),
    ((11.7, 49.4, 11.8, 49.5), None),  # between two items
]


def test_static_catalog_walk_matches_a_stac_api_search(pystac_catalog: Any) -> None:
    """The static walk keeps the items a STAC API search of the same items returns:
    start/end intervals that overlap the range, 3D bboxes, antimeridian items."""
    static = str(pystac_catalog.get_self_href())
    items = []
    for item in pystac_catalog.get_items(recursive=True):
        d = item.clone()
        d.make_asset_hrefs_absolute()
        items.append({**d.to_dict(), "links": []})
    coll_dict = {**next(pystac_catalog.get_all_collections()).to_dict(), "links": []}
    api = _start(RustacServer([coll_dict], items))
    try:
        for bbox, dates in _SEARCHES:
            kw = dict(name="x", collection="C", bbox=bbox, date_range=dates, progress=False)
            walked = build_from_stac(stac_api=static, static_catalog=True, **kw)
            searched = build_from_stac(stac_api=api.url, **kw)
            assert _ids(walked) == _ids(searched), (bbox, dates)
            assert not len(walked.errors())
    finally:
        api.stop()
    jan = build_from_stac(
        name="x", stac_api=static, collection="C", date_range=("2024-01-01", "2024-01-31"),
        static_catalog=True, progress=False,
    )  # fmt: skip
    assert _ids(jan) == ["3d", "am", "dated", "feb", "interval", "late"]


def test_subset_dates_match_items_as_the_search_did(pystac_catalog: Any) -> None:
    """Collection.subset(date_range=...) keeps an item whose start/end interval meets the
    range, as the STAC search did (it tested the start alone: a build for January,
    subset to January, lost the item whose interval began in December)."""
    static = str(pystac_catalog.get_self_href())
    everything = build_from_stac(
        name="x", stac_api=static, collection="C", static_catalog=True, progress=False
    )
    for dates in [("2024-01-01", "2024-01-31"), ("2024-01-05", None), ("2024-02-01", "2024-02-01"),
                  (None, "2023-12-31"), ("2024-01-11", "2024-01-20")]:  # fmt: skip
        searched = build_from_stac(
            name="x", stac_api=static, collection="C", static_catalog=True, date_range=dates,
            progress=False,
        )  # fmt: skip
        assert _ids(everything.subset(date_range=dates)) == _ids(searched), dates
        assert _ids(searched.subset(date_range=dates)) == _ids(searched), dates
    schema = everything.table.schema
    assert str(schema.field("start_datetime").type) == "timestamp[us, tz=UTC]"


def test_static_item_collection_and_single_item(pystac_catalog: Any, tmp_path: Any) -> None:
    """An item collection file (a FeatureCollection, relative hrefs resolved against it)
    and a single item file are static roots too, as a catalog is."""
    import json

    data = Path(static_root(pystac_catalog)) / "data"
    features = []
    for item in pystac_catalog.get_items(recursive=True):
        d = {**item.to_dict(transform_hrefs=False), "links": []}  # no self link: hrefs are
        d["assets"]["data"]["href"] = f"data/{item.id}.tif"  # relative to the file
        features.append(d)
    path = tmp_path / "nested" / "items.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    (tmp_path / "nested" / "data").symlink_to(data)
    coll = build_from_stac(
        name="x", stac_api=str(path), collection="C", static_catalog=True,
        date_range=("2024-01-01", "2024-01-31"), progress=False,
    )  # fmt: skip
    assert _ids(coll) == ["3d", "am", "dated", "feb", "interval", "late"]
    assert not len(coll.errors())
    hrefs = [a[0][1]["href"] for a in coll.table.column("assets").to_pylist()]
    assert all(h.startswith(str(tmp_path / "nested" / "data")) for h in hrefs)
    one = build_from_stac(
        name="x", stac_api=_item_file(pystac_catalog, "dated"), collection="C",
        static_catalog=True, progress=False,
    )  # fmt: skip
    assert _ids(one) == ["dated"] and not len(one.errors())


def test_static_catalog_over_http_resolves_hrefs_as_pystac(tmp_path: Any) -> None:
    """Asset hrefs of a static catalog read over HTTP resolve as pystac resolves them:
    a path-absolute href (``/data/x.tif``) is on the catalog's host, not a local path."""
    import pystac

    from tessellum.testing.servers import HttpServer

    cat = _pystac_catalog(tmp_path / "site" / "stac")
    for item in cat.get_items(recursive=True):  # "/stac/data/<id>.tif", from the host root
        item.assets["data"].href = f"/stac/data/{item.id}.tif"
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    with HttpServer(tmp_path / "site") as http:
        root = f"{http.url}/stac/catalog.json"
        coll = build_from_stac(
            name="x", stac_api=root, collection="C", static_catalog=True, progress=False
        )
        expected = {
            i.id: i.assets["data"].get_absolute_href()
            for i in pystac.read_file(root).get_items(recursive=True)
        }
    assert not len(coll.errors())
    got = {
        r["id"]: r["assets"][0][1]["href"] for r in coll.table.select(["id", "assets"]).to_pylist()
    }
    assert got == expected
    assert all(h.startswith(f"{http.url}/stac/data/") for h in got.values())


@pytest.mark.parametrize(
    ("href", "base"),
    [
        ("/data/x.tif", "http://h:1/stac/a/item.json"),
        ("../d/x.tif", "https://h/stac/a/item.json"),
        ("x.tif", "s3://bucket/k/item.json"),
        ("../../x.tif", "s3://bucket/k/item.json"),
        ("./x%20y.tif?sig=1", "gs://b/k/item.json"),
        ("x.tif", "file:///tmp/a/item.json"),
        ("../x.tif", "/tmp/a/b/item.json"),
        ("s3://other/x.tif", "http://h/a/item.json"),
    ],
)
def test_relative_asset_hrefs_resolve_as_pystac(href: str, base: str) -> None:
    from pystac.utils import make_absolute_href

    from tessellum.collection.records import record_from_stac_item

    item = {"id": "i", "properties": {}, "assets": {"data": {"href": href, "type": "image/tiff"}}}
    record = record_from_stac_item(item, base_href=base)
    assert record.assets["data"].href == make_absolute_href(href, base)


def test_unknown_collection_is_named_not_an_empty_build(served: Any, pystac_catalog: Any) -> None:
    """A collection id the API (or the static catalog) does not have is a ValidationError
    naming it and the ones there are (the build was silently empty); a search that
    matches nothing in a known collection is still an empty collection."""
    with pytest.raises(ValidationError, match=r"'sentinel-2'.*not found.*sentinel-2-l2a"):
        build_from_stac(name="x", stac_api=served.stac_url, collection="sentinel-2",
                        progress=False)  # fmt: skip
    empty = build_from_stac(name="x", stac_api=served.stac_url, collection="sentinel-2-l2a",
                            bbox=(0, 0, 1, 1), progress=False)  # fmt: skip
    assert len(empty) == 0
    static = str(pystac_catalog.get_self_href())
    with pytest.raises(ValidationError, match=r"'c'.*\['C'\]"):
        build_from_stac(name="x", stac_api=static, collection="c", static_catalog=True,
                        progress=False)  # fmt: skip
    none_match = build_from_stac(name="x", stac_api=static, collection="C", bbox=(0, 0, 1, 1),
                                 static_catalog=True, progress=False)  # fmt: skip
    assert len(none_match) == 0


def test_unsplit_antimeridian_items_are_split(pystac_catalog: Any, tmp_path: Any) -> None:
    """Items across ±180 written unsplit (longitudes past 180, or a ring jumping from
    179.55 to -179.55 under a bbox whose west > east) get the footprint of the item
    split as RFC 7946 asks: their bbox is the item's and both sides find them (the first
    was found east only, the second was a band around the globe found at 0°E)."""
    import json

    href = str(Path(static_root(pystac_catalog)) / "data" / "am.tif")
    rings = {
        "past-180": [[179.55, 0.1], [180.45, 0.1], [180.45, 0.9], [179.55, 0.9], [179.55, 0.1]],
        "jumping": [[179.55, 0.1], [-179.55, 0.1], [-179.55, 0.9], [179.55, 0.9], [179.55, 0.1]],
    }
    features = [
        {"type": "Feature", "stac_version": "1.1.0", "id": name, "collection": "C",
         "geometry": {"type": "Polygon", "coordinates": [ring]},
         "bbox": [179.55, 0.1, -179.55, 0.9], "links": [],
         "properties": {"datetime": "2024-01-03T00:00:00Z"},
         "assets": {"data": {"href": href, "type": "image/tiff; application=geotiff"}}}
        for name, ring in rings.items()
    ]  # fmt: skip
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    coll = build_from_stac(name="x", stac_api=str(path), collection="C", static_catalog=True,
                           progress=False)  # fmt: skip
    assert not len(coll.errors())
    for row in coll.table.select(["bbox"]).to_pylist():
        assert tuple(row["bbox"].values()) == pytest.approx((179.55, 0.1, -179.55, 0.9))
    for box in [(-179.9, 0.2, -179.7, 0.4), (179.6, 0.2, 179.7, 0.4)]:
        assert _ids(coll.subset(bbox=box)) == ["jumping", "past-180"], box
        assert _ids(coll.subset(geometries=shapely.box(*box))) == ["jumping", "past-180"], box
    assert not len(coll.subset(bbox=(0, 0, 1, 1)))
    for fp in shapely.from_wkb(coll.table.column("geometry").to_pylist()):
        assert fp.bounds[0] >= -180 and fp.bounds[2] <= 180


def test_max_items_caps_an_antimeridian_search(pystac_catalog: Any) -> None:
    """A bbox across ±180 is searched as two boxes: max_items caps the items of both
    together (each box had its own cap: twice as many items)."""
    base = next(i for i in pystac_catalog.get_items(recursive=True) if i.id == "am")
    items = []
    for n in range(6):
        d = base.clone()
        d.make_asset_hrefs_absolute()
        item = {**d.to_dict(), "id": f"am-{n}", "links": []}
        lon = 179.6 if n % 2 else -179.6  # three on each side
        item["geometry"] = shapely.geometry.mapping(shapely.box(lon, 0.2, lon + 0.1, 0.3))
        item["bbox"] = [lon, 0.2, lon + 0.1, 0.3]
        items.append(item)
    coll_dict = {**next(pystac_catalog.get_all_collections()).to_dict(), "links": []}
    api = _start(RustacServer([coll_dict], items))
    try:
        kw = dict(name="x", stac_api=api.url, collection="C", bbox=(179, 0, -179, 1),
                  progress=False)  # fmt: skip
        assert len(build_from_stac(**kw)) == 6
        for cap in (1, 2, 4):
            assert len(build_from_stac(max_items=cap, **kw)) == cap
    finally:
        api.stop()


def test_items_without_a_geotiff_asset_are_named(pystac_catalog: Any, tmp_path: Any) -> None:
    """Items none of whose assets says GeoTIFF (a JPEG 2000, an extension-less URL
    without a media type) give records without bands: a warning names them and the
    assets (the build was silently bandless); band_map reads such an asset."""
    import json
    import shutil

    from tessellum.errors import TessellumWarning

    src = Path(static_root(pystac_catalog)) / "data" / "dated.tif"
    shutil.copy(src, tmp_path / "scene")  # a GeoTIFF whose name does not say so
    item = {"type": "Feature", "stac_version": "1.1.0", "id": "s1", "collection": "C",
            "geometry": None, "links": [], "properties": {"datetime": "2024-01-15T00:00:00Z"},
            "assets": {"img": {"href": "scene"}, "preview": {"href": "p.jp2", "type": "image/jp2"}}}  # fmt: skip
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [item]}))
    kw = dict(name="x", stac_api=str(path), collection="C", static_catalog=True, progress=False)
    with pytest.warns(TessellumWarning, match=r"1 of 1 items have no GeoTIFF.*s1.*img \(no type\)"):
        bare = build_from_stac(**kw)
    assert bare.bands == []
    picked = build_from_stac(band_map={"B": "img"}, **kw)
    assert picked.bands == ["B"] and not len(picked.errors())


def test_assets_without_href_are_not_bands() -> None:
    """An asset without an href (invalid STAC: null, missing or empty) is no band (a
    missing one failed the whole build with KeyError 'href', a null one became a band
    whose href was None)."""
    from tessellum.collection.records import record_from_stac_item

    tif = "image/tiff; application=geotiff"
    item = {"id": "i", "properties": {}, "assets": {
        "missing": {"type": tif}, "null": {"href": None, "type": tif},
        "empty": {"href": "", "type": tif}, "ok": {"href": "b.tif", "type": tif}}}  # fmt: skip
    for base in (None, "/data/item.json"):
        record = record_from_stac_item(item, base_href=base)
        assert list(record.assets) == ["ok"]


def test_static_bbox_filter_without_item_bboxes_as_a_search(tmp_path: Any) -> None:
    """A static walk's bbox filter tests an item's geometry (not its bbox: a box inside
    a triangle's bbox but outside the triangle kept it), and keeps no item without a
    location, as a STAC API search does (items without bbox were always kept)."""
    import json

    def item(name: str, geometry: Any, bbox: Any) -> dict:
        out = {"type": "Feature", "stac_version": "1.1.0", "id": name, "collection": "F",
               "geometry": geometry, "links": [], "properties": {"datetime": "2024-01-01T00:00:00Z"},
               "assets": {"data": {"href": f"/nonexistent/{name}.tif", "type": "image/tiff"}}}  # fmt: skip
        return {**out, "bbox": bbox} if bbox else out

    square = shapely.geometry.mapping(shapely.box(10, 50, 11, 51))
    triangle = shapely.geometry.mapping(shapely.Polygon([(10, 50), (11, 50), (10, 51)]))
    items = [item("nowhere", None, None), item("no-bbox", square, None),
             item("both", square, [10, 50, 11, 51]), item("triangle", triangle, [10, 50, 11, 51])]  # fmt: skip
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    coll = {"type": "Collection", "stac_version": "1.1.0", "id": "F", "description": "f",
            "license": "other", "links": [], "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [[None, None]]}}}  # fmt: skip
    api = _start(RustacServer([coll], items))
    try:
        # inside the triangle, inside its bbox only, elsewhere, no filter
        for bbox in [(10.2, 50.2, 10.4, 50.4), (10.8, 50.8, 10.9, 50.9), (0, 0, 1, 1), None]:
            kw = dict(name="x", collection="F", bbox=bbox, progress=False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the files do not exist
                walked = build_from_stac(stac_api=str(path), static_catalog=True, **kw)
                searched = build_from_stac(stac_api=api.url, **kw)
            assert _ids(walked) == _ids(searched), bbox
    finally:
        api.stop()


def test_static_items_without_a_collection_field_belong_to_their_collection(
    pystac_catalog: Any, tmp_path: Any
) -> None:
    """Items that leave out the 'collection' field (and link) belong to the collection
    that holds them in the catalog, as pystac's parent says (they matched no collection:
    an empty build)."""
    import json
    import shutil

    root = tmp_path / "cat"
    shutil.copytree(static_root(pystac_catalog), root)
    for path in root.rglob("*.json"):
        doc = json.loads(path.read_text())
        if doc.get("type") == "Feature":
            doc.pop("collection", None)
            doc["links"] = [link for link in doc["links"] if link["rel"] != "collection"]
            path.write_text(json.dumps(doc))
    coll = build_from_stac(name="x", stac_api=str(root / "catalog.json"), collection="C",
                           static_catalog=True, progress=False)  # fmt: skip
    assert _ids(coll) == sorted(i.id for i in pystac_catalog.get_items(recursive=True))
    assert set(coll.table.column("collection").to_pylist()) == {"C"}


def static_root(catalog: Any) -> str:
    return str(Path(catalog.get_self_href()).parent)


def _item_file(catalog: Any, item_id: str) -> str:
    return next(i for i in catalog.get_items(recursive=True) if i.id == item_id).get_self_href()


# -- date ranges ------------------------------------------------------------------------------


def test_date_range_end_is_inclusive_of_the_whole_day(served: Any) -> None:
    jan = build_from_stac(
        name="s2", stac_api=served.stac_url, collection="sentinel-2-l2a",
        date_range=("2024-01-01", "2024-01-31"), progress=False,
    )  # fmt: skip
    ids = _ids(jan)
    assert "S2B_12TTM_20240131_0_L2A" in ids  # 2024-01-31T23:10Z
    assert "S2A_11TQG_20240201_0_L2A" not in ids  # 2024-02-01T00:05Z
    feb = build_from_stac(
        name="s2", stac_api=served.stac_url, collection="sentinel-2-l2a",
        date_range=("2024-02-01", "2024-02-01"), progress=False,
    )  # fmt: skip
    assert _ids(feb) == ["S2A_11TQG_20240201_0_L2A"]


@pytest.mark.parametrize(
    ("dates", "interval"),
    [
        (("..", "2024-01-31"), "../2024-01-31T23:59:59.999999Z"),
        (("2024-01-20", ".."), "2024-01-20T00:00:00Z/.."),
        (("", "2024-01-05"), "../2024-01-05T23:59:59.999999Z"),
    ],
)
def test_open_date_range_sides_as_in_stac(served: Any, dates: tuple, interval: str) -> None:
    """'..' (or '') is an open side of date_range, as in a STAC datetime interval and the
    CLI's --dates (it was refused: cannot parse '..'); the build keeps what pystac-client's
    search of the same interval returns."""
    from pystac_client import Client

    coll = build_from_stac(name="s2", stac_api=served.stac_url, collection="sentinel-2-l2a",
                           date_range=dates, progress=False)  # fmt: skip
    search = Client.open(served.stac_url).search(
        collections=["sentinel-2-l2a"], datetime=interval, method="POST"
    )
    expected = sorted(i.id for i in search.items())
    assert _ids(coll) == expected and len(expected) > 0


@pytest.mark.parametrize(
    "text",
    ["2024-01-01T00:00:00z", "2024-01-01t10:30:00.123456789Z", "2024-01-01 00:00:00+0000",
     "2024-01-01T05:30:00.5+05:30", "2024-01-01T00:00Z"],
)  # fmt: skip
def test_item_datetimes_read_as_pystac_reads_them(text: str) -> None:
    """RFC 3339 datetimes of STAC items (a lower-case 'z' too: it failed the whole build)
    are the instants pystac reads."""
    from pystac.utils import str_to_datetime

    from tessellum.collection.records import record_from_stac_item

    item = {"id": "i", "properties": {"datetime": text}, "assets": {}}
    assert record_from_stac_item(item).datetime == str_to_datetime(text)


@pytest.mark.parametrize("dates", [(None, None), ("..", ".."), ("", None)])
def test_a_date_range_open_both_ways_is_no_filter(served: Any, dates: tuple) -> None:
    """A date_range open on both sides searches without a datetime filter (it sent
    '../..', which the API refuses: 'empty datetime interval', a failed build)."""
    kw = dict(name="s2", stac_api=served.stac_url, collection="sentinel-2-l2a", progress=False)
    assert _ids(build_from_stac(date_range=dates, **kw)) == _ids(build_from_stac(**kw))


# -- cache ------------------------------------------------------------------------------------


def _tif_requests(served: Any) -> int:
    return sum(1 for r in served.http.requests() if r.path.endswith(".tif"))


def test_cache_key_covers_bbox_and_force_rebuilds(served: Any, tmp_path: Any) -> None:
    kw = dict(
        name="s2", stac_api=served.stac_url, collection="sentinel-2-l2a",
        workspace_dir=tmp_path, progress=False,
    )  # fmt: skip
    zone12 = (-114.2, 41.9, -114.1, 42.2)
    zone11_only = (-113.95, 41.9, -113.9, 42.2)
    served.http.reset_log()
    a = build_from_stac(bbox=zone12, date_range=("2024-01-01", "2024-01-31"), **kw)
    assert _tif_requests(served) == 6 * len(a) and len(a) == 3
    served.http.reset_log()
    again = build_from_stac(bbox=zone12, date_range=("2024-01-01", "2024-01-31"), **kw)
    assert _tif_requests(served) == 0  # same parameters: the saved collection
    assert _ids(again) == _ids(a)
    other = build_from_stac(bbox=zone11_only, date_range=("2024-01-01", "2024-01-31"), **kw)
    assert _ids(other) != _ids(a)  # a new bbox never returns the stale collection
    assert all("11TQG" in i for i in _ids(other))
    wider = build_from_stac(bbox=zone12, date_range=("2024-01-01", "2024-02-01"), **kw)
    assert len(wider) == len(a)  # zone 12 has no Feb item, but it is a different build
    banded = build_from_stac(
        bbox=zone12, date_range=("2024-01-01", "2024-01-31"), band_map={"red": "red"}, **kw
    )
    assert banded.bands == ["red"]
    served.http.reset_log()
    forced = build_from_stac(bbox=zone12, date_range=("2024-01-01", "2024-01-31"), force=True, **kw)
    assert _tif_requests(served) == 6 * len(forced)
    saved = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert len(saved) == 4  # zone12, zone11, wider dates, band map; force overwrote zone12


# -- antimeridian -----------------------------------------------------------------------------


def test_antimeridian_search_and_footprint(served: Any) -> None:
    coll = build_from_stac(
        name="am", stac_api=served.stac_url, collection="edge-cases",
        bbox=(179.0, -18.0, -179.0, -16.0), progress=False,
    )  # fmt: skip
    assert _ids(coll) == ["edge-antimeridian"]
    geom = shapely.from_wkb(coll.table.column("geometry")[0].as_py())
    assert geom.geom_type == "MultiPolygon" and len(geom.geoms) == 2
    w, _, e, _ = geom.bounds
    assert (w, e) == (-180.0, 180.0)  # split at ±180, never a 359° wide polygon
    assert geom.area == pytest.approx(1.0 * (17 + 1 / 6 - 16.5))
    b = coll.table.column("bbox")[0].as_py()
    assert b["xmin"] == pytest.approx(179.5) and b["xmax"] == pytest.approx(-179.5)
    assert coll.bounds == pytest.approx((179.5, -17 - 1 / 6, -179.5, -16.5))


def test_antimeridian_subset(served: Any) -> None:
    coll = build_from_stac(
        name="edge", stac_api=served.stac_url, collection="edge-cases", progress=False
    )
    hit = ["edge-antimeridian"]
    assert _ids(coll.subset(bbox=(179.9, -17.0, -179.9, -16.6))) == hit  # crossing box
    assert _ids(coll.subset(bbox=(-179.8, -17.0, -179.6, -16.6))) == hit  # east side only
    assert _ids(coll.subset(bbox=(179.6, -17.0, 179.8, -16.6))) == hit  # west side only
    assert not len(coll.subset(bbox=(170.0, -17.0, 179.0, -16.6)))
    assert not len(coll.subset(bbox=(-179.0, -17.0, -170.0, -16.6)))
    point = shapely.Point(-179.7, -16.8)
    assert _ids(coll.subset(geometries=point)) == hit
    assert not len(coll.subset(geometries=shapely.Point(-179.2, -16.8)))
    # the collection spans Utah and Fiji: its bounds cross the antimeridian
    w, _, e, _ = coll.bounds
    assert w == pytest.approx(179.5) and e == pytest.approx(-111.35, abs=0.01)


def test_landing_page_is_read_once_and_a_stale_one_is_replaced(
    rustac_many: RustacServer, world: Any, served: Any
) -> None:
    """An API's landing page is read once per process; when the remembered one no longer
    leads to a working search (the API moved or restarted elsewhere), the search is
    tried once more with a freshly read landing page."""
    from tessellum.collection import stac

    url = rustac_many.url
    stac.search_items(url, "dem-copies", max_items=1)
    assert stac._open_api(url)[1]  # from the cache
    # remember, for this URL, a landing page whose search endpoint is gone
    gone = _start(RustacServer(world.collections(served.data_url), world.items(served.data_url)))
    stale, _ = stac._open_api(gone.url)
    gone.stop()
    stac._APIS[url] = stale
    items = stac.search_items(url, "dem-copies")
    assert len(items) == N_EXTRA
    assert stac._open_api(url)[0] is not stale
