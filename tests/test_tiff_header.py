"""Header parsing against tifffile (tags, offsets) and rasterio (georeferencing)."""

from __future__ import annotations

import asyncio
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import tifffile
from pyproj import CRS

sys.path.insert(0, str(Path(__file__).parent))
from _cogfactory import FileFetcher, patch_tag, read_bytes, write_cog
from tessellum.errors import DataFormatError, RasterUnsupportedError
from tessellum.tiff import BytesSource, NeedBytes, TiffHeader, parse_header, read_header_async

SHAPE = (300, 340)
BS = 128

FILES: dict[str, dict] = {
    "cog-uint16": dict(dtype="uint16", compression="deflate", predictor=2),
    "big-endian-bigtiff": dict(
        dtype="float32",
        compression="zstd",
        predictor=3,
        byteorder="big",
        bigtiff=True,
        nodata=float("-inf"),
    ),
    "nbits12": dict(dtype="uint16", compression="deflate", nbits=12),
    "nbits1": dict(dtype="uint8", compression="deflate", nbits=1),
    "band-interleave": dict(
        dtype="int16", compression="lzw", count=3, interleave="band", nodata=-32768
    ),
    "stripped": dict(dtype="uint16", compression="deflate", stripped=True, blocksize=50),
    "mask": dict(dtype="uint8", compression="deflate", count=3, mask=True),
    "sparse": dict(dtype="int32", compression="deflate", sparse=True, nodata=-2147483648),
    "jpeg-ycbcr": dict(dtype="uint8", compression="jpeg", count=3, photometric="ycbcr"),
    "lerc-zstd": dict(dtype="float32", compression="lerc_zstd", nodata=float("nan")),
    "webp": dict(dtype="uint8", compression="webp", count=4),
    "pixel-is-point": dict(dtype="float32", compression="deflate", pixel_is_point=True),
    "pixel-is-point-geographic": dict(
        dtype="int16",
        compression="deflate",
        pixel_is_point=True,
        crs="EPSG:4326",
        nodata=-32767,
        transform=rasterio.transform.from_origin(10.0, 47.0, 1 / 3600, 1 / 3600),
    ),
    "cog-driver": dict(
        dtype="uint16", compression="zstd", predictor=2, driver="COG", overviews=(2, 4, 8)
    ),
    "append": dict(dtype="uint16", compression="deflate", layout="append"),
    "int64": dict(dtype="int64", compression="zstd", nodata=-99),
    "uint64": dict(dtype="uint64", compression="zstd"),
    "scale-offset": dict(
        dtype="int16",
        compression="deflate",
        count=2,
        scales=[0.01, 2.5],
        offsets=[-10.0, 3.0],
        descriptions=["red", "nir"],
    ),
}

CUSTOM_CRS = [
    "+proj=tmerc +lat_0=12.5 +lon_0=-3.25 +k=0.99965 +x_0=250000 +y_0=-100000 +datum=WGS84 +units=m",
    "+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80 +units=m",
    "+proj=lcc +lat_1=33 +lat_2=45 +lat_0=23 +lon_0=-96 +x_0=0 +y_0=0 +datum=NAD83 +units=m",
    "+proj=lcc +lat_1=45 +lat_0=45 +lon_0=3 +k_0=0.9995 +x_0=700000 +y_0=6600000 +ellps=GRS80",
    "+proj=aea +lat_1=29.5 +lat_2=45.5 +lat_0=23 +lon_0=-96 +x_0=0 +y_0=0 +datum=WGS84 +units=m",
    "+proj=stere +lat_0=90 +lat_ts=70 +lon_0=-45 +k=1 +x_0=0 +y_0=0 +datum=WGS84 +units=m",
    "+proj=stere +lat_0=-90 +lon_0=0 +k=0.994 +x_0=2000000 +y_0=2000000 +datum=WGS84 +units=m",
    "+proj=sterea +lat_0=52.156160556 +lon_0=5.387638889 +k=0.9999079 +x_0=155000 +y_0=463000 +ellps=bessel",
    "+proj=omerc +lat_0=4 +lonc=102.25 +alpha=323.0257905 +gamma=323.1301023611 +k=0.99984 +x_0=804671 +y_0=0 +ellps=GRS80",
    "+proj=omerc +no_uoff +lat_0=4 +lonc=102.25 +alpha=323.0257905 +k=0.99984 +x_0=804671 +y_0=0 +ellps=GRS80",
    "+proj=merc +lon_0=10 +lat_ts=20 +x_0=0 +y_0=0 +datum=WGS84 +units=m",
    "+proj=eqc +lat_ts=10 +lat_0=0 +lon_0=20 +x_0=0 +y_0=0 +datum=WGS84 +units=m",
    "+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181 +units=m",
    "+proj=tmerc +lat_0=0 +lon_0=-120 +k=0.9996 +x_0=500000 +y_0=0 +ellps=clrk66 +units=ft",
    "+proj=tmerc +lat_0=0 +lon_0=-120 +k=0.9996 +x_0=500000 +y_0=0 +ellps=clrk66 +towgs84=0,0,0 +units=us-ft",
    "+proj=longlat +ellps=bessel +pm=ferro +no_defs",
    "+proj=robin +lon_0=0 +datum=WGS84",
    "EPSG:3857",
    "EPSG:4326",
]


