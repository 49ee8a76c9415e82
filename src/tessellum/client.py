"""Python clients of the attribute service, returning the same models as the engine.

Example::

    from tessellum.client import Client

    with Client("http://127.0.0.1:8000", api_key="secret") as client:
        resp = client.extract({"type": "Point", "coordinates": [10.15, 46.75]},
                              ["copernicus_dem:elevation"])
        print(resp.results[0].value)

:class:`AsyncClient` has the same methods as coroutines. Requests are built and
responses parsed by shared functions, so the two classes differ only in transport.

Errors: arguments are validated locally, with the service's own request models, before
anything is sent: a bad one raises :class:`tessellum.errors.ValidationError`. An error
answer of the service raises :class:`APIError`; a service that cannot be reached or
does not answer within ``timeout`` raises :class:`tessellum.errors.UpstreamError`. All
are :class:`~tessellum.errors.TessellumError` and name the request's URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

from .attributes import _ids
from .attributes.models import (
    AttributeRequest,
    AttributeResponse,
    BatchAttributeRequest,
    BatchAttributeResponse,
    make_request,
)
from .errors import ProtocolError, UpstreamError

__all__ = ["APIError", "AsyncClient", "Client"]


class APIError(ProtocolError):
    """The service answered with an error envelope (or not with JSON at all); ``url`` is
    the request's."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        type: str,
        request_id: str | None = None,
        detail: Any = None,
        retry_after: float | None = None,
        url: str | None = None,
    ) -> None:
        where = f" ({url})" if url else ""
        super().__init__(f"{status} {type}: {message}{where}", url=url, status=status)
        self.type = type
        self.request_id = request_id
        self.detail = detail
        self.retry_after = retry_after


def _extract_body(
    geometry: Any, dataset_ids: Sequence[str] | str, kwargs: dict[str, Any]
) -> dict[str, Any]:
    if isinstance(geometry, AttributeRequest):
        req = geometry
    else:
        ids = _ids(dataset_ids)  # "a, b," as the in-process API reads it
        data = {"geometry": geometry, "dataset_ids": ids, **kwargs}
        req = make_request(AttributeRequest, data, "extract request")
    return req.model_dump(mode="json", exclude_none=True)


def _batch_body(
    geometries: Any, dataset_ids: Sequence[str] | str, kwargs: dict[str, Any]
) -> dict[str, Any]:
    if isinstance(geometries, BatchAttributeRequest):
        req = geometries
    else:
        ids = _ids(dataset_ids)  # "a, b," as the in-process API reads it
        if hasattr(geometries, "__geo_interface__") and hasattr(geometries, "crs"):
            gdf = geometries.to_crs("OGC:CRS84") if geometries.crs else geometries
            geometries = list(gdf.geometry) if hasattr(gdf, "geometry") else list(gdf)
        data = {"geometries": list(geometries), "dataset_ids": ids, **kwargs}
        req = make_request(BatchAttributeRequest, data, "batch_extract request")
    return req.model_dump(mode="json", exclude_none=True)


def _check(resp: httpx.Response) -> Any:
    url = str(resp.request.url)
    if resp.is_success:
        return resp.json()
    try:
        err = resp.json()["error"]
    except Exception:
        raise APIError(
            resp.text[:200], status=resp.status_code, type="http_error", url=url
        ) from None
    retry = resp.headers.get("retry-after")
    raise APIError(
        err.get("message", ""),
        status=resp.status_code,
        type=err.get("type", "error"),
        request_id=err.get("request_id"),
        detail=err.get("detail"),
        retry_after=float(retry) if retry else None,
        url=url,
    )


def _unreachable(exc: httpx.TransportError) -> UpstreamError:
    """A transport failure (refused, reset, timed out) as a tessellum error naming the URL."""
    url = str(exc.request.url)
    if isinstance(exc, httpx.TimeoutException):
        what = f"no answer within the client timeout ({type(exc).__name__})"
    else:
        what = f"cannot reach the service: {type(exc).__name__}: {exc}"
    return UpstreamError(f"{exc.request.method} {url}: {what}", url=url)


