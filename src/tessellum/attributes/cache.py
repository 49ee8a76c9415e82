"""The attribute result cache: JSON results keyed by dataset, dataset version, geometry
hash, aggregation, time range and point method, with a TTL and a size bound.

:class:`MemoryResultCache` (embedded default, LRU) and :class:`RedisResultCache` (shared
by several service replicas) satisfy one :class:`ResultCache` protocol. A cache never
fails a request: backend errors count as misses and are logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "CacheStats",
    "MemoryResultCache",
    "NullResultCache",
    "RedisResultCache",
    "ResultCache",
    "cache_from_settings",
    "geometry_hash",
    "geometry_hashes",
    "result_key",
]

log = logging.getLogger(__name__)


def geometry_hash(geom: Any, crs: Any = None) -> str:
    """A stable hash of a shapely geometry and its CRS (normalized, coordinates rounded
    to 9 decimals, WKB)."""
    return geometry_hashes([geom], crs)[0]


def geometry_hashes(geoms: Sequence[Any], crs: Any = None) -> list[str]:
    """:func:`geometry_hash` of many geometries (normalize, rounding and WKB run once over
    the whole array)."""
    import numpy as np
    import shapely

    arr = np.empty(len(geoms), dtype=object)
    arr[:] = list(geoms)
    # rounding, not set_precision: the same key for float noise, at a tenth of the cost
    rounded = shapely.transform(shapely.normalize(arr), lambda xy: np.round(xy, 9))
    wkbs = shapely.to_wkb(rounded, hex=False, output_dimension=2)
    suffix = str(crs or "OGC:CRS84").encode()
    out = []
    for w in wkbs:
        h = hashlib.sha256(w)
        h.update(suffix)
        out.append(h.hexdigest()[:32])
    return out


def result_key(
    *,
    dataset_id: str,
    version: str,
    geom_hash: str,
    aggregation: str,
    time_range: Sequence[str] | None,
    point_method: str = "nearest",
) -> str:
    """The cache key of one (dataset, geometry, aggregation, time range) result."""
    parts = [dataset_id, version, geom_hash, aggregation, "|".join(time_range or ()), point_method]
    return "tessellum:attr:" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


@dataclass
class CacheStats:
    """Hit/miss counters (reads by key)."""

    hits: int = 0
    misses: int = 0
    errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, hits: int = 0, misses: int = 0, errors: int = 0) -> None:
        """Add to the counters atomically."""
        with self._lock:
            self.hits += hits
            self.misses += misses
            self.errors += errors


@runtime_checkable
class ResultCache(Protocol):
    """What the engine needs from a cache (values are JSON strings)."""

    stats: CacheStats

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """Values for ``keys`` (``None`` for misses and expired entries)."""
        ...

    async def set_many(self, items: dict[str, str]) -> None:
        """Store ``items`` with the cache's TTL."""
        ...

    async def clear(self) -> None:
        """Drop every entry."""
        ...


class NullResultCache:
    """A cache that stores nothing (``cache_enabled=False``)."""

    def __init__(self) -> None:
        self.stats = CacheStats()

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        self.stats.add(misses=len(keys))
        return [None] * len(keys)

    async def set_many(self, items: dict[str, str]) -> None:
        return None

    async def clear(self) -> None:
        return None


class MemoryResultCache:
    """In-process LRU cache with a TTL; thread-safe.

    Args:
        ttl_s: lifetime of an entry in seconds (0: entries never expire).
        max_entries: size bound; the least recently used entry goes first.
        clock: time source (tests pass a fake one).
    """

    def __init__(
        self,
        ttl_s: float = 86_400.0,
        max_entries: int = 10_000,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._data: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._data)

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        now = self._clock()
        out: list[str | None] = []
        with self._lock:
            for k in keys:
                hit = self._data.get(k)
                if hit is not None and (self.ttl_s <= 0 or hit[0] > now):
                    self._data.move_to_end(k)
                    out.append(hit[1])
                else:
                    if hit is not None:
                        del self._data[k]
                    out.append(None)
        hits = sum(v is not None for v in out)
        self.stats.add(hits=hits, misses=len(out) - hits)
        return out

    async def set_many(self, items: dict[str, str]) -> None:
        if self.max_entries <= 0:
            return
        expires = self._clock() + self.ttl_s
        with self._lock:
            for k, v in items.items():
                self._data[k] = (expires, v)
                self._data.move_to_end(k)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    async def clear(self) -> None:
        with self._lock:
            self._data.clear()


class RedisResultCache:
    """Results in Redis (``SET key value EX ttl``), shared by service replicas.

    The size bound is Redis's own (``maxmemory`` + an LRU policy); ``max_entries`` is
    not enforced here. Connection errors are logged and count as misses.

    Args:
        url: ``redis://host:port/db``.
        ttl_s: lifetime of an entry in seconds.
        client: an existing ``redis.asyncio.Redis`` (tests), instead of ``url``.
    """

    def __init__(self, url: str | None = None, ttl_s: float = 86_400.0, *, client: Any = None):
        if client is None:
            import redis.asyncio as aioredis

            if not url:
                raise ValueError("RedisResultCache needs a url or a client")
            client = aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._client = client
        self.ttl_s = ttl_s
        self.stats = CacheStats()
        self._loop_clients: dict[int, Any] = {}
        self._url = url

    def _redis(self) -> Any:
        # redis.asyncio connections belong to one event loop; sync wrappers may run
        # calls on another loop, so keep one client per loop when built from a URL
        if self._url is None:
            return self._client
        import asyncio

        import redis.asyncio as aioredis

        key = id(asyncio.get_running_loop())
        client = self._loop_clients.get(key)
        if client is None:
            client = aioredis.Redis.from_url(
                self._url, socket_timeout=2.0, socket_connect_timeout=2.0
            )
            self._loop_clients[key] = client
        return client

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []
        try:
            raw = await self._redis().mget(list(keys))
        except Exception as exc:  # any backend failure is a miss, never an error
            log.warning("redis cache read failed: %s", exc)
            self.stats.add(misses=len(keys), errors=1)
            return [None] * len(keys)
        out = [v.decode() if isinstance(v, bytes) else v for v in raw]
        hits = sum(v is not None for v in out)
        self.stats.add(hits=hits, misses=len(out) - hits)
        return out

    async def set_many(self, items: dict[str, str]) -> None:
        if not items:
            return
        ttl_ms = max(1, int(self.ttl_s * 1000)) if self.ttl_s > 0 else None
        try:
            pipe = self._redis().pipeline(transaction=False)
            for k, v in items.items():
                pipe.set(k, v, px=ttl_ms)
            await pipe.execute()
        except Exception as exc:
            log.warning("redis cache write failed: %s", exc)
            self.stats.add(errors=1)

    async def clear(self) -> None:
        client = self._redis()
        keys = [k async for k in client.scan_iter(match="tessellum:attr:*")]
        if keys:
            await client.delete(*keys)


def cache_from_settings(settings: Any = None) -> ResultCache:
    """The cache the settings ask for: none, Redis at ``redis_url``, or in-memory."""
    from ..config import get_settings

    s = settings if settings is not None else get_settings()
    if not s.cache_enabled:
        return NullResultCache()
    if s.redis_url:
        return RedisResultCache(s.redis_url, ttl_s=s.cache_ttl_s)
    return MemoryResultCache(ttl_s=s.cache_ttl_s, max_entries=s.cache_max_entries)


def dumps(obj: Any) -> str:
    """Compact JSON for cache values."""
    return json.dumps(obj, separators=(",", ":"))
