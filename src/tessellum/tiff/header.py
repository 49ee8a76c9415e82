"""COG headers as plain data: parse every IFD once from a prefetched prefix."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ..errors import DataFormatError, RasterUnsupportedError
from .gdalmeta import band_item, gdal_atof, parse_gdal_metadata, parse_nodata
from .geokeys import GeoInfo, geo_from_tags
from .ifd import RawIFD, read_ifds
from .source import BytesSource, NeedBytes

__all__ = [
    "MAX_HEADER_BYTES",
    "PREDICTOR_COMPRESSIONS",
    "ImageLevel",
    "TiffHeader",
    "parse_header",
    "predictor_problem",
    "read_header_async",
    "sample_dtype",
]

MAX_HEADER_READS = 4
#: Most bytes a header may span (IFDs and tag arrays): 16 MiB hold the tile index of
#: a million tiles per level; a larger one is a corrupt tag count, not a header.
MAX_HEADER_BYTES = 16 * 2**20
#: Compressions whose decoder undoes a Predictor (LZW, Deflate, LZMA, ZSTD); libtiff, so
#: GDAL, ignores the tag with every other compression.
PREDICTOR_COMPRESSIONS = frozenset({5, 8, 32946, 34925, 50000})
#: LercParameters' additional compression: 0 none, 1 deflate, 2 zstd.
LERC_EXTRA_COMPRESSIONS = frozenset({0, 1, 2})
FILETYPE_REDUCED = 1
FILETYPE_MASK = 4
PHOTOMETRIC_MASK = 4


def sample_dtype(sample_format: int, bits: int) -> str:
    """The numpy dtype name decoded samples have (packed bits unpack to uint8/uint16/...).

    Raises:
        RasterUnsupportedError: no numpy type holds such samples.
    """
    if sample_format in (1, 4):  # unsigned, void
        if bits <= 8:
            return "uint8"
        if bits <= 16:
            return "uint16"
        if bits <= 32:
            return "uint32"
        if bits == 64:
            return "uint64"
    elif sample_format == 2:
        if bits in (8, 16, 32, 64):
            return f"int{bits}"
    elif sample_format == 3:
        if bits in (16, 32, 64):
            return f"float{bits}"
    elif sample_format == 6 and bits in (64, 128):
        return f"complex{bits}"
    raise RasterUnsupportedError(f"unsupported samples: {bits}-bit, SampleFormat {sample_format}")


@dataclass(frozen=True, eq=False, slots=True)
class ImageLevel:
    """One image (IFD) of a TIFF: full resolution, an overview or a mask."""

    width: int
    height: int
    tile_width: int
    """Tile width; the image width for stripped files."""
    tile_height: int
    """Tile height; RowsPerStrip (capped to the height) for stripped files."""
    tiled: bool
    samples_per_pixel: int
    bits_per_sample: tuple[int, ...]
    sample_format: int
    dtype: str
    """numpy dtype of decoded samples ("uint8" for 1/2/4-bit, "uint16" for 12-bit)."""
    compression: int
    predictor: int
    photometric: int
    planar_config: int
    """1 contiguous (pixel-interleaved), 2 separate planes."""
    extra_samples: tuple[int, ...]
    jpeg_tables: bytes | None
    lerc_params: tuple[int, ...] | None
    """LercParameters tag: (version, additional compression 0 none / 1 deflate / 2 zstd)."""
    ycbcr_subsampling: tuple[int, ...] | None
    tile_offsets: np.ndarray
    """uint64, one per tile (per tile and plane for planar files, plane-major)."""
    tile_byte_counts: np.ndarray
    """uint64, aligned with ``tile_offsets``."""
    subfile_type: int = 0
    """NewSubfileType (bit 0 reduced resolution, bit 2 mask)."""

    @property
    def tiles_across(self) -> int:
        """Number of tile columns."""
        return -(-self.width // self.tile_width)

    @property
    def tiles_down(self) -> int:
        """Number of tile rows."""
        return -(-self.height // self.tile_height)

    @property
    def planes(self) -> int:
        """Number of separately stored planes (1 for pixel-interleaved files)."""
        return self.samples_per_pixel if self.planar_config == 2 else 1

    @property
    def is_mask(self) -> bool:
        """True for a transparency mask (NewSubfileType bit 2 or Photometric 4)."""
        return bool(self.subfile_type & FILETYPE_MASK) or self.photometric == PHOTOMETRIC_MASK

    def tile_index(self, row: int, col: int, plane: int = 0) -> int:
        """Index into ``tile_offsets`` of tile ``(row, col)`` of ``plane``."""
        if not (0 <= row < self.tiles_down and 0 <= col < self.tiles_across):
            raise IndexError(f"tile ({row}, {col}) outside {self.tiles_down}x{self.tiles_across}")
        if not 0 <= plane < self.planes:
            raise IndexError(f"plane {plane} outside {self.planes}")
        return (plane * self.tiles_down + row) * self.tiles_across + col

    def tile_range(self, row: int, col: int, plane: int = 0) -> tuple[int, int]:
        """``(offset, byte_count)`` of tile ``(row, col)``; ``(0, 0)`` for a sparse tile."""
        i = self.tile_index(row, col, plane)
        return int(self.tile_offsets[i]), int(self.tile_byte_counts[i])

    def tile_shape(self) -> tuple[int, int, int]:
        """Shape of one decoded tile: ``(tile_height, tile_width, samples per plane)``."""
        samples = 1 if self.planar_config == 2 else self.samples_per_pixel
        return (self.tile_height, self.tile_width, samples)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageLevel):
            return NotImplemented
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray):
                if not np.array_equal(a, b):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class TiffHeader:
    """Everything tessellum needs from a GeoTIFF's header, parsed once."""

    url: str
    byte_order: str
    """``"<"`` little-endian, ``">"`` big-endian."""
    bigtiff: bool
    file_size: int | None
    levels: tuple[ImageLevel, ...]
    """Full resolution first, then overviews by decreasing size."""
    mask_levels: tuple[ImageLevel, ...] = ()
    """Internal masks (full resolution first), possibly empty."""
    geo: GeoInfo = field(default_factory=GeoInfo)
    gdal_metadata: dict[str, Any] = field(default_factory=dict)
    """GDAL_METADATA parsed: ``{"dataset": {...}, "bands": {sample: {...}}}``."""
    nodata_raw: str | None = None
    """The GDAL_NODATA tag, exactly as written."""
    header_bytes_used: int = 0
    """End of the furthest byte the parse needed (a good prefix size for this layout)."""

    @property
    def width(self) -> int:
        """Full-resolution width."""
        return self.levels[0].width

    @property
    def height(self) -> int:
        """Full-resolution height."""
        return self.levels[0].height

    @property
    def count(self) -> int:
        """Number of bands (samples per pixel)."""
        return self.levels[0].samples_per_pixel

    @property
    def dtype(self) -> str:
        """numpy dtype of the full-resolution samples."""
        return self.levels[0].dtype

    def nodata_value(self, dtype: str | np.dtype | None = None) -> np.generic | None:
        """GDAL_NODATA as an exactly typed numpy scalar (None when absent or out of range)."""
        return parse_nodata(self.nodata_raw, dtype or self.dtype)

    def scale(self, band: int = 0) -> float:
        """The band's scale (1.0 when none), read as GDAL reads it (``"abc"`` is 0.0)."""
        value = band_item(self.gdal_metadata, band, "SCALE")
        return gdal_atof(value) if value else 1.0

    def offset(self, band: int = 0) -> float:
        """The band's offset (0.0 when none), read as GDAL reads it."""
        value = band_item(self.gdal_metadata, band, "OFFSET")
        return gdal_atof(value) if value else 0.0


