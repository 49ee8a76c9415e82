"""Band sources from collection rows: headers decoded once per collection lineage."""

from __future__ import annotations

import gc

import numpy as np
import pyarrow as pa
import pytest
from rasterio.transform import from_origin

from _cogfactory import write_cog
from tessellum.collection import Collection, build_from_files
from tessellum.errors import TessellumWarning
from tessellum.read import sources
from tessellum.read.sources import SourceLineage, record_bands

UTM = "EPSG:32612"


@pytest.fixture
def coll(tmp_path):
    paths = []
    for i in range(3):
        path, _ = write_cog(
            tmp_path / f"r{i}.tif", shape=(64, 64), crs=UTM,
            transform=from_origin(500000 + 640 * i, 4650000, 10, 10),
        )  # fmt: skip
        paths.append(str(path))
    (tmp_path / "broken.tif").write_bytes(b"not a tiff at all" * 10)
    paths.append(str(tmp_path / "broken.tif"))
    with pytest.warns(TessellumWarning, match="1 of 4 band assets failed"):
        return build_from_files(paths, name="lineage", progress=False)


@pytest.fixture
def decodes(monkeypatch):
    """Counts headers decoded from Arrow."""
    from tessellum import tiff

    calls = []
    real = tiff.header_from_arrow

    def counting(meta):
        calls.append(meta["url"])
        return real(meta)

    monkeypatch.setattr(tiff, "header_from_arrow", counting)
    return calls


def test_headers_are_decoded_once_per_collection_lineage(coll, decodes):
    first = record_bands(coll.table, ["data"])
    assert len(first) == 3 and len(decodes) == 3  # the broken row is skipped
    again = record_bands(coll.table, ["data"])
    assert len(decodes) == 3
    assert [r.bands["data"] for r in again] == [r.bands["data"] for r in first]
    # filtered collections reuse their parent's sources, with their own row numbers
    for derived in (coll.head(2), coll.where(pa.array([False, True, True, True]))):
        got = record_bands(derived.table, ["data"])
        ids = derived.table.column("id").to_pylist()
        assert [r.row for r in got] == [i for i, rid in enumerate(ids) if rid != "broken"]
        assert [r.id for r in got] == [rid for rid in ids if rid != "broken"]
        assert {r.bands["data"].href for r in got} <= {r.bands["data"].href for r in first}
    assert len(decodes) == 3
    # a collection over another table (even with the same rows) decodes its own
    other = Collection(pa.table(coll.table.to_pydict(), schema=coll.table.schema))
    record_bands(other.table, ["data"])
    assert len(decodes) == 6


def test_tables_outside_a_collection_are_decoded_per_call(coll, decodes):
    table = pa.table(coll.table.to_pydict(), schema=coll.table.schema)
    record_bands(table, ["data"])
    record_bands(table, ["data"])
    assert len(decodes) == 6


def test_a_lineage_ends_with_its_table(tmp_path):
    path, _ = write_cog(tmp_path / "a.tif", shape=(64, 64), crs=UTM)
    coll = build_from_files([str(path)], name="gone", progress=False)
    key = id(coll.table)
    assert key in sources._lineages
    del coll
    gc.collect()
    assert key not in sources._lineages


def test_source_lineage_keeps_the_most_recently_used():
    lineage = SourceLineage(max_entries=2)
    lineage.put(("a",), None)
    lineage.put(("b",), None)
    assert lineage.get(("a",)) is None  # known (no usable header); now most recent
    lineage.put(("c",), None)
    assert lineage.get(("b",)) is sources.UNKNOWN
    assert lineage.get(("a",)) is None and lineage.get(("c",)) is None


def test_reads_through_a_lineage_equal_fresh_reads(coll):
    aoi = (500100, 4649500, 501500, 4649900)
    cached = coll.read_window(bounds=aoi, bands=["data"], res=10, target_crs=UTM)
    fresh = Collection(pa.table(coll.table.to_pydict(), schema=coll.table.schema))
    again = fresh.read_window(bounds=aoi, bands=["data"], res=10, target_crs=UTM)
    np.testing.assert_array_equal(cached, again)


def test_an_unpickled_collection_keeps_its_headers_across_reads(coll, decodes):
    import pickle

    copy = pickle.loads(pickle.dumps(coll))
    assert id(copy.table) in sources._lineages
    record_bands(copy.table, ["data"])
    record_bands(copy.subset(bbox=(-180, -90, 180, 90)).table, ["data"])
    assert len(decodes) == 3
