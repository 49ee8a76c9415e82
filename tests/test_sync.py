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


def test_collection_read_methods_show_their_parameters(tmp_path):
    """The Collection's sync read methods show the parameters of the functions they run
    (``**kwargs`` before), bound or not, and still run them."""
    import inspect

    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    from tessellum.collection import Collection, build_from_files

    expect = {
        "get_xarray": {"geometries", "bands", "target_crs", "resolution", "resampling"},
        "get_numpy": {"geometries", "bands", "all_touched", "geometry_crs"},
        "get_gdf": {"geometries", "bands", "max_concurrent"},
        "sample_points": {"points", "bands", "match", "method"},
        "read_window": {"bounds", "bands", "record_ids", "res", "group_by"},
    }
    path = tmp_path / "a.tif"
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8",
                       crs="EPSG:32612", transform=from_origin(500000, 4650000, 10, 10)) as ds:  # fmt: skip
        ds.write(np.full((1, 8, 8), 3, "uint8"))
    coll = build_from_files([str(path)], name="sig", progress=False)
    for name, names in expect.items():
        unbound = list(inspect.signature(getattr(Collection, name)).parameters)
        bound = set(inspect.signature(getattr(coll, name)).parameters)
        assert unbound[0] == "self" and names <= set(unbound), (name, unbound)
        assert "self" not in bound and names <= bound, (name, bound)
    out = coll.read_window(bounds=(500000, 4649920, 500080, 4650000), bands=["data"])
    assert out.shape == (1, 8, 8) and (out == 3).all()
