"""Attribute engine: values vs exactextract on the same files, batch read sharing, QC,
timeouts and failing providers."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest
import rasterio
import shapely
from shapely.geometry import Point, box, mapping

from _attr_world import CLASSES, RES, X0, Y0, build_world, random_polygons
from tessellum.attributes import (
    AggregationMethod,
    AttributeEngine,
    AttributeRequest,
    BatchAttributeRequest,
    MemoryResultCache,
    NullResultCache,
    QCConfig,
    QualityFlag,
    StaticCollectionSource,
    TimeRange,
    batch_extract,
    extract,
    extract_sync,
)
from tessellum.attributes.zonal import weighted_quantile
from tessellum.errors import DatasetNotFoundError, TessellumWarning, UpstreamError

DEM = "copernicus_dem:elevation"
LC = "esa_worldcover:land_cover"


@pytest.fixture(scope="module")
def aw(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("attr_world"))


def engine_for(aw, cache=None, **sources):
    coll = {**aw.collections, **sources}
    return AttributeEngine(
        catalog=aw.catalog,
        cache=cache if cache is not None else NullResultCache(),
        collections=StaticCollectionSource(coll),
    )


def _reference(path, polys, ops):
    import rasterio
    from exactextract import exact_extract

    feats = [
        {"type": "Feature", "properties": {"i": i}, "geometry": mapping(p)}
        for i, p in enumerate(polys)
    ]
    with rasterio.open(path) as ds:
        return [f["properties"] for f in exact_extract(ds, feats, ops, output="geojson")]


_AREA = "(coverage_weight=area_spherical_m2)"
_DEM_OPS = {
    "mean": f"mean{_AREA}",
    "median": f"median{_AREA}",
    "std": f"stdev{_AREA}",
    "sum": "sum",
    "min": "min",
    "max": "max",
}


@pytest.mark.parametrize("agg", list(_DEM_OPS))
async def test_continuous_matches_exactextract(aw, agg):
    polys = random_polygons(80, seed=3)
    ref = _reference(aw.dem_full, polys, [_DEM_OPS[agg]])
    resp = await batch_extract(polys, [DEM], aggregation=agg, engine=engine_for(aw))
    key = _DEM_OPS[agg].split("(")[0]
    checked = 0
    for item, expected in zip(resp.items, ref, strict=True):
        got = item.results[0].value
        want = expected[key]
        if want is None or (isinstance(want, float) and math.isnan(want)):
            assert got is None
            continue
        assert got == pytest.approx(want, rel=2e-5, abs=1e-3), (agg, item.geometry_hash)
        checked += 1
    assert checked >= 70


@pytest.mark.parametrize("agg", ["majority", "minority", "unique", "distribution"])
async def test_categorical_matches_exactextract(aw, agg):
    polys = random_polygons(60, seed=5)
    ops = {
        "majority": [f"majority{_AREA}"],
        "minority": [f"minority{_AREA}"],
        "unique": ["unique"],
        "distribution": ["unique", f"frac{_AREA}"],
    }[agg]
    ref = _reference(aw.lc_full, polys, ops)
    resp = await batch_extract(polys, [LC], aggregation=agg, engine=engine_for(aw))
    for item, expected in zip(resp.items, ref, strict=True):
        res = item.results[0]
        if agg in ("majority", "minority"):
            assert res.value == int(expected[agg])
            assert res.class_names == {str(res.value): CLASSES[res.value]}
        elif agg == "unique":
            assert res.value == sorted(int(v) for v in expected["unique"])
        else:
            want = {
                str(int(c)): f for c, f in zip(expected["unique"], expected["frac"], strict=True)
            }
            assert set(res.value) == set(want)
            for code, frac in want.items():
                assert res.value[code] == pytest.approx(frac, abs=1e-5)
            assert sum(res.value.values()) == pytest.approx(1.0)
            assert set(res.class_names) == set(want)


async def test_scale_and_offset_give_values_in_units(aw, tmp_path):
    """A catalog entry's ``scale`` / ``offset`` (stored value -> units) were declared but
    never applied: statistics came back as stored values labelled in ``units`` and the
    valid range (in units) was checked against them. exactextract on the stored values,
    scaled: mean/median/min/max ``x s + o``, std ``x |s|``, sum ``x s + o x coverage``."""
    scale, offset = -0.25, 1000.0  # a negative scale swaps min and max
    entry = aw.catalog.get(DEM).model_copy(
        update={"scale": scale, "offset": offset, "valid_range": (550.0, 1000.0)}
    )
    eng = AttributeEngine(
        catalog=aw.catalog.register(entry, replace=True),
        cache=NullResultCache(),
        collections=StaticCollectionSource(aw.collections),
    )
    polys = random_polygons(30, seed=11)
    ref = _reference(aw.dem_full, polys, [*_DEM_OPS.values(), "count"])
    for agg, op in _DEM_OPS.items():
        resp = await batch_extract(polys, [DEM], aggregation=agg, engine=eng)
        for item, expected in zip(resp.items, ref, strict=True):
            raw = expected[op.split("(")[0]]
            if raw is None or math.isnan(raw):
                continue
            want = {
                "mean": raw * scale + offset, "median": raw * scale + offset,
                "std": raw * abs(scale), "sum": raw * scale + offset * expected["count"],
                "min": expected["max"] * scale + offset, "max": expected["min"] * scale + offset,
            }[agg]  # fmt: skip
            res = item.results[0]
            assert res.value == pytest.approx(want, rel=2e-5, abs=1e-3), (agg, res.value, want)
            if agg == "mean":
                assert res.quality in (QualityFlag.good, QualityFlag.partial), res.qc_notes
    pt = Point(X0 + 10.5 * RES, Y0 - 20.5 * RES)
    with rasterio.open(aw.dem_full) as ds:
        stored = float(ds.read(1)[20, 10])
    r = (await extract(pt, [DEM], engine=eng)).results[0]
    assert r.value == pytest.approx(stored * scale + offset)
    # an undeclared fill is still found (and named as stored) among the scaled values
    from tessellum.collection import build_from_files_async

    filled = tmp_path / "filled"
    filled.mkdir()
    for p in aw.dem_tiles:
        with rasterio.open(p) as src:
            prof, a = src.profile, src.read(1)
        a[0, 0] = -9999.0
        with rasterio.open(filled / p.name, "w", **prof) as dst:
            dst.write(a, 1)
    eng.collections = StaticCollectionSource(
        {DEM: await build_from_files_async(filled, name="filled", band="elevation")}
    )
    r = (await extract(box(X0, Y0 - 0.05, X0 + 0.05, Y0), [DEM], engine=eng)).results[0]
    assert r.quality == QualityFlag.suspect
    assert "pixels equal to common fill values [-9999.0] (not declared nodata)" in r.qc_notes


async def test_nodata_never_leaks_and_coverage(aw):
    # a box exactly over half of the (100:130, 40:70) nodata hole
    hole = box(X0 + 40 * RES, Y0 - 130 * RES, X0 + 100 * RES, Y0 - 100 * RES)
    r = (await extract(hole, [DEM], aggregation="min", engine=engine_for(aw))).results[0]
    assert r.value > 0  # -32767 never appears
    assert r.coverage_fraction == pytest.approx(0.5, abs=0.01)
    assert r.quality == QualityFlag.partial
    inside = box(X0 + 45 * RES, Y0 - 125 * RES, X0 + 65 * RES, Y0 - 105 * RES)
    r = (await extract(inside, [DEM], engine=engine_for(aw))).results[0]
    assert r.value is None and r.coverage_fraction == 0 and r.quality == QualityFlag.missing


async def test_points_on_tile_corners_take_that_tile_pixel(aw, tmp_path):
    """A point exactly on a pixel edge is in the pixel right of / below it (GDAL's and
    rasterio's floor). Points at the corner of every tile of a Copernicus-style dataset
    (pixel edges half a pixel off the degree lattice), from the tile's own transform:
    the read grid's origin is a float sum, so a point's column came out as 0.99999...
    of the pixel before; at the dataset's top-left corner that pixel is outside every
    tile and the point was ``missing`` ("the point's pixel is nodata")."""
    import rasterio
    from rasterio.transform import from_origin

    from tessellum.collection import build_from_files_async

    res, n = 1 / 1200, 60
    rng = np.random.default_rng(4)
    pts, want = [], []
    for r in range(2):
        for c in range(2):
            t = from_origin(10.0 + c * n * res - res / 2, 47.0 - r * n * res + res / 2, res, res)
            data = rng.uniform(100, 900, (n, n)).astype("float32")
            with rasterio.open(
                tmp_path / f"t{r}{c}.tif", "w", driver="GTiff", width=n, height=n, count=1,
                dtype="float32", crs="EPSG:4326", transform=t, nodata=-32767.0,
            ) as ds:  # fmt: skip
                ds.write(data, 1)
            pts.append(Point(t.c, t.f))
            want.append(float(data[0, 0]))
    coll = await build_from_files_async(tmp_path, name="corners", band="elevation")
    resp = await batch_extract(pts, [DEM], engine=engine_for(aw, **{DEM: coll}))
    assert [item.results[0].value for item in resp.items] == want


async def test_points_nearest_and_bilinear(aw):
    import rasterio

    rng = np.random.default_rng(2)
    pts = [
        Point(X0 + rng.uniform(0.01, 0.99) * 240 * RES, Y0 - rng.uniform(0.01, 0.99) * 240 * RES)
        for _ in range(30)
    ]
    with rasterio.open(aw.dem_full) as ds:
        want = [v[0] for v in ds.sample([(p.x, p.y) for p in pts])]
    resp = await batch_extract(pts, [DEM], engine=engine_for(aw))
    for item, w in zip(resp.items, want, strict=True):
        res = item.results[0]
        if w == -32767.0:
            assert res.value is None and res.quality == QualityFlag.missing
        else:
            assert res.value == pytest.approx(float(w)) and res.pixel_count == 1
    # bilinear at a pixel centre is that pixel; between two centres it is their mean
    with rasterio.open(aw.dem_full) as ds:
        a = ds.read(1)
    cx, cy = X0 + 10.5 * RES, Y0 - 20.5 * RES
    r = (
        await extract(Point(cx, cy), [DEM], point_method="bilinear", engine=engine_for(aw))
    ).results[0]
    assert r.value == pytest.approx(float(a[20, 10]), rel=1e-6)
    r = (
        await extract(
            Point(cx + RES / 2, cy), [DEM], point_method="bilinear", engine=engine_for(aw)
        )
    ).results[0]
    assert r.value == pytest.approx((float(a[20, 10]) + float(a[20, 11])) / 2, rel=1e-6)
    assert r.quality == QualityFlag.estimated
    # categorical data is never interpolated
    r = (
        await extract(
            Point(cx + RES / 2, cy),
            [LC],
            aggregation="majority",
            point_method="bilinear",
            engine=engine_for(aw),
        )
    ).results[0]
    assert r.value in CLASSES


async def test_every_aggregation_differs(aw):
    poly = box(X0 + 0.1, Y0 - 0.6, X0 + 0.5, Y0 - 0.2)
    eng = engine_for(aw)
    vals = {
        a: (await extract(poly, [DEM], aggregation=a, engine=eng)).results[0].value
        for a in ["mean", "median", "min", "max", "std", "sum"]
    }
    assert len({round(v, 3) for v in vals.values()}) == 6  # never silently a mean


async def test_batch_reads_each_tile_once(aw):
    from tessellum.read import default_tile_cache
    from tessellum.store import collect_stats

    polys = random_polygons(120, seed=9)
    default_tile_cache().clear()
    with collect_stats() as batch:
        await batch_extract(polys, [DEM, LC], aggregation="majority", engine=engine_for(aw))
    per_geom = 0
    for p in polys[:30]:
        default_tile_cache().clear()
        with collect_stats() as one:
            await extract(p, [DEM, LC], aggregation="majority", engine=engine_for(aw))
        per_geom += one.requests
    # 2 datasets x 4 files x 16 tiles: the batch can never need more than that
    assert batch.requests <= 2 * 4 * 16
    assert batch.requests * 2 < per_geom  # 30 single requests already cost more than 120 batched
    print(f"\nbatch 120 geoms: {batch.requests} requests; 30 single geoms: {per_geom}")


async def test_qc_flags_and_consistency(aw):
    # nasadem backed by data 200 m lower: same variable + units -> a warning naming both
    import rasterio

    from tessellum.collection import build_from_files_async

    shifted = aw.root / "shifted"
    shifted.mkdir(exist_ok=True)
    for p in aw.dem_tiles:
        with rasterio.open(p) as src:
            prof, a = src.profile, src.read(1)
        a = np.where(a == -32767, a, a - 400).astype("float32")
        a[0, 0] = -9999.0  # an undeclared fill value
        with rasterio.open(shifted / p.name, "w", **prof) as dst:
            dst.write(a, 1)
    nasa = await build_from_files_async(shifted, name="nasa", band="elevation")
    eng = engine_for(aw, **{"nasadem:elevation": nasa})
    poly = box(X0, Y0 - 0.05, X0 + 0.05, Y0)
    resp = await extract(poly, [DEM, "nasadem:elevation", LC], aggregation="mean", engine=eng)
    by = {r.dataset_id: r for r in resp.results}
    assert by[DEM].quality == QualityFlag.good
    assert by["nasadem:elevation"].quality == QualityFlag.suspect
    assert any("-9999" in n for n in by["nasadem:elevation"].qc_notes)
    assert any(DEM in w and "nasadem:elevation" in w for w in resp.warnings)
    assert not any(LC in w and "inconsistent" in w for w in resp.warnings)  # other variable
    assert by[LC].quality == QualityFlag.suspect  # the mean of class codes
    # thresholds are configurable
    strict = AttributeEngine(
        catalog=aw.catalog,
        cache=NullResultCache(),
        collections=StaticCollectionSource(aw.collections),
        qc=QCConfig(partial_below=1.0, missing_below=0.999),
    )
    edge = box(X0 - 0.1, Y0 - 0.2, X0 + 0.1, Y0 - 0.1)  # half outside the world
    r = (await extract(edge, [DEM], engine=strict)).results[0]
    assert r.quality == QualityFlag.missing and 0.4 < r.coverage_fraction < 0.6
    r = (await extract(edge, [DEM], engine=engine_for(aw))).results[0]
    assert r.quality == QualityFlag.partial


async def test_a_record_that_cannot_be_read_degrades_the_results_under_it(aw, tmp_path):
    """A record whose header fails, with a footprint (a STAC item's geometry): results
    under it are ``degraded`` (or ``missing`` when nothing else covers them), with a note
    saying a record could not be read. Where no readable record covers the geometry the
    note said "no record covers the geometry", beside "a record ... could not be read"."""
    from tessellum.collection import build_from_records_async
    from tessellum.collection.records import AssetRef, Record

    broken = tmp_path / "broken.tif"
    broken.write_bytes(aw.dem_tiles[0].read_bytes()[:300])  # a truncated COG
    east = box(X0 + 240 * RES, Y0 - 120 * RES, X0 + 360 * RES, Y0)  # beside the world
    records = [
        Record(id=p.stem, assets={"elevation": AssetRef(str(p), "elevation")})
        for p in aw.dem_tiles
    ] + [Record(id="broken", assets={"elevation": AssetRef(str(broken), "elevation")},
                geometry=east)]  # fmt: skip
    with pytest.warns(TessellumWarning, match="1 of 5 band assets failed"):
        coll = await build_from_records_async(records, name="degraded")
    assert coll.errors().num_rows == 1
    eng = engine_for(aw, **{DEM: coll})
    inside = box(X0 + 250 * RES, Y0 - 60 * RES, X0 + 280 * RES, Y0 - 30 * RES)
    straddle = box(X0 + 200 * RES, Y0 - 60 * RES, X0 + 260 * RES, Y0 - 30 * RES)
    clear = box(X0 + 20 * RES, Y0 - 200 * RES, X0 + 50 * RES, Y0 - 170 * RES)
    resp = await batch_extract(
        [inside, straddle, Point(X0 + 250.5 * RES, Y0 - 30.5 * RES), clear], [DEM], engine=eng
    )
    (a,), (b,), (c,), (d,) = (item.results for item in resp.items)
    unreadable = "a record under the geometry could not be read"
    assert a.quality == QualityFlag.missing and a.value is None
    assert unreadable in a.qc_notes and not any("no record covers" in n for n in a.qc_notes)
    assert b.quality == QualityFlag.degraded and b.value is not None and unreadable in b.qc_notes
    assert c.quality == QualityFlag.missing
    assert c.qc_notes[0] == "no readable record covers the point" and unreadable in c.qc_notes
    one = (await extract(inside, [DEM], engine=eng)).results[0]  # alone: its own read
    assert one.quality == QualityFlag.missing
    assert one.qc_notes[0] == "no readable record covers the geometry"
    assert d.quality == QualityFlag.good and d.qc_notes == []


async def test_valid_range_suspect(aw):
    cat = aw.catalog.register(
        aw.catalog.get(DEM).model_copy(update={"valid_range": (0.0, 100.0)}), replace=True
    )
    eng = AttributeEngine(
        catalog=cat, cache=NullResultCache(), collections=StaticCollectionSource(aw.collections)
    )
    r = (await extract(box(X0 + 0.1, Y0 - 0.2, X0 + 0.2, Y0 - 0.1), [DEM], engine=eng)).results[0]
    assert r.quality == QualityFlag.suspect and "valid range" in " ".join(r.qc_notes)


async def test_failing_and_slow_providers_become_warnings(aw):
    async def slow():
        await asyncio.sleep(5)

    eng = engine_for(
        aw, **{"nasadem:elevation": UpstreamError("503 from upstream", url="http://x")}
    )
    resp = await extract(
        box(X0 + 0.1, Y0 - 0.2, X0 + 0.2, Y0 - 0.1), [DEM, "nasadem:elevation"], engine=eng
    )
    assert [r.dataset_id for r in resp.results] == [DEM]
    assert resp.failed_datasets == ["nasadem:elevation"]
    assert "UpstreamError" in resp.warnings[0]
    from tessellum.config import settings_override

    eng = engine_for(aw, **{"nasadem:elevation": slow})
    with settings_override(provider_timeout_s=0.5):
        t0 = asyncio.get_running_loop().time()
        resp = await extract(
            box(X0 + 0.1, Y0 - 0.2, X0 + 0.2, Y0 - 0.1), [DEM, "nasadem:elevation"], engine=eng
        )
        assert asyncio.get_running_loop().time() - t0 < 3
    assert resp.results[0].dataset_id == DEM and "provider timeout" in resp.warnings[0]
    eng.request_timeout_s = 0.3
    resp = await extract(
        box(X0 + 0.1, Y0 - 0.2, X0 + 0.2, Y0 - 0.1), [DEM, "nasadem:elevation"], engine=eng
    )
    assert "request timeout" in " ".join(resp.warnings)


async def test_failing_provider_in_a_batch_keeps_every_geometry(aw):
    """A batch where one dataset fails: every geometry still gets the other dataset's
    result, and the failure is a warning of the batch (not an error)."""
    eng = engine_for(
        aw, **{"nasadem:elevation": UpstreamError("503 from upstream", url="http://x")}
    )
    geoms = [box(X0 + 0.1 * k, Y0 - 0.2, X0 + 0.1 * k + 0.05, Y0 - 0.1) for k in range(1, 4)]
    resp = await batch_extract(geoms, [DEM, "nasadem:elevation"], engine=eng)
    assert resp.failed_datasets == ["nasadem:elevation"]
    assert "UpstreamError" in resp.warnings[0]
    assert len(resp.items) == 3
    assert all([r.dataset_id for r in item.results] == [DEM] for item in resp.items)


async def test_cache_hits_and_key(aw):
    cache = MemoryResultCache(ttl_s=60)
    eng = engine_for(aw, cache=cache)
    poly = box(X0 + 0.1, Y0 - 0.2, X0 + 0.2, Y0 - 0.1)
    a = (await extract(poly, [DEM], engine=eng)).results[0]
    b = (await extract(poly, [DEM], engine=eng)).results[0]
    assert not a.cached and b.cached and a.value == b.value
    c = (await extract(poly, [DEM], aggregation="max", engine=eng)).results[0]
    assert not c.cached
    assert cache.stats.hits == 1 and cache.stats.misses == 2
    calls = len(eng.collections.calls)
    await extract(poly, [DEM], engine=eng)
    assert len(eng.collections.calls) == calls  # a full hit reads nothing


def test_models_validation():
    import pydantic

    with pytest.raises(pydantic.ValidationError, match="extract_raster_sync"):
        AttributeRequest(geometry=(0, 0, 1, 1), dataset_ids=[DEM], output="raster")
    with pytest.raises(pydantic.ValidationError, match="start must be"):
        TimeRange(start="2024-02-01", end="2024-01-01")
    TimeRange(start="2024-01-31", end="2024-01-31")
    with pytest.raises(pydantic.ValidationError):
        BatchAttributeRequest(geometries=[(0, 0, 1, 1)] * 1001, dataset_ids=[DEM])
    with pytest.raises(pydantic.ValidationError, match="not supported"):
        AttributeRequest(
            geometry={"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, dataset_ids=[DEM]
        )
    with pytest.raises(pydantic.ValidationError):
        AttributeRequest(
            geometry={"type": "Polygon", "coordinates": [[[0, 0], [1]]]}, dataset_ids=[DEM]
        )
    r = AttributeRequest(geometry=shapely.box(0, 0, 1, 1), dataset_ids=[DEM, DEM])
    assert r.dataset_ids == [DEM] and r.aggregation == AggregationMethod.mean


@pytest.mark.parametrize(
    ("call", "kwargs", "names"),
    [
        ("extract", {"aggregation": "mode"}, ["aggregation", "'mode'"]),
        ("extract", {"point_method": "cubic"}, ["point_method", "'cubic'"]),
        ("extract", {"dataset_ids": []}, ["dataset_ids", "[]"]),
        ("extract", {"geometry": (10.1, 46.5, 10.2)}, ["geometry", "(10.1, 46.5, 10.2)"]),
        ("extract", {"geometry": (10.1, 46.6, 10.2, 46.5)}, ["min_lat must be < max_lat"]),
        ("extract", {"geometry": (190, 46.5, 191, 46.6)}, ["geometry.min_lon", "190"]),
        ("extract", {"time_range": ("soon", "2021-01-01")}, ["time_range", "start", "'soon'"]),
        ("extract", {"time_range": ("2021-01-01",)}, ["time_range", "('2021-01-01',)"]),
        ("batch_extract", {"aggregation": "avg"}, ["aggregation", "'avg'"]),
        ("batch_extract", {"dataset_ids": ""}, ["dataset_ids", "[]"]),
    ],
)  # fmt: skip
def test_bad_arguments_raise_tessellum_validation_error(aw, call, kwargs, names):
    """Bad arguments are a :class:`tessellum.errors.ValidationError` (a TessellumError)
    naming the field and the value, with pydantic's error as the cause; pydantic's
    own error escaped the hierarchy, and a bad box read "type: Field required"."""
    import pydantic

    import tessellum
    from tessellum.attributes import batch_extract_sync

    args = {"dataset_ids": [DEM], "engine": engine_for(aw), **kwargs}
    if call == "extract":
        fn, first = extract_sync, args.pop("geometry", (10.1, 46.5, 10.2, 46.6))
    else:
        fn, first = batch_extract_sync, [box(10.1, 46.5, 10.2, 46.6)]
    with pytest.raises(tessellum.ValidationError) as ei:
        fn(first, **args)
    assert isinstance(ei.value, tessellum.TessellumError)
    assert not isinstance(ei.value, pydantic.ValidationError)
    for name in names:
        assert name in str(ei.value), (name, str(ei.value))
    assert "Field required" not in str(ei.value)
    if "(start, end)" not in str(ei.value):
        assert isinstance(ei.value.__cause__, pydantic.ValidationError)


def test_coordinates_off_the_earth_raise_naming_geometry_and_coordinate(aw):
    """In-process extract/batch_extract check coordinates as the service does: a
    latitude of 95 is a ValidationError naming the geometry and the latitude (it was a
    failed dataset whose warning spoke of "bbox south (94.0) must be less than north
    (90.0)", a bbox the caller never sent)."""
    from tessellum.attributes import batch_extract_sync
    from tessellum.errors import ValidationError

    eng = engine_for(aw)
    with pytest.raises(ValidationError, match=r"geometry 0 has latitude 95 outside \[-90, 90\]"):
        extract_sync(Point(-112.0, 95.0), DEM, engine=eng)
    ok = box(X0 + 0.1, Y0 - 0.2, X0 + 0.2, Y0 - 0.1)
    with pytest.raises(ValidationError, match=r"geometry 2 has longitude -200 outside"):
        batch_extract_sync([ok, ok, Point(-200.0, 42.0)], [DEM], engine=eng)
    ring = box(-112, 89, -111, 91)
    with pytest.raises(ValidationError, match=r"geometry 0 has latitude 91 .*OGC:CRS84"):
        extract_sync(ring, DEM, engine=eng)
    with pytest.raises(ValidationError, match=r"geometry 1 .*finite.*EPSG:32632"):
        batch_extract_sync(
            [box(5e5, 5.2e6, 5.1e5, 5.21e6), box(-1e8, -1e8, 1e8, 1e8)],
            DEM,
            geometry_crs="EPSG:32632",
            engine=eng,
        )
    assert eng.collections.calls == []  # refused before any search
    # on the edge of the Earth: no error
    resp = batch_extract_sync([ok, Point(180.0, 90.0)], DEM, engine=eng)
    assert resp.items[0].results[0].value is not None and not resp.failed_datasets


def test_unknown_dataset_and_sync(aw):
    eng = engine_for(aw)
    with pytest.raises(DatasetNotFoundError, match="did you mean"):
        extract_sync((10.1, 46.5, 10.2, 46.6), ["copernicus_dem:elevaton"], engine=eng)
    resp = extract_sync((10.1, 46.5, 10.2, 46.6), DEM, engine=eng)
    assert resp.results[0].value is not None


async def test_projected_geometry_and_antimeridian_parts(aw):
    from pyproj import Transformer

    poly = box(X0 + 0.1, Y0 - 0.2, X0 + 0.2, Y0 - 0.1)
    t = Transformer.from_crs("OGC:CRS84", "EPSG:32632", always_xy=True)
    utm = shapely.transform(
        shapely.segmentize(poly, 0.001), lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1]))
    )
    eng = engine_for(aw)
    a = (await extract(poly, [DEM], engine=eng)).results[0].value
    b = (await extract(utm, [DEM], geometry_crs="EPSG:32632", engine=eng)).results[0].value
    assert a == pytest.approx(b, rel=1e-4)
    from tessellum.attributes.engine import _parts

    mp = shapely.MultiPolygon([box(179.5, 0, 180, 1), box(-180, 0, -179.5, 1)])
    entry = aw.catalog.get(DEM)
    parts = _parts([mp], "OGC:CRS84", entry, "nearest", entry.native_resolution)
    assert len(parts) == 2 and all(
        p.read_geom.bounds[2] - p.read_geom.bounds[0] <= 0.5 for p in parts
    )


