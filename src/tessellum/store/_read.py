"""Byte-range reads: coalesced, globally limited, retried, checked for short responses.

Every function takes the store first (obstore's functional style) and is typed against
:class:`RangeStore`, which every obstore store satisfies; tests may pass any object
with the same two methods. One async implementation each; the sync wrappers only
call :func:`tessellum._sync.run_sync`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .._sync import run_sync
from ..errors import DataFormatError, ProtocolError, ValidationError
from ._coalesce import CoalescePolicy, MergedRange, coalesce_ranges
from ._limiter import Limiter, default_limiter
from ._resolve import describe_url, open_store
from ._retry import Kind, RetryPolicy, classify, with_retries
from ._stats import IOStats, current_stats

if TYPE_CHECKING:
    from obstore import GetOptions

__all__ = [
    "GetResultLike",
    "RangeStore",
    "head",
    "head_async",
    "object_size",
    "object_size_async",
    "read_range",
    "read_range_async",
    "read_ranges",
    "read_ranges_async",
]

T = TypeVar("T")
_EMPTY = memoryview(b"")


class GetResultLike(Protocol):
    """What a ranged GET returns (obstore's ``GetResult``)."""

    @property
    def meta(self) -> Mapping[str, Any]:
        """Object metadata; ``meta["size"]`` is the whole object's size."""
        ...

    @property
    def range(self) -> tuple[int, int]:
        """The byte range ``(start, end)`` actually returned."""
        ...

    async def bytes_async(self) -> Any:
        """The body, as an object supporting the buffer protocol."""
        ...


class RangeStore(Protocol):
    """The two store methods tessellum reads with (obspec ``GetAsync`` + ``HeadAsync``)."""

    async def get_async(self, path: str, *, options: GetOptions | None = None) -> GetResultLike:
        """GET ``path`` (with ``options["range"]`` for a byte range)."""
        ...

    async def head_async(self, path: str) -> Mapping[str, Any]:
        """Metadata of ``path``; ``["size"]`` is its size in bytes."""
        ...


def _ends(
    starts: Sequence[int], ends: Sequence[int] | None, lengths: Sequence[int] | None
) -> Sequence[int]:
    if (ends is None) == (lengths is None):
        raise ValidationError("give exactly one of ends= or lengths=")
    if lengths is not None:
        if len(lengths) != len(starts):
            raise ValidationError(f"{len(starts)} starts but {len(lengths)} lengths")
        return [int(s) + int(n) for s, n in zip(starts, lengths, strict=True)]
    assert ends is not None
    return ends


async def _fetch(
    store: RangeStore,
    path: str,
    m: MergedRange,
    *,
    url: str,
    limiter: Limiter,
    retry: RetryPolicy,
    stats: IOStats | None,
) -> tuple[memoryview, int]:
    """One GET for ``m``: ``(bytes, object size)``; empty bytes when ``m`` starts at/after EOF."""
    what = f"byte range [{m.start}, {m.end})"

    async def once() -> tuple[memoryview, int] | None:
        async with limiter:
            try:
                result = await store.get_async(path, options={"range": (m.start, m.end)})
                data = memoryview(await result.bytes_async())
            except Exception as exc:
                if classify(exc).kind is Kind.BAD_RANGE:
                    return None  # starts at/after EOF: the caller learns the size by HEAD
                if "range request not supported" in str(exc).lower():
                    return None  # a 200 for a range: an empty object, or a server without Range
                raise
        if stats is not None:
            stats.add(nbytes=data.nbytes)
        size = int(result.meta["size"])
        got_start, got_end = result.range
        if data.nbytes != got_end - got_start or got_start != m.start:
            raise DataFormatError(
                f"response for {what} of {url} holds {data.nbytes} bytes at "
                f"[{got_start}, {got_end}): inconsistent with the request",
                url=url,
                offset=m.start,
            )
        if data.nbytes < m.size and m.start + data.nbytes < size:
            raise DataFormatError(
                f"short response for {what} of {url}: got {data.nbytes} of {m.size} bytes "
                f"although the object holds {size} bytes",
                url=url,
                offset=m.start,
            )
        return data, size

    got = await with_retries(once, policy=retry, url=url, what=what, stats=stats)
    if got is None:
        meta = await head_async(store, path, retry=retry, url=url, stats=stats, limiter=limiter)
        size = int(meta["size"])
        if m.start < size:
            raise ProtocolError(
                f"{url} answered a request for {what} with the whole object: the server "
                "does not serve byte ranges, which reading a COG needs",
                url=url,
            )
        return _EMPTY, size
    return got


async def read_ranges_async(
    store: RangeStore,
    path: str,
    starts: Sequence[int],
    ends: Sequence[int] | None = None,
    *,
    lengths: Sequence[int] | None = None,
    policy: CoalescePolicy | None = None,
    limiter: Limiter | None = None,
    retry: RetryPolicy | None = None,
    url: str | None = None,
    stats: IOStats | None = None,
    clip: bool = False,
) -> list[bytes | memoryview]:
    """Read byte ranges ``[starts[i], ends[i])`` of one object.

    Ranges are coalesced by ``policy`` and each merged range is one single-range GET
    (S3 accepts one range per request); requests run concurrently, bounded by
    ``limiter`` (shared by every read in the process by default). Results are
    zero-copy ``memoryview`` slices, in input order; duplicates share bytes.

    Args:
        store: An obstore store (or any :class:`RangeStore`).
        path: The object's path inside ``store`` (from :func:`open_store`).
        starts: Inclusive start offsets.
        ends: Exclusive end offsets; or give ``lengths``.
        lengths: Range lengths instead of ``ends``.
        policy: Coalescing rules (default ``CoalescePolicy()``).
        limiter: Concurrency limit (default :func:`default_limiter`).
        retry: Retry rules (default: the settings' ``retries`` and ``retry_backoff_s``).
        url: The object's URL, for error messages (derived from the store otherwise).
        stats: Counters to update (default: the context's :func:`collect_stats`).
        clip: Return ranges cut at the end of the object instead of raising.

    Returns:
        One buffer per input range.

    Raises:
        NotFoundError: the object does not exist.
        ProtocolError: access denied or another non-retryable HTTP error.
        UpstreamError: transient failures persisted through every retry.
        DataFormatError: a short response, or (unless ``clip``) a range beyond the end.
    """
    ends = _ends(starts, ends, lengths)
    merged = coalesce_ranges(starts, ends, policy)
    url = url or describe_url(store, path)
    limiter = limiter or default_limiter()
    retry = retry or RetryPolicy.from_settings()
    stats = stats if stats is not None else current_stats()
    out: list[bytes | memoryview] = [b""] * len(starts)

    async def serve(m: MergedRange) -> None:
        data, size = await _fetch(
            store, path, m, url=url, limiter=limiter, retry=retry, stats=stats
        )
        for i, off in zip(m.members, m.offsets, strict=True):
            want = int(ends[i]) - int(starts[i])
            piece = data[off : off + want]
            if len(piece) < want and not clip:
                raise DataFormatError(
                    f"byte range [{starts[i]}, {ends[i]}) of {url} extends beyond the end "
                    f"of the object ({size} bytes)",
                    url=url,
                    offset=int(starts[i]),
                )
            out[i] = piece

    await _all(serve, merged)
    return out


async def _all(fn: Callable[[MergedRange], Awaitable[None]], items: list[MergedRange]) -> None:
    """Run ``fn`` over ``items`` concurrently; the first error cancels the rest."""
    if len(items) == 1:
        await fn(items[0])
        return
    tasks = [asyncio.ensure_future(fn(m)) for m in items]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def read_range_async(
    store: RangeStore,
    path: str,
    start: int,
    end: int,
    *,
    limiter: Limiter | None = None,
    retry: RetryPolicy | None = None,
    url: str | None = None,
    stats: IOStats | None = None,
    clip: bool = False,
) -> bytes | memoryview:
    """Read one byte range ``[start, end)``; see :func:`read_ranges_async`.

    With ``clip=True`` a speculative read (e.g. a 64 KiB header prefix of a smaller
    file) returns the bytes that exist instead of raising.
    """
    (data,) = await read_ranges_async(
        store, path, [start], [end], limiter=limiter, retry=retry, url=url, stats=stats, clip=clip
    )
    return data


async def read_prefix_async(
    store: RangeStore,
    path: str,
    end: int,
    *,
    limiter: Limiter | None = None,
    retry: RetryPolicy | None = None,
    url: str | None = None,
    stats: IOStats | None = None,
) -> tuple[memoryview, int]:
    """The object's first ``end`` bytes (fewer for a smaller object) and the object's
    size, both from one GET (the size from its Content-Range): a header reader learns
    whether tile data lies past the end of a truncated file."""
    (m,) = coalesce_ranges([0], [end], None)
    return await _fetch(
        store, path, m, url=url or describe_url(store, path), limiter=limiter or default_limiter(),
        retry=retry or RetryPolicy.from_settings(), stats=stats if stats is not None else current_stats(),
    )  # fmt: skip


async def head_async(
    store: RangeStore,
    path: str,
    *,
    retry: RetryPolicy | None = None,
    url: str | None = None,
    stats: IOStats | None = None,
    limiter: Limiter | None = None,
) -> Mapping[str, Any]:
    """Metadata of one object (``size``, ``last_modified``, ``e_tag``...), with retries.

    Raises:
        NotFoundError: the object does not exist.
        ProtocolError | UpstreamError: as for :func:`read_ranges_async`.
    """
    limiter = limiter or default_limiter()
    stats = stats if stats is not None else current_stats()

    async def once() -> Mapping[str, Any]:
        async with limiter:
            return await store.head_async(path)

    return await with_retries(
        once,
        policy=retry or RetryPolicy.from_settings(),
        url=url or describe_url(store, path),
        what="HEAD",
        stats=stats,
    )


async def object_size_async(store: RangeStore, path: str, **kwargs: Any) -> int:
    """Size in bytes of one object; keyword arguments as for :func:`head_async`."""
    return int((await head_async(store, path, **kwargs))["size"])


def read_ranges(
    store: RangeStore,
    path: str,
    starts: Sequence[int],
    ends: Sequence[int] | None = None,
    **kwargs: Any,
) -> list[bytes | memoryview]:
    """Sync wrapper of :func:`read_ranges_async` (works inside a running event loop)."""
    kwargs.setdefault("stats", current_stats())  # the context does not cross run_sync's thread
    return run_sync(read_ranges_async(store, path, starts, ends, **kwargs))


def read_range(
    store: RangeStore, path: str, start: int, end: int, **kwargs: Any
) -> bytes | memoryview:
    """Sync wrapper of :func:`read_range_async`."""
    kwargs.setdefault("stats", current_stats())
    return run_sync(read_range_async(store, path, start, end, **kwargs))


def head(store: RangeStore, path: str, **kwargs: Any) -> Mapping[str, Any]:
    """Sync wrapper of :func:`head_async`."""
    kwargs.setdefault("stats", current_stats())
    return run_sync(head_async(store, path, **kwargs))


def object_size(store: RangeStore, path: str, **kwargs: Any) -> int:
    """Sync wrapper of :func:`object_size_async`."""
    kwargs.setdefault("stats", current_stats())
    return run_sync(object_size_async(store, path, **kwargs))


def read_url(url: str, cloud_config: Any = None) -> bytes:
    """The whole object at ``url`` (a path or any URL :func:`open_store` resolves, with
    ``cloud_config``'s rewrites and settings): one size request, one ranged read, with
    this module's retries and errors."""
    store, path = open_store(url, cloud_config=cloud_config)
    size = object_size(store, path)
    return bytes(read_range(store, path, 0, size)) if size else b""
