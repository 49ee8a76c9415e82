"""The attribute engine: geometries x catalog datasets -> QC'd, cached statistics.

Per dataset, every geometry not in the result cache is read in **one**
``read_stacks_async`` call (each tile fetched and decoded once for all geometries),
then reduced with exact coverage fractions (:mod:`.zonal`) and flagged (:mod:`.qc`).
Datasets run concurrently, each under the per-provider timeout; the whole request runs
under the per-request timeout. A dataset that fails or times out becomes a warning and
an entry of ``failed_datasets``; the other datasets still return.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np

from .._gc import collection_paused
from ..errors import ExtractionError, TessellumError, ValidationError
from .cache import NullResultCache, ResultCache, cache_from_settings, geometry_hashes, result_key
from .models import (
    AggregationMethod,
    AttributeRequest,
    AttributeResponse,
    AttributeResult,
    BatchAttributeRequest,
    BatchAttributeResponse,
    BoundingBox,
)
from .qc import QCConfig, consistency_warnings, physical_values, quality_flag
from .sources import CollectionSource, StacCollectionSource
from .zonal import ZonalOutcome, method_note, zonal_point, zonal_polygon

__all__ = ["AttributeEngine", "Job", "check_on_earth", "lonlat_boxes", "lonlat_boxes_on_earth"]

_CRS84 = "OGC:CRS84"


@dataclass
class Job:
    """One extraction over already-parsed shapely geometries (any number of them)."""

    geometries: list[Any]
    dataset_ids: list[str]
    crs: Any = _CRS84
    aggregation: AggregationMethod = AggregationMethod.mean
    time_range: tuple[str, str] | None = None
    point_method: str = "nearest"
    ids: list[Any] | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class _Part:
    geom_index: int
    read_geom: Any  # what is read (request CRS)
    kind: str  # "polygon" | "point"
    bilinear: bool = False


class AttributeEngine:
    """Statistics of catalog datasets under geometries (a thin shell over functions).

    Args:
        catalog: the dataset catalog (default: :func:`tessellum.catalog.default_catalog`).
        cache: a :class:`~tessellum.attributes.cache.ResultCache` (default: per settings).
        collections: a collection source (default: :class:`StacCollectionSource`).
        qc: quality thresholds.
        settings: :class:`tessellum.config.Settings` (default: the current ones, read
            at call time).
        request_timeout_s: wall-clock limit of one request (None: no limit beyond the
            per-provider timeout).
    """

    def __init__(
        self,
        *,
        catalog: Any = None,
        cache: ResultCache | None = None,
        collections: CollectionSource | None = None,
        qc: QCConfig | None = None,
        settings: Any = None,
        request_timeout_s: float | None = None,
    ) -> None:
        self._catalog = catalog
        self.cache = cache if cache is not None else cache_from_settings(settings)
        self.collections = collections if collections is not None else StacCollectionSource()
        self.qc = qc or QCConfig()
        self._settings = settings
        self.request_timeout_s = request_timeout_s

    @property
    def catalog(self) -> Any:
        """The catalog in use."""
        if self._catalog is None:
            from ..catalog import default_catalog

            return default_catalog()
        return self._catalog

    @property
    def settings(self) -> Any:
        """The settings in use (current settings unless given)."""
        if self._settings is None:
            from ..config import get_settings

            return get_settings()
        return self._settings

    # --- public -----------------------------------------------------------------------
    async def extract(
        self, request: AttributeRequest, *, request_id: str | None = None
    ) -> AttributeResponse:
        """Statistics of ``request.dataset_ids`` under one geometry."""
        job = Job(
            geometries=[_to_shapely(request.geometry)],
            dataset_ids=list(request.dataset_ids),
            crs=_request_crs(request),
            aggregation=request.aggregation,
            time_range=request.time_range.as_tuple() if request.time_range else None,
            point_method=request.point_method,
        )
        if request_id:
            job.request_id = request_id
        batch = await self.run(job)
        item = batch.items[0]
        item.warnings = [*batch.warnings, *item.warnings]
        item.failed_datasets = batch.failed_datasets
        return item

    async def batch_extract(
        self, request: BatchAttributeRequest, *, request_id: str | None = None
    ) -> BatchAttributeResponse:
        """Statistics under every geometry of ``request``; tiles are read once."""
        job = Job(
            geometries=[_to_shapely(g) for g in request.geometries],
            dataset_ids=list(request.dataset_ids),
            crs=_request_crs(request),
            aggregation=request.aggregation,
            time_range=request.time_range.as_tuple() if request.time_range else None,
            point_method=request.point_method,
            ids=request.ids,
        )
        if request_id:
            job.request_id = request_id
        return await self.run(job)

    async def run(self, job: Job) -> BatchAttributeResponse:
        """Run a :class:`Job` (no geometry-count limit; the HTTP API enforces one).

        Raises:
            DatasetNotFoundError: an unknown dataset id (before any reading).
            ValidationError: a geometry whose coordinates (in ``job.crs``) are not on
                the Earth, naming it and the coordinate (before any reading).
        """
        t0 = time.perf_counter()
        entries = [self.catalog.get(d) for d in job.dataset_ids]
        # else such a geometry fails each dataset with a message about a search bbox
        # the caller never sent ("bbox south (94.0) must be less than north (90.0)")
        lonlat = await asyncio.to_thread(check_on_earth, job.geometries, job.crs)
        # GEOS work without the GIL: other requests' event-loop work goes on meanwhile
        hashes = await asyncio.to_thread(geometry_hashes, job.geometries, job.crs)
        timeout = self.settings.provider_timeout_s
        tasks = {
            e.id: asyncio.create_task(
                asyncio.wait_for(self._dataset(e, job, hashes, lonlat), timeout), name=e.id
            )
            for e in entries
        }
        _done, pending = await asyncio.wait(tasks.values(), timeout=self.request_timeout_s)
        for task in pending:
            task.cancel()
        warnings: list[str] = []
        failed: list[str] = []
        per_dataset: dict[str, list[AttributeResult | None]] = {}
        for ds, task in tasks.items():
            if task in pending:
                failed.append(ds)
                warnings.append(f"{ds}: request timeout ({self.request_timeout_s:g} s) elapsed")
                continue
            exc = task.exception()
            if exc is None:
                per_dataset[ds] = task.result()
            else:
                failed.append(ds)
                warnings.append(_describe_failure(ds, exc, timeout))
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        with collection_paused(len(hashes) >= _PAUSE_GC_FROM):
            items = self._responses(job, hashes, per_dataset, (time.perf_counter() - t0) * 1000)
        return BatchAttributeResponse(
            request_id=job.request_id,
            items=items,
            warnings=warnings,
            failed_datasets=failed,
            elapsed_ms=(time.perf_counter() - t0) * 1000,
        )

    def _responses(
        self,
        job: Job,
        hashes: Sequence[str],
        per_dataset: dict[str, list[AttributeResult | None]],
        elapsed: float,
    ) -> list[AttributeResponse]:
        """One response per geometry from the datasets' result columns."""
        items = []
        columns = [per_dataset[ds] for ds in job.dataset_ids if ds in per_dataset]
        for i, h in enumerate(hashes):
            results = [r for col in columns if (r := col[i]) is not None]
            warned = _categorical_warnings(results)
            if len(results) > 1:  # consistency is between results of several datasets
                warned += consistency_warnings(results, self.qc)
            items.append(
                AttributeResponse(
                    request_id=job.request_id,
                    geometry_hash=h,
                    results=results,
                    warnings=warned,
                    geometry_id=job.ids[i] if job.ids is not None else None,
                    elapsed_ms=elapsed,
                )
            )
        return items

    # --- one dataset ------------------------------------------------------------------
    async def _dataset(
        self, entry: Any, job: Job, hashes: Sequence[str], lonlat: Sequence[Any]
    ) -> list[AttributeResult | None]:
        t0 = time.perf_counter()
        trange = _time_range(entry, job.time_range)
        keys = [
            result_key(
                dataset_id=entry.id, version=entry.version, geom_hash=h,
                aggregation=job.aggregation.value, time_range=trange,
                point_method=job.point_method,
            )
            for h in hashes
        ]  # fmt: skip
        out: list[AttributeResult | None] = [None] * len(keys)
        for i, raw in enumerate(await self.cache.get_many(keys)):
            if raw is not None:
                out[i] = AttributeResult.model_validate_json(raw).model_copy(
                    update={"cached": True, "elapsed_ms": 0.0}
                )
        todo = [i for i, r in enumerate(out) if r is None]
        if not todo:
            return out
        resolved = self.catalog.resolve(entry, self.settings)
        geoms = [job.geometries[i] for i in todo]
        bbox = _crs84_bbox([lonlat[i] for i in todo])
        coll = await self.collections(resolved, bbox, trange)
        computed = await self._compute(entry, coll, geoms, job)
        elapsed = (time.perf_counter() - t0) * 1000
        stores = not isinstance(self.cache, NullResultCache)  # nothing to serialise for
        fresh: dict[str, str] = {}
        for i, res in zip(todo, computed, strict=True):
            res.elapsed_ms = elapsed
            out[i] = res
            if stores and "a record under the geometry could not be read" not in res.qc_notes:
                fresh[keys[i]] = res.model_dump_json()
        await self.cache.set_many(fresh)
        return out

    async def _compute(
        self, entry: Any, coll: Any, geoms: Sequence[Any], job: Job
    ) -> list[AttributeResult]:
        from ..read.stacks import read_stacks_async

        band = entry.variable
        pixel = _pixel_size(coll.table, band, entry)
        parts = _parts(geoms, job.crs, entry, job.point_method, pixel)
        groups = _clusters(parts, job.crs, entry, pixel)
        if coll.table.num_rows:
            group_stacks = await read_stacks_async(
                coll.table, [g for g, _ in groups], [band], geometry_crs=job.crs, mask=False,
                mosaic=True,
            )  # fmt: skip
        else:
            # the search found no record (e.g. sea, where the DEM has no tile): an empty
            # table has no band columns to read, and every geometry is simply uncovered
            group_stacks = [_uncovered_stack(k, g, band) for k, (g, _) in enumerate(groups)]
        failed_fp = _failed_footprints(coll)
        processes = self.settings.zonal_processes
        with collection_paused(len(geoms) >= _PAUSE_GC_FROM):  # the results, built in the thread
            return await asyncio.to_thread(
                _reduce, entry, coll, geoms, parts, job, failed_fp, self.qc, groups, group_stacks,
                processes,
            )  # fmt: skip


