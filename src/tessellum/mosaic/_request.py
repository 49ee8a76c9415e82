"""Validating a raster-mode request before any I/O: every error names the bad value."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ProtocolError, RasterUnsupportedError, ValidationError
from ..geo.bbox import BBox, as_bbox
from ..geo.grid import resolution_pair

__all__ = ["RESAMPLING", "RasterRequest", "validate_request"]

RESAMPLING = (
    "nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "mode",
    "min", "max", "med", "q1", "q3",
)  # fmt: skip
"""Resampling methods raster mode accepts (GDAL's warp kernels)."""
CATEGORICAL_RESAMPLING = ("nearest", "mode")
"""Class data is never interpolated: only these pick an existing class."""


@dataclass(frozen=True)
class RasterRequest:
    """A validated ``extract_raster`` call."""

    resolved: Any  # tessellum.catalog.ResolvedDataset
    bbox: BBox
    output_dir: Path
    filename: str
    target_resolution: tuple[float, float] | None
    resampling: str
    time_range: tuple[Any, Any] | None
    target_crs: str | None
    """Output CRS code, ``None`` for the source's native CRS."""
    max_output_pixels: int

    @property
    def path(self) -> Path:
        """Where the GeoTIFF goes."""
        return self.output_dir / self.filename


def _dataset_id(value: Any) -> str:
    if isinstance(value, str):
        ident = value.strip()
        if "," in ident or " " in ident:
            raise ValidationError(f"dataset_id must be exactly one dataset per call, got {value!r}")
        return ident
    if isinstance(value, Sequence):
        raise ValidationError(
            f"raster mode takes exactly one dataset per call, got {len(value)}: {list(value)!r}"
        )
    raise ValidationError(f"dataset_id must be a string 'provider:variable', got {value!r}")


def _resolution(value: Any) -> tuple[float, float] | None:
    return None if value is None else resolution_pair(value, "target_resolution")


def _filename(value: Any, provider: str, variable: str) -> str:
    if value is None:
        return f"{provider}_{variable}.tif"
    name = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(name, str) or not name.strip():
        raise ValidationError(f"filename must be a non-empty file name, got {value!r}")
    if Path(name).name != name or name in (".", ".."):
        raise ValidationError(
            f"filename must be a bare file name (the folder is output_dir), got {value!r}"
        )
    if "\0" in name:
        raise ValidationError(f"filename must not contain NUL characters, got {value!r}")
    if len(os.fsencode(name)) > _NAME_MAX:
        raise ValidationError(
            f"filename is {len(os.fsencode(name))} bytes long, more than the {_NAME_MAX} "
            f"a file name may have: {name[:40]!r}..."
        )
    return name


_NAME_MAX = 255  # bytes in one file name on every common filesystem


def _output_dir(value: Any) -> Path:
    from ._remote import is_url, local_path

    try:
        text = os.fspath(value)
    except TypeError:
        raise ValidationError(f"output_dir must be a path, got {value!r}") from None
    if is_url(text):  # Path("s3://b/x") is the local folder s3:/b/x: refuse it by name
        raise ValidationError(
            f"output_dir {text!r} is a URL; raster mode writes a local GeoTIFF "
            "(write it to a local folder, then copy it to the object store)"
        )
    path = Path(local_path(text)).expanduser()
    if path.exists() and not path.is_dir():
        raise ValidationError(f"output_dir {str(path)!r} exists and is not a directory")
    return path


def validate_request(
    dataset_id: Any,
    bbox: Any,
    output_dir: Any,
    *,
    target_resolution: Any,
    resampling: Any,
    time_range: Any,
    filename: Any,
    target_crs: Any,
    catalog: Any,
    settings: Any,
) -> RasterRequest:
    """Check a request against the catalog and the settings.

    Raises:
        ValidationError: a bad argument (named in the message).
        DatasetNotFoundError: an unknown dataset id.
        RasterUnsupportedError: the dataset or protocol cannot do what is asked.
        ProtocolError: the bbox lies outside the dataset's coverage.
    """
    from ..catalog import default_catalog
    from ..collection.dates import parse_date_range
    from ..geo.crs import crs_to_code, to_crs

    ident = _dataset_id(dataset_id)
    cat = catalog if catalog is not None else default_catalog(settings)
    resolved = cat.resolve(ident, settings)
    entry = resolved.entry
    if not entry.supports_raster:
        raise RasterUnsupportedError(
            f"dataset {ident!r} does not support raster mode (supports_raster = false); "
            "list raster datasets with `tessellum datasets --raster-only`"
        )
    box = as_bbox(bbox, name="bbox")
    if box.crosses_antimeridian:
        raise RasterUnsupportedError(
            f"bbox {box.as_tuple()} crosses the antimeridian; request each side separately"
        )
    if not entry.intersects(box.as_tuple()):
        raise ProtocolError(
            f"bbox {box.as_tuple()} lies outside the coverage of {ident!r} {entry.extent}"
        )
    res = _resolution(target_resolution)
    if not isinstance(resampling, str) or resampling.lower() not in RESAMPLING:
        raise ValidationError(f"resampling must be one of {RESAMPLING}, got {resampling!r}")
    resampling = resampling.lower()
    if entry.is_categorical and resampling not in CATEGORICAL_RESAMPLING:
        raise ValidationError(
            f"{ident!r} is categorical: resampling must be one of {CATEGORICAL_RESAMPLING} "
            f"(classes are never interpolated), got {resampling!r}"
        )
    crs = None
    if target_crs is not None:
        code = crs_to_code(target_crs)  # CRSError (a ValidationError) names a bad value
        crs = None if to_crs(code).equals(to_crs(entry.native_crs)) else code
    rng = parse_date_range(time_range, name="time_range")
    if rng is None and entry.temporal and entry.default_time_range is not None:
        rng = parse_date_range(entry.default_time_range, name="default_time_range")
    time_pair = (rng[0].isoformat(), rng[1].isoformat()) if rng is not None else None
    if entry.protocol == "wcs":
        if res is not None:
            raise RasterUnsupportedError(
                f"{ident!r} is served by WCS: target_resolution is not supported "
                "(the passthrough keeps the server's native grid)"
            )
        if crs is not None:
            raise RasterUnsupportedError(
                f"{ident!r} is served by WCS: target_crs must be its native CRS "
                f"{entry.native_crs} (the passthrough does not reproject), got {target_crs!r}"
            )
    request = RasterRequest(
        resolved=resolved,
        bbox=box,
        output_dir=_output_dir(output_dir),
        filename=_filename(filename, entry.provider, entry.variable),
        target_resolution=res,
        resampling=resampling,
        time_range=time_pair,
        target_crs=crs,
        max_output_pixels=settings.max_output_pixels,
    )
    _precheck_pixels(request)
    return request


def _precheck_pixels(req: RasterRequest) -> None:
    """Reject absurd sizes before any request, from the catalog's native resolution
    (in native CRS units; skipped when reprojecting without a target_resolution)."""
    from ..geo.grid import transform_bounds
    from ._stac import check_pixels

    entry = req.resolved.entry
    if req.target_resolution is None and req.target_crs is not None:
        return
    crs = req.target_crs or entry.native_crs
    rx, ry = req.target_resolution or (entry.native_resolution, entry.native_resolution)
    try:
        b = transform_bounds(req.bbox.as_tuple(), "EPSG:4326", crs)
    except ValidationError:
        return
    # 1 % slack: the exact check on the real grid, after the headers, has the final word
    w = math.floor((b[2] - b[0]) / rx * 0.99)
    h = math.floor((b[3] - b[1]) / ry * 0.99)
    how = (
        f" at target_resolution {req.target_resolution}"
        if req.target_resolution
        else f" (estimated from the catalog's native_resolution {entry.native_resolution:g})"
    )
    check_pixels(w, h, req.max_output_pixels, entry.id, estimate=how)