def test_native_pixel_comes_from_the_records(aw):
    """Read grids and point boxes are sized by the records' own pixel (from their
    headers), not by the catalog's nominal ``native_resolution``; a point reads a box of
    half a pixel."""
    from shapely.geometry import Point

    from tessellum.attributes.engine import _parts, _pixel_size

    entry = aw.catalog.get(DEM)
    table = aw.collections[DEM].table
    assert _pixel_size(table, entry.variable, entry) == pytest.approx(RES, rel=1e-12)
    nominal = entry.model_copy(update={"native_resolution": RES / 30})  # a wrong catalog
    pixel = _pixel_size(table, entry.variable, nominal)
    assert pixel == pytest.approx(RES, rel=1e-12)
    (part,) = _parts([Point(X0 + 0.3, Y0 - 0.3)], "OGC:CRS84", nominal, "nearest", pixel)
    w, s, e, n = part.read_geom.bounds
    assert e - w == pytest.approx(0.5 * RES) and n - s == pytest.approx(0.5 * RES)


def test_weighted_quantile_matches_exactextract():
    from exactextract import exact_extract
    from exactextract.raster import NumPyRasterSource

    rng = np.random.default_rng(4)
    a = rng.normal(0, 10, (20, 20))
    src = NumPyRasterSource(a, 0, 0, 20, 20)
    poly = shapely.Point(10.3, 9.7).buffer(6.1)
    feat = {"type": "Feature", "properties": {}, "geometry": mapping(poly)}
    p = exact_extract(
        src, [feat], ["values", "coverage", "median", "quantile(q=0.25)"], output="geojson"
    )[0]["properties"]
    assert weighted_quantile(p["values"], p["coverage"], 0.5) == pytest.approx(p["median"])
    assert weighted_quantile(p["values"], p["coverage"], 0.25) == pytest.approx(p["quantile_25"])


