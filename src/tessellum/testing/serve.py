"""Serve the fixture world: HTTP (+ optional latency proxy), a STAC API and S3.

>>> from tessellum.testing import get_world, serve_world
>>> with serve_world(get_world()) as w:
...     coll = build_from_stac(name="dem", stac_api=w.stac_url, collection="cop-dem-glo-30", ...)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Literal


@dataclass
class WorldServers:
    """Endpoints of a served world. ``data_url`` is what STAC asset hrefs point at (the
    latency proxy when one is asked for, else the HTTP server)."""

    world: Any
    http: Any
    data_url: str
    stac: Any = None
    proxy: Any = None
    s3: Any = None

    @property
    def stac_url(self) -> str:
        if self.stac is None:
            raise RuntimeError("no STAC API was started (serve_world(stac=None))")
        return self.stac.url

    def href(self, key: str) -> str:
        """The served URL of a world file (by key or relpath)."""
        return f"{self.data_url}/{self.world.file(key).relpath}"


@contextmanager
def serve_world(
    world: Any,
    *,
    stac: Literal["rustac", "pgstac"] | None = "rustac",
    latency_ms: float | None = None,
    s3: bool = False,
) -> Iterator[WorldServers]:
    """Start the servers for ``world`` and stop them on exit.

    Args:
        world: a ``World`` (``get_world()``).
        stac: which STAC API to start (None: none).
        latency_ms: put a latency proxy with this per-request delay in front of HTTP.
        s3: also start an S3 server with the world's files under bucket ``world``, keyed
            by their relpath (``data/<dataset>/...``, e.g. ``s3://world/data/naip/``).
    """
    from .servers import HttpServer, LatencyProxy, PgStacServer, RustacServer, S3Server

    with ExitStack() as stack:
        http = stack.enter_context(HttpServer(world.root))
        proxy = None
        data_url = http.url
        if latency_ms is not None:
            proxy = stack.enter_context(LatencyProxy(http.url, delay_ms=latency_ms))
            data_url = proxy.url
        api = None
        if stac is not None:
            cls = RustacServer if stac == "rustac" else PgStacServer
            api = stack.enter_context(cls(world.collections(data_url), world.items(data_url)))
        s3_server = None
        if s3:
            s3_server = stack.enter_context(S3Server())
            s3_server.create_bucket("world")
            s3_server.upload_dir(world.root / "data", bucket="world", prefix="data/")
        yield WorldServers(world, http, data_url, api, proxy, s3_server)
