"""Exact cell coverage (tessellum.geo.coverage) against shapely's cell-by-cell
intersection areas and exactextract's coverage fractions."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from shapely.geometry import MultiPolygon, Point, Polygon, box

from tessellum.errors import ValidationError
from tessellum.geo.coverage import cell_coverage, coverage_runs, fraction_tolerance
from tessellum.geo.grid import Grid


def _grid(height: int, width: int, x0: float, y0: float, res: float) -> Grid:
    return Grid(height, width, Affine(res, 0, x0, 0, -res, y0), "EPSG:4326")


def _shapely_fractions(geom, grid: Grid) -> dict[tuple[int, int], float]:
    """Covered fraction of every cell, from shapely intersections (the ground truth)."""
    t = grid.transform
    cells = {}
    for r in range(grid.height):
        for c in range(grid.width):
            cell = box(t.c + c * t.a, t.f + (r + 1) * t.e, t.c + (c + 1) * t.a, t.f + r * t.e)
            area = geom.intersection(cell).area / (t.a * -t.e)
            if area > 1e-9:
                cells[(r, c)] = area
    return cells


def _ours(cov, i: int) -> dict[tuple[int, int], float]:
    m = cov.geom == i
    return dict(
        zip(
            zip(cov.row[m].tolist(), cov.col[m].tolist(), strict=True),
            cov.fraction[m].tolist(),
            strict=True,
        )
    )


def _shapes(grid: Grid) -> list:
    left, bottom, right, top = grid.bounds
    a = grid.transform.a
    cx, cy = (left + right) / 2, (bottom + top) / 2
    ring = Point(cx, cy).buffer(6 * a, quad_segs=5)
    return [
        ring,  # counter-clockwise exterior
        ring.reverse(),  # clockwise exterior
        ring.difference(Point(cx, cy).buffer(2 * a)),  # with a hole
        Polygon(ring.exterior.coords[::-1], [Point(cx, cy).buffer(2 * a).exterior.coords]),
        MultiPolygon(
            [
                box(left + a, bottom + a, left + 4.5 * a, bottom + 3 * a),
                box(cx, cy, cx + 2.2 * a, cy + 0.7 * a),
            ]
        ),
        box(left + 3 * a, top - 5 * a, left + 7 * a, top - 2 * a),  # on cell lines
        box(left - 3 * a, top - 2.5 * a, left + 2.5 * a, top + 4 * a),  # over the corner
        box(cx + 0.2 * a, cy + 0.1 * a, cx + 0.5 * a, cy + 0.3 * a),  # inside one cell
        Polygon(
            [
                (cx, cy),
                (cx + 9 * a, cy + 0.3 * a),
                (cx + 0.4 * a, cy + 7 * a),
                (cx + 3 * a, cy + 2 * a),
            ]
        ),  # concave
        box(right + a, top + a, right + 3 * a, top + 3 * a),  # outside
        Point(cx, cy),  # not polygonal
        Polygon(),  # empty
    ]


@pytest.mark.parametrize("origin", [(0.0, 0.0), (-112.37, 41.91), (499_980.0, 4_600_020.0)])
def test_fractions_equal_shapely_intersections(origin):
    """Every shape (both ring orientations, holes, parts, cell-aligned edges, corners,
    sub-cell, concave, outside, non-polygonal) gets shapely's cell areas."""
    res = 30.0 if origin[0] > 1000 else 0.01
    grid = _grid(24, 30, *origin, res)
    shapes = _shapes(grid)
    cov = cell_coverage(shapes, grid)
    assert np.all(np.diff(cov.geom) >= 0)
    assert np.all((cov.fraction > 0) & (cov.fraction <= 1))
    for i, g in enumerate(shapes):
        want = _shapely_fractions(g, grid)
        got = _ours(cov, i)
        assert got.keys() == want.keys(), i
        for k, v in want.items():
            assert got[k] == pytest.approx(v, abs=1e-9), (i, k)