def predictor_problem(level: ImageLevel) -> str | None:
    """Why ``level``'s Predictor cannot be undone, as libtiff rules (None: it can, or
    its compression ignores the tag)."""
    predictor = level.predictor
    if predictor == 1 or level.compression not in PREDICTOR_COMPRESSIONS:
        return None
    bits = level.bits_per_sample[0]
    if predictor == 2:
        if bits in (8, 16, 32, 64):
            return None
        return f"horizontal differencing Predictor (2) with {bits}-bit samples is not supported"
    if predictor == 3:
        if level.sample_format == 3 and bits in (16, 32, 64):
            return None
        return (
            f"floating-point Predictor (3) with {bits}-bit SampleFormat "
            f"{level.sample_format} samples is not supported (floats only)"
        )
    return f"TIFF predictor {predictor} is not supported"


def _decodable_problem(level: ImageLevel) -> str | None:
    """Why no tile of ``level`` can be decoded here (None: they can)."""
    from .decode import supported_compressions  # imagecodecs: loaded on first parse

    comp = level.compression
    if comp not in supported_compressions():
        return f"TIFF compression {comp} is not supported"
    if comp == 34887 and level.lerc_params is not None and len(level.lerc_params) > 1:
        extra = level.lerc_params[1]
        if extra not in LERC_EXTRA_COMPRESSIONS:
            return f"LERC additional compression {extra} is not supported"
    return predictor_problem(level)


