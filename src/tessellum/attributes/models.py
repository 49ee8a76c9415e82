"""Request and response models of the attribute (zonal statistics) API.

The same pydantic v2 models are used in-process (:func:`tessellum.attributes.extract`),
by the HTTP service (``POST /api/v1/extract``) and by :class:`tessellum.client.Client`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, Literal, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import ValidationError

__all__ = [
    "MAX_BATCH_GEOMETRIES",
    "AggregationMethod",
    "AttributeRequest",
    "AttributeResponse",
    "AttributeResult",
    "BatchAttributeRequest",
    "BatchAttributeResponse",
    "BoundingBox",
    "GeoJSONGeometry",
    "OutputMode",
    "QualityFlag",
    "TimeRange",
]

MAX_BATCH_GEOMETRIES = 1000
"""Upper bound on geometries in one :class:`BatchAttributeRequest`."""

_RASTER_MODE_HINT = (
    "output='raster' is not served here: the attribute API returns statistics only. "
    "Use the in-process raster mode, tessellum.extract_raster_sync(dataset_id, bbox=..., "
    "output_dir=...) (or `await tessellum.extract_raster(...)`), which writes a GeoTIFF "
    "you own."
)


class AggregationMethod(StrEnum):
    """How pixel values under a geometry become one value (see docs/attributes.md)."""

    mean = "mean"
    median = "median"
    min = "min"
    max = "max"
    std = "std"
    sum = "sum"
    majority = "majority"
    minority = "minority"
    unique = "unique"
    distribution = "distribution"


class QualityFlag(StrEnum):
    """Quality of one result, most severe first: missing, suspect, degraded, partial,
    estimated, good."""

    good = "good"
    suspect = "suspect"
    partial = "partial"
    missing = "missing"
    degraded = "degraded"
    estimated = "estimated"


class OutputMode(StrEnum):
    """``stats`` only; ``raster`` exists to be rejected with a pointer to raster mode."""

    stats = "stats"
    raster = "raster"


class BoundingBox(BaseModel):
    """A lon/lat box (CRS84); ``min_lon > max_lon`` crosses the antimeridian."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_lon: float = Field(ge=-180, le=180)
    min_lat: float = Field(ge=-90, le=90)
    max_lon: float = Field(ge=-180, le=180)
    max_lat: float = Field(ge=-90, le=90)

    @model_validator(mode="after")
    def _order(self) -> BoundingBox:
        if self.min_lat >= self.max_lat:
            raise ValueError("min_lat must be < max_lat")
        if self.min_lon == self.max_lon:
            raise ValueError("min_lon must differ from max_lon")
        return self

    def to_geometry(self) -> Any:
        """The box as a shapely (Multi)Polygon, split at the antimeridian if needed."""
        from shapely.geometry import MultiPolygon, box

        if self.min_lon < self.max_lon:
            return box(self.min_lon, self.min_lat, self.max_lon, self.max_lat)
        return MultiPolygon(
            [
                box(self.min_lon, self.min_lat, 180.0, self.max_lat),
                box(-180.0, self.min_lat, self.max_lon, self.max_lat),
            ]
        )


