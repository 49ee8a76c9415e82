"""A torch-compatible geospatial dataset whose samples come through the read engine.

``ChipDataset`` is a map-style dataset (works with ``DataLoader`` and worker processes:
each worker reads through its own event loop). Samples are chips of ``chip_size``
pixels on the reference grid, around given geometries or tiling the collection's
extent. ``time_series=True`` yields [T, C, H, W] over every record under the chip;
otherwise [C, H, W] mosaics (latest valid pixel first).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._interop import has
from .._sync import run_sync
from ..errors import ValidationError
from ..geo.grid import Grid
from .engine import _fill_value

try:  # torch is optional: without it the dataset still works and returns numpy arrays
    from torch.utils.data import Dataset as _Base
except ImportError:  # pragma: no cover - exercised where torch is missing
    _Base = object  # type: ignore[assignment,misc]


class ChipDataset(_Base):  # type: ignore[misc,valid-type]
    """Chips of a collection as a torch Dataset.

    Args:
        collection: the ``Collection``.
        bands: band codes, in channel order.
        chip_size: chip height and width in pixels (int or (h, w)).
        geometries: chip centres (any geometries; their centroids are used). Without
            them, chips tile the collection's extent (``stride`` pixels apart).
        geometry_crs: CRS of ``geometries`` when they carry none (default CRS84).
        res: pixel size in the target CRS (default: native of the finest band).
        target_crs: output CRS (default: the most common record CRS).
        time_series: [T, C, H, W] samples over all records instead of a mosaic.
        stride: tiling stride in pixels (default ``chip_size``).
        transforms: a callable applied to each sample dict.
    """

    def __init__(
        self,
        collection: Any,
        bands: Sequence[str],
        chip_size: int | tuple[int, int] = 256,
        *,
        geometries: Any = None,
        geometry_crs: Any = None,
        res: float | None = None,
        target_crs: Any = None,
        time_series: bool = False,
        stride: int | None = None,
        transforms: Callable[[dict], dict] | None = None,
    ) -> None:
        from .sources import record_bands

        if isinstance(bands, str):
            bands = [bands]
        bands = list(bands)
        if not bands or not all(isinstance(b, str) for b in bands):
            raise ValidationError(f"bands must be a non-empty list of band codes, got {bands!r}")
        self.collection = collection
        self.bands = bands
        self.chip_shape = _chip_shape(chip_size)
        self.time_series = time_series
        self.transforms = transforms
        if res is not None and not (_is_number(res) and 0 < res < float("inf")):
            raise ValidationError(f"res must be a positive pixel size, got {res!r}")
        if stride is not None and not (_is_int(stride) and stride >= 1):
            raise ValidationError(f"stride must be a positive number of pixels, got {stride!r}")
        recs = record_bands(collection.table, self.bands)
        if not recs:
            raise ValidationError("the collection has no record with all of these bands")
        srcs = [r.bands[b] for r in recs for b in self.bands]
        first = recs[0].bands
        # what a chip without records holds: the type and fill value reads give
        self.dtype = np.result_type(*[s.dtype for s in srcs])
        fills = [_fill_value(self.dtype, first[b].nodata) for b in self.bands]
        self._empty_fill = np.array(fills, dtype=self.dtype)[:, None, None]
        base = _extent_grid(srcs, target_crs, res)
        self.crs = base.crs
        self.res = base.resolution
        self._grid = base
        self.chips = self._chips(base, geometries, geometry_crs, stride)

    def _chips(
        self, base: Grid, geometries: Any, geometry_crs: Any, stride: int | None
    ) -> list[Grid]:
        h, w = self.chip_shape
        if geometries is not None:
            from ..geo.geometry import coerce_geometries
            from .grids import geometry_bounds

            g = coerce_geometries(geometries, crs=geometry_crs)
            out = []
            for i, geom in enumerate(g.geoms):
                centre = geom.centroid
                if centre.is_empty or not np.isfinite(centre.coords[0]).all():
                    raise ValidationError(f"geometry {i} has no finite centre: {geom.wkt[:80]}")
                b = geometry_bounds(centre, g.crs, base.crs)
                if not np.isfinite(b).all():
                    raise ValidationError(f"geometry {i} has no finite centre in {base.crs}")
                r, c = _rowcol(base, b[0], b[1])
                out.append(base.window(math.floor(r) - h // 2, math.floor(c) - w // 2, h, w))
            return out
        if self_bounds_empty(base):
            return []
        s = stride or min(h, w)
        return [
            base.window(r, c, h, w)
            for r in range(0, max(base.height - h, 0) + 1, s)
            for c in range(0, max(base.width - w, 0) + 1, s)
        ]

    def __len__(self) -> int:
        return len(self.chips)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self.chips):
            raise IndexError(index)
        grid = self.chips[index]
        sample = run_sync(self._read(grid))
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    async def _read(self, grid: Grid) -> dict[str, Any]:
        from .sources import record_bands
        from .stacks import mosaic_order
        from .window import read_on_grid_async

        sub = self.collection.subset(bbox=_lonlat_bbox(grid))
        recs = record_bands(sub.table, self.bands)
        if not recs:  # nothing under the chip: the fill, in the dataset's type
            image = np.broadcast_to(self._empty_fill, (len(self.bands), *grid.shape))
            arr = np.zeros((0, *image.shape), self.dtype) if self.time_series else image.copy()
            times: list = [] if self.time_series else [None]  # a mosaic has one (unknown) time
        else:
            # a mosaic in every mosaic's priority; a time series oldest first, undated last
            if self.time_series:
                recs.sort(key=lambda r: (r.datetime is None, r.datetime or _EPOCH, r.id))
            else:
                recs = mosaic_order(recs)
            # exactly the chip's grid: a window of the dataset's grid, whichever
            # records lie under it (their own grids may be coarser or offset)
            arr, times = await read_on_grid_async(
                sub, recs, self.bands, grid, group_by="datetime" if self.time_series else None
            )
            arr = arr.astype(self.dtype, copy=False)
        # times as POSIX seconds (float64) so DataLoader's default collate can batch them
        stamps = np.array(
            [t.timestamp() if t is not None else np.nan for t in times], dtype="float64"
        )
        return {
            "image": _to_tensor(arr),
            "bounds": grid.bounds,
            "crs": grid.crs,
            "time": _to_tensor(stamps),
        }


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float | np.floating)) and math.isfinite(value)


def _chip_shape(chip_size: Any) -> tuple[int, int]:
    """``(h, w)`` from an int or a pair of ints, validated."""
    pair = (chip_size, chip_size) if _is_int(chip_size) else chip_size
    if (
        not isinstance(pair, tuple | list)
        or len(pair) != 2
        or not all(_is_int(v) and v >= 1 for v in pair)
    ):
        raise ValidationError(
            f"chip_size must be a positive int or (height, width) of ints, got {chip_size!r}"
        )
    return int(pair[0]), int(pair[1])


def _extent_grid(sources: Sequence[Any], target_crs: Any, res: float | None) -> Grid:
    """The grid chips tile: the extent of every record, on the finest band's grid (or
    in ``target_crs`` at ``res``, by default the native resolution carried into the
    target CRS's units)."""
    from shapely.geometry import box

    from ..geo.grid import transform_bounds
    from .grids import output_grid, reference_source

    ref = reference_source(sources, target_crs)
    crs = ref.grid.crs
    # records of a time series share their grid: each distinct extent transformed once
    extents = {(s.grid.bounds, s.grid.crs) for s in sources}
    boxes = [transform_bounds(b, c, crs) for b, c in extents]
    extent = box(min(b[0] for b in boxes), min(b[1] for b in boxes),
                 max(b[2] for b in boxes), max(b[3] for b in boxes))  # fmt: skip
    return output_grid(extent, crs, ref, target_crs=target_crs, resolution=res)


def _rowcol(grid: Grid, x: float, y: float) -> tuple[float, float]:
    c, r = (~grid.transform) @ (x, y)
    return r, c


def self_bounds_empty(grid: Grid) -> bool:
    return grid.height == 0 or grid.width == 0


def _lonlat_bbox(grid: Grid) -> tuple[float, float, float, float]:
    from ..geo.grid import transform_bounds

    return transform_bounds(grid.bounds, grid.crs, "OGC:CRS84")


def _to_tensor(arr: np.ndarray) -> Any:
    if not has("torch"):
        return arr
    import torch

    if arr.dtype == np.uint16:  # torch lacks full uint16 support: widen losslessly
        arr = arr.astype(np.int32)
    elif arr.dtype == np.uint32:
        arr = arr.astype(np.int64)
    return torch.from_numpy(np.ascontiguousarray(arr))


def to_torchgeo_dataset(
    collection: Any, bands: Sequence[str], chip_size: int = 256, **kwargs: Any
) -> ChipDataset:
    """A :class:`ChipDataset` over ``collection`` (see its arguments)."""
    return ChipDataset(collection, bands, chip_size, **kwargs)
