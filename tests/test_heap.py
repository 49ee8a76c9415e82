"""Freed heap memory is kept for reuse (glibc), so repeated reads do not fault anew."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

glibc_only = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="the trim threshold is a glibc malloc setting"
)

# Rounds of (allocate four 8 MiB blocks in a worker thread, touch them, free them) as
# the HTTP client's buffers are: with glibc's dynamic thresholds the 32 MB freed at the
# top of the thread's arena exceeds the trim threshold (2 x 8 MiB) and goes back to the
# kernel, so every round faults its pages in again.
_PROBE = textwrap.dedent(
    """
    import ctypes, resource, threading
    from tessellum.store import open_store
    open_store("http://127.0.0.1:9/x")  # the first store applies the setting
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)
    size = 8 << 20
    faults = []

    def rounds():
        for _ in range(6):
            before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
            blocks = [libc.malloc(size) for _ in range(4)]
            for b in blocks:
                ctypes.memset(b, 1, size)
            for b in blocks:
                libc.free(b)
            faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)

    t = threading.Thread(target=rounds)
    t.start()
    t.join()
    print(sum(faults[2:]))
    """
)


def _faults(retain: int | None) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    if retain is not None:
        env["TESSELLUM_HEAP_RETAIN_BYTES"] = str(retain)
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return int(out.stdout.strip())


@glibc_only
def test_freed_buffers_are_reused_without_faults() -> None:
    pages = 4 * (8 << 20) // 4096  # one round's pages
    assert _faults(None) < pages // 4  # the default keeps them
    # the control: with the setting off, glibc hands them back and they fault again
    assert _faults(0) > 2 * pages


def test_zero_leaves_malloc_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from tessellum import _heap

    monkeypatch.setattr(_heap, "_applied", None)
    assert _heap.retain_freed_heap(0) is False
    assert _heap._applied == 0
    assert _heap.retain_freed_heap(1 << 20) is False  # once per process


def test_setting_is_validated() -> None:
    from tessellum.config import Settings
    from tessellum.errors import ConfigurationError

    with pytest.raises((ValueError, ConfigurationError), match="heap_retain_bytes"):
        Settings(heap_retain_bytes=-1)
