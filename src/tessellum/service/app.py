"""The FastAPI application factory: stats only, catalog datasets only."""

from __future__ import annotations

import re
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from .. import __version__
from ..attributes import (
    AttributeEngine,
    AttributeRequest,
    AttributeResponse,
    BatchAttributeRequest,
    BatchAttributeResponse,
)
from ..errors import DatasetNotFoundError
from .errors import ServiceError, add_exception_handlers, error_body, error_responses, log
from .guards import ApiKeyCheck, Metrics, RateLimiter, check_limits, check_pixels
from .settings import ServiceSettings

__all__ = ["create_app"]

_RID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_NUM = r"\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*"
_BBOX_PATTERN = rf"^{_NUM},{_NUM},{_NUM},{_NUM}$"


def _client_id(request: Request) -> str:
    key = _api_key(request)
    if key:
        return "key:" + key
    return "ip:" + (request.client.host if request.client else "unknown")


def _api_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


def create_app(
    settings: ServiceSettings | None = None,
    *,
    engine: AttributeEngine | None = None,
    catalog: Any = None,
) -> FastAPI:
    """Build the attribute service.

    Args:
        settings: service settings (default: from ``TESSELLUM_SERVICE_*`` variables).
        engine: the :class:`~tessellum.attributes.AttributeEngine` to use (tests inject
            one with local collections or faults); default: a new engine over
            ``catalog`` with the request timeout of ``settings``.
        catalog: the catalog (default: :func:`tessellum.catalog.default_catalog`).

    Returns:
        The FastAPI application (``uvicorn tessellum.service:create_app --factory``).
    """
    settings = settings if settings is not None else ServiceSettings()
    if engine is None:
        engine = AttributeEngine(catalog=catalog, request_timeout_s=settings.request_timeout_s)
    elif engine.request_timeout_s is None:
        engine.request_timeout_s = settings.request_timeout_s
    cat = catalog if catalog is not None else None
    metrics = Metrics()
    keys = ApiKeyCheck(settings.api_keys)
    limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)

    app = FastAPI(
        title=settings.title,
        version=__version__,
        description=(
            "Zonal statistics of catalog datasets under geometries (stats only; raster "
            "output is available in-process through tessellum.extract_raster_sync)."
        ),
    )
    app.state.engine = engine
    app.state.metrics = metrics
    app.state.settings = settings
    add_exception_handlers(app)

    @app.middleware("http")
    async def request_context(request: Request, call_next: Any) -> Any:
        given = request.headers.get("x-request-id", "")
        rid = given if _RID.match(given) else uuid.uuid4().hex
        request.state.request_id = rid
        t0 = time.perf_counter()
        status = 500
        try:
            try:
                response = await call_next(request)
            except Exception:  # never a stack trace in a body, never a dropped connection
                log.exception("request %s failed", rid)
                response = JSONResponse(
                    error_body("internal_error", "internal server error", rid), status_code=500
                )
            status = response.status_code
            response.headers["X-Request-ID"] = rid
            return response
        finally:
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            metrics.observe(request.method, path, status, time.perf_counter() - t0)

    def guard(request: Request) -> None:
        keys(_api_key(request))
        limiter(_client_id(request))

    def the_catalog() -> Any:
        return cat if cat is not None else engine.catalog

    api = APIRouter(
        prefix="/api/v1",
        dependencies=[Depends(guard)],
        responses=error_responses(400, 401, 422, 429, 500),
    )

    @api.post(
        "/extract",
        response_model=AttributeResponse,
        tags=["attributes"],
        responses=error_responses(502),
    )
    async def extract(body: AttributeRequest, request: Request) -> AttributeResponse:
        """Statistics of each dataset under one geometry."""
        from ..attributes.engine import _to_shapely

        geoms = [_to_shapely(body.geometry)]
        check_limits(geometries=geoms, dataset_ids=body.dataset_ids, settings=settings)
        _known(the_catalog(), body.dataset_ids)
        _pixels(the_catalog(), geoms, body, settings)
        resp = await engine.extract(body, request_id=request.state.request_id)
        _all_failed(resp.failed_datasets, body.dataset_ids, resp.warnings)
        _count(metrics, resp.results)
        return resp

    @api.post(
        "/extract/batch",
        response_model=BatchAttributeResponse,
        tags=["attributes"],
        responses=error_responses(502),
    )
    async def extract_batch(
        body: BatchAttributeRequest, request: Request
    ) -> BatchAttributeResponse:
        """Statistics of each dataset under many geometries (tiles read once)."""
        from ..attributes.engine import _to_shapely

        geoms = [_to_shapely(g) for g in body.geometries]
        check_limits(geometries=geoms, dataset_ids=body.dataset_ids, settings=settings)
        _known(the_catalog(), body.dataset_ids)
        _pixels(the_catalog(), geoms, body, settings)
        resp = await engine.batch_extract(body, request_id=request.state.request_id)
        _all_failed(resp.failed_datasets, body.dataset_ids, resp.warnings)
        for item in resp.items:
            _count(metrics, item.results)
        return resp

    @api.get("/datasets", tags=["catalog"])
    async def datasets(
        provider: str | None = None,
        variable: str | None = None,
        bbox: Annotated[
            str | None,
            Query(
                description="min_lon,min_lat,max_lon,max_lat (CRS84)",
                pattern=_BBOX_PATTERN,
                examples=["10,46,11,47"],
            ),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        """Catalog datasets, filtered and paged."""
        box = _parse_bbox(bbox) if bbox else None
        found = the_catalog().list(provider=provider, variable=variable, bbox=box)
        page = found[offset : offset + limit]
        return {
            "total": len(found),
            "limit": limit,
            "offset": offset,
            "datasets": [_dataset_info(e) for e in page],
        }

    @api.get("/providers", tags=["catalog"])
    async def providers() -> dict[str, Any]:
        """Every provider with its datasets."""
        return {"providers": [_provider_info(p) for p in the_catalog().providers()]}

    @api.get("/providers/{slug}", tags=["catalog"], responses=error_responses(404))
    async def provider(
        slug: Annotated[str, Path(examples=["copernicus_dem"])],
    ) -> dict[str, Any]:
        """One provider and its datasets."""
        for p in the_catalog().providers():
            if p.slug == slug:
                info = _provider_info(p)
                info["datasets_info"] = [_dataset_info(the_catalog().get(d)) for d in p.datasets]
                return info
        raise DatasetNotFoundError(f"unknown provider {slug!r}")

    app.include_router(api)

    @app.get("/health", tags=["service"])
    async def health() -> dict[str, Any]:
        """Liveness: version, dataset count, cache backend."""
        return {
            "status": "ok",
            "version": __version__,
            "datasets": len(the_catalog()),
            "cache": type(engine.cache).__name__,
        }

    @app.get("/metrics", response_class=PlainTextResponse, tags=["service"])
    async def prometheus() -> PlainTextResponse:
        """Prometheus metrics (text exposition format 0.0.4)."""
        stats = engine.cache.stats
        text = metrics.render(
            {
                "tessellum_cache_hits_total": stats.hits,
                "tessellum_cache_misses_total": stats.misses,
                "tessellum_cache_errors_total": stats.errors,
            }
        )
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    return app


def _known(catalog: Any, ids: list[str]) -> None:
    unknown = [d for d in ids if d not in catalog]
    if unknown:
        messages = []
        for d in unknown:
            try:
                catalog.get(d)
            except DatasetNotFoundError as exc:
                messages.append(str(exc))
        raise ServiceError(
            "; ".join(messages),
            status=422,
            type="unknown_dataset",
            detail={"unknown": unknown},
        )


def _pixels(catalog: Any, geoms: list[Any], body: Any, settings: ServiceSettings) -> None:
    from ..attributes.engine import _request_crs

    entries = [catalog.get(d) for d in body.dataset_ids]
    check_pixels(geometries=geoms, crs=_request_crs(body), entries=entries, settings=settings)


def _all_failed(failed: list[str], ids: list[str], warnings: list[str]) -> None:
    if failed and set(failed) >= set(ids):
        raise ServiceError(
            "every requested dataset failed upstream",
            status=502,
            type="upstream_error",
            detail={"failed_datasets": failed, "warnings": warnings},
        )


def _count(metrics: Metrics, results: list[Any]) -> None:
    for r in results:
        metrics.count_result(r.dataset_id, r.quality.value)


def _parse_bbox(text: str) -> tuple[float, float, float, float]:
    try:
        parts = tuple(float(v) for v in text.split(","))
    except ValueError:
        parts = ()
    if (
        len(parts) != 4
        or not all(-180 <= parts[i] <= 180 for i in (0, 2))
        or not (-90 <= parts[1] <= parts[3] <= 90)
    ):
        raise ServiceError(
            f"bbox must be min_lon,min_lat,max_lon,max_lat in degrees, got {text!r}",
            status=422,
            type="validation_error",
        )
    return parts  # type: ignore[return-value]


_PUBLIC_FIELDS = (
    "id", "provider", "provider_name", "variable", "title", "description", "protocol",
    "native_crs", "native_resolution", "dtype", "nodata", "units", "kind", "classes",
    "valid_range", "license", "license_url", "citation", "homepage", "version",
    "temporal", "default_time_range", "extent", "supports_raster",
)  # fmt: skip


def _dataset_info(entry: Any) -> dict[str, Any]:
    # endpoints and credential variables are deployment details: not published
    data = entry.model_dump(mode="json", include=set(_PUBLIC_FIELDS))
    data["classes"] = {str(k): v for k, v in (entry.classes or {}).items()}
    return data


def _provider_info(p: Any) -> dict[str, Any]:
    return {
        "slug": p.slug,
        "name": p.name,
        "protocol": p.protocol,
        "datasets": list(p.datasets),
        "license": p.license,
        "supports_raster": p.supports_raster,
    }
