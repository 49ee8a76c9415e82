"""Coerce user geometries (GeoJSON, shapely, GeoPandas, GeoArrow, WKB) and compute
lon/lat footprints of raster grids, splitting at the antimeridian."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ValidationError
from .crs import CRS84, to_crs, transformer


@dataclass(frozen=True)
class Geometries:
    """Geometries with their CRS and, for table input, the attribute columns to carry."""

    geoms: np.ndarray  # object array of shapely geometries
    crs: Any  # pyproj.CRS
    attributes: Any = None  # pandas.DataFrame (non-geometry columns) or None
    ids: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.geoms)

    def carried_attributes(self, reserved: Iterable[str]) -> Any:
        """The attribute columns to carry into an output whose own columns are
        ``reserved`` (None without attributes), in their own types; a column named like
        an output column gets the suffix ``_aoi`` rather than being overwritten."""
        if self.attributes is None or not len(self.attributes.columns):
            return None
        taken = set(reserved)
        renames = {}
        for name in self.attributes.columns:
            if name in taken:
                new = f"{name}_aoi"
                while new in taken or new in self.attributes.columns:
                    new += "_"
                renames[name] = new
        return self.attributes.rename(columns=renames) if renames else self.attributes


def coerce_geometries(value: Any, *, crs: Any = None, name: str = "geometries") -> Geometries:
    """Coerce one geometry or a collection of geometries into :class:`Geometries`.

    Accepts a shapely geometry or a sequence of them, a GeoJSON geometry / Feature /
    FeatureCollection (dict), a GeoSeries / GeoDataFrame (their CRS is used), a
    GeoArrow/WKB pyarrow array, WKB bytes, or a (west, south, east, north) tuple.

    Args:
        value: the geometries.
        crs: the CRS of the input when it does not carry one; defaults to OGC:CRS84.
        name: argument name for error messages.
    """
    import shapely

    if isinstance(value, Geometries):  # already coerced (its CRS was settled then)
        return value
    attrs = None
    src_crs = crs
    if hasattr(value, "geometry") and hasattr(value, "columns"):  # GeoDataFrame
        src_crs = _own_crs(value.crs, crs, name)
        attrs = value.drop(columns=value.geometry.name).reset_index(drop=True)
        geoms = np.asarray(value.geometry.values, dtype=object)
    elif (
        hasattr(value, "geom_type") and hasattr(value, "crs") and hasattr(value, "values")
    ):  # GeoSeries
        src_crs = _own_crs(value.crs, crs, name)
        geoms = np.asarray(value.values, dtype=object)
    elif isinstance(value, shapely.Geometry):
        geoms = np.array([value], dtype=object)
    elif _geometry_array(value):  # e.g. shapely.points(x, y): no per-element check
        geoms = value.copy()
    elif isinstance(value, Mapping):
        geoms = np.array(_from_geojson(value, name), dtype=object)
    elif isinstance(value, bytes | bytearray | memoryview):
        geoms = np.array([shapely.from_wkb(bytes(value))], dtype=object)
    elif _is_arrow(value):
        geoms, arrow_crs = _from_arrow(value)
        src_crs = _own_crs(arrow_crs, crs, name)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) == 4 and all(isinstance(v, int | float) for v in value):
            from .bbox import as_bbox

            geoms = np.array(
                [as_bbox(value, geographic=False, name=name).to_polygon()], dtype=object
            )
        else:
            geoms = np.array([_one(v, name) for v in value], dtype=object)
    elif isinstance(value, Iterable) and not isinstance(value, str):
        geoms = np.array([_one(v, name) for v in value], dtype=object)
    else:
        raise ValidationError(f"cannot interpret {type(value).__name__} as {name}")
    if len(geoms) == 0:
        raise ValidationError(f"{name} is empty")
    bad = np.flatnonzero(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if len(bad):
        raise ValidationError(
            f"{name} has empty or missing geometries at positions {bad[:10].tolist()}"
        )
    coords, owner = shapely.get_coordinates(geoms, return_index=True)
    finite = np.isfinite(coords).all(axis=1)
    if not finite.all():
        bad = np.unique(owner[~finite])
        raise ValidationError(
            f"{name} has non-finite (NaN or infinite) coordinates at positions {bad[:10].tolist()}"
        )
    invalid = ~shapely.is_valid(geoms.astype(object))
    if invalid.any():
        geoms = geoms.copy()
        # "structure" repairs an area as an area: the collapsed parts of a bow-tie or a
        # spike are dropped ("linework" kept them as lines, which then masked pixels in)
        areal = invalid & np.isin(shapely.get_type_id(geoms), (3, 6))  # (Multi)Polygon
        if areal.any():
            geoms[areal] = shapely.make_valid(
                geoms[areal], method="structure", keep_collapsed=False
            )
        if (invalid & ~areal).any():
            geoms[invalid & ~areal] = shapely.make_valid(geoms[invalid & ~areal])
        gone = np.flatnonzero(shapely.is_empty(geoms))
        if len(gone):
            raise ValidationError(
                f"{name} at positions {gone[:10].tolist()} enclose no area (invalid polygons "
                "whose repair leaves nothing, e.g. all vertices on one line)"
            )
    return Geometries(
        geoms=geoms,
        crs=to_crs(src_crs if src_crs is not None else CRS84),
        attributes=attrs,
        ids=np.arange(len(geoms), dtype=np.int64),
    )


def _own_crs(own: Any, given: Any, name: str) -> Any:
    """The CRS of geometries that carry one; ``given`` (e.g. ``geometry_crs``) is for
    geometries without: a different one is an error, not a silent reinterpretation."""
    if own is None:
        return given
    if given is not None and not to_crs(own).equals(to_crs(given)):
        raise ValidationError(
            f"{name} carry their own CRS ({to_crs(own).to_string()}) but {given!r} was "
            "given for them; pass a CRS only for geometries without one (or reproject them)"
        )
    return own


def is_single_geometry(value: Any) -> bool:
    """Whether ``value`` names one geometry (a shapely geometry, a GeoJSON geometry or
    Feature, WKB bytes or a (west, south, east, north) box) rather than a
    collection of them: readers return one result for one geometry and a list for a
    collection, even a collection of one."""
    import shapely

    if isinstance(value, shapely.Geometry | bytes | bytearray | memoryview):
        return True
    if isinstance(value, Mapping):
        return value.get("type") != "FeatureCollection"
    return (
        isinstance(value, Sequence)
        and len(value) == 4
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )


def _geometry_array(value: Any) -> bool:
    """A 1-d numpy array of shapely geometries (None counts as one: reported as missing)."""
    import shapely

    return (
        isinstance(value, np.ndarray)
        and value.dtype == object
        and value.ndim == 1
        and bool((shapely.is_geometry(value) | shapely.is_missing(value)).all())
    )


def _one(v: Any, name: str):
    import shapely

    if isinstance(v, shapely.Geometry):
        return v
    if isinstance(v, Mapping):
        parts = _from_geojson(v, name)
        if len(parts) != 1:
            raise ValidationError(f"{name}: expected one geometry per element, got {len(parts)}")
        return parts[0]
    if isinstance(v, bytes | bytearray):
        return shapely.from_wkb(bytes(v))
    if isinstance(v, str):
        return shapely.from_wkt(v)
    raise ValidationError(f"cannot interpret element {v!r} of {name} as a geometry")


def _from_geojson(obj: Mapping, name: str) -> list:
    import shapely.geometry

    kind = obj.get("type")
    if kind == "FeatureCollection":
        return [shapely.geometry.shape(f["geometry"]) for f in obj.get("features", [])]
    if kind == "Feature":
        return [shapely.geometry.shape(obj["geometry"])]
    if kind in {
        "Point",
        "MultiPoint",
        "LineString",
        "MultiLineString",
        "Polygon",
        "MultiPolygon",
        "GeometryCollection",
    }:
        return [shapely.geometry.shape(obj)]
    raise ValidationError(
        f"{name}: not a GeoJSON geometry, Feature or FeatureCollection (type={kind!r})"
    )


def _is_arrow(value: Any) -> bool:
    return type(value).__module__.startswith("pyarrow") or hasattr(value, "__arrow_c_array__")


def _from_arrow(value: Any):
    import pyarrow as pa
    import shapely

    arr = value.combine_chunks() if isinstance(value, pa.ChunkedArray) else pa.array(value)
    crs = None
    storage = arr
    if isinstance(arr.type, pa.ExtensionType):
        try:
            meta = arr.type.crs
            crs = meta.to_json() if hasattr(meta, "to_json") else meta
        except AttributeError:
            crs = None
        storage = arr.storage
    if pa.types.is_binary(storage.type) or pa.types.is_large_binary(storage.type):
        return np.asarray(
            shapely.from_wkb(storage.to_numpy(zero_copy_only=False)), dtype=object
        ), crs
    if pa.types.is_string(storage.type):
        return np.asarray(
            shapely.from_wkt(storage.to_numpy(zero_copy_only=False)), dtype=object
        ), crs
    import geoarrow.pyarrow as ga

    wkb = ga.as_wkb(arr)
    return np.asarray(
        shapely.from_wkb(wkb.storage.to_numpy(zero_copy_only=False)), dtype=object
    ), crs


def grid_boundary(
    transform: Sequence[float], width: int, height: int, *, densify: int = 16
) -> np.ndarray:
    """Densified boundary ring (N, 2) of a raster in its own CRS.

    Args:
        transform: GDAL geotransform (x0, dx, rx, y0, ry, dy).
    """
    x0, dx, rx, y0, ry, dy = transform
    t = np.linspace(0.0, 1.0, densify + 1)[:-1]
    cols = np.concatenate([t * width, np.full_like(t, width), (1 - t) * width, np.zeros_like(t)])
    rows = np.concatenate([np.zeros_like(t), t * height, np.full_like(t, height), (1 - t) * height])
    xs = x0 + cols * dx + rows * rx
    ys = y0 + cols * ry + rows * dy
    return np.column_stack([xs, ys])


def footprint_lonlat(
    transform: Sequence[float], width: int, height: int, crs: Any, *, densify: int = 16
):
    """The raster's footprint as a CRS84 (Multi)Polygon, split at the antimeridian."""
    ring = grid_boundary(transform, width, height, densify=densify)
    src = to_crs(crs)
    if src.is_geographic and _is_lonlat_degrees(src):
        lon, lat = ring[:, 0], ring[:, 1]
    else:
        lon, lat = transformer(src, CRS84).transform(ring[:, 0], ring[:, 1])
        lon, lat = np.asarray(lon), np.asarray(lat)
    ok = np.isfinite(lon) & np.isfinite(lat)
    if not ok.all():
        lon, lat = lon[ok], lat[ok]
        if len(lon) < 3:
            raise ValidationError("raster footprint cannot be transformed to lon/lat")
    pole = _pole_inside(transform, width, height, src)
    if pole:
        return _polar_cap(lon, lat, pole)
    return lonlat_ring_to_polygon(lon, lat)