class TimeRange(BaseModel):
    """An inclusive time range; a date-only ``end`` includes that whole day."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: dt.date | dt.datetime
    end: dt.date | dt.datetime

    @field_validator("start", "end", mode="before")
    @classmethod
    def _no_numbers(cls, value: Any) -> Any:
        # pydantic would read 0 as 1970-01-01: a number is not a date here
        if isinstance(value, int | float):
            raise ValueError("expected an ISO date or date-time string, got a number")
        return value

    @model_validator(mode="after")
    def _order(self) -> TimeRange:
        if _as_datetime(self.start) > _as_datetime(self.end, end=True):
            raise ValueError("time_range.start must be <= time_range.end")
        return self

    def as_tuple(self) -> tuple[str, str]:
        """``(start, end)`` ISO strings, as the collection builders take them."""
        return (self.start.isoformat(), self.end.isoformat())


def _as_datetime(value: dt.date | dt.datetime, *, end: bool = False) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    t = dt.time.max if end else dt.time.min
    return dt.datetime.combine(value, t, tzinfo=dt.UTC)


_GEOM_TYPES = ("Point", "Polygon", "MultiPolygon")


class GeoJSONGeometry(BaseModel):
    """A GeoJSON Point, Polygon or MultiPolygon (coordinates in the request's CRS)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: Literal["Point", "Polygon", "MultiPolygon"]
    coordinates: list[Any]

    @model_validator(mode="after")
    def _parse(self) -> GeoJSONGeometry:
        self.to_shapely()  # raises ValueError on malformed coordinates
        return self

    def to_shapely(self) -> Any:
        """The geometry as a shapely object (made valid when self-intersecting).

        Raises:
            ValueError: the coordinates do not form the declared type.
        """
        import numpy as np
        import shapely
        import shapely.geometry

        try:
            geom = shapely.geometry.shape({"type": self.type, "coordinates": self.coordinates})
            ok = not geom.is_empty and bool(shapely.get_coordinates(geom).size)
            finite = bool(np.isfinite(shapely.get_coordinates(geom)).all())
        except Exception as exc:  # shapely raises several types on bad nesting
            raise ValueError(f"invalid {self.type} coordinates: {exc}") from None
        if not ok or not finite:
            raise ValueError(f"{self.type} is empty or has non-finite coordinates")
        if geom.geom_type != "Point" and not geom.is_valid:
            geom = shapely.make_valid(geom)
            polys = [g for g in getattr(geom, "geoms", [geom]) if g.geom_type.endswith("Polygon")]
            if not polys:
                raise ValueError(f"{self.type} has no area")
            geom = shapely.union_all(polys)
        if geom.geom_type != "Point" and geom.area <= 0:
            raise ValueError(f"{self.type} has no area")
        return geom


def _coerce_geometry(value: Any) -> Any:
    """Shapely objects, GeoJSON Features and 4-tuples become GeoJSON geometries/boxes."""
    if isinstance(value, GeoJSONGeometry | BoundingBox):
        return value
    if hasattr(value, "__geo_interface__") and not isinstance(value, dict):
        value = value.__geo_interface__
    if isinstance(value, dict) and value.get("type") == "Feature":
        value = value.get("geometry")
    if (
        isinstance(value, list | tuple)
        and len(value) == 4
        and all(isinstance(v, int | float) for v in value)
    ):
        return dict(zip(("min_lon", "min_lat", "max_lon", "max_lat"), value, strict=True))
    if isinstance(value, dict) and value.get("type") not in (None, *_GEOM_TYPES):
        raise ValueError(
            f"geometry type {value.get('type')!r} is not supported; use one of {_GEOM_TYPES}"
        )
    return value


class _RequestBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset_ids: list[str] = Field(min_length=1)
    """Catalog dataset ids (``provider:variable``)."""
    time_range: TimeRange | None = None
    """Selects epochs of temporal datasets (default: the dataset's default range)."""
    aggregation: AggregationMethod = AggregationMethod.mean
    """The statistic to compute; computed exactly as asked."""
    output: OutputMode = OutputMode.stats
    """Only ``stats``; ``raster`` is rejected with a pointer to raster mode."""
    point_method: Literal["nearest", "bilinear"] = "nearest"
    """Points take their pixel (``nearest``) or interpolate (``bilinear``, continuous data)."""
    geometry_crs: str | None = None
    """CRS of the geometry coordinates (any pyproj input); default OGC:CRS84 lon/lat."""

    @field_validator("output")
    @classmethod
    def _stats_only(cls, value: OutputMode) -> OutputMode:
        if value == OutputMode.raster:
            raise ValueError(_RASTER_MODE_HINT)
        return value

    @field_validator("dataset_ids")
    @classmethod
    def _unique_ids(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(v.strip() for v in value))

    @field_validator("geometry_crs")
    @classmethod
    def _crs(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from ..errors import CRSError
        from ..geo.crs import to_crs

        try:
            to_crs(value)
        except CRSError as exc:
            raise ValueError(str(exc)) from None
        return value


class AttributeRequest(_RequestBase):
    """One geometry, several datasets, one aggregation."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "geometry": {
                        "type": "Polygon",
                        "coordinates": [[[10.1, 46.7], [10.2, 46.7], [10.2, 46.8],
                                         [10.1, 46.8], [10.1, 46.7]]],
                    },
                    "dataset_ids": ["copernicus_dem:elevation", "esa_worldcover:land_cover"],
                    "aggregation": "majority",
                }
            ]
        },
    )  # fmt: skip

    geometry: GeoJSONGeometry | BoundingBox
    """A GeoJSON Point/Polygon/MultiPolygon, or a lon/lat bounding box."""

    @field_validator("geometry", mode="before")
    @classmethod
    def _geometry(cls, value: Any) -> Any:
        return _coerce_geometry(value)


class BatchAttributeRequest(_RequestBase):
    """Many geometries (at most 1000) against the same datasets; tiles are read once."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "geometries": [
                        {"type": "Point", "coordinates": [10.15, 46.75]},
                        {"min_lon": 10.1, "min_lat": 46.7, "max_lon": 10.2, "max_lat": 46.8},
                    ],
                    "ids": ["hru-1", "hru-2"],
                    "dataset_ids": ["copernicus_dem:elevation"],
                    "aggregation": "mean",
                }
            ]
        },
    )

    geometries: list[GeoJSONGeometry | BoundingBox] = Field(
        min_length=1, max_length=MAX_BATCH_GEOMETRIES
    )
    """The geometries (same forms as :attr:`AttributeRequest.geometry`)."""
    ids: list[str | int] | None = None
    """Optional caller ids, one per geometry, echoed as ``geometry_id``."""

    @field_validator("geometries", mode="before")
    @classmethod
    def _geometries(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [_coerce_geometry(v) for v in value]
        return value

    @model_validator(mode="after")
    def _ids(self) -> BatchAttributeRequest:
        if self.ids is not None and len(self.ids) != len(self.geometries):
            raise ValueError(
                f"ids has {len(self.ids)} entries for {len(self.geometries)} geometries"
            )
        return self


class AttributeResult(BaseModel):
    """One dataset's value over one geometry, with its quality and provenance."""

    dataset_id: str
    variable: str
    value: int | float | list[int | float] | dict[str, float] | None
    """A number; a sorted list (``unique``); class code -> area fraction (``distribution``);
    ``None`` when no valid pixel lies under the geometry."""
    units: str
    aggregation: AggregationMethod
    quality: QualityFlag
    coverage_fraction: float = Field(ge=0, le=1)
    """Valid-data area / geometry area (nodata and out-of-extent area are not valid)."""
    pixel_count: int = Field(ge=0)
    """Valid pixels touched by the geometry (any coverage > 0)."""
    provider: str
    provenance: str
    """What the value was computed from (records, grid, weighting)."""
    valid_range: tuple[float, float] | None = None
    elapsed_ms: float = 0.0
    class_names: dict[str, str] | None = None
    """Class code -> catalog label, for categorical results."""
    license: str = ""
    dataset_version: str = ""
    cached: bool = False
    """True when served from the result cache."""
    qc_notes: list[str] = Field(default_factory=list)
    """Why the quality flag is not ``good``."""


class AttributeResponse(BaseModel):
    """Results of every dataset for one geometry; failures are ``warnings``."""

    request_id: str
    geometry_hash: str
    results: list[AttributeResult]
    warnings: list[str] = Field(default_factory=list)
    elapsed_ms: float = 0.0
    geometry_id: str | int | None = None
    """The caller's id of the geometry (batch requests)."""
    failed_datasets: list[str] = Field(default_factory=list)
    """Datasets that produced no result (timeout, upstream failure); see ``warnings``."""


class BatchAttributeResponse(BaseModel):
    """One :class:`AttributeResponse` per geometry, in request order."""

    request_id: str
    items: list[AttributeResponse]
    warnings: list[str] = Field(default_factory=list)
    elapsed_ms: float = 0.0
    failed_datasets: list[str] = Field(default_factory=list)

    def __repr_args__(self) -> Any:
        # a batch of thousands of items would repr to megabytes (and Python 3.11's
        # asyncio.run formats its main task's result on exit): summarise long batches
        for name, value in super().__repr_args__():
            if name == "items" and len(value) > _REPR_MAX_ITEMS:
                value = _Summary(f"[<{len(value)} AttributeResponse items>]")
            yield name, value


_REPR_MAX_ITEMS = 20


class _Summary(str):
    """A string that reprs as itself (a placeholder in a model's repr)."""

    def __repr__(self) -> str:
        return str(self)


# --- pydantic errors -> tessellum.errors.ValidationError ----------------------------------
_M = TypeVar("_M", bound=BaseModel)


def make_request(model: type[_M], data: dict[str, Any], what: str) -> _M:
    """``model(**data)``, raising :class:`tessellum.errors.ValidationError` instead of
    pydantic's (which is outside the :class:`~tessellum.errors.TessellumError`
    hierarchy); pydantic's error is kept as ``__cause__``.

    Args:
        model: a request model (:class:`AttributeRequest`, :class:`TimeRange`, ...).
        data: its arguments.
        what: what is being built, for the message (``"extract request"``).

    Raises:
        ValidationError: naming every bad field and the value given for it.
    """
    try:
        return model(**data)
    except pydantic.ValidationError as exc:
        raise request_error(exc, data, what) from exc


_GEOMETRY_FORMS = (
    "a GeoJSON Point/Polygon/MultiPolygon (or Feature), a shapely geometry or a "
    "(min_lon, min_lat, max_lon, max_lat) box"
)


def request_error(exc: pydantic.ValidationError, data: Any, what: str) -> ValidationError:
    """A :class:`ValidationError` from pydantic's, one ``field: problem (got value)``
    per bad field (see :func:`error_summary`)."""
    return ValidationError(f"invalid {what}: {error_summary(exc.errors(), data) or exc}")


def error_summary(errors: Sequence[Mapping[str, Any]], data: Any) -> str:
    """pydantic's ``errors()`` as ``field: problem (got value)``, one per bad field.

    A geometry may be GeoJSON or a bounding box; pydantic reports the failure of each
    form ("type: Field required" for a bad box). Only the form the input was written
    in is reported (``data`` is the validated input, to look it up), or a list of
    the accepted forms when it is neither. The service words its 422s the same way.
    """
    problems: dict[str, str] = {}  # field path -> first problem found there
    for err in errors:
        loc = list(err["loc"])
        got = err.get("input")
        form = next((p for p in loc if isinstance(p, str) and "[" in p), None)
        if form is not None:  # one branch of the geometry union
            at = loc.index(form)
            raw = _lookup(data, loc[:at])
            meant = _geometry_form(raw)
            if meant is None:
                field = _path(loc[:at])
                problems.setdefault(field, f"{field}: must be {_GEOMETRY_FORMS}, got {_short(raw)}")
                continue
            if meant not in form:
                continue  # the other form's complaint about input not written as it
            if at + 1 == len(loc):
                got = raw
            loc = loc[:at] + loc[at + 1 :]
        elif loc[-2:-1] in (["start"], ["end"]) and loc[-1] in ("date", "datetime"):
            loc = loc[:-1]  # TimeRange's date | datetime union: one complaint is enough
        field = _path(loc)
        msg = str(err["msg"]).removeprefix("Value error, ")
        problems.setdefault(field, f"{field + ': ' if field else ''}{msg} (got {_short(got)})")
    return "; ".join(problems.values())


def _path(loc: list[Any]) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _lookup(data: Any, loc: list[Any]) -> Any:
    for p in loc:
        try:
            data = data[p]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _geometry_form(raw: Any) -> str | None:
    """Which geometry model ``raw`` was meant as (a name in pydantic's union tag)."""
    try:
        value = _coerce_geometry(raw)
    except ValueError:
        return None
    if isinstance(value, GeoJSONGeometry):
        return "GeoJSONGeometry"
    if isinstance(value, BoundingBox):
        return "BoundingBox"
    if isinstance(value, dict):
        return "GeoJSONGeometry" if "type" in value else "BoundingBox"
    return None


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