def _transform_problem(gt: tuple[float, ...] | None) -> str | None:
    """Why geotransform ``gt`` cannot map pixels to coordinates and back (None: it can)."""
    if gt is None:
        return None
    if not all(math.isfinite(v) for v in gt):
        return f"geotransform {gt} is not finite"
    det = gt[1] * gt[5] - gt[2] * gt[4]
    if det == 0 or not math.isfinite(1.0 / det):
        return f"geotransform {gt} is degenerate (a pixel of zero size)"
    return None


def _level(ifd: RawIFD, url: str) -> ImageLevel:
    t = ifd.tags

    def bad(msg: str) -> DataFormatError:
        return DataFormatError(
            f"IFD at {ifd.offset}: {msg} ({url or 'buffer'})", url=url, offset=ifd.offset
        )

    if 256 not in t or 257 not in t:
        raise bad("ImageWidth/ImageLength missing")
    width, height = ifd.scalar(256), ifd.scalar(257)
    spp = int(ifd.scalar(277, 1))
    bits_arr = t.get(258)
    bits = tuple(int(b) for b in bits_arr) if bits_arr is not None else (1,)
    if len(bits) == 1 and spp > 1:
        bits = bits * spp
    fmt_arr = t.get(339)
    sample_format = int(fmt_arr[0]) if fmt_arr is not None and len(fmt_arr) else 1
    tiled = 322 in t
    if tiled:
        tile_w, tile_h = int(ifd.scalar(322)), int(ifd.scalar(323, 0))
        offsets, counts = t.get(324), t.get(325)
    else:
        tile_w = width
        tile_h = int(min(ifd.scalar(278, 2**32 - 1), height)) or height
        offsets, counts = t.get(273), t.get(279)
    if width <= 0 or height <= 0 or tile_w <= 0 or tile_h <= 0:
        raise bad(f"invalid size {width}x{height}, block {tile_w}x{tile_h}")
    if offsets is None or counts is None:
        raise bad("tile/strip offsets or byte counts missing")
    planar = int(ifd.scalar(284, 1))
    expected = math.ceil(width / tile_w) * math.ceil(height / tile_h) * (spp if planar == 2 else 1)
    if len(offsets) < expected or len(counts) < expected:
        raise bad(f"{len(offsets)} offsets / {len(counts)} byte counts, {expected} expected")
    lerc = t.get(50674)
    ycbcr = t.get(530)
    extra = t.get(338)
    photometric = int(ifd.scalar(262, 1 if spp < 3 else 2))
    try:
        dtype = sample_dtype(sample_format, max(bits))
    except RasterUnsupportedError as exc:
        raise RasterUnsupportedError(f"IFD at {ifd.offset}: {exc} ({url or 'buffer'})") from None
    return ImageLevel(
        width=int(width),
        height=int(height),
        tile_width=tile_w,
        tile_height=tile_h,
        tiled=tiled,
        samples_per_pixel=spp,
        bits_per_sample=bits,
        sample_format=sample_format,
        dtype=dtype,
        compression=int(ifd.scalar(259, 1)),
        predictor=int(ifd.scalar(317, 1)),
        photometric=photometric,
        planar_config=planar,
        extra_samples=tuple(int(v) for v in extra) if extra is not None else (),
        jpeg_tables=t.get(347),
        lerc_params=tuple(int(v) for v in lerc) if lerc is not None else None,
        ycbcr_subsampling=tuple(int(v) for v in ycbcr) if ycbcr is not None else None,
        tile_offsets=np.asarray(offsets[:expected], dtype=np.uint64),
        tile_byte_counts=np.asarray(counts[:expected], dtype=np.uint64),
        subfile_type=int(ifd.scalar(254, 0)),
    )


