"""Decode every tile of every level and compare with GDAL's (rasterio's) reads."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import tifffile
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).parent))
from _cogfactory import make_array, patch_tag, read_bytes, write_cog
from tessellum.errors import DataFormatError, RasterUnsupportedError
from tessellum.tiff import ImageLevel, TiffHeader, parse_header
from tessellum.tiff.decode import decode_tile, supported_compressions

SHAPE = (300, 340)
BS = 128

CASES: dict[str, dict] = {
    "none-uint8": dict(dtype="uint8", compression=None),
    "none-int8": dict(dtype="int8", compression=None),
    "deflate-uint16-p2": dict(dtype="uint16", compression="deflate", predictor=2),
    "deflate-int16-p2-big": dict(
        dtype="int16", compression="deflate", predictor=2, byteorder="big"
    ),
    "deflate-uint32": dict(dtype="uint32", compression="deflate"),
    "deflate-int32-p2-bigtiff": dict(
        dtype="int32", compression="deflate", predictor=2, bigtiff=True
    ),
    "deflate-int64-p2": dict(dtype="int64", compression="deflate", predictor=2),
    "deflate-uint64-big": dict(dtype="uint64", compression="deflate", byteorder="big"),
    "deflate-float32-p3": dict(dtype="float32", compression="deflate", predictor=3),
    "deflate-float32-p3-big": dict(
        dtype="float32", compression="deflate", predictor=3, byteorder="big"
    ),
    "deflate-float64-p3-big-bigtiff": dict(
        dtype="float64", compression="deflate", predictor=3, byteorder="big", bigtiff=True
    ),
    "lzw-uint16-p2": dict(dtype="uint16", compression="lzw", predictor=2),
    "lzw-int16-big": dict(dtype="int16", compression="lzw", byteorder="big"),
    "lzw-float32-p3": dict(dtype="float32", compression="lzw", predictor=3),
    "packbits-uint8": dict(dtype="uint8", compression="packbits"),
    "lzma-int32": dict(dtype="int32", compression="lzma", predictor=2),
    "zstd-uint16-p2": dict(dtype="uint16", compression="zstd", predictor=2),
    "zstd-float64-p3": dict(dtype="float64", compression="zstd", predictor=3),
    "zstd-int8-p2-big": dict(dtype="int8", compression="zstd", predictor=2, byteorder="big"),
    "lerc-float32": dict(dtype="float32", compression="lerc"),
    "lerc-uint16": dict(dtype="uint16", compression="lerc"),
    "lerc_deflate-float32-nan": dict(
        dtype="float32", compression="lerc_deflate", nodata=float("nan")
    ),
    "lerc_zstd-int16-3band": dict(dtype="int16", compression="lerc_zstd", count=3),
    # big-endian files: libtiff LERC-encodes byte-swapped samples
    "lerc-uint16-big": dict(dtype="uint16", compression="lerc", byteorder="big"),
    "lerc_deflate-float64-big": dict(dtype="float64", compression="lerc_deflate", byteorder="big"),
    "lerc_zstd-int32-3band-big": dict(
        dtype="int32", compression="lerc_zstd", count=3, byteorder="big"
    ),
    "none-uint16-big": dict(dtype="uint16", compression=None, byteorder="big"),
    "none-float32-p3": dict(dtype="float32", compression=None, predictor=3),
    "nbits1": dict(dtype="uint8", compression="deflate", nbits=1),
    "nbits2": dict(dtype="uint8", compression=None, nbits=2),
    "nbits4": dict(dtype="uint8", compression="lzw", nbits=4),
    "nbits12": dict(dtype="uint16", compression="deflate", nbits=12),
    "nbits12-big": dict(dtype="uint16", compression=None, nbits=12, byteorder="big"),
    "nbits12-3band": dict(dtype="uint16", compression="zstd", nbits=12, count=3),
    "pixel-3band-p2": dict(dtype="uint16", compression="deflate", predictor=2, count=3),
    "band-3band-p2": dict(
        dtype="uint16", compression="deflate", predictor=2, count=3, interleave="band"
    ),
    "band-4band-float-p3-big": dict(
        dtype="float32",
        compression="zstd",
        predictor=3,
        count=4,
        interleave="band",
        byteorder="big",
    ),
    "stripped-uint16-p2": dict(
        dtype="uint16", compression="deflate", predictor=2, stripped=True, blocksize=64
    ),
    "stripped-uint8-none": dict(dtype="uint8", compression=None, stripped=True, blocksize=7),
    "stripped-float32-big": dict(
        dtype="float32",
        compression="lzw",
        predictor=3,
        stripped=True,
        blocksize=33,
        byteorder="big",
    ),
    "sparse-nodata": dict(dtype="int16", compression="deflate", sparse=True, nodata=-999),
    "sparse-no-nodata": dict(dtype="uint16", compression="zstd", sparse=True),
    "mask": dict(dtype="uint16", compression="deflate", mask=True),
    "mask-3band": dict(dtype="uint8", compression="deflate", mask=True, count=3),
    "append-layout": dict(dtype="uint16", compression="deflate", predictor=2, layout="append"),
    "cog-driver": dict(dtype="uint16", compression="deflate", predictor=2, driver="COG"),
    "cog-driver-bigtiff": dict(
        dtype="float32", compression="zstd", predictor=3, driver="COG", bigtiff=True
    ),
    "pixel-is-point": dict(dtype="float32", compression="deflate", pixel_is_point=True),
    "no-overviews": dict(dtype="uint16", compression="deflate", overviews=()),
}
LOSSY: dict[str, dict] = {
    "jpeg-gray": dict(dtype="uint8", compression="jpeg"),
    "jpeg-rgb": dict(dtype="uint8", compression="jpeg", count=3, photometric="rgb"),
    "jpeg-4band": dict(dtype="uint8", compression="jpeg", count=4),
    "jpeg-band-interleave": dict(dtype="uint8", compression="jpeg", count=3, interleave="band"),
    "webp-rgb": dict(dtype="uint8", compression="webp", count=3),
    "webp-rgba": dict(dtype="uint8", compression="webp", count=4),
    "webp-lossless": dict(
        dtype="uint8", compression="webp", count=3, creation_options={"WEBP_LOSSLESS": "TRUE"}
    ),
}


def decode_level(
    path: Path, hdr: TiffHeader, level: ImageLevel, row: int, col: int, plane: int = 0
) -> np.ndarray:
    off, count = level.tile_range(row, col, plane)
    data = read_bytes(path, off, off + count) if count else None
    return decode_tile(
        level,
        data,
        byte_order=hdr.byte_order,
        plane=plane,
        nodata=hdr.nodata_value(level.dtype),
        url=str(path),
        offset=off,
    )


def compare_all_tiles(path: Path, tol: int = 0) -> int:
    """Decode every tile of every level/mask and compare with rasterio; return tile count."""
    hdr = parse_header(read_bytes(path, 0, 1 << 20), url=str(path))
    n = 0
    for li, level in enumerate(hdr.levels):
        with rasterio.open(path, overview_level=li - 1) if li else rasterio.open(path) as ds:
            assert (ds.height, ds.width) == (level.height, level.width)
            for plane in range(level.planes):
                for r in range(level.tiles_down):
                    for c in range(level.tiles_across):
                        tile = decode_level(path, hdr, level, r, c, plane)
                        assert tile.shape == level.tile_shape()
                        assert tile.dtype == np.dtype(level.dtype)
                        assert tile.flags.writeable and tile.dtype.isnative
                        win = Window(
                            c * level.tile_width,
                            r * level.tile_height,
                            level.tile_width,
                            level.tile_height,
                        )
                        win = win.intersection(Window(0, 0, level.width, level.height))
                        hh, ww = int(win.height), int(win.width)
                        bands = [plane + 1] if level.planes > 1 else list(range(1, ds.count + 1))
                        ref = np.moveaxis(ds.read(bands, window=win), 0, -1)
                        got = tile[:hh, :ww]
                        if tol:
                            diff = np.abs(got.astype(np.int32) - ref.astype(np.int32))
                            assert diff.max() <= tol, (li, r, c, diff.max())
                        else:
                            np.testing.assert_array_equal(
                                got, ref, err_msg=f"level {li} tile {r},{c}"
                            )
                        n += 1
    for li, level in enumerate(hdr.mask_levels):
        with rasterio.open(path, overview_level=li - 1) if li else rasterio.open(path) as ds:
            for r in range(level.tiles_down):
                for c in range(level.tiles_across):
                    tile = decode_level(path, hdr, level, r, c)
                    win = Window(
                        c * level.tile_width,
                        r * level.tile_height,
                        level.tile_width,
                        level.tile_height,
                    )
                    win = win.intersection(Window(0, 0, level.width, level.height))
                    ref = ds.read_masks(1, window=win)
                    np.testing.assert_array_equal(tile[: ref.shape[0], : ref.shape[1], 0], ref)
                    n += 1
    return n


@pytest.mark.parametrize("name", list(CASES))
def test_lossless_tiles_equal_gdal(tmp_path: Path, name: str) -> None:
    kw = {"shape": SHAPE, "blocksize": BS, **CASES[name]}
    path, _ = write_cog(tmp_path / f"{name}.tif", **kw)
    assert compare_all_tiles(path) > 0


@pytest.mark.parametrize("name", list(LOSSY))
def test_lossy_tiles_match_gdal(tmp_path: Path, name: str) -> None:
    # imagecodecs and GDAL link different libjpeg(-turbo)/libwebp builds: allow 1 DN
    kw = {"shape": SHAPE, "blocksize": BS, **LOSSY[name]}
    path, _ = write_cog(tmp_path / f"{name}.tif", **kw)
    assert compare_all_tiles(path, tol=1) > 0


@pytest.mark.parametrize("codec", ["lerc", "lerc_zstd"])
def test_lerc_multiband_with_nans_equals_gdal(tmp_path: Path, codec: str) -> None:
    """NaNs in some samples of a pixel-interleaved LERC file: libtiff encodes each tile as
    one single-value band per sample (each with its own mask), (spp, h, w) decoded."""
    data = make_array("float32", SHAPE, 3)
    data[0, 10:40, 5:90] = np.nan  # differing per-sample masks
    data[2, ::7, ::5] = np.nan
    path, _ = write_cog(
        tmp_path / "lerc.tif", dtype="float32", shape=SHAPE, blocksize=BS, count=3,
        compression=codec, data=data,
    )  # fmt: skip
    assert compare_all_tiles(path) > 0


@pytest.mark.parametrize("count", [2, 4])
@pytest.mark.parametrize("codec", ["lerc", "lerc_deflate"])
def test_lerc_alpha_stored_as_the_blob_mask_equals_gdal(
    tmp_path: Path, codec: str, count: int
) -> None:
    """A Byte file's unassociated alpha of only 0 and 255 is kept by libtiff as the
    LERC blob's mask (nDim = samples - 1), not as a sample: decoded back to 0/255."""
    data = make_array("uint8", SHAPE, count)
    alpha = np.full(SHAPE, 255, np.uint8)
    alpha[40:200, 30:150] = 0
    data[-1] = alpha
    path, _ = write_cog(
        tmp_path / "rgba.tif", dtype="uint8", shape=SHAPE, blocksize=BS, count=count,
        compression=codec, data=data, creation_options={"ALPHA": "YES"},
    )  # fmt: skip
    hdr = parse_header(read_bytes(path, 0, 1 << 20))
    assert hdr.levels[0].extra_samples[-1] == 2
    assert compare_all_tiles(path) > 0


