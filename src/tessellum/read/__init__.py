"""The read engine: plan -> fetch (deduplicated, coalesced) -> decode -> assemble."""

from .cache import TileCache, default_tile_cache
from .engine import BandSource, Target, read_targets_async
from .fetch import FetchOptions, fetch_tiles_async
from .outputs import NumpyResult, get_gdf_async, get_numpy_async, get_xarray_async
from .plan import SourceRead, TileKey, pick_overview
from .points import sample_points_async
from .window import read_window_async

__all__ = [
    "BandSource",
    "FetchOptions",
    "NumpyResult",
    "SourceRead",
    "Target",
    "TileCache",
    "TileKey",
    "default_tile_cache",
    "fetch_tiles_async",
    "get_gdf_async",
    "get_numpy_async",
    "get_xarray_async",
    "pick_overview",
    "read_targets_async",
    "read_window_async",
    "sample_points_async",
]