def _group(
    levels: list[ImageLevel], url: str
) -> tuple[tuple[ImageLevel, ...], tuple[ImageLevel, ...]]:
    images = [lv for lv in levels if not lv.is_mask]
    masks = [lv for lv in levels if lv.is_mask]
    if not images:
        raise RasterUnsupportedError(f"the TIFF holds only masks ({url or 'buffer'})")
    full = next((lv for lv in images if not lv.subfile_type & FILETYPE_REDUCED), images[0])
    # other full-resolution pages (multi-page TIFFs) are not part of the pyramid
    overviews = [
        lv
        for lv in images
        if lv is not full
        and lv.subfile_type & FILETYPE_REDUCED
        and lv.samples_per_pixel == full.samples_per_pixel
        and lv.width <= full.width
    ]
    overviews.sort(key=lambda lv: (-lv.width, -lv.height))
    masks.sort(key=lambda lv: (bool(lv.subfile_type & FILETYPE_REDUCED), -lv.width, -lv.height))
    return (full, *overviews), tuple(masks)


def parse_header(
    buf: bytes | bytearray | memoryview | BytesSource,
    *,
    url: str = "",
    file_size: int | None = None,
    extra: Mapping[int, bytes | memoryview] | None = None,
) -> TiffHeader:
    """Parse a TIFF/BigTIFF header (every IFD) from bytes already in memory.

    Args:
        buf: the file's first bytes (a prefix), or a :class:`BytesSource` holding more.
        url: named in errors and kept in the header.
        file_size: total file size when known (bounds checks, clamped requests).
        extra: more bytes as ``{start: bytes}``, e.g. what a :class:`NeedBytes` asked for.

    Raises:
        NeedBytes: IFDs or tag arrays lie outside the bytes given; fetch
            ``[e.start, e.end)`` (or ``e.ranges``) and call again with them in ``extra``.
        DataFormatError: the bytes are not a valid TIFF, or its geotransform is
            degenerate or not finite.
        RasterUnsupportedError: a valid TIFF tessellum cannot represent or decode (an
            unsupported compression, or a Predictor libtiff would refuse).
    """
    if isinstance(buf, BytesSource):
        src = buf
        for start, data in (extra or {}).items():
            src.add(start, data)
    else:
        src = BytesSource(buf, extra)
    layout = read_ifds(src, url=url, file_size=file_size)
    if not layout.ifds:
        raise DataFormatError(f"no IFD in {url or 'buffer'}", url=url, offset=0)
    parsed = [(ifd, _level(ifd, url)) for ifd in layout.ifds]
    levels, masks = _group([lv for _, lv in parsed], url)
    # only the levels read are checked: another page of a multi-page TIFF may use any codec
    used = {id(lv) for lv in (*levels, *masks)}
    for ifd, lv in parsed:
        if id(lv) in used and (problem := _decodable_problem(lv)) is not None:
            raise RasterUnsupportedError(f"IFD at {ifd.offset}: {problem} ({url or 'buffer'})")
    first = next(ifd for ifd in layout.ifds if not ifd.sub_ifd)
    tags = first.tags
    geo = geo_from_tags(tags)
    if (problem := _transform_problem(geo.transform)) is not None:
        raise DataFormatError(
            f"IFD at {first.offset}: {problem} ({url or 'buffer'})", url=url, offset=first.offset
        )
    meta_xml = tags.get(42112)
    nodata = tags.get(42113)
    return TiffHeader(
        url=url,
        byte_order=layout.byte_order,
        bigtiff=layout.bigtiff,
        file_size=file_size,
        levels=levels,
        mask_levels=masks,
        geo=geo,
        gdal_metadata=parse_gdal_metadata(meta_xml if isinstance(meta_xml, str) else None),
        nodata_raw=nodata if isinstance(nodata, str) else None,
        header_bytes_used=src.max_end,
    )