def parse_file(path: Path, prefix: int = 1 << 20, url: str = "") -> TiffHeader:
    return parse_header(
        read_bytes(path, 0, prefix), url=url or str(path), file_size=path.stat().st_size
    )


def assert_matches_tifffile(path: Path, hdr: TiffHeader) -> None:
    with tifffile.TiffFile(path) as tf:
        _compare_pages(tf, hdr)


def _compare_pages(tf: tifffile.TiffFile, hdr: TiffHeader) -> None:
    pages = list(tf.pages)
    for p in list(pages):
        pages.extend(p.pages or [])  # SubIFDs
    mine = list(hdr.levels) + list(hdr.mask_levels)
    assert len(mine) == len(pages)
    by_key = {(lv.width, lv.height, lv.is_mask): lv for lv in mine}
    for page in pages:
        is_mask = bool(page.subfiletype & 4) or page.photometric == 4
        lv = by_key[(page.imagewidth, page.imagelength, is_mask)]
        assert lv.tiled == page.is_tiled
        if page.is_tiled:
            assert (lv.tile_width, lv.tile_height) == (page.tilewidth, page.tilelength)
        else:
            assert lv.tile_width == page.imagewidth
            assert lv.tile_height == min(page.rowsperstrip, page.imagelength)
        np.testing.assert_array_equal(lv.tile_offsets, np.asarray(page.dataoffsets, np.uint64))
        np.testing.assert_array_equal(
            lv.tile_byte_counts, np.asarray(page.databytecounts, np.uint64)
        )
        assert lv.compression == int(page.compression)
        assert lv.predictor == int(page.predictor)
        assert lv.photometric == int(page.photometric)
        assert lv.planar_config == int(page.planarconfig)
        assert lv.samples_per_pixel == page.samplesperpixel
        assert lv.bits_per_sample[0] == page.bitspersample
        assert lv.sample_format == int(page.sampleformat)
        assert lv.extra_samples == tuple(int(v) for v in page.extrasamples)
        assert lv.jpeg_tables == page.jpegtables
        assert lv.subfile_type == int(page.subfiletype)
        if 50674 in page.tags:
            assert lv.lerc_params == tuple(page.tags[50674].value)
        if 530 in page.tags:
            assert lv.ycbcr_subsampling == tuple(page.tags[530].value)
    assert hdr.bigtiff == tf.is_bigtiff
    assert hdr.byte_order == tf.byteorder
    tags = tf.pages[0].tags
    assert hdr.nodata_raw == (tags[42113].value if 42113 in tags else None)


def assert_matches_rasterio(path: Path, hdr: TiffHeader) -> None:
    with rasterio.open(path) as ds:
        assert hdr.geo.transform == pytest.approx(ds.transform.to_gdal(), rel=0, abs=1e-9)
        assert hdr.dtype == ds.dtypes[0]
        assert hdr.count == ds.count
        assert (hdr.levels[0].tile_height, hdr.levels[0].tile_width) == ds.block_shapes[0]
        if ds.crs is not None:
            assert CRS.from_wkt(hdr.geo.crs_wkt).equals(
                CRS.from_wkt(ds.crs.to_wkt()), ignore_axis_order=True
            )
        nd = hdr.nodata_value()
        if ds.nodata is None:
            assert nd is None
        elif np.isnan(ds.nodata):
            assert np.isnan(nd)
        elif np.dtype(hdr.dtype).itemsize < 8:
            assert nd == ds.nodata
        for b in range(ds.count):
            assert hdr.scale(b) == ds.scales[b]
            assert hdr.offset(b) == ds.offsets[b]
            assert hdr.gdal_metadata["bands"].get(b, {}).get("DESCRIPTION") == ds.descriptions[b]
        factors = ds.overviews(1)
    assert len(hdr.levels) == len(factors) + 1
    for i in range(len(factors)):
        with rasterio.open(path, overview_level=i) as ov:
            lv = hdr.levels[i + 1]
            assert (lv.height, lv.width) == ov.shape
            assert (lv.tile_height, lv.tile_width) == ov.block_shapes[0]


