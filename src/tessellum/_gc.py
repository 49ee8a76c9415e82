"""Pause CPython's cyclic garbage collector while a batch builds many objects.

CPython starts a full collection when the objects promoted to its oldest generation
since the last one exceed a quarter of those already there. A batch that builds
thousands of result objects (models with their dicts, sets and lists) crosses that
line on its own and pays a walk over every long-lived object of the process
(50-70 ms in a process holding ~100,000 of them) although it creates no cycles. While
the collector is paused, young objects are neither traversed nor promoted; those the
caller drops after serializing them die by reference counting and never reach the
oldest generation. (Mercurial pauses the collector the same way while it builds large
structures.)

The pause nests and is shared by threads: the collector is re-enabled when the last
pausing section leaves, and only if it was enabled when the first one entered.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collection_paused"]

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def collection_paused(enabled: bool = True) -> Iterator[None]:
    """Run the ``with`` body with the cyclic garbage collector paused.

    Args:
        enabled: ``False`` runs the body as it is (for callers that pause only
            large batches).
    """
    global _depth, _was_enabled
    if not enabled:
        yield
        return
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
