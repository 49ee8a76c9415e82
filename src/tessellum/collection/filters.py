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
    """Rows with ``start <= datetime <= end`` (bounds are aware datetimes)."""
    col = table.column("datetime")
    m = pc.and_(
        pc.greater_equal(col, pa.scalar(start, col.type)),
        pc.less_equal(col, pa.scalar(end, col.type)),
    )
    return pc.fill_null(m, False)


def geometry_mask(table: pa.Table, geoms, crs) -> pa.Array:
    """Rows whose footprint intersects any of ``geoms`` (exact, after a bbox prefilter)."""
    import numpy as np
    import shapely

    from ..geo.crs import CRS84, to_crs, transformer
    from ..geo.geometry import lonlat_bbox

    if not to_crs(crs).equals(to_crs(CRS84)):
        t = transformer(crs, CRS84)
        geoms = np.array([shapely.ops.transform(t.transform, g) for g in geoms], dtype=object)
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
