"""Service settings, read from ``TESSELLUM_SERVICE_*`` environment variables."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["ServiceSettings"]


class ServiceSettings(BaseSettings):
    """Limits, keys and timeouts of the HTTP service (engine settings stay in
    :class:`tessellum.config.Settings`)."""

    model_config = SettingsConfigDict(
        env_prefix="TESSELLUM_SERVICE_", frozen=True, extra="forbid", use_attribute_docstrings=True
    )

    api_keys: Annotated[tuple[str, ...], NoDecode] = ()
    """Accepted keys (``X-API-Key`` header or ``Authorization: Bearer``); empty: open."""
    rate_limit_per_minute: float = Field(default=0.0, ge=0)
    """Requests per minute per client (API key, else address); 0 disables the limiter."""
    rate_limit_burst: int = Field(default=20, ge=1)
    """Requests a client may send at once before the rate applies."""
    max_datasets_per_request: int = Field(default=10, ge=1)
    """Datasets in one request."""
    max_vertices: int = Field(default=10_000, ge=4)
    """Vertices of one geometry."""
    max_pixels_per_geometry: float = Field(default=50e6, gt=0)
    """Native pixels of one dataset under one geometry's bounding box."""
    max_batch_size: int = Field(default=1000, ge=1, le=1000)
    """Geometries in one batch request."""
    request_timeout_s: float = Field(default=60.0, gt=0)
    """Wall-clock limit of one request; unfinished datasets become warnings."""
    keep_alive_s: int = Field(default=75, ge=1)
    """Seconds an idle keep-alive connection stays open. Longer than clients keep idle
    connections (httpx 5 s, :mod:`tessellum.client` 2 s): a client that reuses a
    connection just as the server closes it gets a read error (seen in the load test
    with both at uvicorn's and httpx's 5 s)."""
    title: str = "tessellum attribute service"
    """OpenAPI title."""

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(k.strip() for k in value.split(",") if k.strip())
        return value
