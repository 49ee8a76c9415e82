"""A torch-compatible geospatial dataset whose samples come through the read engine.

``ChipDataset`` is a map-style dataset (works with ``DataLoader`` and worker processes:
each worker reads through its own event loop). Samples are chips of ``chip_size``
pixels on the reference grid, around given geometries or tiling the collection's
extent. ``time_series=True`` yields [T, C, H, W] over every record under the chip;
otherwise [C, H, W] mosaics (latest valid pixel first).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._interop import has
from .._sync import run_sync
from ..errors import ValidationError
from ..geo.grid import Grid

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
        from .grids import reference_source
        from .sources import record_bands

        if isinstance(bands, str):
            bands = [bands]
        h, w = (chip_size, chip_size) if isinstance(chip_size, int) else chip_size
        if h < 1 or w < 1:
            raise ValidationError(f"chip_size must be positive, got {chip_size!r}")
        self.collection = collection
        self.bands = list(bands)
        self.chip_shape = (int(h), int(w))
        self.time_series = time_series
        self.transforms = transforms
        recs = record_bands(collection.table, self.bands)
        if not recs:
            raise ValidationError("the collection has no record with all of these bands")
        ref = reference_source([r.bands[b] for r in recs for b in self.bands], target_crs)
        base = ref.grid
        if target_crs is not None or res is not None:
            from ..geo.grid import grid_for_bounds, transform_bounds

            crs = target_crs or base.crs
            b = transform_bounds(base.bounds, base.crs, crs)
            base = grid_for_bounds(b, res or min(base.resolution), crs)
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
            for geom in g.geoms:
                b = geometry_bounds(geom.centroid, g.crs, base.crs)
                r, c = _rowcol(base, b[0], b[1])
                out.append(base.window(int(r) - h // 2, int(c) - w // 2, h, w))
            return out
        if self_bounds_empty(base):
            return []
        s = stride or min(h, w)
        if s < 1:
            raise ValidationError(f"stride must be positive, got {stride}")
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
        from .window import read_window_async

        sub = self.collection.subset(bbox=_lonlat_bbox(grid))
        if not len(sub):
            arr = np.zeros(
                ((1,) if self.time_series else ()) + (len(self.bands), *grid.shape), dtype="float32"
            )
            times: list = []
        else:
            order = sorted(
                zip(
                    sub.table.column("datetime").to_pylist(),
                    sub.table.column("id").to_pylist(),
                    strict=True,
                ),
                key=lambda t: (t[0] is None, t[0]),
                reverse=not self.time_series,
            )
            arr, _, times = await read_window_async(
                sub,
                bounds=grid.bounds,
                bands=self.bands,
                record_ids=[i for _, i in order],
                res=grid.resolution[0],
                target_crs=grid.crs,
                group_by="datetime" if self.time_series else None,
            )
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