def _grid(height: int, width: int, crs: str, x0: float, y0: float, res: float):
    from affine import Affine

    from tessellum.geo.grid import Grid

    return Grid(height, width, Affine(res, 0, x0, 0, -res, y0), crs)


@pytest.fixture(params=["compiled", "runs", "mixed"])
def zonal_path(request, monkeypatch):
    """Which one-pass path sums the polygons: the compiled pass (tessellum._kernels),
    coverage runs only, or both (polygons of more than 40 box cells go to runs)."""
    from tessellum.attributes import zonal

    if request.param == "runs":
        monkeypatch.setattr(zonal, "COMPILED", False)
    else:
        pytest.importorskip("tessellum._kernels", reason="the C extension is not built")
        if request.param == "mixed":
            from tessellum.attributes import _dense

            monkeypatch.setattr(_dense, "MAX_BOX_CELLS", 40)
    return request.param


@pytest.mark.parametrize("method", [m.value for m in AggregationMethod])
@pytest.mark.parametrize(
    "case", ["float-geographic", "uint8-projected", "uint8-all-values", "int16-all-valid"]
)
def test_one_pass_zonal_equals_per_geometry(method, case, zonal_path):
    """``zonal_polygons`` (statistics inside exactextract) gives what the per-geometry
    path (pixel arrays back in numpy) gives, for every aggregation and the nodata
    corner cases: every value of the type in use, no invalid pixel at all."""
    from tessellum.attributes.zonal import pixel_coverage_samples, zonal_polygon, zonal_polygons

    rng = np.random.default_rng(7)
    h, w = 60, 80
    if case == "float-geographic":
        grid = _grid(h, w, "EPSG:4326", -112.0, 42.0, 0.01)
        data = rng.normal(1500, 200, (h, w)).astype(np.float32)
    elif case == "int16-all-valid":
        grid = _grid(h, w, "EPSG:32612", 400_000, 4_600_000, 30)
        data = rng.integers(-5, 5, (h, w)).astype(np.int16)
    else:
        grid = _grid(h, w, "EPSG:32612", 400_000, 4_600_000, 30)
        top = 256 if case == "uint8-all-values" else 6
        data = rng.integers(0, top, (h, w)).astype(np.uint8)
    valid = np.ones((h, w), dtype=bool) if case == "int16-all-valid" else rng.random((h, w)) > 0.2
    left, bottom, right, top_ = grid.bounds
    cx, cy = (left + right) / 2, (bottom + top_) / 2
    span = (right - left) / 2
    geoms = [
        Point(cx, cy).buffer(span * 0.4),
        box(left - span, bottom - span, left + span * 0.1, bottom + span * 0.1),  # corner
        box(cx, cy, cx + grid.transform.a * 0.3, cy + grid.transform.a * 0.3),  # sub-pixel
        box(right + span, top_ + span, right + 2 * span, top_ + 2 * span),  # outside
        shapely.MultiPolygon(
            [
                Point(cx - span / 2, cy).buffer(span * 0.2),
                Point(cx + span / 2, cy).buffer(span * 0.1),
            ]
        ),
    ]
    if case == "uint8-all-values":
        data[valid] = np.arange(valid.sum()) % 256  # every value of the type is valid
    geographic = grid.crs == "EPSG:4326"
    method = AggregationMethod(method)
    fast = zonal_polygons(geoms, data, valid, grid, method, geographic=geographic)
    for g, got in zip(geoms, fast, strict=True):
        want = zonal_polygon(
            pixel_coverage_samples(g, data, valid, grid, geographic=geographic), method
        )
        assert got.pixel_count == want.pixel_count
        assert got.coverage_fraction == pytest.approx(want.coverage_fraction, rel=1e-6, abs=1e-9)
        assert got.estimated == want.estimated and got.notes == want.notes
        if isinstance(want.value, dict):
            assert got.value.keys() == want.value.keys()
            assert list(got.value.values()) == pytest.approx(list(want.value.values()))
        elif isinstance(want.value, list):
            assert got.value == want.value
        elif want.value is None:
            assert got.value is None
        else:
            assert type(got.value) is type(want.value)
            assert got.value == pytest.approx(want.value, rel=1e-6)


