"""Test fixtures: the synthetic fixture world of GeoTIFFs and STAC metadata.

``import tessellum.testing`` stays light (stdlib only); numpy, rasterio and pyproj are
imported when a world is generated or inspected.
"""

from __future__ import annotations

from .._lazy import lazy_getattr
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


# heavier helpers load on first use, keeping ``import tessellum.testing`` light
__getattr__ = lazy_getattr(
    __name__,
    {"dem_elevation": "._world_noise", "serve_world": ".serve", "WorldServers": ".serve"},
    globals(),
)
