"""Reads through MemoryStore and LocalStore, the limiter, stats and URL resolution."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from pathlib import Path

import obstore
import pytest
from obstore.store import LocalStore, MemoryStore

from tessellum.errors import DataFormatError, NotFoundError, ValidationError
from tessellum.store import (
    CloudConfig,
    CoalescePolicy,
    IOStats,
    Limiter,
    RangeStore,
    StoreSpec,
    UrlSigner,
    collect_stats,
    default_limiter,
    https_to_s3,
    object_size,
    object_size_async,
    open_store,
    open_store_async,
    read_range,
    read_range_async,
    read_ranges,
    read_ranges_async,
    resolve_url,
    s3_to_https,
)

BLOB = random.Random(1).randbytes(100_000)


@pytest.fixture(params=["memory", "local"])
def store_path(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[RangeStore, str]:
    if request.param == "memory":
        store = MemoryStore()
        obstore.put(store, "dir/blob.bin", BLOB)
        return store, "dir/blob.bin"
    (tmp_path / "blob.bin").write_bytes(BLOB)
    return open_store(tmp_path / "blob.bin")


async def test_ranges_in_input_order(store_path: tuple[RangeStore, str]) -> None:
    store, path = store_path
    rng = random.Random(3)
    starts = [rng.randrange(len(BLOB)) for _ in range(50)]
    ends = [min(len(BLOB), s + rng.randint(1, 3000)) for s in starts]
    with collect_stats() as stats:
        got = await read_ranges_async(store, path, starts, ends)
    assert [bytes(g) for g in got] == [BLOB[s:e] for s, e in zip(starts, ends, strict=True)]
    assert stats.requests == 1  # 100 kB with 1 MiB max_gap: one request
    assert stats.bytes <= len(BLOB)


async def test_one_request_per_merged_range(store_path: tuple[RangeStore, str]) -> None:
    store, path = store_path
    starts, ends = [0, 50_000, 10, 90_000], [100, 50_100, 20, 90_100]
    stats = IOStats()
    got = await read_ranges_async(
        store, path, starts, ends, policy=CoalescePolicy.none(), stats=stats
    )
    assert [bytes(g) for g in got] == [BLOB[s:e] for s, e in zip(starts, ends, strict=True)]
    assert stats.requests == 3  # [10,20) lies inside [0,100)
    assert stats.bytes == 300


async def test_duplicates_empty_and_lengths(store_path: tuple[RangeStore, str]) -> None:
    store, path = store_path
    got = await read_ranges_async(store, path, [5, 5, 7, 7], lengths=[10, 10, 0, 3])
    assert [bytes(g) for g in got] == [BLOB[5:15], BLOB[5:15], b"", BLOB[7:10]]
    assert await read_ranges_async(store, path, [], []) == []
    with pytest.raises(ValidationError):
        await read_ranges_async(store, path, [0], [1], lengths=[1])


async def test_eof(store_path: tuple[RangeStore, str]) -> None:
    store, path = store_path
    n = len(BLOB)
    assert bytes(await read_range_async(store, path, n - 10, n)) == BLOB[-10:]
    with pytest.raises(DataFormatError, match=rf"\[{n - 10}, {n + 10}\).*{n} bytes") as info:
        await read_range_async(store, path, n - 10, n + 10)
    assert info.value.offset == n - 10
    with pytest.raises(DataFormatError, match=rf"\[{n + 5}, {n + 10}\).*beyond the end"):
        await read_range_async(store, path, n + 5, n + 10)
    # in a merged request: the good range is fine, the bad one is named
    with pytest.raises(DataFormatError, match=rf"\[{n - 1}, {n + 1}\)"):
        await read_ranges_async(store, path, [0, n - 1], [10, n + 1])
    # clip: a speculative prefix read of a small object
    assert bytes(await read_range_async(store, path, n - 10, n + 65536, clip=True)) == BLOB[-10:]
    assert bytes(await read_range_async(store, path, n + 5, n + 10, clip=True)) == b""
    assert await object_size_async(store, path) == n


async def test_missing_object(store_path: tuple[RangeStore, str]) -> None:
    store, path = store_path
    missing = path.replace("blob", "nothing")
    with collect_stats() as stats:
        with pytest.raises(NotFoundError, match=r"nothing\.bin"):
            await read_range_async(store, missing, 0, 10)
        with pytest.raises(FileNotFoundError):  # NotFoundError is a FileNotFoundError
            await object_size_async(store, missing)
    assert stats.requests == 2 and stats.retries == 0


def test_sync_wrappers(store_path: tuple[RangeStore, str]) -> None:
    store, path = store_path
    with collect_stats() as stats:
        assert [bytes(b) for b in read_ranges(store, path, [0, 10], [5, 20])] == [
            BLOB[:5],
            BLOB[10:20],
        ]
        assert bytes(read_range(store, path, 1, 2)) == BLOB[1:2]
        assert object_size(store, path) == len(BLOB)
    assert stats.requests == 3


async def test_sync_wrapper_inside_running_loop(store_path: tuple[RangeStore, str]) -> None:
    """run_sync moves to a background loop; the context's stats still count."""
    store, path = store_path
    with collect_stats() as stats:
        assert bytes(read_range(store, path, 0, 4)) == BLOB[:4]
    assert stats.requests == 1