@pytest.mark.parametrize("method", [m.value for m in AggregationMethod])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_one_pass_zonal_on_a_mosaic_without_valid_pixels(method, dtype, zonal_path):
    """No valid pixel anywhere: every polygon gets no value and coverage 0."""
    from tessellum.attributes.zonal import zonal_polygons

    grid = _grid(30, 40, "EPSG:4326", -112.0, 42.0, 0.01)
    data = np.ones((30, 40), dtype=dtype)
    valid = np.zeros((30, 40), dtype=bool)
    left, bottom = grid.bounds[:2]
    geoms = [
        box(left + 0.05, bottom + 0.05, left + 0.2, bottom + 0.15),
        Point(-111.8, 41.8).buffer(0.04),
    ]
    for got in zonal_polygons(geoms, data, valid, grid, AggregationMethod(method), geographic=True):
        assert got.value is None and got.pixel_count == 0 and got.coverage_fraction == 0.0


@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32"])
def test_suspect_pixels_finds_what_quality_flag_would_flag(dtype):
    """The mosaic-level pre-check agrees with the per-geometry QC: a valid fill value
    or an unknown class code anywhere makes it True; declared nodata and invalid
    pixels never do."""
    from types import SimpleNamespace

    from tessellum.attributes import QCConfig
    from tessellum.attributes.qc import suspect_pixels

    cfg = QCConfig()
    data = np.full((40, 50), 10, dtype=dtype)
    valid = np.ones(data.shape, dtype=bool)
    cont = SimpleNamespace(is_categorical=False, classes={})
    cat = SimpleNamespace(is_categorical=True, classes={10: "trees", 20: "shrub"})
    assert not suspect_pixels(data, valid, cont, None, cfg)
    assert not suspect_pixels(data, valid, cat, None, cfg)
    fill = 255 if dtype == "uint8" else -9999
    data[3, 4] = fill
    assert suspect_pixels(data, valid, cont, None, cfg)
    assert not suspect_pixels(data, valid, cont, fill, cfg)  # declared nodata
    valid[3, 4] = False
    assert not suspect_pixels(data, valid, cont, None, cfg)  # invalid pixels never count
    data[5, 6] = 30  # a class the catalog does not know
    assert suspect_pixels(data, valid, cat, None, cfg)
    assert not suspect_pixels(data, valid, cont, None, cfg)
    valid[5, 6] = False
    assert not suspect_pixels(data, valid, cat, None, cfg)


