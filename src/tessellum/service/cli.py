"""``tessellum serve``: run the attribute service with uvicorn."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

__all__ = ["serve"]


class LogLevel(StrEnum):
    """uvicorn's log levels."""

    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"
    debug = "debug"
    trace = "trace"


def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port to bind (0: any free port).")
    ] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes.")] = 1,
    log_level: Annotated[
        LogLevel, typer.Option(case_sensitive=False, help="uvicorn log level.")
    ] = LogLevel.info,
    api_key: Annotated[
        list[str] | None, typer.Option("--api-key", help="Require this API key (repeatable).")
    ] = None,
    rate_limit: Annotated[
        float | None, typer.Option(min=0, help="Requests per minute per client (0: off).")
    ] = None,
) -> None:
    """Serve the stats-only attribute API (POST /api/v1/extract, OpenAPI at /docs).

    Keys and limits also come from TESSELLUM_SERVICE_* variables; several workers
    share results only through Redis (TESSELLUM_REDIS_URL).
    """
    import os

    import uvicorn

    if api_key and not all(k.strip() and "," not in k for k in api_key):
        # an empty key would be dropped and leave the service open; "," splits keys
        raise typer.BadParameter(
            f"keys must be non-empty and hold no ',', got {list(api_key)!r}",
            param_hint="--api-key",
        )
    if api_key:
        os.environ["TESSELLUM_SERVICE_API_KEYS"] = ",".join(api_key)
    if rate_limit is not None:
        os.environ["TESSELLUM_SERVICE_RATE_LIMIT_PER_MINUTE"] = str(rate_limit)
    from .settings import ServiceSettings

    uvicorn.run(
        "tessellum.service:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=str(log_level),  # a LogLevel, or a plain string from Python callers
        timeout_keep_alive=ServiceSettings().keep_alive_s,
    )
