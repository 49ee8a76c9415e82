"""Read methods of :class:`Collection` (seed 003 names). Thin facades over
``tessellum.read``: sync methods run the ``_async`` twins via ``run_sync``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._sync import run_sync, twin_signature


class ReadMethods:
    """Mixed into ``Collection``; every method has an ``_async`` twin."""

    async def get_xarray_async(self, geometries: Any, bands: Sequence[str], **kwargs: Any) -> Any:
        """Async form of :meth:`get_xarray`."""
        from ..read import get_xarray_async

        return await get_xarray_async(self, geometries, bands, **kwargs)

    @twin_signature("tessellum.read.outputs:get_xarray_async")
    def get_xarray(self, geometries: Any, bands: Sequence[str], **kwargs: Any) -> Any:
        """Pixels under each geometry as an ``xarray.Dataset`` (dims time, y, x; one
        variable per band; CF ``spatial_ref``; ``_FillValue`` = source nodata).

        One geometry returns a Dataset (a ``ValidationError`` when no record intersects
        it); a collection of geometries, even of one, returns a list (one Dataset per
        geometry, each on its own grid; ``None`` where no record intersects it). The grid is the source pixel grid snapped outward around the
        geometry, unless ``target_crs``/``resolution`` are given; records in other CRSs
        (e.g. a neighbouring UTM zone) are warped onto it. Integer data keeps its dtype
        and nodata; pixels outside the geometry are nodata (an integer band without a
        nodata value that the geometry masks becomes float with NaN there).

        Keyword Args:
            target_crs: output CRS (default: the most common CRS of the records).
            resolution: output pixel size in target CRS units (default: native).
            resampling: warp kernel when the output grid is not the source's
                ("nearest", the default, "bilinear", "cubic", "average", "mode", ...),
                for every band as asked (as rasterio does): keep "nearest" or "mode"
                for class codes, which an interpolation would invent.
            all_touched: rasterize the geometry mask with all touched pixels.
            max_concurrent: requests in flight for this call.
            progress: a tile progress bar (None: on a TTY, for reads of 64+ tiles).
            geometry_crs: CRS of the geometries when they carry none (default CRS84).
            cloud_cover_lt, date_range, bbox, split: filters applied first.
        """
        return run_sync(self.get_xarray_async(geometries, bands, **kwargs))

    async def get_numpy_async(self, geometries: Any, bands: Sequence[str], **kwargs: Any) -> Any:
        """Async form of :meth:`get_numpy`."""
        from ..read import get_numpy_async

        return await get_numpy_async(self, geometries, bands, **kwargs)

    @twin_signature("tessellum.read.outputs:get_numpy_async")
    def get_numpy(self, geometries: Any, bands: Sequence[str], **kwargs: Any) -> Any:
        """Chips as ``NumpyResult(data [N, C, H, W], labels)``; ``labels`` names each N
        (geometry_id, record_id, datetime). All chips have one shape (equal-size AOIs give
        equal-size chips; smaller ones are padded with nodata). Same options as
        :meth:`get_xarray`."""
        return run_sync(self.get_numpy_async(geometries, bands, **kwargs))

    async def get_gdf_async(self, geometries: Any, bands: Sequence[str], **kwargs: Any) -> Any:
        """Async form of :meth:`get_gdf`."""
        from ..read import get_gdf_async

        return await get_gdf_async(self, geometries, bands, **kwargs)

    @twin_signature("tessellum.read.outputs:get_gdf_async")
    def get_gdf(self, geometries: Any, bands: Sequence[str], **kwargs: Any) -> Any:
        """A GeoDataFrame with a row per (geometry, record, band): ``data`` (2-D array),
        ``valid``, ``nodata``, ``transform``, ``crs``, keeping the AOI table's columns in
        their own types (one named like an output column gets the suffix ``_aoi``)."""
        return run_sync(self.get_gdf_async(geometries, bands, **kwargs))

    async def sample_points_async(self, points: Any, bands: Sequence[str], **kwargs: Any) -> Any:
        """Async form of :meth:`sample_points`."""
        from ..read import sample_points_async

        return await sample_points_async(self, points, bands, **kwargs)

    @twin_signature("tessellum.read.points:sample_points_async")
    def sample_points(self, points: Any, bands: Sequence[str], **kwargs: Any) -> Any:
        """Values at points as an Arrow table (point_index, x, y, record_id, datetime,
        band, value + the point table's columns); nodata values are null.

        Keyword Args:
            match: "all" records under each point, or the "latest" one.
            method: "nearest" or "bilinear".
        """
        return run_sync(self.sample_points_async(points, bands, **kwargs))

    async def read_window_async(self, **kwargs: Any) -> Any:
        """Async form of :meth:`read_window`."""
        from ..read import read_window_async

        arr, _, _ = await read_window_async(self, **kwargs)
        return arr

    @twin_signature("tessellum.read.window:read_window_async")
    def read_window(self, **kwargs: Any) -> Any:
        """A mosaic over ``bounds`` (output CRS): ``[C, H, W]``, or ``[T, C, H, W]`` with
        ``group_by="datetime"|"id"``; where records overlap the first valid pixel wins
        (``record_ids`` order, else collection order).

        Keyword Args:
            bounds, bands, record_ids, res, target_crs, group_by, resampling, max_concurrent.
        """
        return run_sync(self.read_window_async(**kwargs))

    def to_torchgeo_dataset(self, bands: Sequence[str], chip_size: int = 256, **kwargs: Any) -> Any:
        """A torch Dataset of chips read through this engine (see
        ``tessellum.read.dataset.ChipDataset``: ``geometries``, ``time_series``,
        ``res``, ``target_crs``, ``stride``, ``transforms``). Works with a ``DataLoader``
        and worker processes; torchgeo is not required."""
        from ..read.dataset import to_torchgeo_dataset

        return to_torchgeo_dataset(self, bands, chip_size, **kwargs)
