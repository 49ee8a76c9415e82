"""run_sync: the sync face of every async implementation."""

from __future__ import annotations

import asyncio

import pytest

from tessellum._sync import run_sync


class _NoRepr:
    """A result whose repr must never be computed (it can cost more than the read)."""

    reprs = 0

    def __repr__(self) -> str:
        type(self).reprs += 1
        return "_NoRepr()"


def test_run_sync_never_reprs_the_result() -> None:
    # asyncio.run on the main thread reprs its main task (result included) on 3.11/3.12
    async def make() -> _NoRepr:
        await asyncio.sleep(0)
        return _NoRepr()

    _NoRepr.reprs = 0
    result = run_sync(make())
    assert isinstance(result, _NoRepr)
    assert _NoRepr.reprs == 0


def test_run_sync_raises_the_coroutines_error() -> None:
    async def fail() -> None:
        await asyncio.sleep(0)
        raise KeyError("missing band")

    with pytest.raises(KeyError, match="missing band"):
        run_sync(fail())


async def test_run_sync_inside_a_running_loop_returns_the_result() -> None:
    async def value() -> int:
        await asyncio.sleep(0)
        return 7

    assert run_sync(value()) == 7