def _send(http: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    try:
        resp = http.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        raise _unreachable(exc) from exc
    return _check(resp)


async def _asend(http: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> Any:
    try:
        resp = await http.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        raise _unreachable(exc) from exc
    return _check(resp)


_LIMITS = httpx.Limits(keepalive_expiry=2.0)
"""Idle connections are closed after 2 s, before a server closes them (uvicorn: 5 s;
``tessellum serve``: 75 s); a request sent on a connection the server is closing
fails with a read error."""


def _headers(api_key: str | None) -> dict[str, str]:
    return {"X-API-Key": api_key} if api_key else {}


class Client:
    """Blocking client.

    Args:
        base_url: the service root, e.g. ``http://127.0.0.1:8000``.
        api_key: sent as ``X-API-Key`` when given.
        timeout: seconds per request.
        transport: an ``httpx`` transport (tests: ``httpx.ASGITransport`` is async-only,
            use :class:`AsyncClient` for it).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        transport: Any = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport,
            limits=_LIMITS,
        )  # fmt: skip

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def extract(
        self, geometry: Any, dataset_ids: Sequence[str] | str = (), **kwargs: Any
    ) -> AttributeResponse:
        """``POST /api/v1/extract``; arguments as :func:`tessellum.attributes.extract`.

        Raises:
            ValidationError: an invalid argument (checked here; nothing is sent).
            APIError: the service answered with an error.
            UpstreamError: the service could not be reached or did not answer in time.
        """
        body = _extract_body(geometry, dataset_ids, kwargs)
        return AttributeResponse.model_validate(
            _send(self._http, "POST", "/api/v1/extract", json=body)
        )

    def batch_extract(
        self, geometries: Any, dataset_ids: Sequence[str] | str = (), **kwargs: Any
    ) -> BatchAttributeResponse:
        """``POST /api/v1/extract/batch`` (at most 1000 geometries per call).

        Raises:
            ValidationError: an invalid argument (checked here; nothing is sent).
            APIError: the service answered with an error.
            UpstreamError: the service could not be reached or did not answer in time.
        """
        body = _batch_body(geometries, dataset_ids, kwargs)
        return BatchAttributeResponse.model_validate(
            _send(self._http, "POST", "/api/v1/extract/batch", json=body)
        )

    def datasets(self, **filters: Any) -> dict[str, Any]:
        """``GET /api/v1/datasets`` (provider, variable, bbox, limit, offset)."""
        return _send(self._http, "GET", "/api/v1/datasets", params=_params(filters))

    def providers(self) -> list[dict[str, Any]]:
        """``GET /api/v1/providers``."""
        return _send(self._http, "GET", "/api/v1/providers")["providers"]

    def provider(self, slug: str) -> dict[str, Any]:
        """``GET /api/v1/providers/{slug}``."""
        return _send(self._http, "GET", _provider_path(slug))

    def health(self) -> dict[str, Any]:
        """``GET /health``."""
        return _send(self._http, "GET", "/health")


class AsyncClient:
    """Async client; same methods as :class:`Client`, as coroutines."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        transport: Any = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport,
            limits=_LIMITS,
        )  # fmt: skip

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def extract(
        self, geometry: Any, dataset_ids: Sequence[str] | str = (), **kwargs: Any
    ) -> AttributeResponse:
        """``POST /api/v1/extract``."""
        body = _extract_body(geometry, dataset_ids, kwargs)
        data = await _asend(self._http, "POST", "/api/v1/extract", json=body)
        return AttributeResponse.model_validate(data)

    async def batch_extract(
        self, geometries: Any, dataset_ids: Sequence[str] | str = (), **kwargs: Any
    ) -> BatchAttributeResponse:
        """``POST /api/v1/extract/batch``."""
        body = _batch_body(geometries, dataset_ids, kwargs)
        data = await _asend(self._http, "POST", "/api/v1/extract/batch", json=body)
        return BatchAttributeResponse.model_validate(data)

    async def datasets(self, **filters: Any) -> dict[str, Any]:
        """``GET /api/v1/datasets``."""
        return await _asend(self._http, "GET", "/api/v1/datasets", params=_params(filters))

    async def providers(self) -> list[dict[str, Any]]:
        """``GET /api/v1/providers``."""
        return (await _asend(self._http, "GET", "/api/v1/providers"))["providers"]

    async def provider(self, slug: str) -> dict[str, Any]:
        """``GET /api/v1/providers/{slug}``."""
        return await _asend(self._http, "GET", _provider_path(slug))

    async def health(self) -> dict[str, Any]:
        """``GET /health``."""
        return await _asend(self._http, "GET", "/health")


def _provider_path(slug: str) -> str:
    # one path segment, whatever the slug holds: "a/../b" or "x?y" must not reach
    # another route or turn into a query
    return "/api/v1/providers/" + quote(str(slug), safe="")


def _params(filters: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in filters.items() if v is not None}
    if isinstance(out.get("bbox"), list | tuple):
        out["bbox"] = ",".join(str(v) for v in out["bbox"])
    return out