@pytest.mark.parametrize(
    ("dtype", "suspect"),
    [("int16", False), ("float32", False), ("int32", False), ("uint16", False), ("uint8", True)],
)
def test_255_is_a_fill_only_in_uint8_data(aw, dtype, suspect):
    """255 (and 65535) are fills as the largest value of uint8 (uint16): in an int16 DEM
    (nasadem, alos_dem) 255 m is an elevation, and every result over terrain spanning
    it was flagged ``suspect`` ("pixels equal to common fill values [255.0]")."""
    from tessellum.attributes import QCConfig
    from tessellum.attributes.qc import quality_flag, suspect_pixels

    entry = aw.catalog.get("nasadem:elevation").model_copy(update={"dtype": dtype})
    data = np.arange(200, 300, dtype=dtype).reshape(10, 10)  # holds 255
    valid = np.ones(data.shape, dtype=bool)
    cfg = QCConfig()
    assert suspect_pixels(data, valid, entry, None, cfg) is suspect
    flag, notes = quality_flag(
        value=250.0, coverage=1.0, values=data.ravel(), method=AggregationMethod.mean,
        entry=entry, nodata=None, config=cfg,
    )  # fmt: skip
    assert (flag == QualityFlag.suspect) is suspect, notes
    if dtype == "uint16":  # its own largest value still is a fill
        data[0, 0] = 65535
        assert suspect_pixels(data, valid, entry, None, cfg)


