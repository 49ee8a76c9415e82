"""Where a dataset's records come from: a :class:`Collection` for a lon/lat bbox.

The engine asks a *collection source* (any ``async (resolved, bbox, time_range) ->
Collection`` callable) for the records of one catalog dataset. The default,
:class:`StacCollectionSource`, searches the dataset's STAC API (signed when the catalog
says so) and keeps recent collections for a while, with the search bbox snapped outward
to whole degrees so nearby requests share one search and one header read per asset.
Tests inject :class:`StaticCollectionSource` with collections built from local files.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..errors import RasterUnsupportedError

__all__ = ["CollectionSource", "StacCollectionSource", "StaticCollectionSource"]

CollectionSource = Callable[[Any, tuple[float, float, float, float], Any], Awaitable[Any]]
"""``async (resolved_dataset, crs84_bbox, time_range_or_None) -> Collection``."""


def _snap(bbox: tuple[float, float, float, float], step: float) -> tuple[float, ...]:
    w, s, e, n = bbox
    out = (
        max(-180.0, math.floor(w / step) * step),
        max(-90.0, math.floor(s / step) * step),
        min(180.0, math.ceil(e / step) * step),
        min(90.0, math.ceil(n / step) * step),
    )
    return tuple(round(v, 9) for v in out)


class StacCollectionSource:
    """Collections from each dataset's STAC API, memoised for ``ttl_s``.

    Args:
        ttl_s: how long a built collection is reused.
        max_entries: how many collections are kept.
        snap_deg: search bboxes are snapped outward to multiples of this (degrees).
    """

    def __init__(self, *, ttl_s: float = 600.0, max_entries: int = 64, snap_deg: float = 1.0):
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.snap_deg = snap_deg
        self._memo: OrderedDict[tuple, tuple[float, Any]] = OrderedDict()
        self._inflight: dict[tuple, asyncio.Future] = {}

    async def __call__(
        self, resolved: Any, bbox: tuple[float, float, float, float], time_range: Any
    ) -> Any:
        entry = resolved.entry
        if entry.protocol != "stac_cog":
            raise RasterUnsupportedError(
                f"{entry.id}: statistics over protocol {entry.protocol!r} are not supported"
            )
        snapped = _snap(bbox, self.snap_deg) if bbox[0] <= bbox[2] else tuple(bbox)
        key = (entry.cache_key, resolved.stac_api, snapped, time_range)
        now = time.monotonic()
        hit = self._memo.get(key)
        if hit is not None and hit[0] > now:
            self._memo.move_to_end(key)
            return hit[1]
        if key in self._inflight:  # concurrent requests share one build
            return await asyncio.shield(self._inflight[key])
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            coll = await self._build(resolved, snapped, time_range)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters re-raise it
            raise
        finally:
            self._inflight.pop(key, None)
        fut.set_result(coll)
        self._memo[key] = (now + self.ttl_s, coll)
        while len(self._memo) > self.max_entries:
            self._memo.popitem(last=False)
        return coll

    async def _build(self, resolved: Any, bbox: tuple[float, ...], time_range: Any) -> Any:
        from ..collection import build_from_stac_async

        entry = resolved.entry
        index_map = {entry.variable: entry.band_index - 1} if entry.band_index else None
        colls = [
            await build_from_stac_async(
                name=f"{entry.id}@{entry.version}",
                stac_api=resolved.stac_api,
                collection=c,
                band_map={entry.variable: entry.asset},
                band_index_map=index_map,
                bbox=bbox,
                date_range=list(time_range) if time_range else None,
                signer=resolved.signer(),
                progress=False,
            )
            for c in entry.collections
        ]
        if len(colls) == 1:
            return colls[0]
        import pyarrow as pa

        from ..collection import Collection

        return Collection(pa.concat_tables([c.table for c in colls]), name=colls[0].name)


class StaticCollectionSource:
    """Fixed collections per dataset id (tests, offline use); ``bbox`` is ignored.

    Args:
        collections: dataset id -> :class:`Collection`, or -> an exception to raise,
            or -> an async callable returning either (fault injection).
    """

    def __init__(self, collections: Mapping[str, Any]):
        self.collections = dict(collections)
        self.calls: list[tuple[str, tuple[float, ...], Any]] = []

    async def __call__(
        self, resolved: Any, bbox: tuple[float, float, float, float], time_range: Any
    ) -> Any:
        self.calls.append((resolved.entry.id, tuple(bbox), time_range))
        value = self.collections.get(resolved.entry.id)
        if value is None:
            raise RasterUnsupportedError(f"no collection configured for {resolved.entry.id}")
        if isinstance(value, BaseException):
            raise value
        if callable(value):
            value = await value()
        return value
