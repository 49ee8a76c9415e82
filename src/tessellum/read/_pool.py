"""Memory for large read outputs, reused once every array over it is gone.

A fresh 241 MB output costs the kernel a page fault and a zeroed page for every 2 MiB
(4 KiB) before the first tile is pasted; on a VM that hands freed memory back to its
host (free page reporting, as Firecracker does) each fault also waits for the host
to back the page again. Measured here: touching a fresh 10980² uint16 array takes
30 ms when the guest recycles the pages and up to 750 ms when the host must back them;
in a full-image read, zeroing pages was a quarter of the decode threads' time.

So large outputs come from a bounded pool: the memory of an output comes back to the
pool when the output and every view of it are gone (a weak reference on the lease
that owns it; nothing the caller can still see is reused), and the next large read
takes it without faults. Arrow's memory pools keep freed memory the same way. At most
``Settings.output_pool_bytes`` are kept (0: no pool); memory in use is never counted.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import weakref
from typing import Any

import numpy as np

from ..errors import ValidationError

__all__ = ["OutputPool", "output_pool", "pooled_empty"]

MIN_POOLED_BYTES = 8 * 1024 * 1024
"""Smaller arrays come from numpy (malloc recycles them without faults)."""

_SLACK = 1.25
"""A kept buffer serves a request of at least 1/_SLACK of its size."""


class _Lease:
    """Owns one pooled buffer while any array over it lives; numpy sees it as the
    base of those arrays through ``__array_interface__``."""

    __slots__ = ("__array_interface__", "__weakref__", "_raw")

    def __init__(self, raw: np.ndarray, nbytes: int) -> None:
        self._raw = raw
        self.__array_interface__ = {
            "shape": (nbytes,),
            "typestr": "|u1",
            "data": (raw.ctypes.data, False),
            "version": 3,
        }


class OutputPool:
    """Keeps the memory of large outputs for reuse (at most ``max_bytes`` of it)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._free: list[np.ndarray] = []
        self._lock = threading.RLock()  # a finalizer may run while it is held (GC)

    @property
    def kept_bytes(self) -> int:
        """Bytes held for reuse (not in use by any array)."""
        with self._lock:
            return sum(b.nbytes for b in self._free)

    def empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """An uninitialized C-contiguous array, on kept memory when there is some."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes < MIN_POOLED_BYTES or self.max_bytes <= 0:
            return np.empty(shape, dtype)
        raw = self._take(nbytes)
        if raw is None:
            raw = np.empty(nbytes, np.uint8)  # numpy asks for huge pages on large arrays
        lease = _Lease(raw, nbytes)
        weakref.finalize(lease, self._give_back, raw).atexit = False  # not at exit
        return np.asarray(lease).view(dtype).reshape(shape)

    def clear(self) -> None:
        """Release every kept buffer."""
        with self._lock:
            self._free.clear()

    def _take(self, nbytes: int) -> np.ndarray | None:
        with self._lock:
            fits = [i for i, b in enumerate(self._free) if nbytes <= b.nbytes <= nbytes * _SLACK]
            if not fits:
                return None
            return self._free.pop(min(fits, key=lambda i: self._free[i].nbytes))

    def _give_back(self, raw: np.ndarray) -> None:
        with self._lock:
            self._free.append(raw)
            kept = sum(b.nbytes for b in self._free)
            while kept > self.max_bytes:  # keep the most recent buffers within the bound
                kept -= self._free.pop(0).nbytes


_pool: OutputPool | None = None
_pool_lock = threading.Lock()


def output_pool() -> OutputPool:
    """The process-wide pool, bounded by ``Settings.output_pool_bytes``."""
    global _pool
    from ..config import get_settings

    limit = get_settings().output_pool_bytes
    with _pool_lock:
        if _pool is None:
            _pool = OutputPool(limit)
        elif _pool.max_bytes != limit:  # the setting changed (configure/override)
            _pool.max_bytes = limit
            if limit <= 0:
                _pool.clear()
        return _pool


def pooled_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """:meth:`OutputPool.empty` of the process-wide pool."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < MIN_POOLED_BYTES:
        return np.empty(shape, dtype)  # small (chips): no settings lookup, no lock
    if nbytes > _physical_memory():  # e.g. bounds in the wrong CRS, or res in metres for degrees
        raise ValidationError(
            f"the output would be {nbytes / 2**30:,.1f} GiB ({'x'.join(map(str, shape))} "
            f"{dtype}), more than this machine's memory: check the bounds, the CRS and "
            "the resolution, or read a smaller area"
        )
    return output_pool().empty(shape, dtype)


@functools.cache
def _physical_memory() -> int:
    """Bytes of RAM (sysconf), or no limit where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**63
