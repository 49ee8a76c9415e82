"""Byte-range I/O over obstore: URL resolution, coalescing, one global limit, retries.

Typical use::

    store, path = open_store("s3://bucket/scene/B04.tif")
    header, tile = await read_ranges_async(store, path, [0, 81920], [65536, 94208])

Storage calls are functions that take the store first; each has an ``_async`` form
and a sync wrapper that also works inside a running event loop.
"""

from ._coalesce import CoalescePolicy, MergedRange, coalesce_ranges
from ._limiter import DEFAULT_CONCURRENCY, Limiter, default_limiter, set_default_limit
from ._read import (
    GetResultLike,
    RangeStore,
    head,
    head_async,
    object_size,
    object_size_async,
    read_prefix_async,
    read_range,
    read_range_async,
    read_ranges,
    read_ranges_async,
    read_url,
)
from ._resolve import (
    DEFAULT_CLIENT_OPTIONS,
    CloudConfig,
    StoreSpec,
    UrlSigner,
    clear_store_cache,
    describe_url,
    https_to_s3,
    open_prefix_store,
    open_store,
    open_store_async,
    resolve_url,
    s3_to_https,
)
from ._retry import RetryPolicy
from ._stats import IOStats, collect_stats, current_stats

__all__ = [
    "DEFAULT_CLIENT_OPTIONS",
    "DEFAULT_CONCURRENCY",
    "CloudConfig",
    "CoalescePolicy",
    "GetResultLike",
    "IOStats",
    "Limiter",
    "MergedRange",
    "RangeStore",
    "RetryPolicy",
    "StoreSpec",
    "UrlSigner",
    "clear_store_cache",
    "coalesce_ranges",
    "collect_stats",
    "current_stats",
    "default_limiter",
    "describe_url",
    "head",
    "head_async",
    "https_to_s3",
    "object_size",
    "object_size_async",
    "open_prefix_store",
    "open_store",
    "open_store_async",
    "read_prefix_async",
    "read_range",
    "read_range_async",
    "read_ranges",
    "read_ranges_async",
    "read_url",
    "resolve_url",
    "s3_to_https",
    "set_default_limit",
]
