"""``tessellum.read._pool``: large outputs reuse memory only once nothing can see it."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest

from tessellum.config import settings_override
from tessellum.read._pool import MIN_POOLED_BYTES, OutputPool, output_pool

BIG = (2048, 4096)  # 16 MiB of uint16


def test_memory_comes_back_when_the_last_view_is_gone():
    pool = OutputPool(1 << 30)
    a = pool.empty(BIG, np.uint16)
    assert a.shape == BIG and a.dtype == np.uint16 and a.flags.c_contiguous
    assert a.flags.writeable
    where = a.ctypes.data
    view = a[100:200, ::2]
    del a
    assert pool.kept_bytes == 0  # a view still shows the memory
    other = pool.empty(BIG, np.uint16)
    assert other.ctypes.data != where
    del view
    gc.collect()
    assert pool.kept_bytes == 2 * BIG[0] * BIG[1]
    b = pool.empty(BIG, np.uint16)
    assert b.ctypes.data == where and pool.kept_bytes == 0
    b[...] = 7  # writable, and still an ordinary array
    assert int(b.sum(dtype=np.int64)) == 7 * b.size


def test_sizes_bound_and_small_arrays():
    pool = OutputPool(40 * 1024 * 1024)
    small = pool.empty((10, 10), np.float32)
    del small
    assert pool.kept_bytes == 0  # under MIN_POOLED_BYTES: plain numpy
    arrays = [pool.empty(BIG, np.uint16) for _ in range(3)]  # 3 x 16 MiB
    del arrays
    assert pool.kept_bytes == 32 * 1024 * 1024  # at most 40 MiB kept: two of three
    # a buffer serves requests down to 1/1.25 of its size, not smaller ones
    taken = pool.empty((2048, 3600), np.uint16)
    assert pool.kept_bytes == 16 * 1024 * 1024
    half = pool.empty((2048, 2048), np.uint16)  # 8 MiB: the 16 MiB buffer is too big
    assert pool.kept_bytes == 16 * 1024 * 1024
    del half, taken
    pool.clear()
    assert pool.kept_bytes == 0
    assert MIN_POOLED_BYTES >= 1024 * 1024


def test_the_setting_bounds_the_process_pool():
    with settings_override(output_pool_bytes=0):
        a = output_pool().empty(BIG, np.uint16)
        del a
        assert output_pool().kept_bytes == 0
    with settings_override(output_pool_bytes=64 * 1024 * 1024):
        a = output_pool().empty(BIG, np.uint16)
        del a
        assert output_pool().kept_bytes == 2 * BIG[0] * BIG[1]
    output_pool().clear()


def test_threads_never_share_a_buffer():
    """Many threads taking and dropping outputs: no two live arrays share memory."""
    pool = OutputPool(1 << 30)
    live: dict[int, int] = {}
    lock = threading.Lock()
    errors: list[str] = []

    def work(seed: int) -> None:
        for _ in range(20):
            a = pool.empty(BIG, np.uint16)
            with lock:
                if a.ctypes.data in live:
                    errors.append(f"buffer shared by threads {live[a.ctypes.data]} and {seed}")
                live[a.ctypes.data] = seed
            a[0, 0] = seed
            if a[0, 0] != seed:
                errors.append(f"thread {seed} lost its write")
            with lock:
                del live[a.ctypes.data]
            del a

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.parametrize("dtype", [np.uint8, np.float64, bool])
def test_dtypes(dtype):
    pool = OutputPool(1 << 30)
    a = pool.empty((1024, 1024, 9), dtype)
    assert a.dtype == np.dtype(dtype) and a.shape == (1024, 1024, 9)
