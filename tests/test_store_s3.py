"""Range reads from a real S3 API (moto server on 127.0.0.1), path-style, signed."""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tessellum.errors import DataFormatError, NotFoundError
from tessellum.store import (
    CoalescePolicy,
    coalesce_ranges,
    collect_stats,
    object_size_async,
    open_store,
    read_range_async,
    read_ranges,
    read_ranges_async,
)

boto3 = pytest.importorskip("boto3")

BUCKET = "tessellum-store-test"
BLOB = random.Random(3).randbytes(300_000)
MOTO = Path(sys.executable).with_name("moto_server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    if not MOTO.exists():
        pytest.skip("moto_server is not installed")
    port = _free_port()
    proc = subprocess.Popen(
        [str(MOTO), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def s3_env(moto: str) -> Iterator[str]:
    env = {
        "AWS_ENDPOINT_URL": moto,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        for k in ("AWS_SKIP_SIGNATURE", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REQUEST_PAYER"):
            mp.delenv(k, raising=False)
        client = boto3.client("s3", endpoint_url=moto, region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key="cogs/a.tif", Body=BLOB)
        client.put_object(Bucket=BUCKET, Key="cogs/with space.tif", Body=BLOB[:1000])
        yield moto


async def test_ranges_from_s3(s3_env: str) -> None:
    store, path = open_store(f"s3://{BUCKET}/cogs/a.tif")
    assert path == "cogs/a.tif"
    rng = random.Random(9)
    starts = [rng.randrange(len(BLOB) - 500) for _ in range(25)]
    ends = [s + rng.randint(1, 500) for s in starts]
    with collect_stats() as stats:
        got = await read_ranges_async(store, path, starts, ends, policy=CoalescePolicy.none())
    assert [bytes(g) for g in got] == [BLOB[s:e] for s, e in zip(starts, ends, strict=True)]
    merged = coalesce_ranges(starts, ends, CoalescePolicy.none())
    assert stats.requests == len(merged) and stats.retries == 0
    with collect_stats() as stats:
        got = await read_ranges_async(store, path, starts, ends)  # coalesced into one GET
    assert stats.requests == 1
    assert await object_size_async(store, path) == len(BLOB)


def test_sync_read_and_store_reuse(s3_env: str) -> None:
    store, path = open_store(f"s3://{BUCKET}/cogs/with space.tif")
    assert open_store(f"s3://{BUCKET}/cogs/a.tif")[0] is store
    assert [bytes(b) for b in read_ranges(store, path, [0, 990], [10, 1000])] == [
        BLOB[:10],
        BLOB[990:1000],
    ]


async def test_s3_https_url_is_read_through_s3(s3_env: str) -> None:
    """A virtual-hosted https URL maps to s3:// and goes to the configured endpoint."""
    store, path = open_store(f"https://{BUCKET}.s3.us-east-1.amazonaws.com/cogs/a.tif")
    assert type(store).__name__ == "S3Store"
    assert bytes(await read_range_async(store, path, 5, 15)) == BLOB[5:15]


async def test_s3_errors(s3_env: str) -> None:
    store, _ = open_store(f"s3://{BUCKET}/cogs/a.tif")
    with pytest.raises(NotFoundError, match=rf"s3://{BUCKET}/cogs/missing\.tif") as info:
        await read_range_async(store, "cogs/missing.tif", 0, 10)
    assert info.value.status == 404
    n = len(BLOB)
    with pytest.raises(DataFormatError, match=rf"\[{n - 5}, {n + 5}\).*{n} bytes"):
        await read_range_async(store, "cogs/a.tif", n - 5, n + 5)
    with pytest.raises(DataFormatError, match=rf"\[{n + 5}, {n + 15}\)"):
        await read_range_async(store, "cogs/a.tif", n + 5, n + 15)


def test_prefix_store_keys_are_relative_to_the_url(s3_env: str) -> None:
    """open_prefix_store: one cached store per prefix, keys relative to it (what a Zarr
    store at a URL needs), the same environment as open_store; a signed URL is refused."""
    import obstore

    from tessellum.errors import ValidationError
    from tessellum.store import open_prefix_store

    store = open_prefix_store(f"s3://{BUCKET}/cogs/")
    assert open_prefix_store(f"s3://{BUCKET}/cogs") is store
    assert bytes(obstore.get(store, "a.tif").bytes()) == BLOB
    obstore.put(store, "sub/new.bin", b"xyz")
    bucket_store, _ = open_store(f"s3://{BUCKET}/x")
    assert bytes(obstore.get(bucket_store, "cogs/sub/new.bin").bytes()) == b"xyz"
    assert open_prefix_store(f"s3://{BUCKET}/") is bucket_store  # the bucket: no prefix
    assert type(open_prefix_store("https://example.com/a/b.zarr")).__name__ == "HTTPStore"
    with pytest.raises(ValidationError, match="signed URL"):
        open_prefix_store("https://example.com/a/b.zarr?sig=1")