def smooth_rgb(shape: tuple[int, int]) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    r = 128 + 100 * np.sin(xx / 23.0) * np.cos(yy / 31.0)
    g = 128 + 90 * np.cos(xx / 17.0 + yy / 41.0)
    b = 128 + 80 * np.sin((xx + yy) / 29.0)
    return np.stack([r, g, b]).round().astype(np.uint8)


@pytest.mark.parametrize("driver", ["GTiff", "COG"])
def test_jpeg_ycbcr_matches_gdal(tmp_path: Path, driver: str) -> None:
    """YCbCr JPEG: exactly tifffile's decode; close to GDAL's.

    libtiff (GDAL) upsamples chroma per 2x2 block, libjpeg-turbo in imagecodecs uses its
    "fancy" (triangle) filter, which imagecodecs does not let us switch off: on a smooth
    image the two differ by < 0.5 DN on average, at most ~10 DN at chroma edges.
    """
    kw = dict(
        dtype="uint8",
        compression="jpeg",
        count=3,
        shape=SHAPE,
        blocksize=BS,
        data=smooth_rgb(SHAPE),
        driver=driver,
    )
    if driver == "GTiff":
        kw["photometric"] = "ycbcr"
    path, _ = write_cog(tmp_path / "ycbcr.tif", **kw)
    hdr = parse_header(read_bytes(path, 0, 65536))
    assert hdr.levels[0].photometric == 6 and hdr.levels[0].jpeg_tables
    level = hdr.levels[0]
    full = np.zeros((level.tiles_down * BS, level.tiles_across * BS, 3), np.uint8)
    for r in range(level.tiles_down):
        for c in range(level.tiles_across):
            full[r * BS : (r + 1) * BS, c * BS : (c + 1) * BS] = decode_level(
                path, hdr, level, r, c
            )
    with rasterio.open(path) as ds:
        gdal = np.moveaxis(ds.read(), 0, -1)
    diff = np.abs(full[: SHAPE[0], : SHAPE[1]].astype(np.int16) - gdal)
    assert diff.mean() < 1.0 and diff.max() <= 12
    with tifffile.TiffFile(path) as tf:
        ref = tf.pages[0].asarray()
    tile = decode_level(path, hdr, level, 1, 1)
    np.testing.assert_array_equal(tile, ref[BS : 2 * BS, BS : 2 * BS])


