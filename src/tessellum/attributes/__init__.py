"""Attributes: zonal statistics of catalog datasets under geometries, with quality flags,
cross-provider consistency checks and a result cache.

Example::

    from tessellum.attributes import extract_sync

    resp = extract_sync(
        {"type": "Point", "coordinates": [10.15, 46.75]},
        ["copernicus_dem:elevation"],
        aggregation="mean",
    )
    print(resp.results[0].value, resp.results[0].quality)

``extract``/``batch_extract`` are the async forms; the ``_sync`` wrappers also work
inside a running event loop. See ``docs/attributes.md``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from .._sync import run_sync, same_signature
from ._workers import shutdown_zonal_pool, start_zonal_workers
from .cache import (
    MemoryResultCache,
    NullResultCache,
    RedisResultCache,
    ResultCache,
    cache_from_settings,
    geometry_hash,
)
from .engine import AttributeEngine, Job
from .models import (
    MAX_BATCH_GEOMETRIES,
    AggregationMethod,
    AttributeRequest,
    AttributeResponse,
    AttributeResult,
    BatchAttributeRequest,
    BatchAttributeResponse,
    BoundingBox,
    GeoJSONGeometry,
    OutputMode,
    QualityFlag,
    TimeRange,
    make_request,
)
from .qc import DEFAULT_FILL_VALUES, QCConfig
from .sources import StacCollectionSource, StaticCollectionSource

__all__ = [
    "DEFAULT_FILL_VALUES",
    "MAX_BATCH_GEOMETRIES",
    "AggregationMethod",
    "AttributeEngine",
    "AttributeRequest",
    "AttributeResponse",
    "AttributeResult",
    "BatchAttributeRequest",
    "BatchAttributeResponse",
    "BoundingBox",
    "GeoJSONGeometry",
    "Job",
    "MemoryResultCache",
    "NullResultCache",
    "OutputMode",
    "QCConfig",
    "QualityFlag",
    "RedisResultCache",
    "ResultCache",
    "StacCollectionSource",
    "StaticCollectionSource",
    "TimeRange",
    "batch_extract",
    "batch_extract_sync",
    "cache_from_settings",
    "default_engine",
    "extract",
    "extract_sync",
    "geometry_hash",
    "shutdown_zonal_pool",
    "start_zonal_workers",
]

_engine: AttributeEngine | None = None
_engine_lock = threading.Lock()


def default_engine() -> AttributeEngine:
    """The process-wide engine (default catalog, cache per settings, STAC collections)."""
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = AttributeEngine()
        return _engine


async def extract(
    geometry: Any,
    dataset_ids: Sequence[str] | str,
    *,
    aggregation: AggregationMethod | str = "mean",
    time_range: TimeRange | tuple[Any, Any] | None = None,
    point_method: str = "nearest",
    geometry_crs: Any = None,
    engine: AttributeEngine | None = None,
) -> AttributeResponse:
    """Statistics of each dataset under one geometry.

    Args:
        geometry: GeoJSON geometry/Feature, shapely geometry, a (w, s, e, n) lon/lat box,
            or an :class:`AttributeRequest` (then the other arguments are ignored).
        dataset_ids: catalog ids (``provider:variable``); a comma-separated string works.
        aggregation: one of :class:`AggregationMethod`.
        time_range: ``(start, end)`` for temporal datasets.
        point_method: ``nearest`` (the pixel) or ``bilinear`` for Points.
        geometry_crs: CRS of the coordinates (default OGC:CRS84).
        engine: an :class:`AttributeEngine` (default: :func:`default_engine`).

    Returns:
        An :class:`AttributeResponse`; failed datasets are in ``warnings``.

    Raises:
        ValidationError: an invalid argument (e.g. ``aggregation="mode"``, no dataset
            id, a malformed geometry), the message naming the field and the value
            given; pydantic's error, if any, is its ``__cause__``.
        DatasetNotFoundError: unknown dataset id.
    """
    if isinstance(geometry, AttributeRequest):
        request = geometry
    else:
        data = {
            "geometry": geometry,
            "dataset_ids": _ids(dataset_ids),
            "aggregation": aggregation,
            "time_range": _time_range(time_range),
            "point_method": point_method,
            "geometry_crs": _crs_text(geometry_crs),
        }
        request = make_request(AttributeRequest, data, "extract request")
    return await (engine or default_engine()).extract(request)


@same_signature(extract)
def extract_sync(
    geometry: Any, dataset_ids: Sequence[str] | str = (), **kwargs: Any
) -> AttributeResponse:
    """Sync form of :func:`extract` (works inside a running event loop too)."""
    return run_sync(extract(geometry, dataset_ids, **kwargs))


async def batch_extract(
    geometries: Any,
    dataset_ids: Sequence[str] | str = (),
    *,
    ids: Sequence[Any] | None = None,
    aggregation: AggregationMethod | str = "mean",
    time_range: TimeRange | tuple[Any, Any] | None = None,
    point_method: str = "nearest",
    geometry_crs: Any = None,
    engine: AttributeEngine | None = None,
) -> BatchAttributeResponse:
    """Statistics under many geometries; each tile is read once for all of them.

    In-process there is no limit on the number of geometries (the HTTP API takes at most
    :data:`MAX_BATCH_GEOMETRIES` per request).

    Args:
        geometries: a :class:`BatchAttributeRequest`, a GeoDataFrame/GeoSeries (its CRS
            is used), a GeoJSON FeatureCollection, or a sequence of geometries.
        dataset_ids: catalog ids.
        ids: one caller id per geometry, echoed as ``geometry_id``.
        aggregation, time_range, point_method, geometry_crs, engine: as in :func:`extract`.

    Raises:
        ValidationError: an invalid argument, as in :func:`extract`.
        DatasetNotFoundError: unknown dataset id.
    """
    eng = engine or default_engine()
    if isinstance(geometries, BatchAttributeRequest):
        return await eng.batch_extract(geometries)
    from ..geo.geometry import coerce_geometries

    g = coerce_geometries(geometries, crs=geometry_crs)
    kinds = {x.geom_type for x in g.geoms} - {"Point", "Polygon", "MultiPolygon"}
    if kinds:
        from ..errors import ValidationError

        raise ValidationError(f"geometries must be Points or (Multi)Polygons, got {sorted(kinds)}")
    options = {  # validated the same way as the service does
        "geometry": g.geoms[0],
        "dataset_ids": _ids(dataset_ids),
        "aggregation": aggregation,
        "time_range": _time_range(time_range),
        "point_method": point_method,
    }
    make_request(AttributeRequest, options, "batch_extract request")
    tr = _time_range(time_range)
    job = Job(
        geometries=list(g.geoms),
        dataset_ids=list(dict.fromkeys(_ids(dataset_ids))),
        crs=g.crs,
        aggregation=AggregationMethod(aggregation),
        time_range=tr.as_tuple() if tr else None,
        point_method=point_method,
        ids=list(ids) if ids is not None else None,
    )
    if job.ids is not None and len(job.ids) != len(job.geometries):
        from ..errors import ValidationError

        raise ValidationError(
            f"ids has {len(job.ids)} entries for {len(job.geometries)} geometries"
        )
    return await eng.run(job)


@same_signature(batch_extract)
def batch_extract_sync(
    geometries: Any, dataset_ids: Sequence[str] | str = (), **kwargs: Any
) -> BatchAttributeResponse:
    """Sync form of :func:`batch_extract` (works inside a running event loop too)."""
    return run_sync(batch_extract(geometries, dataset_ids, **kwargs))


def _ids(value: Sequence[str] | str) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


def _time_range(value: Any) -> TimeRange | None:
    if value is None or isinstance(value, TimeRange):
        return value
    if isinstance(value, dict):
        return make_request(TimeRange, value, "time_range")
    if isinstance(value, str | bytes) or not hasattr(value, "__len__") or len(value) != 2:
        from ..errors import ValidationError

        raise ValidationError(f"time_range must be (start, end), got {value!r}")
    start, end = value
    return make_request(TimeRange, {"start": start, "end": end}, "time_range")


def _crs_text(crs: Any) -> str | None:
    if crs is None or isinstance(crs, str):
        return crs
    from ..geo.crs import to_crs

    return to_crs(crs).to_wkt()
