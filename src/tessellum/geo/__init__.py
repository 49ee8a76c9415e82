"""Geometry, CRS and bounding-box math shared by every layer (no I/O)."""

from .bbox import BBox, as_bbox, bbox_intersects
from .crs import crs_epsg, crs_to_code, to_crs

__all__ = ["BBox", "as_bbox", "bbox_intersects", "crs_epsg", "crs_to_code", "to_crs"]
