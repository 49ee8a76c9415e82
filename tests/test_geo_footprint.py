"""Raster footprints in lon/lat: rasters that cover a pole (polar projections), next to
the ordinary ones, cover every pixel they hold."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin
from shapely.geometry import Point

from tessellum.collection import build_from_files
from tessellum.geo.crs import CRS84, transformer
from tessellum.geo.geometry import footprint_lonlat, footprints_lonlat


def _pixel_centres_lonlat(transform, width: int, height: int, crs: str):
    rows, cols = np.mgrid[0:height:7, 0:width:7]
    x0, dx, _, y0, _, dy = transform
    xs, ys = x0 + (cols + 0.5) * dx, y0 + (rows + 0.5) * dy
    lon, lat = transformer(crs, CRS84).transform(xs.ravel(), ys.ravel())
    return shapely.points(np.asarray(lon), np.asarray(lat))


@pytest.mark.parametrize(
    ("crs", "origin", "pole"),
    [
        ("EPSG:3413", (-10000, 10000), 90),  # NSIDC north polar stereographic, on the pole
        ("EPSG:3031", (-6000, 4000), -90),  # Antarctic polar stereographic, on the pole
        ("EPSG:3413", (200000, -300000), None),  # the same projection, away from the pole
    ],
)
def test_footprint_covers_every_pixel(crs, origin, pole):
    transform = (origin[0], 100.0, 0.0, origin[1], 0.0, -100.0)
    width, height = 200, 300
    fp = footprint_lonlat(transform, width, height, crs)
    (batch,) = footprints_lonlat([transform], [width], [height], crs)
    assert fp.equals(batch)
    assert shapely.covers(fp, _pixel_centres_lonlat(transform, width, height, crs)).all()
    if pole is not None:
        assert fp.covers(Point(0, pole)) and fp.covers(Point(137, pole * 0.99999))
        assert fp.exterior.is_ccw
        assert fp.area < 360 * 1.0  # a cap less than a degree deep, not the whole band
    else:
        assert fp.bounds[2] - fp.bounds[0] < 90


def test_points_at_the_pole_find_the_polar_raster(tmp_path):
    path = tmp_path / "pole.tif"
    data = (np.arange(200 * 200) % 250 + 1).astype("uint8").reshape(200, 200)
    with rasterio.open(path, "w", driver="GTiff", width=200, height=200, count=1,
                       dtype="uint8", crs="EPSG:3413",
                       transform=from_origin(-10000, 10000, 100, 100)) as ds:  # fmt: skip
        ds.write(data, 1)
    coll = build_from_files([str(path)], name="pole", progress=False)
    pts = [Point(50, 50), Point(-3000, 4000), Point(9000, -9000)]
    table = coll.sample_points(pts, ["data"], geometry_crs="EPSG:3413")
    with rasterio.open(path) as ds:
        want = [v[0] for v in ds.sample([(p.x, p.y) for p in pts])]
    assert table.column("value").to_pylist() == want


@pytest.mark.parametrize("y", [0, 10000])  # through the pole, and 10 km from it
def test_polygons_near_the_pole_find_the_polar_raster(tmp_path, y):
    """A 200 km strip across a polar raster: its straight edges are curves in lon/lat,
    so geometries are densified before they are matched to footprints (their corners
    alone, 100 km out, made a lon/lat polygon that missed the raster)."""
    from rasterio.features import geometry_mask
    from shapely.geometry import box

    path = tmp_path / "polar.tif"
    transform = from_origin(-20000, 20000, 100, 100)
    with rasterio.open(path, "w", driver="GTiff", width=400, height=400, count=1,
                       dtype="uint8", crs="EPSG:3413", transform=transform) as ds:  # fmt: skip
        ds.write(np.full((1, 400, 400), 9, "uint8"))
    aoi = box(-100000, y - 1000, 100000, y + 1000)
    want = int(geometry_mask([aoi], out_shape=(400, 400), transform=transform, invert=True).sum())
    coll = build_from_files([str(path)], name="polar", progress=False)
    ds = coll.get_xarray(aoi, ["data"], geometry_crs="EPSG:3413")
    assert ds is not None and int((ds["data"].values == 9).sum()) == want


@pytest.mark.parametrize(
    ("west", "width"), [(0.0, 360.0), (-180.0, 360.0), (170.0, 20.0), (100.0, 200.0)]
)
def test_lonlat_grids_past_180_are_found_where_their_pixels_are(tmp_path, west, width):
    """EPSG:4326 grids with longitudes past 180 (a 0..360 global grid, one from 170 to
    190): every pixel centre is found by a bbox subset and by a point read (the 0..360
    grid had bbox (0, 0): found at 0°E only)."""
    from tessellum.collection import build_from_files

    res = 2.0
    cols = int(width / res)
    path = tmp_path / "g.tif"
    with rasterio.open(path, "w", driver="GTiff", width=cols, height=10, count=1,
                       dtype="uint8", crs="EPSG:4326",
                       transform=from_origin(west, 10, res, res)) as ds:  # fmt: skip
        ds.write(np.ones((1, 10, cols), "uint8"))
    coll = build_from_files([str(path)], name="g", progress=False)
    for x in west + res / 2 + res * np.arange(cols):
        lon = (x + 180) % 360 - 180
        assert len(coll.subset(bbox=(lon - 0.1, -1, lon + 0.1, 1))) == 1, lon
        assert len(coll.subset(geometries=Point(lon, 0))) == 1, lon
    covered = width >= 360
    outside = (west + width + 1 + 180) % 360 - 180  # 1° east of the grid's east edge
    assert len(coll.subset(bbox=(outside - 0.1, -1, outside + 0.1, 1))) == int(covered)
