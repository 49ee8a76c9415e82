"""Request guards: API keys (constant-time compare), a token-bucket rate limiter,
request limits, and Prometheus-style metrics."""

from __future__ import annotations

import hmac
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from .errors import ServiceError

__all__ = [
    "ApiKeyCheck",
    "Metrics",
    "RateLimiter",
    "check_limits",
    "check_pixels",
    "pixel_estimate",
]


class ApiKeyCheck:
    """Accepts a request whose key matches one of ``keys`` (``hmac.compare_digest``)."""

    def __init__(self, keys: Sequence[str]):
        self._keys = [k.encode() for k in keys]

    @property
    def enabled(self) -> bool:
        """Whether keys are required."""
        return bool(self._keys)

    def __call__(self, key: str | None) -> None:
        """Raise a 401 :class:`ServiceError` unless ``key`` is accepted."""
        if not self._keys:
            return
        given = (key or "").encode()
        ok = False
        for k in self._keys:  # compare against every key: timing does not reveal which
            ok |= hmac.compare_digest(given, k)
        if not ok:
            raise ServiceError(
                "missing or invalid API key (send X-API-Key or Authorization: Bearer)",
                status=401,
                type="unauthorized",
                headers={"WWW-Authenticate": "Bearer"},
            )


class RateLimiter:
    """Token buckets per client: ``burst`` requests at once, refilled at ``per_minute``.

    Args:
        per_minute: sustained rate; 0 disables the limiter.
        burst: bucket size.
        clock: time source (tests pass a fake one).
    """

    def __init__(
        self, per_minute: float, burst: int = 20, *, clock: Callable[[], float] = time.monotonic
    ):
        self.rate = per_minute / 60.0
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def __call__(self, client: str) -> None:
        """Take one token for ``client`` or raise a 429 with ``Retry-After``."""
        if self.rate <= 0:
            return
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                return
            self._buckets[client] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        raise ServiceError(
            f"rate limit exceeded; retry in {math.ceil(wait)} s",
            status=429,
            type="rate_limited",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


def check_limits(*, geometries: Sequence[Any], dataset_ids: Sequence[str], settings: Any) -> None:
    """Raise a 422 :class:`ServiceError` when a request exceeds the service limits."""
    import shapely

    if len(dataset_ids) > settings.max_datasets_per_request:
        raise ServiceError(
            f"{len(dataset_ids)} datasets requested; at most "
            f"{settings.max_datasets_per_request} per request",
            status=422,
            type="limit_exceeded",
            detail={"limit": "max_datasets_per_request", "value": len(dataset_ids)},
        )
    if len(geometries) > settings.max_batch_size:
        raise ServiceError(
            f"{len(geometries)} geometries; at most {settings.max_batch_size} per batch",
            status=422,
            type="limit_exceeded",
            detail={"limit": "max_batch_size", "value": len(geometries)},
        )
    for i, g in enumerate(geometries):
        n = int(shapely.get_num_coordinates(g))
        if n > settings.max_vertices:
            raise ServiceError(
                f"geometry {i} has {n} vertices; at most {settings.max_vertices}",
                status=422,
                type="limit_exceeded",
                detail={"limit": "max_vertices", "value": n, "geometry": i},
            )


_M_PER_DEG = 111_320.0


def _boxes_crs84(geom: Any, crs: Any) -> list[tuple[float, float, float, float]]:
    """Lon/lat boxes the engine reads for ``geom`` (both halves at the antimeridian)."""
    from ..attributes.engine import lonlat_boxes

    return lonlat_boxes(geom, crs)


def pixel_estimate(
    geom: Any, crs: Any, entry: Any, boxes: list[tuple[float, float, float, float]] | None = None
) -> float:
    """Native pixels of ``entry`` under the bounding box(es) of ``geom`` (what a read
    of that geometry decodes), approximated on the sphere for projected grids;
    ``boxes``: the geometry's lon/lat boxes when already known."""
    import math

    from ..geo.crs import to_crs

    if geom.geom_type == "Point":
        return 1.0
    res = float(entry.native_resolution)
    geographic = to_crs(entry.native_crs).is_geographic
    total = 0.0
    for w, s, e, n in boxes if boxes is not None else _boxes_crs84(geom, crs):
        if geographic:
            total += ((e - w) / res) * ((n - s) / res)
        else:
            shrink = math.cos(math.radians(min(abs(s), abs(n)) if s * n > 0 else 0.0))
            total += ((e - w) * _M_PER_DEG * shrink / res) * ((n - s) * _M_PER_DEG / res)
    return total


def _boxes_on_earth(i: int, geom: Any, crs: Any) -> list[tuple[float, float, float, float]]:
    """Geometry ``i``'s lon/lat boxes; a 422 :class:`ServiceError` when they are not
    finite within [-180, 180] x [-90, 90] (a typo'd CRS or coordinates: it would fail
    deep in the engine as a 500). The check is the in-process API's
    (:func:`~tessellum.attributes.engine.lonlat_boxes_on_earth`)."""
    from ..attributes.engine import lonlat_boxes_on_earth
    from ..errors import ValidationError

    try:
        return lonlat_boxes_on_earth(i, geom, crs)
    except ValidationError as exc:
        raise ServiceError(
            str(exc),
            status=422,
            type="validation_error",
            detail={"geometry": i, "geometry_crs": str(crs)},
        ) from exc


def check_pixels(
    *, geometries: Sequence[Any], crs: Any, entries: Sequence[Any], settings: Any
) -> None:
    """Raise a 422 :class:`ServiceError` when a geometry would make the engine read more
    than ``settings.max_pixels_per_geometry`` native pixels of a dataset (a near-global
    polygon would otherwise hold a worker for minutes)."""
    limit = settings.max_pixels_per_geometry
    for i, g in enumerate(geometries):
        boxes = _boxes_on_earth(i, g, crs)  # reprojected once, for every dataset
        for entry in entries:
            n = pixel_estimate(g, crs, entry, boxes)
            if n > limit:
                raise ServiceError(
                    f"geometry {i} covers about {n:.3g} pixels of {entry.id}; at most "
                    f"{limit:.3g} per geometry (split it, or use the in-process API)",
                    status=422,
                    type="limit_exceeded",
                    detail={
                        "limit": "max_pixels_per_geometry", "value": round(n),
                        "geometry": i, "dataset": entry.id,
                    },
                )  # fmt: skip


class Metrics:
    """Counters and a latency summary, rendered in the Prometheus text format."""

    _BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency_counts: dict[str, list[int]] = defaultdict(
            lambda: [0] * (len(self._BUCKETS) + 1)
        )
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.results: dict[tuple[str, str], int] = defaultdict(int)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one finished request."""
        with self._lock:
            self.requests[(method, route, status)] += 1
            idx = next((i for i, b in enumerate(self._BUCKETS) if seconds <= b), len(self._BUCKETS))
            self.latency_counts[route][idx] += 1
            self.latency_sum[route] += seconds

    def count_result(self, dataset_id: str, quality: str) -> None:
        """Count one attribute result by dataset and quality flag."""
        with self._lock:
            self.results[(dataset_id, quality)] += 1

    def render(self, extra: dict[str, float] | None = None) -> str:
        """The Prometheus exposition text."""
        lines = [
            "# HELP tessellum_requests_total HTTP requests by method, route and status.",
            "# TYPE tessellum_requests_total counter",
        ]
        with self._lock:
            for (m, r, s), n in sorted(self.requests.items()):
                lines.append(
                    f'tessellum_requests_total{{method="{m}",route="{r}",status="{s}"}} {n}'
                )
            lines += [
                "# HELP tessellum_request_duration_seconds Request latency.",
                "# TYPE tessellum_request_duration_seconds histogram",
            ]
            for route, counts in sorted(self.latency_counts.items()):
                acc = 0
                for b, c in zip((*self._BUCKETS, math.inf), counts, strict=True):
                    acc += c
                    le = "+Inf" if b == math.inf else f"{b:g}"
                    lines.append(
                        f'tessellum_request_duration_seconds_bucket{{route="{route}",le="{le}"}} {acc}'
                    )
                lines.append(
                    f'tessellum_request_duration_seconds_sum{{route="{route}"}} {self.latency_sum[route]:.6f}'
                )
                lines.append(f'tessellum_request_duration_seconds_count{{route="{route}"}} {acc}')
            lines += [
                "# HELP tessellum_results_total Attribute results by dataset and quality.",
                "# TYPE tessellum_results_total counter",
            ]
            for (d, q), n in sorted(self.results.items()):
                lines.append(f'tessellum_results_total{{dataset="{d}",quality="{q}"}} {n}')
        for name, value in sorted((extra or {}).items()):
            lines += [f"# TYPE {name} counter", f"{name} {value:g}"]
        return "\n".join(lines) + "\n"