def _pole_inside(transform: Sequence[float], width: int, height: int, src: Any) -> int:
    """+1 / -1 when the raster covers the north / south pole (a polar projection), else
    0. Its lon/lat boundary then circles the pole, and the polygon that ring encloses in
    lon/lat is not the raster's footprint."""
    from affine import Affine

    if src.is_geographic:
        return 0
    inv = ~Affine.from_gdal(*transform)
    for sign in (1, -1):
        x, y = transformer(CRS84, src).transform(0.0, 90.0 * sign)
        if not (np.isfinite(x) and np.isfinite(y)):  # not representable in this CRS
            continue
        col, row = inv * (float(x), float(y))
        if 0 <= col <= width and 0 <= row <= height:
            return sign
    return 0


def _polar_cap(lon: np.ndarray, lat: np.ndarray, pole: int):
    """The lon/lat region between a ring circling a pole and that pole: the ring as a
    function of longitude (sorted; it crosses every meridian once), closed along ±180
    and the pole's latitude."""
    from shapely.geometry import Polygon
    from shapely.geometry.polygon import orient

    order = np.argsort(lon, kind="stable")
    lon, lat = np.asarray(lon, float)[order], np.asarray(lat, float)[order]
    # latitude where the ring crosses the antimeridian: between the last and first points
    span = (lon[0] + 360.0) - lon[-1]
    at = lat[-1] + (lat[0] - lat[-1]) * ((180.0 - lon[-1]) / span) if span > 0 else lat[0]
    edge = 90.0 * pole
    ring = [(-180.0, edge), (-180.0, at), *zip(lon, lat, strict=True), (180.0, at), (180.0, edge)]
    return orient(Polygon(ring), 1.0)  # counter-clockwise, as RFC 7946 asks