def test_fractions_equal_exactextract_on_random_polygons():
    """Random convex hulls on a geographic grid: the cells and fractions exactextract finds."""
    from exactextract import exact_extract
    from exactextract.raster import NumPyRasterSource

    grid = _grid(300, 400, -113.0, 42.0, 0.0025)
    rng = np.random.default_rng(3)
    left, bottom, right, top = grid.bounds
    geoms = []
    for _ in range(200):
        cx, cy = rng.uniform(left, right), rng.uniform(bottom, top)
        pts = rng.normal(0, rng.uniform(0.002, 0.05), (12, 2)) + np.array([cx, cy])
        geoms.append(shapely.convex_hull(shapely.multipoints(pts)))
    cov = cell_coverage(geoms, grid)
    src = NumPyRasterSource(np.zeros(grid.shape, np.uint8), left, bottom, right, top)
    feats = [
        {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(g)}
        for g in geoms
    ]
    found = exact_extract(src, feats, ["cell_id", "coverage"], output="geojson")
    for i, f in enumerate(found):
        cells = np.asarray(f["properties"]["cell_id"], dtype=np.int64)
        frac = np.asarray(f["properties"]["coverage"], dtype=np.float64)
        want = {
            (int(c) // grid.width, int(c) % grid.width): v
            for c, v in zip(cells, frac, strict=True)
            if v > 1e-9
        }
        got = _ours(cov, i)
        assert got.keys() == want.keys()
        assert list(got.values()) == pytest.approx([want[k] for k in got], abs=1e-7)


def test_runs_spell_out_to_the_cells_and_stay_small_for_large_polygons():
    """Runs and cells partition the covered cells (no cell twice, every run at one
    fraction), and a polygon of 10^8 cells is described by a few thousand entries."""
    grid = _grid(200, 150, 10.0, 50.0, 0.01)
    rng = np.random.default_rng(5)
    geoms = [
        Point(rng.uniform(10.1, 11.4), rng.uniform(48.1, 49.9)).buffer(rng.uniform(0.02, 0.3))
        for _ in range(30)
    ]
    geoms.append(box(10.0, 48.0, 11.5, 50.0).difference(Point(10.7, 49.0).buffer(0.4)))
    runs = coverage_runs(geoms, grid)
    cells = runs.expand()
    assert len(cells.geom) == len(runs.cells.geom) + int((runs.run_stop - runs.run_start).sum())
    keys = set(zip(cells.geom.tolist(), cells.row.tolist(), cells.col.tolist(), strict=True))
    assert len(keys) == len(cells.geom)  # no cell twice
    for i in (0, len(geoms) - 1):
        want = _shapely_fractions(geoms[i], grid)
        assert _ours(cells, i).keys() == want.keys()
    big = _grid(10_000, 10_000, 0.0, 100.0, 0.01)
    huge = coverage_runs([Point(50, 50).buffer(49.0)], big)
    assert len(huge.cells.geom) + len(huge.run_geom) < 100_000
    area = float(
        huge.cells.fraction.sum() + (huge.run_fraction * (huge.run_stop - huge.run_start)).sum()
    )
    assert area == pytest.approx(Point(50, 50).buffer(49.0).area / 0.01**2, rel=1e-12)


def test_empty_input_and_bad_grid():
    grid = _grid(10, 10, 0.0, 10.0, 1.0)
    assert len(cell_coverage([], grid).geom) == 0
    assert len(cell_coverage([Point(1, 1)], grid).geom) == 0
    rotated = Grid(10, 10, Affine(1, 0.1, 0, 0, -1, 10), "EPSG:4326")
    with pytest.raises(ValidationError, match="north-up"):
        cell_coverage([box(1, 1, 2, 2)], rotated)
    south_up = Grid(10, 10, Affine(1, 0, 0, 0, 1, 0), "EPSG:4326")
    with pytest.raises(ValidationError, match="north-up"):
        cell_coverage([box(1, 1, 2, 2)], south_up)


def test_polygon_over_the_grid_edge_counts_once():
    """A MultiPolygon over the grid's edge whose clip by rectangle (GEOS) has
    overlapping parts: the overlap must not count twice (found by a randomized check)."""
    grid = _grid(18, 11, 0.0, 0.0, 0.01)
    g = shapely.from_wkt(
        "MULTIPOLYGON (((0.01 -0.08, 0 -0.08, 0.01 -0.04, 0.02 -0.04, 0.02 -0.05, 0.02 -0.06,"
        " 0.01 -0.08)), ((-0.03 -0.04, 0 -0.03, 0.01 -0.02, 0 0, 0.05 0, 0.07 -0.03, 0.03 -0.05,"
        " 0.03 -0.04, 0.03 -0.03, 0.02 -0.03, 0.01 -0.03, 0.01 -0.04, -0.03 -0.04)))"
    )
    assert g.is_valid
    cov = cell_coverage([g], grid)
    want = _shapely_fractions(g, grid)
    got = _ours(cov, 0)
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-9), k


