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


def test_sync_twins_show_their_parameters():
    """The sync entry points show the parameters of the async functions they run (they
    showed only ``**kwargs`` to help(), IDEs and inspect.signature)."""
    import inspect

    from tessellum.attributes import batch_extract_sync, extract_sync
    from tessellum.collection import (
        build_from_files,
        build_from_gti,
        build_from_stac,
        build_from_table,
    )
    from tessellum.mosaic import extract_raster_sync

    expect = {
        build_from_stac: {"name", "stac_api", "collection", "bbox", "date_range", "cloud_config"},
        build_from_files: {"source", "name", "pattern"},
        build_from_table: {"table", "name", "href_column", "id_column"},
        build_from_gti: {"index", "name", "location_column"},
        extract_raster_sync: {"dataset_id", "bbox", "output_dir", "target_resolution"},
        extract_sync: {"geometry", "dataset_ids", "aggregation"},
        batch_extract_sync: {"geometries", "dataset_ids", "aggregation"},
    }
    for fn, names in expect.items():
        params = inspect.signature(fn).parameters
        assert names <= set(params), (fn.__name__, sorted(params))