def footprints_lonlat(
    transforms: Sequence[Sequence[float]],
    widths: Sequence[int],
    heights: Sequence[int],
    crs: Any,
    *,
    densify: int = 16,
) -> list:
    """Footprints of many rasters sharing one CRS: one vectorized transform, then
    polygons (split at the antimeridian where needed). Same result as calling
    :func:`footprint_lonlat` per raster."""
    import shapely

    if not len(transforms):
        return []
    rings = np.stack(
        [
            grid_boundary(t, w, h, densify=densify)
            for t, w, h in zip(transforms, widths, heights, strict=True)
        ]
    )
    src = to_crs(crs)
    n, m, _ = rings.shape
    if src.is_geographic and _is_lonlat_degrees(src):
        lon, lat = rings[..., 0], rings[..., 1]
    else:
        x, y = transformer(src, CRS84).transform(rings[..., 0].ravel(), rings[..., 1].ravel())
        lon, lat = np.asarray(x).reshape(n, m), np.asarray(y).reshape(n, m)
    with np.errstate(invalid="ignore"):  # inf - inf where a ring leaves the CRS's domain
        simple = (
            np.isfinite(lon).all(axis=1)
            & np.isfinite(lat).all(axis=1)
            & (np.abs(np.diff(lon, axis=1, append=lon[:, :1])) <= 180).all(axis=1)
            & (lon >= -180).all(axis=1)
            & (lon <= 180).all(axis=1)
        )
    out: list = [None] * n
    idx = np.flatnonzero(simple)
    if len(idx):
        closed = np.concatenate(
            [
                np.stack([lon[idx], lat[idx]], axis=-1),
                np.stack([lon[idx, :1], lat[idx, :1]], axis=-1),
            ],
            axis=1,
        )
        polys = shapely.make_valid(shapely.polygons(closed))
        for k, i in enumerate(idx):
            out[i] = polys[k]
    for i in np.flatnonzero(~simple):
        out[i] = footprint_lonlat(transforms[i], widths[i], heights[i], crs, densify=densify)
    return out