@pytest.mark.parametrize("seed", range(6))
def test_random_polygons_equal_shapely(seed):
    """Random star-shaped polygons, some with holes, extra parts or vertices snapped to
    the cell lines, on grids with origins far from zero; shapely's areas are taken in
    pixel space, where they are exact to rounding (in world space they are not)."""
    rng = np.random.default_rng(seed)
    for _ in range(8):
        h, w = int(rng.integers(3, 25)), int(rng.integers(3, 25))
        res = float(rng.choice([1.0, 0.01, 30.0, 0.0025]))
        x0, y0 = (
            float(rng.choice([0.0, -113.37, 499980.0])),
            float(rng.choice([0.0, 42.1, 4600020.0])),
        )
        grid = _grid(h, w, x0, y0, res)
        left, bottom, right, top = grid.bounds
        geoms = []
        for _ in range(8):
            cx = rng.uniform(left - 2 * res, right + 2 * res)
            cy = rng.uniform(bottom - 2 * res, top + 2 * res)
            ang = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 14))))
            rad = rng.uniform(0.2, 6, len(ang)) * res
            p = shapely.make_valid(
                Polygon(np.column_stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)]))
            )
            if rng.random() < 0.3:
                p = p.difference(Point(cx, cy).buffer(res * rng.uniform(0.1, 1.5)))
            if rng.random() < 0.2:
                p = shapely.union(p, box(cx + 3 * res, cy, cx + 4.5 * res, cy + 0.7 * res))
            if rng.random() < 0.2:  # vertices on the cell lines (precision model dropped)
                p = shapely.from_wkb(shapely.to_wkb(shapely.set_precision(p, res)))
            geoms.append(p)
        cov = cell_coverage(geoms, grid)
        t = grid.transform
        # fractions within the grid's coordinate resolution of 0 or 1 are snapped to them
        tol = max(1e-9, 2 * fraction_tolerance(grid))
        for i, g in enumerate(geoms):
            pixel = shapely.transform(g, lambda xy: (xy - [t.c, t.f]) / [t.a, t.e])  # noqa: B023
            got = _ours(cov, i)
            for r in range(h):
                for c in range(w):
                    want = pixel.intersection(box(c, r, c + 1, r + 1)).area
                    assert got.get((r, c), 0.0) == pytest.approx(want, abs=tol), (i, r, c)


@pytest.mark.parametrize("seed", range(3))
def test_compiled_accumulation_equals_vectorized(seed):
    """The compiled per-polygon accumulation (the zonal kernel's coverage) gives every
    cell the fraction the vectorized form gives: random polygons with holes and several
    parts, over the grid's edges, on grids near and far from the origin."""
    kernels = pytest.importorskip("tessellum._kernels", reason="the C extension is not built")
    from tessellum.geo.coverage import pixel_rings

    rng = np.random.default_rng(100 + seed)
    for _ in range(6):
        h, w = int(rng.integers(3, 40)), int(rng.integers(3, 40))
        res = float(rng.choice([1.0, 0.01, 30.0]))
        grid = _grid(h, w, float(rng.choice([0.0, 499980.0])), float(rng.choice([0.0, 4.6e6])), res)
        left, bottom, right, top = grid.bounds
        geoms = []
        for _ in range(10):
            cx = rng.uniform(left - 2 * res, right + 2 * res)
            cy = rng.uniform(bottom - 2 * res, top + 2 * res)
            p = Point(cx, cy).buffer(rng.uniform(0.3, 9) * res, quad_segs=int(rng.integers(1, 6)))
            if rng.random() < 0.4:
                p = p.difference(Point(cx, cy).buffer(res * rng.uniform(0.1, 2)))
            if rng.random() < 0.3:
                p = shapely.union(p, box(cx + 10 * res, cy, cx + 12.5 * res, cy + 0.7 * res))
            geoms.append(p)
        want = cell_coverage(geoms, grid)
        rings = pixel_rings(geoms, grid)
        ring_first, geom_first = rings.ring_offsets(), rings.geom_offsets(len(geoms))
        eps = fraction_tolerance(grid)
        for g in range(len(geoms)):
            dense = np.zeros((h, w))
            a, b = int(geom_first[g]), int(geom_first[g + 1])
            if a < b:
                xs, ys = (
                    rings.x[ring_first[a] : ring_first[b]],
                    rings.y[ring_first[a] : ring_first[b]],
                )
                r0, c0 = int(np.floor(ys.min())), int(np.floor(xs.min()))
                rows, cols = int(np.floor(ys.max())) - r0 + 1, int(np.floor(xs.max())) - c0 + 2
                acc = np.zeros((rows, cols))
                kernels.accumulate_polygon(acc, r0, c0, rings.x, rings.y, ring_first,
                                           rings.sign.astype(float), a, b)  # fmt: skip
                cover = np.cumsum(acc, axis=1)
                for i in range(rows):
                    for j in range(cols):
                        r, c = r0 + i, c0 + j
                        if 0 <= r < h and 0 <= c < w and cover[i, j] > eps:
                            dense[r, c] = 1.0 if cover[i, j] > 1 - eps else cover[i, j]
            m = want.geom == g
            expected = np.zeros((h, w))
            expected[want.row[m], want.col[m]] = want.fraction[m]
            np.testing.assert_allclose(dense, expected, rtol=0, atol=1e-12)


