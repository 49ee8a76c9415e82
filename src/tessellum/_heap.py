"""Keep freed heap memory in the process, so response buffers are reused without faults.

The HTTP client (obstore, in native code) collects every response body into a fresh
buffer of the response's size (MBs for coalesced tile reads). glibc's malloc serves
these from a thread's arena and, as soon as more than its *trim threshold* lies free at
the top of the arena, hands the memory back to the kernel; the threshold adapts to
twice the largest block freed so far (≈8 MiB for 4 MiB requests), so a read with a few
dozen MB in flight gives most of it back when its buffers are freed, and the next read
pays a page fault and a zeroed page per 4 KiB again (on a VM that returns freed memory
to its host, the host must also back each page anew). Measured on the ``points``
benchmark (109 MB of responses): 4,000-13,000 page faults per call and 65-77 ms of the
client threads' CPU, against 360-660 faults and 47-53 ms with the memory kept.

So the first store tessellum opens raises glibc's trim threshold to
``Settings.heap_retain_bytes`` (and fixes the mmap threshold at glibc's own dynamic
maximum, 32 MiB, which setting the trim threshold would otherwise freeze at 128 KiB).
Each malloc arena (the main one and one per thread that allocates, up to 8 per core)
then keeps up to that much freed memory at its top for reuse — never more than it
held at its peak — as the output pool (:mod:`tessellum.read._pool`) and Arrow's
allocator keep theirs. Other C libraries (musl,
macOS) are left alone, as is glibc when the setting is 0.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import threading

__all__ = ["retain_freed_heap"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024
"""glibc's largest dynamic mmap threshold on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``)."""

_lock = threading.Lock()
_applied: int | None = None


def retain_freed_heap(nbytes: int | None = None) -> bool:
    """Let glibc keep up to ``nbytes`` of freed memory for reuse (once per process).

    Args:
        nbytes: the trim threshold; ``None`` reads ``Settings.heap_retain_bytes``;
            0 leaves malloc as it is.

    Returns:
        Whether a threshold is in effect (``False`` off glibc or when 0).
    """
    global _applied
    if nbytes is None:
        from .config import get_settings

        nbytes = get_settings().heap_retain_bytes
    with _lock:
        if _applied is not None:
            return _applied > 0
        _applied = 0
        if nbytes <= 0 or platform.libc_ver()[0] != "glibc":
            return False
        mallopt = getattr(ctypes.CDLL(ctypes.util.find_library("c")), "mallopt", None)
        if mallopt is None:
            return False
        mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        limit = min(int(nbytes), 2**31 - 1)  # mallopt takes a C int
        if mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, limit):
            _applied = limit
        return _applied > 0
