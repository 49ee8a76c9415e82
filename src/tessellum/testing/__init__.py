"""Test fixtures: the synthetic fixture world of GeoTIFFs and STAC metadata.

``import tessellum.testing`` stays light (stdlib only); numpy, rasterio and pyproj are
imported when a world is generated or inspected.
"""

from __future__ import annotations

from .world import (
    GENERATOR_VERSION,
    DatasetInfo,
    World,
    WorldFile,
    default_cache_dir,
    get_world,
    world_path,
)

__all__ = [
    "GENERATOR_VERSION",
    "DatasetInfo",
    "World",
    "WorldFile",
    "WorldServers",
    "default_cache_dir",
    "dem_elevation",
    "get_world",
    "serve_world",
    "world_path",
]


def __getattr__(name: str):
    """Heavier helpers load on first use, keeping ``import tessellum.testing`` light."""
    if name == "dem_elevation":
        from ._world_noise import dem_elevation

        return dem_elevation
    if name in ("serve_world", "WorldServers"):
        from . import serve

        return getattr(serve, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