@pytest.mark.parametrize("seed", range(4))
def test_one_pass_zonal_random_polygons(seed, zonal_path):
    """Random polygons (with holes, across the grid edge, sub-pixel) on a random raster
    with scattered nodata: the one-pass statistics equal the per-geometry path."""
    from tessellum.attributes.zonal import pixel_coverage_samples, zonal_polygon, zonal_polygons

    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(20, 90)), int(rng.integers(20, 90))
    geographic = bool(seed % 2)
    if geographic:
        grid = _grid(h, w, "EPSG:4326", -100.0, 45.0, 0.002)
    else:
        grid = _grid(h, w, "EPSG:32614", 500_000, 5_000_000, 20)
    data = rng.integers(1, 9, (h, w)).astype(np.float32 if seed < 2 else np.int16)
    valid = rng.random((h, w)) > 0.15
    left, bottom, right, top = grid.bounds
    geoms = []
    for _ in range(40):
        cx, cy = rng.uniform(left, right), rng.uniform(bottom, top)
        r = rng.uniform(0.1, 12) * grid.transform.a
        poly = Point(cx, cy).buffer(r, quad_segs=int(rng.integers(2, 8)))
        if rng.random() < 0.3:
            poly = poly.difference(Point(cx, cy).buffer(r / 3))
        geoms.append(poly)
    methods = (
        AggregationMethod.mean, AggregationMethod.std, AggregationMethod.sum,
        AggregationMethod.majority, AggregationMethod.distribution, AggregationMethod.median,
    )  # fmt: skip
    for method in methods:
        fast = zonal_polygons(geoms, data, valid, grid, method, geographic=geographic)
        for g, got in zip(geoms, fast, strict=True):
            want = zonal_polygon(
                pixel_coverage_samples(g, data, valid, grid, geographic=geographic), method
            )
            assert got.pixel_count == want.pixel_count
            # cell areas: exactextract's spherical formula vs ours agree to ~1e-9
            assert got.coverage_fraction == pytest.approx(
                want.coverage_fraction, rel=1e-6, abs=1e-9
            )
            if want.value is None:
                assert got.value is None
            elif isinstance(want.value, dict):
                assert got.value.keys() == want.value.keys()
                assert list(got.value.values()) == pytest.approx(list(want.value.values()))
            else:
                assert got.value == pytest.approx(want.value, rel=1e-6, abs=1e-9)