Fetch = Callable[[int, int], Awaitable[bytes]]


async def read_header_async(
    fetch: Fetch,
    url: str = "",
    *,
    prefix_size: int = 65536,
    object_size: Callable[[], int | None] | None = None,
) -> TiffHeader:
    """Read and parse a header with one speculative prefix read (plus one when needed).

    Args:
        fetch: ``await fetch(start, end)`` returns bytes ``[start, end)``, shorter at EOF.
        url: named in errors and kept in the header.
        prefix_size: bytes read first.
        object_size: called after the prefix read: the object's size when the prefix
            response told it (e.g. its Content-Range), else None. A known size bounds
            every tag array, so a corrupt count fails without reading the object.

    Raises:
        DataFormatError: not a TIFF, truncated, its IFDs need more than a few reads, or
            more than :data:`MAX_HEADER_BYTES` (a corrupt tag count).
    """
    prefix = await fetch(0, prefix_size)
    file_size = len(prefix) if len(prefix) < prefix_size else None
    if file_size is None and object_size is not None:
        file_size = object_size()
    src = BytesSource(prefix)
    last: tuple[int, int] | None = None
    for _ in range(MAX_HEADER_READS):
        try:
            return parse_header(src, url=url, file_size=file_size)
        except NeedBytes as need:
            if (need.start, need.end) == last or (
                file_size is not None and need.start >= file_size
            ):
                raise DataFormatError(
                    f"truncated TIFF header: bytes [{need.start}, {need.end}) missing ({url})",
                    url=url,
                    offset=need.start,
                ) from None
            wanted = sum(e - s for s, e in need.ranges)
            if wanted > MAX_HEADER_BYTES:
                # never pull a whole object into memory for a bogus tag count
                raise DataFormatError(
                    f"TIFF header needs {wanted} more bytes in [{need.start}, {need.end}), "
                    f"over the {MAX_HEADER_BYTES}-byte limit (a corrupt tag count?) ({url})",
                    url=url,
                    offset=need.start,
                ) from None
            last = (need.start, need.end)
            # nearby ranges were merged by the parser; far-apart ones are read concurrently
            chunks = await asyncio.gather(*(fetch(s, e) for s, e in need.ranges))
            for (s, e), chunk in zip(need.ranges, chunks, strict=True):
                if len(chunk) < e - s and file_size is None:
                    file_size = s + len(chunk)
                src.add(s, chunk)
    raise DataFormatError(
        f"TIFF header needs more than {MAX_HEADER_READS} reads ({url})",
        url=url,
        offset=last[0] if last else None,
    )