# --- pure helpers ------------------------------------------------------------------------
def _to_shapely(geom: Any) -> Any:
    return geom.to_geometry() if isinstance(geom, BoundingBox) else geom.to_shapely()


def _request_crs(request: Any) -> Any:
    # a bounding box is always lon/lat, whatever geometry_crs says
    geoms = getattr(request, "geometries", None) or [getattr(request, "geometry", None)]
    if all(isinstance(g, BoundingBox) for g in geoms):
        return _CRS84
    return request.geometry_crs or _CRS84


def _time_range(entry: Any, asked: tuple[str, str] | None) -> tuple[str, str] | None:
    if not entry.temporal:
        return None  # also keeps the cache key independent of an irrelevant range
    if asked is not None:
        return asked
    if entry.default_time_range is not None:
        return tuple(d.isoformat() for d in entry.default_time_range)  # type: ignore[return-value]
    return None


def _describe_failure(ds: str, exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"{ds}: provider timeout ({timeout:g} s) elapsed"
    if isinstance(exc, TessellumError):
        return f"{ds}: {type(exc).__name__}: {exc}"
    return f"{ds}: unexpected {type(exc).__name__}: {exc}"


def _categorical_warnings(results: Sequence[AttributeResult]) -> list[str]:
    return [
        f"{r.dataset_id}: {note}"
        for r in results
        for note in r.qc_notes
        if "class codes has no physical meaning" in note
    ]


def _same_crs(a: Any, b: Any) -> bool:
    if isinstance(a, str | int) and isinstance(b, str | int):
        return a == b or _same_crs_text(a, b)  # codes/texts: compared once, then cached
    key = (id(a), id(b))  # CRS objects: cached by identity (the entry keeps them alive)
    hit = _SAME_CRS_OBJ.get(key)
    if hit is not None and hit[0] is a and hit[1] is b:
        return hit[2]
    same = _crs_equal(a, b)
    if len(_SAME_CRS_OBJ) >= 256:
        _SAME_CRS_OBJ.clear()
    _SAME_CRS_OBJ[key] = (a, b, same)
    return same


_SAME_CRS_OBJ: dict[tuple[int, int], tuple[Any, Any, bool]] = {}


@lru_cache(maxsize=256)
def _same_crs_text(a: str | int, b: str | int) -> bool:
    return _crs_equal(a, b)


def _crs_equal(a: Any, b: Any) -> bool:
    from ..geo.crs import to_crs

    return bool(to_crs(a).equals(to_crs(b), ignore_axis_order=True))


def _reproject(geom: Any, src: Any, dst: Any) -> Any:
    if _same_crs(src, dst):
        return geom
    return _reproject_many([geom], src, dst)[0]


def _reproject_many(geoms: Sequence[Any], src: Any, dst: Any) -> list[Any]:
    """:func:`_reproject` of many geometries: each densified to 1/64 of its larger bbox
    side (not Points), then every coordinate through one pyproj call."""
    import shapely

    from ..geo.crs import transformer

    if _same_crs(src, dst):
        return list(geoms)
    if not len(geoms):
        return []
    arr = _object_array(geoms)
    b = shapely.bounds(arr)
    seg = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) / 64
    dense = (seg > 0) & (shapely.get_type_id(arr) != 0)  # 0: Point
    if dense.any():
        arr[dense] = shapely.segmentize(arr[dense], seg[dense])
    t = transformer(src, dst)
    out = shapely.transform(arr, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
    return list(out)


def _object_array(items: Sequence[Any]) -> np.ndarray:
    arr = np.empty(len(items), dtype=object)
    arr[:] = list(items)
    return arr


def lonlat_boxes(geom: Any, crs: Any) -> list[tuple[float, float, float, float]]:
    """Lon/lat boxes the engine reads for ``geom`` (both halves at the antimeridian)."""
    from shapely.geometry import box

    g = _reproject(geom, crs, _CRS84)
    w, s, e, n = g.bounds
    if g.geom_type == "MultiPolygon" and e - w > 180:
        halves = [g.intersection(box(0, -90, 180, 90)), g.intersection(box(-180, -90, 0, 90))]
        return [h.bounds for h in halves if not h.is_empty]
    return [(w, s, e, n)]


_EPS = 1e-9  # reprojection round-off at ±180 / ±90


def _off_earth(w: float, s: float, e: float, n: float) -> str | None:
    """What is wrong with a lon/lat box (None when it lies on the Earth)."""
    import math

    if not all(math.isfinite(v) for v in (w, s, e, n)):
        return "a coordinate that does not map to a finite longitude/latitude"
    for name, v, limit in (("longitude", w, 180), ("longitude", e, 180),
                           ("latitude", s, 90), ("latitude", n, 90)):  # fmt: skip
        if abs(v) > limit + _EPS:
            return f"{name} {v:.10g} outside [-{limit}, {limit}]"
    return None


def lonlat_boxes_on_earth(i: int, geom: Any, crs: Any) -> list[tuple[float, float, float, float]]:
    """Geometry ``i``'s :func:`lonlat_boxes`, checked to lie within [-180, 180] x
    [-90, 90].

    Raises:
        ValidationError: naming the geometry (``i``), the coordinate at fault (as a
            longitude/latitude) and ``crs`` -- a typo'd coordinate or CRS.
    """
    try:
        boxes = lonlat_boxes(geom, crs)
    except Exception as exc:  # PROJ/GEOS failures: the caller's coordinates or CRS
        why: str | None = (
            f"coordinates that cannot be transformed to lon/lat ({type(exc).__name__})"
        )
    else:
        why = next((w for b in boxes if (w := _off_earth(*b))), None)
        if not boxes:
            why = "no lon/lat extent"
    if why is not None:
        raise ValidationError(
            f"geometry {i} has {why}: check its coordinates and geometry_crs ({crs})"
        )
    return boxes


def check_on_earth(geoms: Sequence[Any], crs: Any) -> list[Any]:
    """Check every geometry as :func:`lonlat_boxes_on_earth` does, in one vectorized
    pass when they all pass (the usual case).

    Returns:
        The geometries in lon/lat (as :func:`_reproject_many` gives them).

    Raises:
        ValidationError: naming the first geometry off the Earth and its coordinate.
    """
    import shapely

    if not len(geoms):
        return []
    try:
        ll = _reproject_many(geoms, crs, _CRS84)
        b = shapely.bounds(_object_array(ll))
    except Exception:  # find the geometry PROJ fails on, one by one
        ll, bad = [], range(len(geoms))
    else:
        ok = np.isfinite(b).all(axis=1)
        ok &= (np.abs(b[:, [0, 2]]) <= 180 + _EPS).all(axis=1)
        ok &= (np.abs(b[:, [1, 3]]) <= 90 + _EPS).all(axis=1)
        bad = np.flatnonzero(~ok).tolist()
    for i in bad:
        lonlat_boxes_on_earth(i, geoms[i], crs)
    if len(ll) != len(geoms):  # PROJ failed on the batch, on no geometry alone
        ll = [_reproject(g, crs, _CRS84) for g in geoms]
    return ll


def _crs84_bbox(ll: Sequence[Any]) -> tuple[float, float, float, float]:
    """The lon/lat bbox searched for geometries ``ll`` (already in lon/lat)."""
    import shapely

    from ..geo.geometry import lonlat_bbox

    b = shapely.bounds(_object_array(ll))
    if len(b) and not np.isnan(b).all():
        w, s = np.nanmin(b[:, 0]), np.nanmin(b[:, 1])
        e, n = np.nanmax(b[:, 2]), np.nanmax(b[:, 3])
        # the union of the boxes has these bounds; only the antimeridian and degenerate
        # (point-like) cases need the union itself
        if w < e and s < n and not (w <= -180 + 1e-9 and e >= 180 - 1e-9):
            return (float(w), float(s), float(e), float(n))
    union = shapely.union_all(shapely.envelope(_object_array(ll)))
    if union.geom_type == "Point":
        union = union.buffer(1e-6)
    return lonlat_bbox(union)


def _is_lonlat(crs: Any) -> bool:
    if isinstance(crs, str | int):
        return _is_lonlat_text(crs)
    return _geographic(crs)


@lru_cache(maxsize=256)
def _is_lonlat_text(crs: str | int) -> bool:
    return _geographic(crs)


def _geographic(crs: Any) -> bool:
    from ..geo.crs import to_crs

    return bool(to_crs(crs).is_geographic)


def _pixel_size(table: Any, band: str, entry: Any) -> float:
    """The finest full-resolution pixel size of the records, in the native CRS's units:
    what the data says, not the catalog's nominal ``native_resolution`` (its fallback,
    also when a record's CRS has other units than the native CRS)."""
    import pyarrow.compute as pc

    from ..collection.schema import METADATA_SUFFIX

    column = f"{band}{METADATA_SUFFIX}"
    if column not in table.column_names or table.num_rows == 0:
        return float(entry.native_resolution)
    native_geographic = _is_lonlat(entry.native_crs)
    for crs in pc.unique(table.column("crs")).to_pylist():
        if crs is None or _is_lonlat(crs) != native_geographic:
            return float(entry.native_resolution)
    # the geotransforms (GDAL order) as one (records, 6) array
    transform = pc.struct_field(table.column(column), "transform").combine_chunks()
    values = transform.values.to_numpy(zero_copy_only=False)
    gt = values[transform.offset * 6 : (transform.offset + len(transform)) * 6].reshape(-1, 6)
    valid = transform.is_valid().to_numpy(zero_copy_only=False)
    sizes = np.abs(gt[valid][:, [1, 5]]).ravel()  # pixel width, pixel height
    sizes = sizes[np.isfinite(sizes) & (sizes > 0)]
    return float(sizes.min()) if sizes.size else float(entry.native_resolution)


def _parts(
    geoms: Sequence[Any], crs: Any, entry: Any, point_method: str, pixel: float
) -> list[_Part]:
    """What to read per geometry: polygons straddling the antimeridian as their east and
    west halves (so no grid spans 360°), bilinear points as a small box around them
    (``pixel``: the native pixel size, see :func:`_pixel_size`)."""
    from shapely.geometry import box

    out: list[_Part] = []
    lonlat = _is_lonlat(crs)
    for i, g in enumerate(geoms):
        if g.geom_type == "Point":
            # a box, not the point: the read engine's grid for a bare point on a pixel
            # edge covers no pixel (see the report); bilinear needs the neighbours too
            bilinear = point_method == "bilinear" and not entry.is_categorical
            box_ = _point_box(g, crs, entry, (1.5 if bilinear else 0.25) * pixel)
            out.append(_Part(i, box_, "point", bilinear))
            continue
        if lonlat and g.geom_type == "MultiPolygon" and g.bounds[2] - g.bounds[0] > 180:
            east = g.intersection(box(0, -90, 180, 90))
            west = g.intersection(box(-180, -90, 0, 90))
            out += [_Part(i, p, "polygon") for p in (east, west) if not p.is_empty and p.area > 0]
            continue
        out.append(_Part(i, g, "polygon"))
    return out


_REDUCE_LOCK = threading.Lock()
"""Held by small reductions (see :func:`_reduce`)."""

_PAUSE_GC_FROM = 256
"""Batches of at least this many geometries build their results and responses with
the cyclic garbage collector paused (:mod:`tessellum._gc`): 2,000 geometries x 2
datasets otherwise trigger a full collection of the process (50-70 ms of 300)."""

_CLUSTER_PX = 2048
"""Polygons no larger than a cell of this many native pixels are binned by the cell of
their bounding-box centre and share one read grid (at most two cells across) and one
exactextract call; larger ones, points and antimeridian halves are read on their own
grid."""


def _clusters(
    parts: Sequence[_Part], crs: Any, entry: Any, pixel: float
) -> list[tuple[Any, list[int]]]:
    """Group parts into read grids: ``[(read geometry, [part indices])]``.

    Small polygons are binned by the lattice cell (``_CLUSTER_PX`` native pixels of size
    ``pixel``) of their bounding-box centre; a bin is read as the union of its members'
    boxes. The read engine then plans one target per bin instead of one per polygon.
    """
    import shapely
    from shapely.geometry import box

    from ..geo.crs import to_crs

    same_units = _is_lonlat(crs) == bool(to_crs(entry.native_crs).is_geographic)
    cell = _CLUSTER_PX * pixel
    out: list[tuple[Any, list[int]]] = []
    if len(parts) <= 1:
        return [(p.read_geom, [i]) for i, p in enumerate(parts)]
    b = shapely.bounds(_object_array([p.read_geom for p in parts]))
    small = np.array([p.kind == "polygon" for p in parts]) & same_units
    small &= (b[:, 2] - b[:, 0] <= cell) & (b[:, 3] - b[:, 1] <= cell)
    for i in np.flatnonzero(~small).tolist():
        out.append((parts[i].read_geom, [i]))
    idx = np.flatnonzero(small)
    if not len(idx):
        return out
    kx = np.floor((b[idx, 0] + b[idx, 2]) / 2 / cell).astype(np.int64)
    ky = np.floor((b[idx, 1] + b[idx, 3]) / 2 / cell).astype(np.int64)
    key = (kx - kx.min()) * (int(ky.max() - ky.min()) + 1) + (ky - ky.min())
    _, bin_of = np.unique(key, return_inverse=True)
    order = np.argsort(bin_of, kind="stable")  # members keep their input order
    cuts = np.flatnonzero(np.diff(bin_of[order])) + 1
    for members in np.split(idx[order], cuts):
        if len(members) == 1:
            out.append((parts[int(members[0])].read_geom, [int(members[0])]))
            continue
        mb = b[members]
        out.append((box(mb[:, 0].min(), mb[:, 1].min(), mb[:, 2].max(), mb[:, 3].max()),
                    members.tolist()))  # fmt: skip
    return out


def _point_box(pt: Any, crs: Any, entry: Any, half: float) -> Any:
    """A box of ±``half`` native CRS units around a point, in the point's CRS."""
    from shapely.geometry import box

    from ..geo.grid import transform_bounds

    native = _reproject(pt, crs, entry.native_crs)
    d = half
    b = transform_bounds((native.x - d, native.y - d, native.x + d, native.y + d),
                         entry.native_crs, crs)  # fmt: skip
    return box(*b)


def _uncovered_stack(k: int, geom: Any, band: str) -> Any:
    """The stack the read engine gives a geometry no record covers (no grid, no data)."""
    from ..read.stacks import GeometryStack

    return GeometryStack(k, geom, None, [], [], {band: None}, {band: None}, {band: None})


def _failed_footprints(coll: Any) -> Any:
    """An STRtree of CRS84 footprints of records whose header failed (or None)."""
    try:
        errs = coll.errors()
    except Exception:
        return None
    if errs.num_rows == 0:
        return None
    import shapely

    bad = set(errs.column("id").to_pylist())
    ids = coll.table.column("id").to_pylist()
    wkb = coll.table.column("geometry").to_pylist()
    fps = [shapely.from_wkb(w) for rid, w in zip(ids, wkb, strict=True) if rid in bad and w]
    return shapely.STRtree(fps) if fps else None


def _reduce(
    entry: Any,
    coll: Any,
    geoms: Sequence[Any],
    parts: Sequence[_Part],
    job: Job,
    failed_fp: Any,
    qc: QCConfig,
    groups: Sequence[tuple[Any, list[int]]],
    group_stacks: Sequence[Any],
    processes: int,
) -> list[AttributeResult]:
    """Statistics, QC and results of one dataset's parts.

    The per-group zonal passes run in worker processes when ``processes`` is set and
    the batch is large, else here, in a thread. Large batches are large numpy
    operations, most of which release the GIL, so they reduce side by side (two
    datasets: 1.4x faster than one after the other); small ones are mostly Python and
    small-array overhead under the GIL, so they reduce one at a time per process
    (concurrent service requests contended for the GIL: 146 -> 77 polygon requests/s
    without it). The event loop keeps reading meanwhile.
    """
    from concurrent.futures.process import BrokenProcessPool

    from . import _workers
    from .zonal import zonal_polygons

    pieces_of = np.bincount([p.geom_index for p in parts], minlength=len(geoms))
    jobs = _zonal_jobs(entry, parts, job, qc, groups, group_stacks, pieces_of)
    size = sum(len(zj.parts) for zj in jobs)
    pool = _workers.zonal_pool(processes) if processes and size >= _workers.MIN_POLYGONS else None
    fast: dict[int, ZonalOutcome] = {}
    if pool is not None:
        try:
            futures = [
                (zj.parts, _workers.submit_zonal(
                    pool, zj.geoms, zj.data, zj.valid, zj.grid, job.aggregation,
                    geographic=zj.geographic,
                ))
                for zj in jobs
            ]  # fmt: skip
            for todo, fut in futures:
                fast.update(zip(todo, fut.result(), strict=True))
        except BrokenProcessPool:  # a worker died: restart the pool next time, finish here
            _workers.shutdown_zonal_pool(pool)
            fast.clear()
            pool = None
    with _REDUCE_LOCK if size < _workers.MIN_POLYGONS else contextlib.nullcontext():
        if pool is None:
            for zj in jobs:
                found = zonal_polygons(
                    zj.geoms, zj.data, zj.valid, zj.grid, job.aggregation,
                    geographic=zj.geographic,
                )  # fmt: skip
                fast.update(zip(zj.parts, found, strict=True))
        stacks: list[Any] = [None] * len(parts)  # each part's read group
        for (_, members), st in zip(groups, group_stacks, strict=True):
            for m in members:
                stacks[m] = st
        return _reduce_all(entry, coll, geoms, parts, stacks, job, failed_fp, qc, fast)


def _reduce_all(
    entry: Any,
    coll: Any,
    geoms: Sequence[Any],
    parts: Sequence[_Part],
    stacks: Sequence[Any],
    job: Job,
    failed_fp: Any,
    qc: QCConfig,
    fast: dict[int, ZonalOutcome],
) -> list[AttributeResult]:
    """Results of every geometry: ``fast`` holds the outcomes already computed per
    group (:func:`_zonal_jobs`); the other parts are reduced one by one."""
    import shapely

    band = entry.variable
    by_geom: dict[int, list[tuple[_Part, Any, Any]]] = {}
    for k, (p, st) in enumerate(zip(parts, stacks, strict=True)):
        by_geom.setdefault(p.geom_index, []).append((p, st, fast.get(k)))
    degraded_at = np.zeros(len(geoms), dtype=bool)
    if failed_fp is not None and len(geoms):
        ll = _object_array(_reproject_many(geoms, job.crs, _CRS84))
        hit = failed_fp.query(ll, "intersects")[0]  # (input index, tree index) pairs
        degraded_at[np.unique(hit)] = True
    note = method_note(job.aggregation, entry.is_categorical)
    provenance: dict[tuple[Any, ...], str] = {}  # one text per (records, grid, kind)
    is_point = shapely.get_type_id(_object_array(geoms)) == 0
    same = {  # what every result of the dataset shares
        "dataset_id": entry.id, "variable": entry.variable, "units": entry.units,
        "aggregation": job.aggregation, "provider": entry.provider,
        "valid_range": entry.valid_range, "license": entry.license,
        "dataset_version": entry.version,
    }  # fmt: skip
    out = []
    for i, g in enumerate(geoms):
        pieces = by_geom.get(i, [])
        if len(pieces) == 1 and pieces[0][2] is not None:  # computed for its whole group
            _, st, outcome = pieces[0]
            used, grid = st.record_ids, st.grid
        else:
            outcome, used, grid = _reduce_one(g, pieces, entry, job)
        nodata = next((st.nodata[band] for _, st, _ in pieces if st.grid is not None), entry.nodata)
        flag, notes = quality_flag(
            value=outcome.value, coverage=outcome.coverage_fraction, values=outcome.values,
            method=job.aggregation, entry=entry, nodata=nodata, config=qc,
            estimated=outcome.estimated, degraded=bool(degraded_at[i]),
            extra_suspect=[note] if note and outcome.value is not None else [],
        )  # fmt: skip
        kind = "Point" if is_point[i] else "other"
        pkey = (tuple(used), id(grid), kind)
        prov = provenance.get(pkey)
        if prov is None:
            prov = provenance[pkey] = _provenance(coll, list(used), grid, entry, kind)
        out.append(
            AttributeResult(
                **same,
                value=outcome.value,
                quality=flag,
                coverage_fraction=round(outcome.coverage_fraction, 6),
                pixel_count=outcome.pixel_count,
                provenance=prov,
                class_names=_class_names(entry, outcome.value),
                qc_notes=[*_outcome_notes(outcome.notes, bool(degraded_at[i])), *notes],
            )
        )
    return out


class _ZonalJob(NamedTuple):
    """One exactextract pass: polygons (in the grid's CRS) over one read group's mosaic."""

    parts: list[int]
    geoms: list[Any]
    data: np.ndarray
    valid: np.ndarray
    grid: Any
    geographic: bool


def _zonal_jobs(
    entry: Any,
    parts: Sequence[_Part],
    job: Job,
    qc: QCConfig,
    groups: Sequence[tuple[Any, list[int]]],
    group_stacks: Sequence[Any],
    pieces_of: np.ndarray,
) -> list[_ZonalJob]:
    """One :func:`~.zonal.zonal_polygons` pass per read group, for the polygons that are
    one part of their geometry.

    Groups whose mosaic holds a pixel QC would call suspect are left to
    :func:`_reduce_one`, which keeps each geometry's values for the notes.
    """
    from .qc import suspect_pixels

    band = entry.variable
    out = []
    for (_, members), st in zip(groups, group_stacks, strict=True):
        if st.grid is None or st.data[band] is None:
            continue
        todo = [
            m for m in members
            if parts[m].kind == "polygon" and pieces_of[parts[m].geom_index] == 1
        ]  # fmt: skip
        if not todo:
            continue
        data, valid = _mosaic(st, band)
        if suspect_pixels(data, valid, entry, st.nodata[band], qc):
            continue
        data = physical_values(data, entry)
        geoms = _reproject_many([parts[m].read_geom for m in todo], job.crs, st.grid.crs)
        out.append(_ZonalJob(todo, geoms, data, valid, st.grid, _is_lonlat(st.grid.crs)))
    return out


def _reduce_one(
    geom: Any,
    pieces: Sequence[tuple[_Part, Any, Any]],
    entry: Any,
    job: Job,
) -> tuple[ZonalOutcome, list[str], Any]:
    from .zonal import pixel_coverage_samples

    band = entry.variable
    used: list[str] = []
    grid = None
    if geom.geom_type == "Point":
        part, st, _ = pieces[0]
        if st.grid is None or st.data[band] is None:
            return ZonalOutcome(None, 0.0, 0, notes=["no record covers the point"]), used, None
        data, valid = _mosaic(st, band)
        data = physical_values(data, entry)
        used = list(st.record_ids)
        pt = _reproject(geom, job.crs, st.grid.crs)
        return (
            zonal_point(pt, data, valid, st.grid, job.aggregation, bilinear=part.bilinear),
            used,
            st.grid,
        )
    samples = []
    for part, st, _ in pieces:
        if st.grid is None or st.data[band] is None:
            # no record here: the part's area counts as invalid
            samples.append(None)
            continue
        data, valid = _mosaic(st, band)
        data = physical_values(data, entry)
        grid = st.grid
        used += [r for r in st.record_ids if r not in used]
        g = _reproject(part.read_geom, job.crs, st.grid.crs)
        samples.append(
            pixel_coverage_samples(g, data, valid, st.grid, geographic=_is_lonlat(st.grid.crs))
        )
    live = [s for s in samples if s is not None]
    if not live:
        return ZonalOutcome(None, 0.0, 0, notes=["no record covers the geometry"]), used, None
    if len(samples) == 1:
        return zonal_polygon(live[0], job.aggregation), used, grid
    missing_area = 0.0
    if any(s is None for s in samples):  # a half with no data at all: its area is invalid
        missing_area = sum(
            _area_m2(p.read_geom, job.crs)
            for (p, _, _), s in zip(pieces, samples, strict=True)
            if s is None
        )
    merged = live[0].merge(live[1:], extra_invalid=missing_area)
    return zonal_polygon(merged, job.aggregation), used, grid


def _outcome_notes(notes: list[str], degraded: bool) -> list[str]:
    """The outcome's notes; under a record whose header failed, "no record covers" is
    "no readable record covers" (a record does, it could not be read)."""
    if not degraded:
        return notes
    return [n.replace("no record covers", "no readable record covers") for n in notes]


def _area_m2(geom: Any, crs: Any) -> float:
    from pyproj import Geod

    g = _reproject(geom, crs, _CRS84)
    return abs(Geod(ellps="WGS84").geometry_area_perimeter(g)[0])


def _mosaic(st: Any, band: str) -> tuple[np.ndarray, np.ndarray]:
    """The (H, W) pixels and validity of a stack read as a mosaic."""
    return st.data[band][0], st.valid[band][0]


def _provenance(coll: Any, used: Sequence[str], grid: Any, entry: Any, kind: str) -> str:
    name = getattr(coll, "data_source", None) or getattr(coll, "name", None) or entry.id
    recs = ", ".join(used[:4]) + (f", +{len(used) - 4} more" if len(used) > 4 else "")
    text = f"{entry.id}@{entry.version} from {name} " + (
        f"({len(used)} record(s): {recs})" if used else "(no record)"
    )
    if grid is not None:
        rx, ry = grid.resolution
        text += f"; native grid {grid.crs} {rx:.6g}x{ry:.6g}"
        if kind != "Point":
            w = "coverage fraction x cell area" if _is_lonlat(grid.crs) else "coverage fraction"
            text += f"; weights: {w} (exact cell coverage)"
    return text


def _class_names(entry: Any, value: Any) -> dict[str, str] | None:
    if not entry.is_categorical or value is None:
        return None
    codes = (
        value.keys() if isinstance(value, dict) else value if isinstance(value, list) else [value]
    )
    names = {}
    for c in codes:
        try:
            code = int(float(c))
        except (TypeError, ValueError):
            continue
        if code in entry.classes:
            names[str(code)] = entry.classes[code]
    return names


def _raise_all_failed(resp: BatchAttributeResponse, dataset_ids: Sequence[str]) -> None:
    """Raise when every dataset failed (used by callers that want an exception)."""
    if resp.failed_datasets and set(resp.failed_datasets) >= set(dataset_ids):
        raise ExtractionError("; ".join(resp.warnings))