async def test_zonal_worker_processes_give_the_same_results(aw):
    """``zonal_processes``: a large batch's exactextract passes run in worker processes
    and return exactly what the in-process path returns."""
    from tessellum.attributes import _workers
    from tessellum.config import settings_override

    polys = random_polygons(300, seed=11)
    want = await batch_extract(polys, [DEM, LC], aggregation="majority", engine=engine_for(aw))
    try:
        _workers.start_zonal_workers(2)  # what a service does at start-up
        with settings_override(zonal_processes=2):
            got = await batch_extract(
                polys, [DEM, LC], aggregation="majority", engine=engine_for(aw)
            )
        assert _workers._pool is not None  # the batch did go to the workers
    finally:
        _workers.shutdown_zonal_pool()
    assert not got.failed_datasets
    for a, b in zip(got.items, want.items, strict=True):
        assert [r.model_dump(exclude={"elapsed_ms"}) for r in a.results] == [
            r.model_dump(exclude={"elapsed_ms"}) for r in b.results
        ]


async def test_a_dead_zonal_worker_costs_no_result(aw):
    """A worker process that dies breaks the pool: the batch is finished in-process,
    the broken pool is dropped (the next large batch starts a new one)."""
    import os
    from concurrent.futures.process import BrokenProcessPool

    from tessellum.attributes import _workers
    from tessellum.config import settings_override

    polys = random_polygons(300, seed=12)
    want = await batch_extract(polys, [DEM], aggregation="mean", engine=engine_for(aw))
    try:
        pool = _workers.zonal_pool(2)
        with pytest.raises(BrokenProcessPool):
            pool.submit(os._exit, 1).result()  # kill a worker: the pool is broken
        with settings_override(zonal_processes=2):
            got = await batch_extract(polys, [DEM], aggregation="mean", engine=engine_for(aw))
        assert _workers._pool is None  # dropped
    finally:
        _workers.shutdown_zonal_pool()
    assert not got.failed_datasets
    assert [i.results[0].value for i in got.items] == [i.results[0].value for i in want.items]


async def test_large_batches_build_results_with_the_collector_paused(aw, monkeypatch):
    """Batches of many geometries reduce and assemble with the cyclic collector paused
    (no full collection of the process for objects that make no cycles), and leave it
    enabled afterwards, also when a dataset fails while it is paused."""
    import gc

    from tessellum.attributes import engine as engine_mod

    seen: list[bool] = []
    reduce_all = engine_mod._reduce_all

    def recording(entry, *args, **kwargs):
        seen.append(gc.isenabled())
        if entry.id == LC:
            raise RuntimeError("reduction failed")
        return reduce_all(entry, *args, **kwargs)

    monkeypatch.setattr(engine_mod, "_reduce_all", recording)
    monkeypatch.setattr(engine_mod, "_PAUSE_GC_FROM", 5)
    assert gc.isenabled()
    polys = random_polygons(6, seed=3)
    got = await batch_extract(polys, [DEM, LC], engine=engine_for(aw))
    assert seen == [False, False] and gc.isenabled()
    assert got.failed_datasets == [LC] and len(got.items) == 6
    assert all(item.results[0].value is not None for item in got.items)
    await batch_extract(polys[:4], [DEM], engine=engine_for(aw))  # below the threshold
    assert seen == [False, False, True] and gc.isenabled()
