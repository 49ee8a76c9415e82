"""One catalog entry: what a dataset is, where it lives, and how to read it."""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Settings

__all__ = ["DTYPE_RANGES", "DatasetEntry", "Kind", "Protocol", "Signing"]

Protocol = Literal["stac_cog", "wcs"]
Kind = Literal["continuous", "categorical"]
Signing = Literal["planetary_computer"]

# dtype -> inclusive integer range (None: floating point)
DTYPE_RANGES: dict[str, tuple[int, int] | None] = {
    "uint8": (0, 2**8 - 1),
    "int8": (-(2**7), 2**7 - 1),
    "uint16": (0, 2**16 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "uint32": (0, 2**32 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint64": (0, 2**64 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "float16": None,
    "float32": None,
    "float64": None,
}

_SLUG = r"^[a-z][a-z0-9_]*$"
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://\S+$")


class DatasetEntry(BaseModel):
    """A dataset the catalog knows, identified by ``provider:variable``.

    Entries are immutable values validated on construction; endpoints are the
    *catalogued* ones — :meth:`with_overrides` (or ``Catalog.resolve``) applies the
    settings' endpoint overrides at lookup time.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    id: str
    """``provider:variable``, e.g. ``copernicus_dem:elevation``."""
    provider: str = Field(pattern=_SLUG)
    """Provider slug (lower-case, ``[a-z0-9_]``)."""
    provider_name: str = Field(min_length=1)
    """Provider display name."""
    variable: str = Field(pattern=_SLUG)
    """Variable slug, e.g. ``elevation``, ``land_cover``."""
    title: str = Field(min_length=1)
    """Human title of the dataset."""
    description: str = ""
    """A sentence or two on what the data is and its caveats."""
    protocol: Protocol
    """How it is read: ``stac_cog`` (STAC search + COG range reads) or ``wcs``."""

    stac_api: str | None = None
    """STAC API root URL (``stac_cog``)."""
    collections: tuple[str, ...] = ()
    """STAC collection ids searched (``stac_cog``)."""
    asset: str | None = None
    """Asset key of the COG in each STAC item (``stac_cog``)."""
    band_index: int | None = Field(default=None, ge=1)
    """1-based band of the asset holding the variable; ``None``: the asset's only band."""
    band_map: dict[str, int] = Field(default_factory=dict)
    """Band name -> 1-based band index, for multi-band assets."""
    wcs_url: str | None = None
    """WCS endpoint (``wcs``)."""
    coverage_id: str | None = None
    """WCS coverage id (``wcs``)."""

    native_crs: str = Field(min_length=1)
    """CRS of the source pixel grid, e.g. ``EPSG:4326`` (``EPSG:4269`` for 3DEP)."""
    native_resolution: float = Field(gt=0)
    """Source pixel size in native CRS units (degrees for geographic CRSs)."""
    dtype: str
    """Source sample type (numpy name)."""
    nodata: float | int | None = None
    """Nodata value of the source when its headers do not carry one."""
    units: str = ""
    """Physical units of values after scale/offset (``m``, ``class``...)."""
    kind: Kind = "continuous"
    """``categorical`` data is never interpolated and has :attr:`classes`."""
    classes: dict[int, str] = Field(default_factory=dict)
    """Class value -> label (categorical only)."""
    valid_range: tuple[float, float] | None = None
    """Physically plausible (min, max) of values after scale/offset."""
    scale: float = 1.0
    """Multiplier from stored values to :attr:`units`."""
    offset: float = 0.0
    """Offset from stored values to :attr:`units` (after scaling)."""

    license: str = Field(min_length=1)
    """License name / terms, carried on every result."""
    license_url: str | None = None
    """Where the license text lives."""
    citation: str = ""
    """Required attribution / how to cite."""
    homepage: str | None = None
    """Dataset home page (also where to register, when credentials are needed)."""
    signing: Signing | None = None
    """URL signing the asset hrefs need (``planetary_computer``), or none."""
    credentials_env: tuple[str, ...] = ()
    """Environment variables holding credentials the endpoint requires."""
    supports_raster: bool = False
    """Whether raster mode (``extract_raster``) serves this dataset."""
    version: str = Field(min_length=1)
    """Data version; part of downstream cache keys."""
    temporal: bool = False
    """Whether a ``time_range`` selects items (multi-epoch datasets)."""
    default_time_range: tuple[dt.date, dt.date] | None = None
    """Time range used when a temporal dataset is queried without one."""
    extent: tuple[float, float, float, float] = (-180.0, -90.0, 180.0, 90.0)
    """Coarse coverage (min_lon, min_lat, max_lon, max_lat) in CRS84; min_lon > max_lon
    crosses the antimeridian."""

    @model_validator(mode="before")
    @classmethod
    def _split_id(cls, data: Any) -> Any:
        # provider and variable follow from the id (and vice versa) unless both are given
        if not isinstance(data, dict):
            return data
        data = dict(data)
        ident = data.get("id")
        if isinstance(ident, str) and ident.count(":") == 1:
            provider, variable = ident.split(":")
            data.setdefault("provider", provider)
            data.setdefault("variable", variable)
        elif ident is None and "provider" in data and "variable" in data:
            data["id"] = f"{data['provider']}:{data['variable']}"
        return data

    @field_validator("stac_api", "wcs_url", "license_url", "homepage")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not _URL.match(value):
            raise ValueError(f"not a URL: {value!r}")
        return value

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, value: str) -> str:
        if value not in DTYPE_RANGES:
            raise ValueError(f"unknown dtype {value!r}; expected one of {', '.join(DTYPE_RANGES)}")
        return value

    @field_validator("extent")
    @classmethod
    def _extent(cls, value: tuple[float, float, float, float]) -> tuple[float, ...]:
        min_lon, min_lat, max_lon, max_lat = value
        if not (-180 <= min_lon <= 180 and -180 <= max_lon <= 180):
            raise ValueError("longitudes must lie in [-180, 180]")
        if not (-90 <= min_lat <= max_lat <= 90):
            raise ValueError("latitudes must satisfy -90 <= min_lat <= max_lat <= 90")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DatasetEntry:
        if self.id != f"{self.provider}:{self.variable}":
            raise ValueError(
                f"field 'id' must be 'provider:variable' "
                f"({self.provider}:{self.variable}), got {self.id!r}"
            )
        self._check_protocol()
        self._check_values()
        return self

    def _check_protocol(self) -> None:
        required = {
            "stac_cog": ("stac_api", "collections", "asset"),
            "wcs": ("wcs_url", "coverage_id"),
        }[self.protocol]
        for name in required:
            if not getattr(self, name):
                raise ValueError(f"field {name!r} is required when protocol = {self.protocol!r}")

    def _check_values(self) -> None:
        if self.kind == "categorical" and not self.classes:
            raise ValueError("field 'classes' is required when kind = 'categorical'")
        if self.kind == "continuous" and self.classes:
            raise ValueError("field 'classes' is only allowed when kind = 'categorical'")
        bounds = DTYPE_RANGES[self.dtype]
        if (
            bounds is not None
            and self.nodata is not None
            and (
                float(self.nodata) != int(self.nodata)
                or not bounds[0] <= int(self.nodata) <= bounds[1]
            )
        ):
            raise ValueError(f"field 'nodata' = {self.nodata!r} does not fit dtype {self.dtype}")
        if bounds is not None and self.classes:
            bad = [c for c in self.classes if not bounds[0] <= c <= bounds[1]]
            if bad:
                raise ValueError(f"field 'classes' has values outside {self.dtype}: {bad}")
        if self.valid_range is not None and self.valid_range[0] > self.valid_range[1]:
            raise ValueError("field 'valid_range' must be (min, max) with min <= max")
        if self.default_time_range is not None:
            if not self.temporal:
                raise ValueError("field 'default_time_range' needs temporal = true")
            if self.default_time_range[0] > self.default_time_range[1]:
                raise ValueError("field 'default_time_range' must be (start, end), start <= end")
        if any(index < 1 for index in self.band_map.values()):
            raise ValueError("field 'band_map' indices are 1-based")

    # --- derived --------------------------------------------------------------------
    @property
    def is_categorical(self) -> bool:
        """True for class data (never interpolated)."""
        return self.kind == "categorical"

    @property
    def requires_credentials(self) -> bool:
        """True when the endpoint needs credentials from :attr:`credentials_env`."""
        return bool(self.credentials_env)

    @property
    def cache_key(self) -> str:
        """``id@version``: identifies the data downstream caches were built from."""
        return f"{self.id}@{self.version}"

    def intersects(self, bbox: tuple[float, float, float, float]) -> bool:
        """Whether the coarse :attr:`extent` meets a CRS84 ``bbox`` (antimeridian-aware)."""
        return _bbox_intersects(self.extent, bbox)

    def with_overrides(self, settings: Settings) -> DatasetEntry:
        """This entry with its endpoints replaced according to ``settings``.

        The STAC API and WCS URLs are resolved by provider slug, then by original URL,
        then by the settings' global replacement (see :class:`tessellum.config.Settings`).
        """
        stac_api = settings.stac_api_for(self.provider, self.stac_api)
        wcs_url = settings.wcs_url_for(self.provider, self.wcs_url)
        if stac_api == self.stac_api and wcs_url == self.wcs_url:
            return self
        return self.model_copy(update={"stac_api": stac_api, "wcs_url": wcs_url})


def _lon_spans(min_lon: float, max_lon: float) -> list[tuple[float, float]]:
    if min_lon <= max_lon:
        return [(min_lon, max_lon)]
    return [(min_lon, 180.0), (-180.0, max_lon)]  # crosses the antimeridian


def _bbox_intersects(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    if a[1] > b[3] or b[1] > a[3]:
        return False
    return any(
        lo1 <= hi2 and lo2 <= hi1
        for lo1, hi1 in _lon_spans(a[0], a[2])
        for lo2, hi2 in _lon_spans(b[0], b[2])
    )
