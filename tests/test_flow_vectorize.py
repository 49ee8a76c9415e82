"""vectorize_mosaic: block-by-block polygons joined across seams are the polygons of
``rasterio.features.shapes`` on the whole band (same count, same geometry, same areas);
options, reprojection, outputs and errors."""

from __future__ import annotations

import numpy as np
import pytest

from _flow_mosaics import UTM, make_mosaic
from tessellum.errors import CRSError, ValidationError

gpd = pytest.importorskip("geopandas")
shapely = pytest.importorskip("shapely")

import rasterio.features  # noqa: E402
from shapely.geometry import shape  # noqa: E402

from tessellum.flow import vectorize_mosaic  # noqa: E402


def _reference(values: np.ndarray, threshold: float, connectivity: int, valid=None):
    """``rasterio.features.shapes`` on the whole band, made valid."""
    fg = values >= threshold
    if valid is not None:
        fg &= valid
    shapes = rasterio.features.shapes(
        fg.view(np.uint8), mask=fg, connectivity=connectivity, transform=UTM
    )
    return shapely.make_valid(np.array([shape(g) for g, _ in shapes], dtype=object))


def _key(g):
    c = g.centroid
    return (round(g.area, 3), round(c.x, 3), round(c.y, 3))


def _assert_same_polygons(got, want):
    assert len(got) == len(want)
    got, want = sorted(got, key=_key), sorted(want, key=_key)
    for a, b in zip(got, want, strict=True):
        assert abs(a.area - b.area) <= 1e-9 * b.area
        assert a.symmetric_difference(b).area <= 1e-9 * b.area


@pytest.fixture
def speckle():
    """A random mask dense enough that many polygons cross many 8x8 block seams."""
    rng = np.random.default_rng(11)
    return rng.random((1, 70, 65)).astype(np.float32)


@pytest.mark.parametrize("connectivity", [4, 8])
def test_seam_merged_polygons_equal_whole_array_shapes(tmp_path, speckle, connectivity):
    speckle[0, 3, 5] = np.nan  # nodata pixels are never foreground
    speckle[0, 20:23, 30:33] = -1.0
    src = make_mosaic(tmp_path / "s.zarr", {"p": speckle}, nodata={"p": -1.0}, chunk=8)
    out = vectorize_mosaic(
        src, ["p"], 0.55, chunk_multiplier=1, crs=None,
        vectorize_config={"connectivity": connectivity},
    )  # fmt: skip
    assert out == str(tmp_path / "s_vectors.parquet")
    gdf = gpd.read_parquet(out)
    assert list(gdf.columns) == ["feature", "time", "area", "geometry"]
    assert gdf.crs.to_epsg() == 32612
    valid = ~np.isnan(speckle[0]) & (speckle[0] != -1.0)
    want = _reference(speckle[0], 0.55, connectivity, valid)
    _assert_same_polygons(list(gdf.geometry), list(want))
    np.testing.assert_allclose(gdf["area"], gdf.geometry.area, rtol=1e-12)
    assert (gdf["feature"] == "p").all() and gdf["time"].isna().all()
    assert shapely.is_valid(gdf.geometry.values).all()
    # pieces were joined: some polygon spans more than one 8x8 block (80 m)
    spans = gdf.geometry.bounds
    assert ((spans.maxx - spans.minx) > 80).any()


def test_one_block_per_mosaic_is_the_same(tmp_path, speckle):
    src = make_mosaic(tmp_path / "s.zarr", {"p": speckle}, chunk=8)
    out = vectorize_mosaic(src, ["p"], 0.55, chunk_multiplier=16, crs=None)
    _assert_same_polygons(
        list(gpd.read_parquet(out).geometry), list(_reference(speckle[0], 0.55, 4))
    )


def test_reprojected_to_crs_with_area_in_mosaic_units(tmp_path, speckle):
    src = make_mosaic(tmp_path / "s.zarr", {"p": speckle}, chunk=8)
    out = vectorize_mosaic(src, ["p"], 0.55, chunk_multiplier=1)  # default EPSG:4326
    gdf = gpd.read_parquet(out)
    assert gdf.crs.to_epsg() == 4326
    ref = gpd.GeoSeries(_reference(speckle[0], 0.55, 4), crs=32612)
    back = gdf.to_crs(32612)
    _assert_tolerant(list(back.geometry), list(ref))
    np.testing.assert_allclose(sorted(gdf["area"]), sorted(ref.area), rtol=1e-9)
    west, south, east, north = gdf.total_bounds  # UTM 12N at 500 km E, 4600 km N
    assert -111.01 < west < east < -110.99 and 41.54 < south < north < 41.56


def _assert_tolerant(got, want):
    """Same polygons after a round trip through lon/lat (float noise only)."""
    assert len(got) == len(want)
    for a, b in zip(sorted(got, key=_key), sorted(want, key=_key), strict=True):
        assert a.symmetric_difference(b).area <= 1e-6 * b.area


def test_min_area_judges_the_whole_joined_polygon(tmp_path):
    # a 4 x 12 bar crossing the seam at column 8: pieces of 4x4 and 4x8 pixels,
    # the whole 48 px = 4800 m2; a lone 2x2 square = 400 m2
    m = np.zeros((1, 16, 16), np.float32)
    m[0, 2:6, 4:16] = 1
    m[0, 10:12, 1:3] = 1
    src = make_mosaic(tmp_path / "b.zarr", {"p": m}, chunk=8)
    kw = {"chunk_multiplier": 1, "crs": None}
    gdf = gpd.read_parquet(vectorize_mosaic(src, ["p"], 0.5, **kw, output=tmp_path / "all"))
    assert sorted(gdf["area"]) == [400.0, 4800.0]
    out = vectorize_mosaic(src, ["p"], 0.5, vectorize_config={"min_area": 2000}, **kw)
    assert list(gpd.read_parquet(out)["area"]) == [4800.0]  # the piece of 1600 m2 is kept
    assert vectorize_mosaic(src, ["p"], 0.5, vectorize_config={"min_area": 5000}, **kw) is None