def test_sparse_tiles_are_nodata(tmp_path: Path) -> None:
    path, _ = write_cog(
        tmp_path / "s.tif",
        dtype="int16",
        shape=SHAPE,
        blocksize=BS,
        sparse=True,
        nodata=-999,
        compression="deflate",
    )
    hdr = parse_header(read_bytes(path, 0, 65536))
    level = hdr.levels[0]
    assert level.tile_range(0, 0) == (0, 0)
    tile = decode_level(path, hdr, level, 0, 0)
    assert tile.shape == (BS, BS, 1) and (tile == -999).all()
    tile = decode_tile(level, b"", nodata=None)
    assert (tile == 0).all()


def test_jpegxl_tiles_equal_tifffile(tmp_path: Path) -> None:
    if 50002 not in supported_compressions():
        pytest.skip("imagecodecs built without JPEG-XL")
    data = np.random.default_rng(1).integers(0, 255, (200, 260, 3), dtype=np.uint8)
    path = tmp_path / "jxl.tif"
    tifffile.imwrite(
        path,
        data,
        tile=(128, 128),
        compression="jpegxl",
        compressionargs={"lossless": True},
        photometric="rgb",
    )
    hdr = parse_header(read_bytes(path, 0, 65536))
    level = hdr.levels[0]
    assert level.compression in (50002, 52546)
    for r in range(level.tiles_down):
        for c in range(level.tiles_across):
            tile = decode_level(path, hdr, level, r, c)
            ref = data[r * 128 : (r + 1) * 128, c * 128 : (c + 1) * 128]
            np.testing.assert_array_equal(tile[: ref.shape[0], : ref.shape[1]], ref)


