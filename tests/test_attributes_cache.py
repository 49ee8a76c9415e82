"""Result cache: TTL, size bound, and the Redis backend (a real redis-server)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest

from tessellum.attributes import MemoryResultCache, RedisResultCache, cache_from_settings
from tessellum.attributes.cache import NullResultCache, geometry_hash, result_key


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


async def test_memory_ttl_and_lru():
    clock = Clock()
    c = MemoryResultCache(ttl_s=10, max_entries=2, clock=clock)
    await c.set_many({"a": "1", "b": "2"})
    assert await c.get_many(["a", "b", "x"]) == ["1", "2", None]
    await c.set_many({"c": "3"})  # evicts the least recently used ("a" was read first)
    assert await c.get_many(["a", "b", "c"]) == [None, "2", "3"]
    clock.t = 10.5
    assert await c.get_many(["b", "c"]) == [None, None]
    assert len(c) == 0
    assert c.stats.hits == 4 and c.stats.misses == 4


def test_keys_and_settings():
    import shapely

    g = shapely.box(0, 0, 1, 1)
    assert geometry_hash(g) == geometry_hash(shapely.box(1, 1, 0, 0))  # normalized
    assert geometry_hash(g) != geometry_hash(g, "EPSG:3857")
    base = dict(dataset_id="a:b", version="1", geom_hash="h", aggregation="mean", time_range=None)
    k = result_key(**base)
    assert k != result_key(**{**base, "version": "2"})
    assert k != result_key(**{**base, "time_range": ("2020-01-01", "2020-12-31")})
    assert k != result_key(**{**base, "aggregation": "max"})
    from tessellum.config import settings_override

    with settings_override(cache_enabled=False) as s:
        assert isinstance(cache_from_settings(s), NullResultCache)
    with settings_override(cache_ttl_s=5, cache_max_entries=7) as s:
        c = cache_from_settings(s)
        assert isinstance(c, MemoryResultCache) and c.ttl_s == 5 and c.max_entries == 7


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url():
    exe = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if shutil.os.path.exists("/usr/bin/redis-server") else None
    )
    if exe is None:
        pytest.skip("redis-server binary not installed (apt-get install redis-server)")
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.02)
    else:
        proc.kill()
        pytest.skip("redis-server did not start")
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(5)


async def test_redis_backend(redis_url):
    a = RedisResultCache(redis_url, ttl_s=0.3)
    b = RedisResultCache(redis_url, ttl_s=0.3)  # a second replica sees the same entries
    await a.clear()
    await a.set_many({"tessellum:attr:k1": '{"v":1}'})
    assert await b.get_many(["tessellum:attr:k1", "tessellum:attr:k2"]) == ['{"v":1}', None]
    assert b.stats.hits == 1 and b.stats.misses == 1
    import asyncio

    await asyncio.sleep(0.5)
    assert await b.get_many(["tessellum:attr:k1"]) == [None]  # TTL elapsed


async def test_redis_down_is_a_miss():
    c = RedisResultCache(f"redis://127.0.0.1:{_free_port()}/0")
    assert await c.get_many(["x"]) == [None]
    await c.set_many({"x": "1"})  # no exception
    assert c.stats.errors == 2


async def test_engine_with_redis(redis_url, tmp_path):
    from shapely.geometry import box

    from _attr_world import X0, Y0, build_world
    from tessellum.attributes import AttributeEngine, StaticCollectionSource, extract

    aw = build_world(tmp_path / "w")
    mk = lambda: AttributeEngine(  # noqa: E731
        catalog=aw.catalog, cache=RedisResultCache(redis_url, ttl_s=60),
        collections=StaticCollectionSource(aw.collections),
    )  # fmt: skip
    await mk().cache.clear()
    poly = box(X0 + 0.1, Y0 - 0.2, X0 + 0.2, Y0 - 0.1)
    first = (await extract(poly, ["copernicus_dem:elevation"], engine=mk())).results[0]
    second = (await extract(poly, ["copernicus_dem:elevation"], engine=mk())).results[0]
    assert not first.cached and second.cached and first.value == second.value
