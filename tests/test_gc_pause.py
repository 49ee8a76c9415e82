"""``tessellum._gc.collection_paused``: nests, is shared by threads, and always leaves
the collector as it found it."""

from __future__ import annotations

import gc
import threading

import pytest

from tessellum._gc import collection_paused


@pytest.fixture(autouse=True)
def _collector_enabled():
    was = gc.isenabled()
    gc.enable()
    yield
    (gc.enable if was else gc.disable)()


def test_pauses_and_nests():
    with collection_paused():
        assert not gc.isenabled()
        with collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer section still runs
    assert gc.isenabled()


def test_disabled_flag_and_an_error_inside():
    with collection_paused(enabled=False):
        assert gc.isenabled()
    with pytest.raises(KeyError), collection_paused():
        raise KeyError("x")
    assert gc.isenabled()


def test_a_collector_disabled_by_the_caller_stays_disabled():
    gc.disable()
    with collection_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_threads_share_one_pause():
    """The collector comes back when the last of overlapping sections leaves, whichever
    thread entered first."""
    entered, release = threading.Barrier(2), threading.Event()
    seen: list[bool] = []

    def section() -> None:
        with collection_paused():
            entered.wait()
            release.wait()
        seen.append(gc.isenabled())

    worker = threading.Thread(target=section)
    with collection_paused():
        worker.start()
        entered.wait()
    assert not gc.isenabled()  # the worker's section is still open
    release.set()
    worker.join()
    assert gc.isenabled() and seen == [True]