def test_corrupt_tile_raises_with_url_and_offset(tmp_path: Path) -> None:
    path, _ = write_cog(tmp_path / "c.tif", shape=SHAPE, blocksize=BS, compression="deflate")
    hdr = parse_header(read_bytes(path, 0, 65536), url="s3://b/c.tif")
    level = hdr.levels[0]
    off, count = level.tile_range(1, 1)
    bad = b"\x00garbage" * (count // 8 + 1)
    with pytest.raises(DataFormatError) as ei:
        decode_tile(level, bad, url="s3://b/c.tif", offset=off)
    assert ei.value.url == "s3://b/c.tif" and ei.value.offset == off
    assert "s3://b/c.tif" in str(ei.value)
    # a truncated tile is corrupt too
    good = read_bytes(path, off, off + count)
    with pytest.raises(DataFormatError):
        decode_tile(level, good[: count // 2], url="u", offset=off)


@pytest.mark.parametrize("compression", [None, "packbits"])
@pytest.mark.parametrize("predictor", [2, 3, 7])
def test_predictor_ignored_where_libtiff_ignores_it(
    tmp_path: Path, compression: str | None, predictor: int
) -> None:
    """libtiff undoes a Predictor only for LZW/Deflate/LZMA/ZSTD: GDAL reads an
    uncompressed or PackBits file tagged with any predictor as plain samples."""
    path = tmp_path / "p.tif"
    data = (np.arange(96 * 80, dtype=np.uint16).reshape(96, 80) * 7) % 5003
    # tifffile writes no Predictor without a codec: write a spare SHORT tag, renumber it
    tifffile.imwrite(
        path, data, tile=(32, 32), compression=compression, extratags=[(316, 3, 1, 1, True)]
    )
    patch_tag(path, 316, predictor, new_tag=317)
    hdr = parse_header(path.read_bytes(), url=str(path))
    assert hdr.levels[0].predictor == predictor
    assert compare_all_tiles(path) == 9  # every tile equals GDAL's


def test_float_predictor_on_integers_refused_like_gdal(tmp_path: Path) -> None:
    path, _ = write_cog(tmp_path / "p3.tif", shape=(64, 64), blocksize=64, predictor=2)
    patch_tag(path, 317, 3)
    with rasterio.open(path) as ds, pytest.raises(rasterio.errors.RasterioIOError):
        ds.read()  # libtiff: Floating point "Predictor" not supported with 1 data format
    with pytest.raises(RasterUnsupportedError, match=f"Predictor \\(3\\).*{path}"):
        parse_header(path.read_bytes(), url=str(path))
    # a header that skipped the check (built elsewhere) is refused at decode too
    good, _ = write_cog(tmp_path / "p2.tif", shape=(64, 64), blocksize=64, predictor=2)
    hdr = parse_header(good.read_bytes(), url="s3://b/p.tif")
    level = dataclasses.replace(hdr.levels[0], predictor=3)
    off, count = level.tile_range(0, 0)
    with pytest.raises(RasterUnsupportedError, match=f"offset {off} of s3://b/p.tif"):
        decode_tile(level, read_bytes(good, off, off + count), url="s3://b/p.tif", offset=off)


def test_every_decode_error_names_url_and_offset(tmp_path: Path) -> None:
    path, _ = write_cog(tmp_path / "d.tif", shape=(64, 64), blocksize=64, overviews=())
    hdr = parse_header(path.read_bytes(), url="s3://b/d.tif")
    off, count = hdr.levels[0].tile_range(0, 0)
    data = read_bytes(path, off, off + count)
    # the tile inflates to half the bytes 32-bit samples need
    level = dataclasses.replace(hdr.levels[0], bits_per_sample=(32,), dtype="uint32")
    with pytest.raises(DataFormatError, match="decodes to") as ei:
        decode_tile(level, data, url="s3://b/d.tif", offset=off)
    assert ei.value.url == "s3://b/d.tif" and ei.value.offset == off
    assert f"offset {off} of s3://b/d.tif" in str(ei.value)
    level = dataclasses.replace(hdr.levels[0], compression=9999)
    with pytest.raises(RasterUnsupportedError, match=f"offset {off} of s3://b/d.tif: .*9999"):
        decode_tile(level, data, url="s3://b/d.tif", offset=off)
