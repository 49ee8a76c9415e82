"""Pure Arrow filters over a collection table (no per-row Python objects)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..geo.bbox import BBox


def bbox_mask(table: pa.Table, box: BBox) -> pa.Array:
    """Rows whose bbox covering intersects ``box`` (antimeridian-aware on both sides)."""
    b = table.column("bbox")
    xmin, ymin = pc.struct_field(b, "xmin"), pc.struct_field(b, "ymin")
    xmax, ymax = pc.struct_field(b, "xmax"), pc.struct_field(b, "ymax")
    lat_ok = pc.and_(pc.less_equal(ymin, box.north), pc.greater_equal(ymax, box.south))
    row_wraps = pc.greater(xmin, xmax)
    hits = None
    for part in box.split():
        plain = pc.and_(pc.less_equal(xmin, part.east), pc.greater_equal(xmax, part.west))
        wrapped = pc.or_(pc.less_equal(xmin, part.east), pc.greater_equal(xmax, part.west))
        lon_ok = pc.if_else(row_wraps, wrapped, plain)
        hits = lon_ok if hits is None else pc.or_(hits, lon_ok)
    return pc.fill_null(pc.and_(lat_ok, hits), False)


def date_mask(table: pa.Table, start: Any, end: Any) -> pa.Array:
    """Rows with ``start <= datetime <= end`` (bounds are aware datetimes); a row with a
    ``start_datetime``/``end_datetime`` interval (a STAC item's) when the interval meets
    ``[start, end]``, as a STAC API search matches it."""
    col = table.column("datetime")
    m = pc.and_(
        pc.greater_equal(col, pa.scalar(start, col.type)),
        pc.less_equal(col, pa.scalar(end, col.type)),
    )
    names = table.column_names
    if "start_datetime" in names and "end_datetime" in names:
        lo, hi = table.column("start_datetime"), table.column("end_datetime")
        if pa.types.is_timestamp(lo.type) and pa.types.is_timestamp(hi.type):
            meets = pc.and_(
                pc.less_equal(lo, pa.scalar(end, lo.type)),
                pc.greater_equal(hi, pa.scalar(start, hi.type)),
            )
            m = pc.if_else(pc.and_(pc.is_valid(lo), pc.is_valid(hi)), meets, m)
    return pc.fill_null(m, False)


def geometry_mask(table: pa.Table, geoms, crs) -> pa.Array:
    """Rows whose footprint intersects any of ``geoms`` (exact, after a bbox prefilter)."""
    import numpy as np
    import shapely

    from ..geo.geometry import geometries_to_lonlat, lonlat_bbox

    # densified, closed to a pole, split at ±180: the ground the geometries cover
    geoms = geometries_to_lonlat(geoms, crs)
    union = shapely.union_all(geoms)
    w, s, e, n = lonlat_bbox(union)
    pre = bbox_mask(table, BBox(w, s, e, n)).to_numpy(zero_copy_only=False)
    out = np.zeros(table.num_rows, dtype=bool)
    idx = np.flatnonzero(pre)
    if len(idx):
        fp = shapely.from_wkb(
            table.column("geometry").take(pa.array(idx)).to_numpy(zero_copy_only=False)
        )
        out[idx] = shapely.intersects(fp, union)
    return pa.array(out)