@pytest.mark.parametrize("name", list(FILES))
def test_header_matches_tifffile_and_rasterio(tmp_path: Path, name: str) -> None:
    path, _ = write_cog(tmp_path / f"{name}.tif", shape=SHAPE, **{"blocksize": BS, **FILES[name]})
    fetch = FileFetcher(path)
    hdr = asyncio.run(read_header_async(fetch, str(path)))
    assert len(fetch.calls) <= 2
    assert_matches_tifffile(path, hdr)
    assert_matches_rasterio(path, hdr)
    assert hdr.levels == parse_file(path).levels


@pytest.mark.parametrize(
    ("dtype", "raw", "expected"),
    [
        ("int64", "-9223372036854775808", -9223372036854775808),
        ("uint64", "18446744073709551615", 18446744073709551615),
        ("int64", "9223372036854775807", 9223372036854775807),
        ("uint8", "255", 255),
        ("int16", "-32768.0", -32768),
        ("uint8", "300", None),
    ],
)
def test_nodata_exact(tmp_path: Path, dtype: str, raw: str, expected: int | None) -> None:
    # rasterio 1.4 writes int64 nodata through a float; write the tag directly
    path = tmp_path / "n.tif"
    tifffile.imwrite(
        path, np.zeros((32, 32), dtype), tile=(16, 16), extratags=[(42113, "s", 0, raw, True)]
    )
    nd = parse_file(path).nodata_value()
    if expected is None:
        assert nd is None
    else:
        assert type(nd) is np.dtype(dtype).type and int(nd) == expected
    assert parse_file(path).nodata_raw == raw


@pytest.mark.parametrize(
    ("raw", "check"),
    [("nan", np.isnan), ("-inf", np.isneginf), ("-3.4028234663852886e+38", np.isfinite)],
)
def test_nodata_float(tmp_path: Path, raw: str, check) -> None:
    path, _ = write_cog(
        tmp_path / "f.tif",
        dtype="float32",
        shape=(64, 64),
        blocksize=64,
        overviews=(),
        nodata=float(raw),
    )
    nd = parse_file(path).nodata_value()
    assert type(nd) is np.float32 and check(nd)
    with rasterio.open(path) as ds:
        assert np.isnan(ds.nodata) if np.isnan(nd) else ds.nodata == nd


@pytest.mark.parametrize("crs", CUSTOM_CRS)
def test_crs_equals_gdal(tmp_path: Path, crs: str) -> None:
    path, _ = write_cog(tmp_path / "crs.tif", shape=(64, 64), blocksize=64, overviews=(), crs=crs)
    hdr = parse_file(path)
    with rasterio.open(path) as ds:
        ref = CRS.from_wkt(ds.crs.to_wkt())
    mine = CRS.from_wkt(hdr.geo.crs_wkt)
    assert mine.equals(ref, ignore_axis_order=True)
    assert CRS.from_json(hdr.geo.crs_projjson).equals(ref, ignore_axis_order=True)
    if crs.startswith("EPSG:"):
        assert hdr.geo.crs_epsg == int(crs[5:])
    else:
        assert hdr.geo.crs_epsg is None
        assert "32767" not in hdr.geo.crs_wkt  # never collapsed to "user-defined"


def test_user_defined_crs_built_from_keys_without_gdal(tmp_path: Path) -> None:
    from tessellum.tiff.geokeys import crs_from_geokeys

    path, _ = write_cog(
        tmp_path / "crs.tif", shape=(64, 64), blocksize=64, overviews=(), crs=CUSTOM_CRS[1]
    )
    keys = tuple(sorted(parse_file(path).geo.geokeys.items()))
    epsg, wkt, _ = crs_from_geokeys(keys, ())  # no raw tags: the GDAL fallback is off
    assert epsg is None and wkt is not None
    with rasterio.open(path) as ds:
        assert CRS.from_wkt(wkt).equals(CRS.from_wkt(ds.crs.to_wkt()), ignore_axis_order=True)