# --- Limiter ------------------------------------------------------------------------


async def test_limiter_bounds_tasks() -> None:
    limiter = Limiter(3)
    active = peak = 0

    async def work() -> None:
        nonlocal active, peak
        async with limiter:
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.01)
            active -= 1

    await asyncio.gather(*(work() for _ in range(20)))
    assert peak == 3 and limiter.peak == 3 and limiter.in_use == 0


def test_limiter_across_threads_and_loops() -> None:
    """One Limiter shared by asyncio.run loops in several threads and run_sync's loop."""
    limiter = Limiter(2)
    lock = threading.Lock()
    state = {"active": 0, "peak": 0}

    async def work() -> None:
        async with limiter:
            with lock:
                state["active"] += 1
                state["peak"] = max(state["peak"], state["active"])
            await asyncio.sleep(0.005)
            with lock:
                state["active"] -= 1

    async def many() -> None:
        await asyncio.gather(*(work() for _ in range(15)))

    threads = [threading.Thread(target=asyncio.run, args=(many(),)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert state["peak"] == 2
    assert limiter.in_use == 0


async def test_limiter_cancelled_waiters_do_not_leak() -> None:
    limiter = Limiter(1)
    await limiter.acquire()
    waiters = [asyncio.ensure_future(limiter.acquire()) for _ in range(5)]
    await asyncio.sleep(0)
    waiters[1].cancel()
    limiter.release()  # handed to waiters[0]
    waiters[2].cancel()
    await asyncio.sleep(0.01)
    assert waiters[0].done() and not waiters[0].cancelled()
    for _ in range(3):  # 0 -> 3 -> 4 -> free
        limiter.release()
        await asyncio.sleep(0.01)
    assert all(w.done() for w in waiters)
    assert limiter.in_use == 0
    # a waiter cancelled right after being granted passes the token on
    await limiter.acquire()
    w = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    limiter.release()
    w.cancel()
    await asyncio.gather(w, return_exceptions=True)
    assert limiter.in_use == 0


def test_default_limiter_is_shared() -> None:
    assert default_limiter() is default_limiter()
    with pytest.raises(ValidationError):
        Limiter(0)


# --- URL resolution -----------------------------------------------------------------


def test_stores_are_cached_per_bucket_and_host(tmp_path: Path) -> None:
    a, pa = open_store("s3://bucket-a/x/1.tif")
    b, pb = open_store("s3://bucket-a/y/2.tif")
    c, _ = open_store("s3://bucket-b/x/1.tif")
    assert a is b and a is not c and (pa, pb) == ("x/1.tif", "y/2.tif")
    h1, p1 = open_store("https://example.com/data/a%20b.tif")
    h2, _ = open_store("https://example.com/other.tif")
    h3, _ = open_store("https://example.org/other.tif")
    assert h1 is h2 and h1 is not h3 and p1 == "data/a b.tif"
    l1, lp = open_store(tmp_path / "f.tif")
    l2, _ = open_store(f"file://{tmp_path}/g.tif")
    assert isinstance(l1, LocalStore) and l1 is l2 and lp == str(tmp_path / "f.tif")
    o1, _ = open_store("s3://bucket-a/x", options={"region": "eu-west-1"})
    assert o1 is not a


def test_s3_https_mapping() -> None:
    assert https_to_s3("https://my-bucket.s3.us-west-2.amazonaws.com/a/b.tif") == (
        "s3://my-bucket/a/b.tif",
        "us-west-2",
    )
    assert https_to_s3("https://my.bucket.s3.amazonaws.com/k") == ("s3://my.bucket/k", None)
    assert https_to_s3("https://s3.eu-central-1.amazonaws.com/bkt/k/x.tif") == (
        "s3://bkt/k/x.tif",
        "eu-central-1",
    )
    assert https_to_s3("https://bkt.s3.amazonaws.com/k?X-Amz-Signature=1") is None  # presigned
    assert https_to_s3("https://example.com/k") is None
    assert (
        s3_to_https("s3://bkt/a b.tif", "us-west-2")
        == "https://bkt.s3.us-west-2.amazonaws.com/a%20b.tif"
    )
    spec, path = resolve_url("https://bkt.s3.us-west-2.amazonaws.com/a/b.tif")
    assert (spec.scheme, spec.root, path) == ("s3", "bkt", "a/b.tif")
    assert dict(spec.config)["region"] == "us-west-2"
    spec, _ = resolve_url(
        "https://bkt.s3.us-west-2.amazonaws.com/a", cloud_config=CloudConfig(s3_https_as_s3=False)
    )
    assert spec.scheme == "https"


def test_rewrites_and_requester_pays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REQUEST_PAYER", raising=False)
    cfg = CloudConfig(
        rewrites={
            "https://data.example.com/": "s3://example-data/",
            "https://data.example.com/v2/": "gs://v2/",
        },
        requester_pays=True,
    )
    spec, path = resolve_url("https://data.example.com/a/b.tif", cloud_config=cfg)
    assert (spec.scheme, spec.root, path) == ("s3", "example-data", "a/b.tif")
    assert dict(spec.config)["request_payer"] is True
    spec, path = resolve_url(
        "https://data.example.com/v2/c.tif", cloud_config=cfg
    )  # longest prefix
    assert (spec.scheme, spec.root, path) == ("gs", "v2", "c.tif")
    spec, _ = resolve_url("s3://b/k")
    assert "request_payer" not in dict(spec.config)
    monkeypatch.setenv("AWS_REQUEST_PAYER", "requester")
    assert dict(resolve_url("s3://b/k")[0].config)["request_payer"] is True


def test_skip_signature_follows_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_PROFILE",
        "AWS_SKIP_SIGNATURE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    assert dict(resolve_url("s3://public/k")[0].config).get("skip_signature") is True
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA")
    assert "skip_signature" not in dict(resolve_url("s3://private/k")[0].config)
    cfg = CloudConfig(skip_signature=True)
    assert dict(resolve_url("s3://private/k", cloud_config=cfg)[0].config)["skip_signature"] is True


def test_other_schemes(monkeypatch: pytest.MonkeyPatch) -> None:
    spec, path = resolve_url("gs://bkt/a/b.tif")
    assert (spec.scheme, spec.root, path) == ("gs", "bkt", "a/b.tif")
    spec, path = resolve_url("abfs://container@acct.dfs.core.windows.net/a/b.tif")
    assert (spec.scheme, spec.root, path) == (
        "abfs",
        "container@acct.dfs.core.windows.net",
        "a/b.tif",
    )
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "acct")
    store, path = open_store("az://container/a/b.tif")
    assert type(store).__name__ == "AzureStore" and path == "a/b.tif"
    spec, path = resolve_url("https://host/a.tif?sv=1&sig=x%2Fy")
    assert spec.root == "https://host/a.tif?sv=1&sig=x%2Fy" and path == ""
    assert dict(resolve_url("http://host/a.tif")[0].client_options)["allow_http"] is True
    with pytest.raises(ValidationError):
        resolve_url("ftp://host/a.tif")
    assert StoreSpec("memory", "x").build() is not None


async def test_memory_urls_and_signer() -> None:
    class Signer:
        def __init__(self) -> None:
            self.seen: list[str] = []

        async def sign(self, url: str) -> str:
            self.seen.append(url)
            return url.replace("memory://unsigned/", "memory://signed/")

    signer = Signer()
    assert isinstance(signer, UrlSigner)
    store, path = open_store("memory://signed/k.bin")
    await obstore.put_async(store, path, b"hello world")
    s2, p2 = await open_store_async("memory://unsigned/k.bin", signer=signer)
    assert s2 is store and signer.seen == ["memory://unsigned/k.bin"]
    assert bytes(await read_range_async(s2, p2, 6, 11)) == b"world"


async def test_slow_store_does_not_block_others() -> None:
    """A custom RangeStore works too; reads of one path run concurrently."""

    class SlowStore:
        def __init__(self) -> None:
            self.inner = MemoryStore()

        async def get_async(self, path, *, options=None):
            await asyncio.sleep(0.05)
            return await self.inner.get_async(path, options=options)

        async def head_async(self, path):
            return await self.inner.head_async(path)

    store = SlowStore()
    await store.inner.put_async("x", BLOB)
    t0 = time.perf_counter()
    got = await read_ranges_async(
        store, "x", [0, 10_000, 20_000, 30_000], lengths=[5] * 4, policy=CoalescePolicy.none()
    )
    assert time.perf_counter() - t0 < 0.15  # four 50 ms requests in parallel
    assert bytes(got[3]) == BLOB[30_000:30_005]
