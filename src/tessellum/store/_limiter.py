"""One concurrency limit shared by every event loop and thread in the process.

``asyncio.Semaphore`` binds to the loop that first waits on it, and tessellum runs
coroutines both on callers' loops (``asyncio.run``, Jupyter) and on the background
loop of :func:`tessellum._sync.run_sync`. ``Limiter`` therefore counts tokens under a
``threading.Lock`` and parks waiters as futures on their own loop, waking them with
``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from types import TracebackType

from ..errors import ConfigurationError, ValidationError

__all__ = ["DEFAULT_CONCURRENCY", "Limiter", "default_limiter", "set_default_limit"]

DEFAULT_CONCURRENCY = 64
"""Default number of requests in flight per process (``TESSELLUM_MAX_REQUESTS`` overrides)."""


class Limiter:
    """A counting semaphore for coroutines on any event loop in any thread.

    Use as ``async with limiter:`` around one request. Waiters are served in FIFO order.

    Args:
        limit: Maximum number of holders at once.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValidationError(f"limit must be >= 1, got {limit}")
        self._limit = limit
        self._in_use = 0
        self._peak = 0
        self._lock = threading.Lock()
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    @property
    def limit(self) -> int:
        """Maximum number of holders at once."""
        return self._limit

    @property
    def in_use(self) -> int:
        """Tokens currently held."""
        return self._in_use

    @property
    def peak(self) -> int:
        """Most tokens ever held at once (for tests and benchmarks)."""
        return self._peak

    async def acquire(self) -> None:
        """Wait for a token."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._in_use < self._limit and not self._waiters:
                self._take()
                return
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, fut))
        try:
            await fut
        except asyncio.CancelledError:
            with self._lock:
                try:
                    self._waiters.remove((loop, fut))
                    granted = False
                except ValueError:
                    # popped by release(): if fut holds a result the token is ours to
                    # pass on; if fut was cancelled, _grant() passes it on instead
                    granted = not fut.cancelled()
            if granted:
                self.release()
            raise

    def release(self) -> None:
        """Return a token, waking the oldest waiter (on whichever loop it waits)."""
        with self._lock:
            while self._waiters:
                loop, fut = self._waiters.popleft()
                try:
                    # the token moves to the waiter; _in_use is unchanged
                    loop.call_soon_threadsafe(self._grant, fut)
                    return
                except RuntimeError:  # its loop is closed: skip it
                    continue
            self._in_use -= 1

    def _take(self) -> None:
        self._in_use += 1
        self._peak = max(self._peak, self._in_use)

    def _grant(self, fut: asyncio.Future[None]) -> None:
        if fut.done():  # cancelled between release and now: give the token back
            self.release()
        else:
            fut.set_result(None)

    async def __aenter__(self) -> Limiter:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Limiter(limit={self._limit}, in_use={self._in_use})"


_default: Limiter | None = None
_default_lock = threading.Lock()


def default_limiter() -> Limiter:
    """The process-wide limiter every read uses unless given another one.

    Its size is ``TESSELLUM_MAX_REQUESTS`` (read on first use) or
    :data:`DEFAULT_CONCURRENCY`; change it with :func:`set_default_limit`.
    """
    global _default
    with _default_lock:
        if _default is None:
            raw = os.environ.get("TESSELLUM_MAX_REQUESTS", "")
            try:
                limit = int(raw) if raw else DEFAULT_CONCURRENCY
            except ValueError:
                raise ConfigurationError(
                    f"TESSELLUM_MAX_REQUESTS must be an integer, got {raw!r}"
                ) from None
            _default = Limiter(limit)
        return _default


def set_default_limit(limit: int) -> Limiter:
    """Replace the process-wide limiter with one of size ``limit`` and return it.

    Requests already holding tokens of the old limiter finish against it.
    """
    global _default
    new = Limiter(limit)
    with _default_lock:
        _default = new
    return new