def test_pixel_is_point_shift(tmp_path: Path) -> None:
    path, _ = write_cog(
        tmp_path / "p.tif", shape=(64, 64), blocksize=64, overviews=(), pixel_is_point=True
    )
    hdr = parse_file(path)
    assert hdr.geo.raster_type == 2
    with tifffile.TiffFile(path) as tf:
        tie = tf.pages[0].tags[33922].value
        scale = tf.pages[0].tags[33550].value
    # the tiepoint names the centre of pixel (0, 0); GDAL's origin is its corner
    assert hdr.geo.transform[0] == tie[3] - 0.5 * scale[0]
    assert hdr.geo.transform[3] == tie[4] + 0.5 * scale[1]
    with rasterio.open(path) as ds:
        assert hdr.geo.transform == ds.transform.to_gdal()


@pytest.mark.parametrize("overviews", [(), (2, 4)])
def test_ifd_at_end(tmp_path: Path, overviews: tuple[int, ...]) -> None:
    path, _ = write_cog(
        tmp_path / "end.tif", shape=(600, 700), blocksize=128, layout="append", overviews=overviews
    )
    with rasterio.open(path, "r+") as ds:  # rewriting the directory moves it to the end
        ds.update_tags(NOTE="x" * 200)
    with tifffile.TiffFile(path) as tf:
        assert min(p.offset for p in tf.pages) > 65536
    with pytest.raises(NeedBytes) as ei:
        parse_header(read_bytes(path, 0, 65536))
    assert ei.value.start > 65536
    fetch = FileFetcher(path)
    hdr = asyncio.run(read_header_async(fetch, str(path)))
    # one extra read for the IFD at the end; an overview IFD it points back to (written
    # before the main IFD moved) can only be found after that read
    assert len(fetch.calls) == (2 if not overviews else 3)
    assert_matches_tifffile(path, hdr)
    assert_matches_rasterio(path, hdr)
    # the caller-driven protocol: fetch what NeedBytes names, pass it as ``extra``
    src = BytesSource(read_bytes(path, 0, 65536))
    for _ in range(3):
        try:
            again = parse_header(src, file_size=path.stat().st_size)
            break
        except NeedBytes as need:
            for s, e in need.ranges:
                src.add(s, read_bytes(path, s, e))
    assert again.levels == hdr.levels


def test_overview_ifds_beyond_prefix(tmp_path: Path) -> None:
    path, _ = write_cog(tmp_path / "ovr.tif", shape=(600, 700), blocksize=128, layout="append")
    fetch = FileFetcher(path)
    hdr = asyncio.run(read_header_async(fetch, str(path)))
    assert len(fetch.calls) == 2 and len(hdr.levels) == 3
    assert_matches_tifffile(path, hdr)


@pytest.mark.parametrize("prefix", [16, 200, 1024, 4096])
def test_tag_arrays_beyond_prefix_one_extra_read(tmp_path: Path, prefix: int) -> None:
    # 1024x1024 with 16x16 tiles: 4096 tiles per level, arrays of 16 KiB each
    path, _ = write_cog(
        tmp_path / "many.tif",
        dtype="uint8",
        shape=(1024, 1024),
        blocksize=16,
        overviews=(2, 4),
        compression="deflate",
    )
    fetch = FileFetcher(path)
    hdr = asyncio.run(read_header_async(fetch, str(path), prefix_size=prefix))
    assert len(fetch.calls) == 2, fetch.calls
    assert_matches_tifffile(path, hdr)
    assert hdr.levels == parse_file(path).levels


def test_tag_arrays_larger_than_prefix_bigtiff(tmp_path: Path) -> None:
    path, _ = write_cog(
        tmp_path / "many.tif",
        dtype="uint8",
        shape=(2048, 2048),
        blocksize=16,
        overviews=(2,),
        compression="zstd",
        bigtiff=True,
        byteorder="big",
    )
    fetch = FileFetcher(path)
    hdr = asyncio.run(read_header_async(fetch, str(path), prefix_size=16384))
    assert len(fetch.calls) == 2
    assert len(hdr.levels[0].tile_offsets) == 128 * 128
    assert_matches_tifffile(path, hdr)


def test_small_file_read_whole_in_prefix(tmp_path: Path) -> None:
    path, _ = write_cog(tmp_path / "s.tif", shape=(64, 64), blocksize=64, overviews=())
    fetch = FileFetcher(path)
    hdr = asyncio.run(read_header_async(fetch, "u"))
    assert len(fetch.calls) == 1 and hdr.file_size == path.stat().st_size