def _is_lonlat_degrees(crs) -> bool:
    return crs.to_epsg() in (4326, 4269, 4258) or crs.name in ("WGS 84 (CRS84)",)


def lonlat_ring_to_polygon(lon: np.ndarray, lat: np.ndarray):
    """Build a lon/lat polygon from a ring, unwrapping longitudes that jump across
    ±180 and splitting the result at the antimeridian (RFC 7946)."""
    import shapely
    from shapely.geometry import MultiPolygon, Polygon, box

    lon = np.asarray(lon, dtype=float).copy()
    # also treat rings that extend past ±180 in their native numbers (e.g. 179.5..180.5)
    jumps = np.abs(np.diff(np.concatenate([lon, lon[:1]]))) > 180
    if jumps.any():
        lon = np.where(lon < 0, lon + 360.0, lon)
    poly = shapely.make_valid(Polygon(np.column_stack([lon, lat])))
    minx, _, maxx, _ = poly.bounds
    if minx >= -180 and maxx <= 180:
        return poly
    parts = []
    for lo, hi, shift in ((-540, -180, 360), (-180, 180, 0), (180, 540, -360)):
        piece = poly.intersection(box(lo, -90, hi, 90))
        if not piece.is_empty:
            piece = shapely.affinity.translate(piece, xoff=shift)
            parts.extend(getattr(piece, "geoms", [piece]))
    polys = [p for p in parts if p.geom_type == "Polygon" and p.area > 0]
    return polys[0] if len(polys) == 1 else MultiPolygon(polys)


