"""Shared fixtures: the fixture world and its servers (session-scoped, real processes)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def world():
    from tessellum.testing import get_world

    return get_world()


@pytest.fixture(scope="session")
def served(world):
    """HTTP (nginx) + rustac STAC API over the world, started once per session."""
    from tessellum.testing.serve import serve_world
    from tessellum.testing.servers import ServerUnavailable

    try:
        with serve_world(world, stac="rustac") as servers:
            yield servers
    except ServerUnavailable as exc:
        pytest.skip(f"servers unavailable: {exc}")


@pytest.fixture
def http_log(served):
    """The HTTP server's request log, emptied before the test."""
    served.http.reset_log()
    return served.http