def test_simplify_tolerance_in_mosaic_units(tmp_path):
    # a staircase: simplified with a tolerance of one pixel diagonal it loses its steps
    m = np.zeros((1, 24, 24), np.float32)
    for i in range(20):
        m[0, i + 2, 2 : i + 3] = 1
    src = make_mosaic(tmp_path / "st.zarr", {"p": m}, chunk=8)
    kw = {"chunk_multiplier": 1, "crs": None}
    raw = gpd.read_parquet(vectorize_mosaic(src, ["p"], 0.5, **kw, output=tmp_path / "raw"))
    simple = gpd.read_parquet(
        vectorize_mosaic(src, ["p"], 0.5, vectorize_config={"simplify": 15.0}, **kw)
    )
    assert len(raw) == len(simple) == 1
    # Douglas-Peucker: fewer vertices, none of the outline moved by more than the tolerance
    g, r = simple.geometry[0], raw.geometry[0]
    assert shapely.get_num_coordinates(g) < shapely.get_num_coordinates(r) - 20
    assert shapely.hausdorff_distance(g, r) <= 15.0 + 1e-9
    assert g.is_valid and g.symmetric_difference(r).area > 0
    assert simple["area"][0] == pytest.approx(simple.geometry[0].area)


def test_features_and_times_each_vectorized(tmp_path):
    a = np.zeros((2, 12, 12), np.float32)
    a[0, 1:3, 1:3] = 0.9
    a[1, 5:9, 5:9] = 0.7
    b = np.zeros((2, 12, 12), np.float32)
    b[1, 0:12, 0:1] = 1
    src = make_mosaic(
        tmp_path / "t.zarr", {"a": a, "b": b}, chunk=4, times=["2024-01-01", "2025-01-01"]
    )
    gdf = gpd.read_parquet(vectorize_mosaic(src, ["a", "b"], 0.5, chunk_multiplier=1, crs=None))
    rows = sorted(zip(gdf["feature"], gdf["time"].dt.year, gdf["area"], strict=True))
    assert rows == [("a", 2024, 400.0), ("a", 2025, 1600.0), ("b", 2025, 1200.0)]


def test_nothing_foreground_returns_none_and_writes_nothing(tmp_path):
    src = make_mosaic(tmp_path / "z.zarr", {"p": np.zeros((1, 10, 10), np.float32)}, chunk=4)
    assert vectorize_mosaic(src, ["p"], 0.5) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["z.zarr"]


def test_dask_client_gives_the_local_result(tmp_path, speckle):
    distributed = pytest.importorskip("distributed")
    src = make_mosaic(tmp_path / "s.zarr", {"p": speckle}, chunk=8)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        out = vectorize_mosaic(
            src, ["p"], 0.55, chunk_multiplier=1, crs=None, vectorize_config={"connectivity": 8},
            client=client,
        )  # fmt: skip
    want = _reference(speckle[0], 0.55, 8)
    _assert_same_polygons(list(gpd.read_parquet(out).geometry), list(want))


def test_an_earlier_output_is_replaced_a_users_folder_is_not(tmp_path, speckle):
    src = make_mosaic(tmp_path / "s.zarr", {"p": speckle}, chunk=8)
    dest = tmp_path / "v.parquet"
    vectorize_mosaic(src, ["p"], 0.9, output=dest)
    vectorize_mosaic(src, ["p"], 0.55, output=dest, crs=None)
    _assert_same_polygons(
        list(gpd.read_parquet(dest).geometry), list(_reference(speckle[0], 0.55, 4))
    )
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(ValidationError, match="exists and is not a vectorize output"):
        vectorize_mosaic(src, ["p"], 0.5, output=mine)
    assert (mine / "notes.txt").read_text() == "keep"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": "high"}, "threshold must be a finite number"),
        ({"vectorize_method": "contour"}, "vectorize_method 'contour'"),
        ({"vectorize_config": {"connectivity": 6}}, "connectivity must be 4 or 8, got 6"),
        ({"vectorize_config": {"smooth": 1}}, r"keys \['smooth'\] unknown"),
        ({"vectorize_config": {"min_area": -1}}, "min_area must be >= 0"),
        ({"vectorize_config": "fast"}, "vectorize_config must be a dict"),
        ({"chunk_multiplier": 0}, "chunk_multiplier"),
        ({"features": ["nope"]}, r"features \['nope'\] not in the mosaic"),
        ({"output": "https://example.com/out.parquet"}, r"http\(s\) URLs are read-only"),
    ],
)
def test_bad_arguments_are_named(tmp_path, kwargs, match):
    src = make_mosaic(tmp_path / "e.zarr", {"p": np.ones((1, 4, 4), np.float32)}, chunk=4)
    args = {"zarr_uri": src, "features": ["p"], "threshold": 0.5, **kwargs}
    with pytest.raises(ValidationError, match=match):
        vectorize_mosaic(**args)


def test_bad_crs_is_a_crs_error(tmp_path):
    src = make_mosaic(tmp_path / "e.zarr", {"p": np.ones((1, 4, 4), np.float32)}, chunk=4)
    with pytest.raises(CRSError, match="not-a-crs"):
        vectorize_mosaic(src, ["p"], 0.5, crs="not-a-crs")