def geometries_to_lonlat(geoms: Any, crs: Any, *, segments: int = 128) -> np.ndarray:
    """Geometries in ``crs`` as CRS84 geometries covering the same ground: edges
    densified first (10 km pieces, at most ``segments`` a side: a straight edge in a
    projected CRS is a curve in lon/lat), a polygon around a pole closed up to it, one across the antimeridian split
    at ±180 (transforming the vertices alone gives, for both, a polygon elsewhere)."""
    import shapely

    g = np.asarray(geoms, dtype=object)
    src = to_crs(crs)
    if src.is_geographic:  # degrees already: no pole to find; ±180 may be passed
        if not src.equals(to_crs(CRS84)):
            t = transformer(src, CRS84)
            g = shapely.transform(g, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
        past = np.flatnonzero((shapely.bounds(g)[:, 0] < -180) | (shapely.bounds(g)[:, 2] > 180))
        g = g.copy()
        for i in past:  # a Pacific AOI written 179..181 is 179..180 and -180..-179
            if shapely.get_type_id(g[i]) in (0, 4):  # points: longitudes wrapped
                g[i] = shapely.transform(
                    g[i], lambda xy: np.column_stack([(xy[:, 0] + 180) % 360 - 180, xy[:, 1]])
                )
            else:
                g[i] = split_at_antimeridian(g[i])
        return g
    t = transformer(src, CRS84)
    span = shapely.bounds(g)
    size = np.maximum(span[:, 2] - span[:, 0], span[:, 3] - span[:, 1])
    # edges of up to 10 km (up to `segments` a side): a small AOI is not densified
    metres = src.axis_info[0].unit_conversion_factor if src.axis_info else 1.0
    with np.errstate(invalid="ignore"):
        pieces = np.clip(np.ceil(size * metres / 10_000.0), 1, segments)
        seg = size / np.where(np.isfinite(pieces), pieces, 1)
    ok = np.isfinite(seg) & (seg > 0)
    g = np.where(ok, shapely.segmentize(g, np.where(ok, seg, 1.0)), g)
    back = transformer(CRS84, src)
    poles = []
    for sign in (1, -1):
        x, y = back.transform(0.0, 90.0 * sign)
        if np.isfinite(x) and np.isfinite(y):
            poles.append((sign, shapely.Point(float(x), float(y))))

    def ring(coords: Any) -> tuple[np.ndarray, np.ndarray]:
        xy = np.asarray(coords, dtype=float)[:-1, :2]
        lon, lat = (np.asarray(v) for v in t.transform(xy[:, 0], xy[:, 1]))
        keep = np.isfinite(lon) & np.isfinite(lat)
        return lon[keep], lat[keep]

    def polygon(p: Any) -> Any:
        pole = next((sign for sign, pt in poles if p.covers(pt)), 0)
        if pole:  # near a pole longitude turns fast along an edge: 16 times finer
            w, s, e, n = p.bounds
            p = shapely.segmentize(p, max(e - w, n - s) / (16 * segments))
        lon, lat = ring(p.exterior.coords)
        if len(lon) < 3:
            raise ValidationError(f"geometry cannot be transformed from {crs} to lon/lat")
        out = _polar_cap(lon, lat, pole) if pole else lonlat_ring_to_polygon(lon, lat)
        for hole in p.interiors:
            hlon, hlat = ring(hole.coords)
            if len(hlon) >= 3:
                out = out.difference(lonlat_ring_to_polygon(hlon, hlat))
        return out

    # one vectorized transform; the geometries whose vertices jump across ±180, leave
    # the CRS's domain or circle a pole are redone polygon by polygon
    xy, index = shapely.get_coordinates(g, return_index=True)
    lon, lat = (np.asarray(v) for v in t.transform(xy[:, 0], xy[:, 1]))
    redo = np.zeros(len(g), dtype=bool)
    redo[index[~(np.isfinite(lon) & np.isfinite(lat))]] = True
    same = index[1:] == index[:-1]
    redo[index[1:][same & (np.abs(np.diff(lon)) > 180)]] = True
    for _, pt in poles:
        redo |= np.asarray(shapely.covers(g, pt), dtype=bool)
    result = shapely.set_coordinates(g.copy(), np.column_stack([lon, lat]))
    polygonal = np.isin(shapely.get_type_id(g), (3, 6))  # Polygon, MultiPolygon
    for i in np.flatnonzero(redo & polygonal):
        parts = [p for p in shapely.get_parts(g[i]) if not p.is_empty]
        result[i] = shapely.union_all([polygon(p) for p in parts])
    present = shapely.get_type_id(result) >= 0  # None is -1
    bad = np.flatnonzero(present & ~shapely.is_valid(result))
    result[bad] = shapely.make_valid(result[bad])
    return result


def split_at_antimeridian(g: Any, *, crosses: bool = False) -> Any:
    """A lon/lat footprint split at ±180 as RFC 7946 asks, so that it is found on both
    sides: one written with longitudes past 180 (179.5 to 180.5), or, when ``crosses``
    (its bbox says so), a ring jumping from 179 to -179 (else a band around the globe)."""
    import numpy as np
    import shapely

    if g.geom_type not in ("Polygon", "MultiPolygon") or g.is_empty:
        return g
    w, _, e, _ = g.bounds
    if not (w < -180 or e > 180 or crosses):
        return g
    parts = []
    for part in shapely.get_parts(g):
        lon, lat = np.asarray(part.exterior.coords)[:-1, :2].T
        pw, _, pe, _ = part.bounds
        jumps = np.abs(np.diff(np.concatenate([lon, lon[:1]]))) > 180
        if pw >= -180 and pe <= 180 and not jumps.any():  # a part already on one side
            parts.append(part)
        else:
            parts.extend(shapely.get_parts(lonlat_ring_to_polygon(lon, lat)))
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)


def lonlat_bbox(geom) -> tuple[float, float, float, float]:
    """(west, south, east, north) of a CRS84 geometry; west > east when a MultiPolygon
    is split at the antimeridian (parts touching both +180 and -180)."""
    minx, miny, maxx, maxy = geom.bounds
    if geom.geom_type == "MultiPolygon" and minx <= -180 + 1e-9 and maxx >= 180 - 1e-9:
        from .bbox import lon_extent

        # the parts' longitudes as one arc: across ±180 when that is tighter, all the
        # way round (-180, 180) when the parts meet (a 0..360 global grid)
        parts = np.array([g.bounds for g in geom.geoms])
        west, east = lon_extent(parts[:, 0], parts[:, 2])
        return (west, miny, east, maxy)
    return (minx, miny, maxx, maxy)
