"""Headers <-> Arrow round trip, nulls for failed rows, and build speed."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _cogfactory import read_bytes, write_cog
from tessellum.errors import DataFormatError
from tessellum.tiff import TiffHeader, parse_header
from tessellum.tiff.arrow import (
    HEADER_TYPE,
    header_from_arrow,
    headers_from_arrow,
    headers_to_arrow,
)

VARIANTS = {
    "plain": dict(dtype="uint16", compression="deflate", predictor=2, nodata=0),
    "mask-jpeg": dict(dtype="uint8", compression="jpeg", count=3, mask=True),
    "lerc": dict(
        dtype="float32",
        compression="lerc_zstd",
        nodata=float("nan"),
        crs="+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80",
    ),
    "meta": dict(
        dtype="int16",
        count=2,
        scales=[0.5, 2.0],
        offsets=[1.0, -3.0],
        descriptions=["a", "b"],
        nodata=-32768,
        pixel_is_point=True,
        crs="EPSG:4326",
        transform=(0.001, 0.0, 10.0, 0.0, -0.001, 47.0),
    ),
    "stripped-big": dict(
        dtype="float64", stripped=True, blocksize=40, byteorder="big", bigtiff=True
    ),
}


@pytest.fixture(scope="module")
def headers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TiffHeader]:
    from affine import Affine

    out = {}
    d = tmp_path_factory.mktemp("arrow")
    for name, kw in VARIANTS.items():
        kw = dict(kw)
        if isinstance(kw.get("transform"), tuple):
            kw["transform"] = Affine(*kw["transform"])
        path, _ = write_cog(d / f"{name}.tif", shape=(300, 340), **{"blocksize": 128, **kw})
        out[name] = parse_header(
            read_bytes(path, 0, 1 << 20),
            url=f"s3://bucket/{name}.tif",
            file_size=path.stat().st_size,
        )
    return out


def test_round_trip_exact(headers: dict[str, TiffHeader]) -> None:
    hs = list(headers.values())
    arr = headers_to_arrow(hs)
    assert arr.type == HEADER_TYPE and len(arr) == len(hs)
    for i, h in enumerate(hs):
        back = header_from_arrow(arr[i])
        assert back == h
        assert back.nodata_value() == h.nodata_value() or np.isnan(h.nodata_value())
    assert headers_from_arrow(arr) == hs
    # through Parquet too
    table = pa.table({"header": arr})
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    again = pq.read_table(pa.BufferReader(buf.getvalue()))["header"]
    assert headers_from_arrow(again) == hs


def test_band_rows_and_errors(headers: dict[str, TiffHeader]) -> None:
    h = headers["meta"]
    arr = headers_to_arrow(
        [h, h, None],
        band_index=[0, 1, 0],
        errors=[None, None, "HTTP 404"],
        urls=[None, None, "s3://x/missing.tif"],
    )
    rows = arr.to_pylist()
    assert [r["band_index"] for r in rows] == [0, 1, 0]
    assert [r["scale"] for r in rows[:2]] == [0.5, 2.0]
    assert [r["offset"] for r in rows[:2]] == [1.0, -3.0]
    assert [r["description"] for r in rows[:2]] == ["a", "b"]
    assert rows[0]["nodata"] == "-32768" and rows[0]["nodata_float"] == -32768.0
    assert rows[0]["crs_epsg"] == 4326 and rows[0]["raster_type"] == 2
    assert rows[2]["error"] == "HTTP 404" and rows[2]["url"] == "s3://x/missing.tif"
    assert rows[2]["levels"] is None and rows[2]["width"] is None
    assert headers_from_arrow(arr)[2] is None
    with pytest.raises(DataFormatError):
        header_from_arrow(arr[2])
    # columns are real columns: filter without touching Python objects
    levels = arr.field("levels")
    assert pa.compute.list_value_length(levels).to_pylist()[:2] == [3, 3]


def test_columns_are_typed(headers: dict[str, TiffHeader]) -> None:
    arr = headers_to_arrow([headers["plain"]])
    lv0 = arr.field("levels").flatten()
    offs = lv0.field("tile_offsets")
    assert offs.type == pa.large_list(pa.uint64())
    np.testing.assert_array_equal(
        offs[0].values.to_numpy(), headers["plain"].levels[0].tile_offsets
    )
    assert arr.field("transform").type == pa.list_(pa.float64(), 6)


def test_build_10000_rows_fast(headers: dict[str, TiffHeader]) -> None:
    base = headers["plain"]
    # distinct objects with the same shape as a real collection
    hs = [dataclasses.replace(base, url=f"s3://b/{i}.tif") for i in range(10_000)]
    t0 = time.perf_counter()
    arr = headers_to_arrow(hs)
    elapsed = time.perf_counter() - t0
    print(f"headers_to_arrow: 10,000 rows in {elapsed * 1000:.0f} ms")
    assert len(arr) == 10_000
    assert elapsed < 1.0


def test_scale_offset_and_description_without_a_band_index(tmp_path: Path) -> None:
    """A band built without a band index (a file listing, an href table) is the file's
    first sample: its scale, offset and description are that sample's (they came out
    1.0 / 0.0 / None)."""
    from tessellum.collection import build_from_files

    path, _ = write_cog(tmp_path / "s.tif", dtype="int16", scales=[0.01], offsets=[-5.5],
                        descriptions=["temperature"])  # fmt: skip
    meta = (
        build_from_files([str(path)], name="s", progress=False)
        .table.column("data_metadata")[0]
        .as_py()
    )
    assert meta["band_index"] is None
    assert (meta["scale"], meta["offset"], meta["description"]) == (0.01, -5.5, "temperature")


def test_nodata_float_is_the_value_the_pixels_hold(tmp_path: Path) -> None:
    """A float32 raster's nodata written as "1e+20" is stored as float32: the column
    holds that value (1.0000000200408773e20), so pixels compare equal to it."""
    import rasterio

    from tessellum.collection import build_from_files

    path = tmp_path / "n.tif"
    # georeferenced: a build records a file without georeferencing as a row error
    with rasterio.open(path, "w", driver="GTiff", width=16, height=16, count=1,
                       dtype="float32", nodata=1e20, crs="EPSG:32612",
                       transform=rasterio.transform.from_origin(500000, 4650000, 10, 10),
                       ) as ds:  # fmt: skip
        ds.write(np.full((1, 16, 16), 1e20, np.float32))
    meta = (
        build_from_files([str(path)], name="n", progress=False)
        .table.column("data_metadata")[0]
        .as_py()
    )
    assert meta["nodata"] == "1e+20"
    assert meta["nodata_float"] == float(np.float32(1e20))


def test_long_tag_values_fit(headers: dict[str, TiffHeader]) -> None:
    """NewSubfileType and LercParameters are LONGs: values up to 2**32 - 1 round-trip."""
    base = headers["plain"]
    level = dataclasses.replace(
        base.levels[0], subfile_type=0x80000000, lerc_params=(4, 3_000_000_000)
    )
    hdr = dataclasses.replace(base, levels=(level, *base.levels[1:]))
    arr = headers_to_arrow([hdr])
    assert arr.field("error").to_pylist() == [None]
    assert arr.field("lerc_params").to_pylist() == [[4, 3_000_000_000]]
    assert header_from_arrow(arr[0]) == hdr


def test_a_header_arrow_cannot_hold_is_its_row_error(headers: dict[str, TiffHeader]) -> None:
    """One header with a value beyond its column (a 2**31-pixel width) fails its row
    only, naming the URL; the other rows are built."""
    base = headers["plain"]
    wide = dataclasses.replace(base.levels[0], width=2**31)
    bad = dataclasses.replace(base, url="s3://b/wide.tif", levels=(wide, *base.levels[1:]))
    arr = headers_to_arrow([base, bad, None], errors=[None, None, "HTTP 404"])
    errs = arr.field("error").to_pylist()
    assert errs[0] is None and errs[2] == "HTTP 404"
    assert "s3://b/wide.tif" in errs[1] and "2147483648" in errs[1]
    assert arr.field("url").to_pylist()[1] == "s3://b/wide.tif"
    assert arr.field("levels")[1].as_py() is None
    assert headers_from_arrow(arr) == [base, None, None]
