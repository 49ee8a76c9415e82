"""Mosaic stores and files at object-store URLs (``s3://``, ``gs://``, ``az://``; reads
also from ``http(s)://``), through :mod:`tessellum.store`'s URL resolution.

Object stores have no rename, so a store is published by copying (server-side) from a
temporary prefix beside the target. The guarantee (:func:`publish_prefix`): a reader
opening the target (its root ``zarr.json``) sees the old store, no store, or the whole
new one — never a half-written one — and a failure leaves no store at the target. A
prefix is replaced only when it holds a tessellum store (its root ``zarr.json`` says
so) or nothing; other objects of the bucket are never touched.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import TessellumError, ValidationError

ROOT = "zarr.json"
MAX_COPY_BYTES = 5_000_000_000
"""The largest object S3 copies in one request (5 GB): publishing copies every object."""
_COPIES_IN_FLIGHT = 16
OURS = ("tessellum_mosaic", "tessellum_multiscales")
"""Root attrs that mark a store tessellum wrote (and may replace)."""


def is_url(uri: Any) -> bool:
    """Whether ``uri`` is a URL served by an object store (not a local path/``file://``)."""
    return isinstance(uri, str) and "://" in uri and not uri.startswith("file://")


def local_path(uri: str | os.PathLike) -> str:
    """``uri`` as a local path string (``file://`` stripped)."""
    text = os.fspath(uri)
    return text[len("file://") :] if text.startswith("file://") else text


def join_url(base: str, name: str) -> str:
    """``base/name`` for a URL folder ``base``."""
    return f"{base.rstrip('/')}/{name}"


def split_url(url: str) -> tuple[str, str]:
    """``(parent, name)`` of a URL: ``s3://b/d/a.zarr/`` -> ``("s3://b/d", "a.zarr")``."""
    parent, _, name = url.rstrip("/").rpartition("/")
    if not name or parent.endswith(":/") or not parent:
        raise ValidationError(f"{url!r} names a bucket or host, not an object or prefix in it")
    return parent, name


def temp_url(target: str) -> str:
    """A fresh temporary prefix beside ``target`` (same bucket: copies stay server-side)."""
    parent, name = split_url(target)
    return join_url(parent, f".{name}.tmp-{uuid.uuid4().hex[:12]}")


def writable(url: str, what: str) -> str:
    """``url`` when tessellum can write there (not ``http(s)://``), else a ValidationError."""
    if url.split("://", 1)[0].lower() in ("http", "https"):
        raise ValidationError(f"{what} {url!r}: http(s) URLs are read-only; write to s3:// etc.")
    split_url(url)
    return url.rstrip("/")


@contextmanager
def store_errors(url: str, what: str) -> Iterator[None]:
    """Raise a store failure (missing bucket/key, 403, unreachable endpoint) as the
    tessellum error :mod:`tessellum.store` gives for it, naming ``url``. Local paths'
    errors (``OSError``...) are left as they are."""
    from ..store._retry import classify, to_tessellum_error

    try:
        yield
    except TessellumError:
        raise
    except Exception as exc:
        if not is_url(url) or not _is_store_failure(exc):
            raise
        raise to_tessellum_error(classify(exc), url=url, what=what) from exc


def _is_store_failure(exc: BaseException) -> bool:
    from obstore.exceptions import BaseError

    return isinstance(exc, BaseError | OSError | TimeoutError)


def zarr_store(uri: str | os.PathLike, *, read_only: bool = False) -> Any:
    """What zarr/xarray open for a store: a local path string, or a
    ``zarr.storage.ObjectStore`` rooted at the URL's prefix."""
    text = os.fspath(uri)
    if not is_url(text):
        return local_path(text)
    from zarr.storage import ObjectStore

    from ..store import open_prefix_store

    with store_errors(text, "opening the store"):
        return ObjectStore(open_prefix_store(text), read_only=read_only)


def _bucket(url: str) -> tuple[Any, str]:
    from ..store import open_store

    return open_store(url)


def _retried(call: Any, url: str, what: str) -> Any:
    """``await call()`` with :mod:`tessellum.store`'s retries; its errors."""
    from ..store import RetryPolicy
    from ..store._retry import with_retries

    return with_retries(call, policy=RetryPolicy.from_settings(), url=url, what=what)


def put_object(url: str, data: bytes) -> None:
    """Write ``data`` at ``url`` with one PUT (atomic: readers see the old or new object),
    retried on transient failures."""
    import obstore

    from .._sync import run_sync

    store, path = _bucket(url)
    run_sync(_retried(lambda: obstore.put_async(store, path, data), url, "writing"))


def list_keys(url: str) -> list[str]:
    """Keys (bucket-relative) of the objects under the prefix ``url``, path-segment
    wise: ``s3://b/a.zarr`` lists ``a.zarr/...``, not ``a.zarr.bak/...`` nor the object
    ``a.zarr`` itself."""
    import obstore

    store, key = _bucket(url)
    with store_errors(url, "listing"):
        return [o["path"] for batch in obstore.list(store, prefix=key.strip("/")) for o in batch]


def list_urls(url: str) -> list[str]:
    """URLs of the objects under the prefix ``url`` (``s3://bucket/`` + each key)."""
    scheme, _, rest = url.partition("://")
    bucket = rest.split("/", 1)[0]
    return [f"{scheme}://{bucket}/{k}" for k in list_keys(url)]


def object_exists(url: str) -> bool:
    """Whether an object is at ``url`` exactly."""
    from ..errors import NotFoundError
    from ..store import head

    store, path = _bucket(url)
    try:
        head(store, path)
    except NotFoundError:
        return False
    return True


def root_attrs(url: str) -> dict[str, Any] | None:
    """The attributes of the Zarr group at the prefix ``url`` (None: no root there, or
    not a group)."""
    from ..errors import NotFoundError
    from ..store import read_url

    try:
        meta = json.loads(read_url(join_url(url, ROOT)))
    except NotFoundError:
        return None
    except ValueError:
        return None
    if not isinstance(meta, dict) or meta.get("node_type") != "group":
        return None
    attrs = meta.get("attributes")
    return attrs if isinstance(attrs, dict) else {}


def is_ours(url: str) -> bool:
    """Whether the prefix ``url`` holds a tessellum store (mosaic or multiscales)."""
    attrs = root_attrs(url)
    return attrs is not None and any(k in attrs for k in OURS)


def check_replaceable(url: str, what: str = "a tessellum store") -> None:
    """Refuse a target prefix holding objects that are not a tessellum store (also
    checks the bucket is there and writable-looking: errors are tessellum errors)."""
    if list_keys(url) and not is_ours(url):
        raise ValidationError(
            f"output {url!r} holds objects that are not {what}: choose another prefix "
            "or remove them"
        )


def remove_prefix(url: str) -> None:
    """Delete every object under the prefix ``url`` (best effort, for cleanup)."""
    import obstore

    store, _ = _bucket(url)
    try:
        keys = list_keys(url)
        for k in range(0, len(keys), 1000):
            obstore.delete(store, keys[k : k + 1000])
    except Exception:  # cleanup after another failure: that one is what the caller sees
        pass


def publish_prefix(tmp: str, target: str) -> None:
    """Move the store written under ``tmp`` onto ``target`` (same bucket), replacing a
    tessellum store there.

    Order: the old root ``zarr.json`` is deleted first (readers now find no store), the
    new objects are copied server-side, the old store's stale objects deleted, and the
    new root ``zarr.json`` copied last (readers now find the whole new store); then
    ``tmp`` is deleted. On a failure every object under ``target`` is deleted (it was
    empty or ours) and the error raised: no store is left at the target.
    """
    from .._sync import run_sync

    store, tmp_key = _bucket(tmp)
    store2, dst_key = _bucket(target)
    if store is not store2:
        raise ValidationError(f"{tmp!r} and {target!r} are not in one store")
    tmp_key, dst_key = tmp_key.strip("/"), dst_key.strip("/")
    check_replaceable(target)
    new = [k[len(tmp_key) + 1 :] for k in list_keys(tmp)]
    if ROOT not in new:
        raise ValidationError(f"{tmp!r} holds no Zarr store to publish")
    old = {k[len(dst_key) + 1 :] for k in list_keys(target)}
    try:
        with store_errors(target, "publishing"):
            run_sync(_publish_async(store, tmp_key, dst_key, new, old))
    except BaseException:
        remove_prefix(target)
        raise
    remove_prefix(tmp)


async def _publish_async(
    store: Any, tmp_key: str, dst_key: str, new: list[str], old: set[str]
) -> None:
    import obstore

    from ..store import describe_url

    url = describe_url(store, dst_key)
    if ROOT in old:
        await _retried(lambda: obstore.delete_async(store, f"{dst_key}/{ROOT}"), url, "deleting")
    gate = asyncio.Semaphore(_COPIES_IN_FLIGHT)

    async def copy(rel: str) -> None:
        src, dst = f"{tmp_key}/{rel}", f"{dst_key}/{rel}"
        async with gate:
            await _retried(lambda: obstore.copy_async(store, src, dst), url, f"copying {rel}")

    try:
        async with asyncio.TaskGroup() as tg:  # one failure cancels the other copies
            for rel in new:
                if rel != ROOT:
                    tg.create_task(copy(rel))
    except BaseExceptionGroup as group:
        raise group.exceptions[0] from None
    stale = sorted(old - set(new) - {ROOT})
    for k in range(0, len(stale), 1000):
        batch = [f"{dst_key}/{r}" for r in stale[k : k + 1000]]
        await _retried(lambda b=batch: obstore.delete_async(store, b), url, "deleting")
    await copy(ROOT)
