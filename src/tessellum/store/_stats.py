"""Request counters that tests and benchmarks can assert on."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

__all__ = ["IOStats", "collect_stats", "current_stats"]


@dataclass
class IOStats:
    """Counters of storage I/O; safe to update from several threads and loops."""

    requests: int = 0
    """GET/HEAD requests sent, retries included."""
    bytes: int = 0
    """Payload bytes received."""
    retries: int = 0
    """Requests that were repeated after a transient failure."""
    errors: int = 0
    """Requests that failed (each failed attempt counts)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, *, requests: int = 0, nbytes: int = 0, retries: int = 0, errors: int = 0) -> None:
        """Add to the counters atomically."""
        with self._lock:
            self.requests += requests
            self.bytes += nbytes
            self.retries += retries
            self.errors += errors

    def reset(self) -> None:
        """Set every counter to zero."""
        with self._lock:
            self.requests = self.bytes = self.retries = self.errors = 0


_current: contextvars.ContextVar[IOStats | None] = contextvars.ContextVar(
    "tessellum_io_stats", default=None
)


def current_stats() -> IOStats | None:
    """The :class:`IOStats` collecting in this context, if any."""
    return _current.get()


@contextmanager
def collect_stats(stats: IOStats | None = None) -> Iterator[IOStats]:
    """Count every storage request made in this context (tasks it spawns included).

    Example::

        with collect_stats() as stats:
            await read_ranges_async(store, path, starts, ends)
        assert stats.requests == 1
    """
    stats = stats if stats is not None else IOStats()
    token = _current.set(stats)
    try:
        yield stats
    finally:
        _current.reset(token)
