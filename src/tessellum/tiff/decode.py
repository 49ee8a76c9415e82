"""Decode one tile (or strip) of a TIFF image level into a writable numpy array.

imagecodecs does the work and releases the GIL, so a thread pool scales across cores.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import imagecodecs
import numpy as np

from ..errors import DataFormatError, RasterUnsupportedError
from .header import PREDICTOR_COMPRESSIONS, ImageLevel, predictor_problem

__all__ = ["CODECS", "decode_tile", "supported_compressions"]

_NATIVE = "<" if sys.byteorder == "little" else ">"


def _jpegxl_available() -> bool:
    return bool(getattr(getattr(imagecodecs, "JPEGXL", None), "available", False))


#: Byte-stream codecs: compression code -> decode(data, out) where ``out`` is a uint8
#: buffer of the expected size (the codec may return a shorter view of it).
CODECS: dict[int, Callable[..., Any]] = {
    5: imagecodecs.lzw_decode,
    8: imagecodecs.deflate_decode,
    32946: imagecodecs.deflate_decode,
    32773: imagecodecs.packbits_decode,
    34925: imagecodecs.lzma_decode,
    50000: imagecodecs.zstd_decode,
}
_IMAGE_CODECS = {7, 34887, 50001, 50002, 52546}


def supported_compressions() -> set[int]:
    """TIFF compression codes :func:`decode_tile` can decode here."""
    codes = {1, 7, 34887, 50001, *CODECS}
    if _jpegxl_available():
        codes |= {50002, 52546}
    return codes


def _fill_value(dtype: np.dtype, nodata: Any) -> Any:
    if nodata is None:
        return 0
    try:
        return np.asarray(nodata).astype(dtype)
    except (ValueError, OverflowError):
        return 0


def decode_tile(
    level: ImageLevel,
    data: bytes | bytearray | memoryview | None,
    *,
    byte_order: str = "<",
    plane: int = 0,
    nodata: Any = None,
    url: str = "",
    offset: int | None = None,
) -> np.ndarray:
    """Decode one stored tile/strip of ``level`` into a native-endian, writable array.

    Args:
        level: the image level the bytes belong to.
        data: the tile's bytes; None or empty for a sparse tile.
        byte_order: the file's byte order (``TiffHeader.byte_order``).
        plane: the plane, for planar (band-separate) files (used for shape only).
        nodata: fill value for sparse tiles and strip padding (0 when None).
        url: named in errors.
        offset: the tile's file offset, named in errors.

    Returns:
        ``(tile_height, tile_width, samples)`` for pixel-interleaved files,
        ``(tile_height, tile_width, 1)`` for one plane of a planar file. Edge tiles are
        full size (as stored); a short last strip is padded with ``nodata``. 1-bit masks
        are returned as 0/255 like GDAL.

    Raises:
        DataFormatError: the bytes do not decode (names ``url`` and ``offset``).
        RasterUnsupportedError: the compression, predictor or sample layout is not
            supported (the message names ``url`` and ``offset``).
    """
    h, w, spp = level.tile_shape()
    dtype = np.dtype(level.dtype)
    if data is None or len(data) == 0:
        return np.full((h, w, spp), _fill_value(dtype, nodata), dtype=dtype)
    try:
        arr = _decode(level, data, byte_order, (h, w, spp), dtype)
    except RasterUnsupportedError as exc:
        where = f" at offset {offset}" if offset is not None else ""
        raise RasterUnsupportedError(
            f"cannot decode tile{where} of {url or 'buffer'}: {exc}"
        ) from None
    except Exception as exc:  # ours, or imagecodecs' RuntimeError/ValueError subclasses
        where = f" at offset {offset}" if offset is not None else ""
        raise DataFormatError(
            f"cannot decode tile{where} of {url or 'buffer'}: {exc}", url=url, offset=offset
        ) from (None if isinstance(exc, DataFormatError) else exc)
    if arr.shape[0] < h:  # short last strip
        out = np.full((h, w, spp), _fill_value(dtype, nodata), dtype=dtype)
        out[: arr.shape[0]] = arr
        arr = out
    if level.is_mask and level.bits_per_sample[0] == 1:
        np.multiply(arr, 255, out=arr)
    if not arr.flags.writeable:
        arr = arr.copy()
    return arr


def _decode(
    level: ImageLevel, data: Any, byte_order: str, shape: tuple[int, int, int], dtype: np.dtype
) -> np.ndarray:
    comp = level.compression
    if comp in _IMAGE_CODECS:
        return _decode_image(level, data, byte_order, shape, dtype)
    # the header parse refuses these already; a header built elsewhere may not have
    if (problem := predictor_problem(level)) is not None:
        raise RasterUnsupportedError(problem)
    # libtiff (so GDAL) ignores Predictor with uncompressed and PackBits data
    predictor = level.predictor if comp in PREDICTOR_COMPRESSIONS else 1
    h, w, spp = shape
    bits = level.bits_per_sample[0]
    packed = bits not in (8, 16, 32, 64, 128)
    row_bytes = (w * spp * bits + 7) // 8 if packed else w * spp * dtype.itemsize
    nbytes = row_bytes * h
    if comp == 1:
        raw = np.frombuffer(data, np.uint8)[:nbytes]
    else:
        codec = CODECS.get(comp)
        if codec is None:
            raise RasterUnsupportedError(f"TIFF compression {comp} is not supported")
        raw = codec(data, out=np.empty(nbytes, np.uint8))
        raw = np.frombuffer(raw, np.uint8) if not isinstance(raw, np.ndarray) else raw
    rows = min(h, len(raw) // row_bytes)
    if rows < h and not (not level.tiled and rows > 0):
        raise DataFormatError(f"tile decodes to {len(raw)} bytes, {nbytes} expected")
    raw = raw[: rows * row_bytes]
    if packed:  # predictor 1 here: predictor_problem refuses 2 and 3 on packed samples
        out = imagecodecs.packints_decode(raw, dtype, bits, runlen=w * spp)
        return out.reshape(rows, w, spp)
    if predictor == 3:
        # the floating-point predictor's byte shuffle is independent of the file byte order
        arr = raw.view(dtype.newbyteorder("=")).reshape(rows, w, spp)
        return imagecodecs.floatpred_decode(arr, axis=-2)
    if comp == 1:
        raw = raw.copy()  # frombuffer over bytes is read-only
    arr = raw.view(dtype.newbyteorder(byte_order)).reshape(rows, w, spp)
    if byte_order != _NATIVE and dtype.itemsize > 1:
        arr = arr.byteswap().view(dtype.newbyteorder("="))  # swap before un-predicting
    else:
        arr = arr.view(dtype.newbyteorder("="))
    if predictor == 2:
        imagecodecs.delta_decode(arr, axis=-2, out=arr)
    return arr


def _decode_image(
    level: ImageLevel, data: Any, byte_order: str, shape: tuple[int, int, int], dtype: np.dtype
) -> np.ndarray:
    h, w, spp = shape
    comp = level.compression
    if comp == 7:
        colorspace, outcolorspace = _jpeg_colorspace(level)
        arr = imagecodecs.jpeg_decode(
            data,
            tables=level.jpeg_tables,
            colorspace=colorspace,
            outcolorspace=outcolorspace,
            bitspersample=level.bits_per_sample[0],
        )
    elif comp == 50001:
        arr = imagecodecs.webp_decode(data, hasalpha=spp == 4)
    elif comp == 34887:
        arr = _decode_lerc(level, data, dtype, spp, swap=byte_order != _NATIVE)
    elif _jpegxl_available():
        arr = imagecodecs.jpegxl_decode(data)
    else:
        raise RasterUnsupportedError(f"TIFF compression {comp} (JPEG-XL) is not available")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape[1] != w or arr.shape[2] != spp or arr.shape[0] > h:
        raise DataFormatError(f"tile decodes to shape {arr.shape}, {shape} expected")
    if arr.dtype != dtype:
        arr = arr.astype(dtype)
    return arr


def _lerc_depth(blob: Any) -> int:
    """nDim (values per pixel) of the first Lerc2 blob in ``blob``; 1 before version 4."""
    head = bytes(blob[:26])
    if not head.startswith(b"Lerc2 "):
        return 1  # Lerc1, or not LERC at all: lerc_decode names the problem
    version = int.from_bytes(head[6:10], "little", signed=True)
    if version < 4:
        return 1
    return int.from_bytes(head[22:26], "little", signed=True)  # after checksum, rows, cols


def _decode_lerc(
    level: ImageLevel, data: Any, dtype: np.dtype, spp: int, *, swap: bool
) -> np.ndarray:
    """One LERC tile. ``swap``: the file's byte order is not this machine's; libtiff
    byte-swaps samples before encoding them in such files (and after decoding), so the
    blob holds swapped values: swap them back, as GDAL does."""
    extra = level.lerc_params[1] if level.lerc_params and len(level.lerc_params) > 1 else 0
    if extra == 1:
        data = imagecodecs.zlib_decode(data)
    elif extra == 2:
        data = imagecodecs.zstd_decode(data)
    elif extra != 0:  # as GDAL's LERC codec: no other additional compression exists
        raise RasterUnsupportedError(f"LERC additional compression {extra} is not supported")
    arr, mask = imagecodecs.lerc_decode(data, masks=True)
    if swap and arr.dtype.itemsize > 1:
        arr = arr.byteswap()
    if _alpha_in_lerc_mask(level, spp) and _lerc_depth(data) == spp - 1:
        # libtiff keeps a Byte file's trailing alpha sample as the blob's mask (then
        # nDim is spp - 1); it decodes as 255 where the mask is set, else 0
        arr = arr.reshape(*arr.shape[:2], spp - 1)
        alpha = np.full(arr.shape[:2], 255, np.uint8)
        if mask is not None:
            alpha = np.asarray(mask, dtype=bool).reshape(arr.shape[:2]) * np.uint8(255)
        return np.concatenate([arr, alpha[..., None]], axis=-1)
    if mask is not None and dtype.kind == "f":
        # LERC stores NaN as invalid pixels; GDAL restores NaN
        valid = np.asarray(mask, dtype=bool)
        if valid.ndim < arr.ndim:
            valid = valid.reshape(valid.shape + (1,) * (arr.ndim - valid.ndim))
        arr = np.where(valid, arr, np.nan).astype(arr.dtype)
    if spp > 1 and arr.ndim == 3 and _lerc_depth(data) == 1:
        # libtiff stores pixel-interleaved samples as spp one-value bands when their
        # masks differ (NaNs in float data): (spp, h, w), the pixels' samples apart
        arr = np.moveaxis(arr, 0, -1)
    return arr


def _alpha_in_lerc_mask(level: ImageLevel, spp: int) -> bool:
    """Whether libtiff may store the last sample as the LERC mask: pixel-interleaved
    8-bit unsigned samples whose last extra sample is an unassociated alpha."""
    return (
        spp > 1
        and level.planar_config != 2
        and bool(level.extra_samples)
        and level.extra_samples[-1] == 2
        and np.dtype(level.dtype) == np.uint8
    )


def _jpeg_colorspace(level: ImageLevel) -> tuple[Any, Any]:
    """libjpeg colour spaces as GDAL uses them (YCbCr is converted to RGB)."""
    if level.planar_config == 2:
        return None, "GRAYSCALE"
    if level.photometric == 6:
        return "YCBCR", "RGB"
    if level.photometric == 2 and level.samples_per_pixel == 3:
        return "RGB", "RGB"
    return None, None