def test_garbage_raises_data_format_error() -> None:
    with pytest.raises(DataFormatError) as ei:
        parse_header(b"<html><body>403 Forbidden</body></html>", url="https://x/a.tif")
    assert ei.value.url == "https://x/a.tif" and ei.value.offset == 0
    assert "https://x/a.tif" in str(ei.value)
    # a TIFF header whose first IFD points into nonsense
    bad = b"II*\x00" + struct.pack("<I", 16) + b"\x00" * 8 + b"\xff\xff" + b"\x00" * 64
    with pytest.raises(DataFormatError) as ei:
        parse_header(bad, url="u", file_size=len(bad))
    assert ei.value.offset == 16
    # IFD offset beyond the end of the file
    bad = b"II*\x00" + struct.pack("<I", 10_000) + b"\x00" * 8
    with pytest.raises(DataFormatError) as ei:
        parse_header(bad, url="u", file_size=len(bad))
    assert ei.value.offset == 10_000


def test_truncated_file_async_raises(tmp_path: Path) -> None:
    path, _ = write_cog(tmp_path / "t.tif", shape=(600, 700), blocksize=128, layout="append")
    data = read_bytes(path, 0, 70000)  # overview IFDs are cut off

    async def fetch(start: int, end: int) -> bytes:
        return data[start:end]

    with pytest.raises(DataFormatError):
        asyncio.run(read_header_async(fetch, "cut.tif", prefix_size=65536))


@pytest.mark.parametrize("tag_type", [7, 1])
def test_jpeg_tables_undefined_or_byte_type(tmp_path: Path, tag_type: int) -> None:
    path, _ = write_cog(
        tmp_path / "j.tif",
        dtype="uint8",
        shape=(128, 128),
        blocksize=64,
        compression="jpeg",
        overviews=(),
    )
    buf = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tf:
        tag = tf.pages[0].tags[347]
        assert tag.dtype == 7  # GDAL writes UNDEFINED
        tables, tag_offset = tag.value, tag.offset
    struct.pack_into("<H", buf, tag_offset + 2, tag_type)
    hdr = parse_header(bytes(buf))
    assert hdr.levels[0].jpeg_tables == tables
    assert isinstance(hdr.levels[0].jpeg_tables, bytes)


@pytest.mark.parametrize(
    ("tag", "value", "message"),
    [
        (259, 9999, "compression 9999 is not supported"),
        (317, 7, "predictor 7 is not supported"),
        (317, 3, r"floating-point Predictor \(3\) with 16-bit SampleFormat 1"),
    ],
)
def test_undecodable_layout_refused_at_parse(
    tmp_path: Path, tag: int, value: int, message: str
) -> None:
    """What no read could decode fails the header (a build records it per row); GDAL
    refuses to read these files too."""
    path, _ = write_cog(tmp_path / "u.tif", shape=(64, 64), blocksize=64, predictor=2)
    patch_tag(path, tag, value)
    with pytest.raises(rasterio.errors.RasterioIOError), rasterio.open(path) as ds:
        ds.read()  # GDAL fails at open (a missing codec) or at read (the predictor)
    with pytest.raises(RasterUnsupportedError, match=message) as ei:
        parse_header(path.read_bytes(), url="https://x/u.tif")
    (ifd,) = struct.unpack_from("<I", path.read_bytes(), 4)
    assert f"IFD at {ifd}:" in str(ei.value) and "https://x/u.tif" in str(ei.value)


def test_unread_page_may_use_any_codec(tmp_path: Path) -> None:
    """Only the levels tessellum reads are checked: a second full-resolution page (not
    part of the pyramid) with a codec tessellum lacks does not fail the file."""
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(np.ones((32, 32), np.uint16), tile=(16, 16), compression="deflate")
        tw.write(np.ones((32, 32), np.uint16), tile=(16, 16), compression="deflate")
    buf = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tf:
        struct.pack_into("<H", buf, tf.pages[1].tags[259].offset + 8, 9999)
    hdr = parse_header(bytes(buf), url="p")
    assert len(hdr.levels) == 1 and hdr.levels[0].compression in (8, 32946)