def test_compiled_kernels_reject_bad_arrays():
    """The C kernels check dtypes, shapes and offsets before touching memory."""
    kernels = pytest.importorskip("tessellum._kernels", reason="the C extension is not built")
    x = np.array([0.0, 2.0, 2.0, 0.0, 0.0])
    y = np.array([0.0, 0.0, 2.0, 2.0, 0.0])
    first, sign = np.array([0, 5], np.int64), np.array([-1.0])  # rows run downwards
    acc = np.zeros((3, 4))
    kernels.accumulate_polygon(acc, 0, 0, x, y, first, sign, 0, 1)
    assert np.cumsum(acc, axis=1)[:2, :2].tolist() == [[1.0, 1.0], [1.0, 1.0]]
    with pytest.raises(ValueError, match="x must be a 1-d float64"):
        kernels.accumulate_polygon(acc, 0, 0, x.astype(np.float32), y, first, sign, 0, 1)
    with pytest.raises(ValueError, match="ring_first must ascend"):
        kernels.accumulate_polygon(acc, 0, 0, x, y, np.array([0, 9], np.int64), sign, 0, 1)
    with pytest.raises(ValueError, match="inconsistent sizes"):
        kernels.accumulate_polygon(acc, 0, 0, x, y, first, sign, 0, 2)
    with pytest.raises(ValueError, match="acc must be a C-contiguous writable"):
        kernels.accumulate_polygon(acc[:, ::2], 0, 0, x, y, first, sign, 0, 1)
    valid, cls = np.ones((2, 2), bool), np.full((2, 2), 7, np.int32)
    outs = np.zeros(1, bool), np.zeros((4, 1)), np.zeros((4, 1)), np.zeros((1, 2))
    with pytest.raises(ValueError, match=r"cls holds an index outside \[0, 1\]"):
        kernels.polygon_totals(x, y, first, sign, np.array([0, 1], np.int64), valid,
                               np.zeros((1, 1)), cls, 1, np.ones(2), 1e-12, 100, False,
                               *outs)  # fmt: skip


def test_spread_pass_counts_each_pixel_once_with_infinite_values():
    """The second (spread) pass sums only the squared deviations: a mean that is NaN
    (valid +inf and -inf values) must not make it run the first pass again."""
    kernels = pytest.importorskip("tessellum._kernels", reason="the C extension is not built")
    x = np.array([0.0, 2.0, 2.0, 0.0, 0.0])
    y = np.array([0.0, 0.0, 2.0, 2.0, 0.0])
    first, sign = np.array([0, 5], np.int64), np.array([-1.0])
    centred = np.array([[np.inf, -np.inf], [1.0, 2.0]])
    for spread in (False, True):
        done, totals, moments = np.zeros(1, bool), np.zeros((4, 1)), np.zeros((4, 1))
        kernels.polygon_totals(x, y, first, sign, np.array([0, 1], np.int64),
                               np.ones((2, 2), bool), centred, np.zeros((1, 1), np.int32), 0,
                               np.ones(2), 1e-12, 100, spread,
                               done, totals, moments, np.zeros((0, 1)))  # fmt: skip
        assert done[0] and totals[0, 0] == 4.0 and totals[1, 0] == 4.0