@pytest.mark.parametrize(
    ("scale", "problem"), [((0.0, 0.0, 0.0), "degenerate"), ((np.nan, np.nan, 0.0), "not finite")]
)
def test_degenerate_or_nan_transform_refused(tmp_path: Path, scale: tuple, problem: str) -> None:
    path, _ = write_cog(tmp_path / "g.tif", shape=(64, 64), blocksize=64)
    buf = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tf:
        struct.pack_into("<3d", buf, tf.pages[0].tags[33550].valueoffset, *scale)
    with pytest.raises(DataFormatError, match=f"geotransform .* is {problem}") as ei:
        parse_header(bytes(buf), url="https://x/g.tif")
    assert ei.value.url == "https://x/g.tif"
    assert ei.value.offset == struct.unpack_from("<I", buf, 4)[0]  # the first IFD
    assert "https://x/g.tif" in str(ei.value)


GEO_TAGS = [
    (33550, 12, 3, [10.0, 10.0, 0.0], True),
    (33922, 12, 6, [0, 0, 0, 500000, 4650000, 0], True),
]
GEOKEYS = [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32612]


@pytest.mark.parametrize("text", ["abc", "1.5abc", " 2.5 ", "1,5", "nan", "-INF", "1e400", "+-1"])
def test_scale_and_offset_read_as_gdal(tmp_path: Path, text: str) -> None:
    """GDAL reads SCALE/OFFSET items with CPLAtofM: a prefix number, 0 when none."""
    xml = (
        f'<GDALMetadata><Item name="SCALE" sample="0" role="scale">{text}</Item>'
        f'<Item name="OFFSET" sample="0" role="offset">{text}</Item></GDALMetadata>'
    )
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, np.ones((8, 8), np.uint16), extratags=[(42112, 2, 0, xml, True)])
    hdr = parse_header(path.read_bytes(), url="s")
    with rasterio.open(path) as ds:
        np.testing.assert_equal((hdr.scale(0), hdr.offset(0)), (ds.scales[0], ds.offsets[0]))


def test_header_values_gdal_accepts(tmp_path: Path) -> None:
    """Values beyond the usual ranges that GDAL opens: RasterType 300 (Area, as GDAL),
    a metadata item of sample 3e9 or "abc" (GDAL's atoi: ignored / sample 0)."""
    keys = list(GEOKEYS)
    keys[11] = 300
    xml = (
        '<GDALMetadata><Item name="X" sample="3000000000">1</Item>'
        '<Item name="Y" sample="abc">2</Item></GDALMetadata>'
    )
    path = tmp_path / "v.tif"
    tags = [*GEO_TAGS, (34735, 3, len(keys), keys, True), (42112, 2, 0, xml, True)]
    tifffile.imwrite(path, np.ones((64, 64), np.uint16), extratags=tags)
    hdr = parse_header(path.read_bytes(), url="v")
    with rasterio.open(path) as ds:
        assert ds.tags()["AREA_OR_POINT"] == "Area" and hdr.geo.raster_type == 1
        assert hdr.geo.transform == ds.transform.to_gdal()
        assert ds.tags(1) == {"Y": "2"}
    assert hdr.geo.geokeys[1025] == 300  # the value written stays in geokeys
    assert hdr.gdal_metadata["bands"] == {0: {"Y": "2"}}


def test_object_size_bounds_a_corrupt_tag_count(tmp_path: Path) -> None:
    """A TileByteCounts count of 2**30 (4 GiB): with the object's size from the prefix
    response it fails at once; without it, the follow-up read is capped."""
    path, _ = write_cog(tmp_path / "c.tif", shape=(512, 512), blocksize=256, overviews=())
    with open(path, "ab") as f:
        f.truncate(64 * 2**20)  # a large object: the prefix is not the whole file
    with tifffile.TiffFile(path) as tf:
        pos = tf.pages[0].tags[325].offset
    with open(path, "r+b") as f:
        f.seek(pos + 4)
        f.write(struct.pack("<I", 2**30))
    size = path.stat().st_size
    fetch = FileFetcher(path)
    with pytest.raises(DataFormatError, match="beyond the end of file") as ei:
        asyncio.run(read_header_async(fetch, "https://x/c.tif", object_size=lambda: size))
    assert fetch.calls == [(0, 65536)] and "https://x/c.tif" in str(ei.value)
    fetch = FileFetcher(path)
    with pytest.raises(DataFormatError, match="over the 16777216-byte limit"):
        asyncio.run(read_header_async(fetch, "c"))
    assert fetch.calls == [(0, 65536)]
