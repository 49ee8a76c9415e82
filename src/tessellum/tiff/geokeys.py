"""GeoTIFF georeferencing: the GeoKey directory, the geotransform and the CRS.

EPSG-coded CRSs come from pyproj; user-defined ones (key value 32767) are rebuilt from
their keys as PROJJSON, keeping the full definition. What cannot be mapped falls back to
GDAL reading a tiny TIFF that carries only the georeferencing tags.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["GeoInfo", "crs_from_geokeys", "geo_from_tags", "parse_geokeys"]

USER_DEFINED = 32767
_CACHE_SIZE = 512

# GeoKey ids
MODEL_TYPE, RASTER_TYPE, GT_CITATION = 1024, 1025, 1026
GEOG_TYPE, GEOG_CITATION, GEOG_DATUM, GEOG_PM = 2048, 2049, 2050, 2051
GEOG_ANGULAR_UNITS, GEOG_ANGULAR_SIZE, GEOG_ELLIPSOID = 2054, 2055, 2056
GEOG_SEMI_MAJOR, GEOG_SEMI_MINOR, GEOG_INV_FLAT, GEOG_PM_LONG, GEOG_TOWGS84 = (
    2057, 2058, 2059, 2061, 2062,
)  # fmt: skip
PROJ_CS_TYPE, PCS_CITATION, PROJECTION, PROJ_COORD_TRANS = 3072, 3073, 3074, 3075
PROJ_LINEAR_UNITS, PROJ_LINEAR_SIZE = 3076, 3077
STD_PAR1, STD_PAR2, NAT_LON, NAT_LAT, FE, FN = 3078, 3079, 3080, 3081, 3082, 3083
FO_LON, FO_LAT, FO_E, FO_N = 3084, 3085, 3086, 3087
C_LON, C_LAT, C_E, C_N = 3088, 3089, 3090, 3091
K_NAT, K_CENTER, AZIMUTH, POLE_LON, RECT_ANGLE = 3092, 3093, 3094, 3095, 3096

_LINEAR_UNITS = {
    9001: ("metre", 1.0),
    9002: ("foot", 0.3048),
    9003: ("US survey foot", 0.304800609601219),
    9036: ("kilometre", 1000.0),
}
_ANGULAR_UNITS = {
    9101: ("radian", 1.0),
    9102: ("degree", math.pi / 180.0),
    9105: ("grad", math.pi / 200.0),
}


@dataclass(frozen=True, slots=True)
class GeoInfo:
    """Georeferencing of a GeoTIFF (from its first IFD)."""

    transform: tuple[float, float, float, float, float, float] | None = None
    """GDAL order ``(x0, dx, rx, y0, ry, dy)``; PixelIsPoint already shifted as GDAL does."""
    raster_type: int = 1
    """GTRasterTypeGeoKey as GDAL reads it: 2 PixelIsPoint, 1 PixelIsArea (also for any
    value other than 2; ``geokeys`` keeps the value written)."""
    crs_epsg: int | None = None
    """EPSG code when the file names one (never 32767)."""
    crs_wkt: str | None = None
    """WKT2 (2019) of the CRS."""
    crs_projjson: str | None = None
    """PROJJSON of the CRS."""
    geokeys: dict[int, Any] = field(default_factory=dict)
    """Raw GeoKey directory: key id -> int, str or tuple of floats."""
    gcp_count: int = 0
    """Tie points (ground control points) of a file georeferenced by them alone (no
    geotransform); 0 otherwise. Not kept in collections: it explains a build error."""

    @property
    def crs(self) -> Any:
        """The CRS as a ``pyproj.CRS`` (None when not georeferenced)."""
        if self.crs_wkt is None:
            return None
        from pyproj import CRS

        return CRS.from_wkt(self.crs_wkt)


def parse_geokeys(directory: Any, doubles: Any, ascii: str | None) -> dict[int, Any]:
    """Decode the GeoKeyDirectory (34735) with its double (34736) and ASCII (34737) params."""
    keys: dict[int, Any] = {}
    if directory is None or len(directory) < 4:
        return keys
    d = [int(v) for v in directory]
    n = d[3]
    for i in range(n):
        base = 4 + 4 * i
        if base + 4 > len(d):
            break
        key, loc, count, value = d[base : base + 4]
        if loc == 0:
            keys[key] = value
        elif loc == 34736 and doubles is not None:
            vals = tuple(float(x) for x in doubles[value : value + count])
            keys[key] = vals[0] if count == 1 and vals else vals
        elif loc == 34737 and ascii is not None:
            keys[key] = ascii[value : value + count].rstrip("|").rstrip("\0")
        elif loc == 34735:
            vals_i = tuple(d[value : value + count])
            keys[key] = vals_i[0] if count == 1 and vals_i else vals_i
    return keys


def _transform(
    scale: Any, tiepoint: Any, matrix: Any, raster_type: int
) -> tuple[float, float, float, float, float, float] | None:
    if matrix is not None and len(matrix) >= 16:
        m = [float(v) for v in matrix]
        gt = [m[3], m[0], m[1], m[7], m[4], m[5]]
    elif tiepoint is not None and len(tiepoint) >= 6 and scale is not None and len(scale) >= 2:
        i, j, x, y = float(tiepoint[0]), float(tiepoint[1]), float(tiepoint[3]), float(tiepoint[4])
        sx, sy = float(scale[0]), float(scale[1])
        gt = [x - i * sx, sx, 0.0, y + j * sy, 0.0, -sy]
    else:
        return None  # GCPs only, or no georeferencing
    if raster_type == 2:
        # GDAL's default (GTIFF_POINT_GEO_IGNORE=FALSE): the tiepoint names a pixel
        # centre, so move the origin half a pixel up-left.
        gt[0] -= gt[1] * 0.5 + gt[2] * 0.5
        gt[3] -= gt[4] * 0.5 + gt[5] * 0.5
    return (gt[0], gt[1], gt[2], gt[3], gt[4], gt[5])


def geo_from_tags(tags: dict[int, Any]) -> GeoInfo:
    """Build :class:`GeoInfo` from the first IFD's decoded tags."""
    keys = parse_geokeys(tags.get(34735), tags.get(34736), tags.get(34737))
    # as GDAL: PixelIsPoint only when the key says 2, PixelIsArea for any other value
    raster_type = 2 if keys.get(RASTER_TYPE) == 2 else 1
    transform = _transform(tags.get(33550), tags.get(33922), tags.get(34264), raster_type)
    tiepoints = tags.get(33922)
    gcps = len(tiepoints) // 6 if transform is None and tiepoints is not None else 0
    if not keys:
        return GeoInfo(transform=transform, raster_type=raster_type, gcp_count=gcps)
    epsg, wkt, projjson = crs_from_geokeys(_freeze(keys), _raw_geotags(tags))
    return GeoInfo(transform, raster_type, epsg, wkt, projjson, keys, gcps)


def _freeze(keys: dict[int, Any]) -> tuple[tuple[int, Any], ...]:
    return tuple(sorted(keys.items()))


def _raw_geotags(tags: dict[int, Any]) -> tuple[tuple[int, Any], ...]:
    """The GeoKey tags as a hashable value (used only by the GDAL fallback)."""
    out = []
    for tag in (34735, 34736, 34737):
        value = tags.get(tag)
        if value is None:
            continue
        out.append((tag, value if isinstance(value, str) else tuple(value.tolist())))
    return tuple(out)


@lru_cache(maxsize=_CACHE_SIZE)
def crs_from_geokeys(
    keys: tuple[tuple[int, Any], ...], raw_tags: tuple[tuple[int, Any], ...] = ()
) -> tuple[int | None, str | None, str | None]:
    """Return ``(epsg, wkt2, projjson)`` for a frozen GeoKey directory (cached).

    Args:
        keys: ``tuple(sorted(geokeys.items()))``.
        raw_tags: the raw 34735/34736/34737 values, for the GDAL fallback.
    """
    from pyproj import CRS

    k = dict(keys)
    epsg: int | None = None
    crs = None
    model = k.get(MODEL_TYPE)
    pcs = k.get(PROJ_CS_TYPE)
    gcs = k.get(GEOG_TYPE)
    try:
        if isinstance(pcs, int) and 0 < pcs != USER_DEFINED and model != 2:
            epsg, crs = pcs, CRS.from_epsg(pcs)
        elif model == 2 and isinstance(gcs, int) and 0 < gcs != USER_DEFINED:
            epsg, crs = gcs, CRS.from_epsg(gcs)
        else:
            crs = _from_citation(k) or _build(k)
    except Exception:  # an unknown code or odd keys: let GDAL decide below
        crs = None
    if crs is None and raw_tags:
        crs = _gdal_fallback(raw_tags)
    if crs is None:
        return None, None, None
    return epsg, crs.to_wkt(), crs.to_json()


def _from_citation(k: dict[int, Any]) -> Any:
    from pyproj import CRS

    for key in (PCS_CITATION, GT_CITATION, GEOG_CITATION):
        cit = k.get(key)
        if isinstance(cit, str) and "ESRI PE String = " in cit:
            return CRS.from_wkt(cit.split("ESRI PE String = ", 1)[1].strip())
    return None


def _citation_field(cit: Any, name: str) -> str | None:
    """A ``Name = value`` field of GDAL's ``GCS Name = x|Datum = y|...`` citation."""
    if not isinstance(cit, str):
        return None
    for part in cit.split("|"):
        if "=" in part:
            key, _, value = part.partition("=")
            if key.strip() == name:
                return value.strip()
    return None


def _unit_json(name: str, factor: float, kind: str) -> Any:
    if kind == "linear" and name == "metre":
        return "metre"
    if kind == "angular" and name == "degree":
        return "degree"
    return {
        "type": "LinearUnit" if kind == "linear" else "AngularUnit",
        "name": name,
        "conversion_factor": factor,
    }


def _angular_unit(k: dict[int, Any]) -> tuple[str, float]:
    code = k.get(GEOG_ANGULAR_UNITS, 9102)
    if code in _ANGULAR_UNITS:
        return _ANGULAR_UNITS[code]
    size = k.get(GEOG_ANGULAR_SIZE)
    if isinstance(size, float):
        return ("unknown", size)
    raise ValueError(f"angular unit {code}")


def _linear_unit(k: dict[int, Any]) -> tuple[str, float]:
    code = k.get(PROJ_LINEAR_UNITS, 9001)
    if code in _LINEAR_UNITS:
        return _LINEAR_UNITS[code]
    size = k.get(PROJ_LINEAR_SIZE)
    if isinstance(size, float):
        return ("unknown", size)
    raise ValueError(f"linear unit {code}")


def _geographic_json(k: dict[int, Any]) -> dict[str, Any]:
    from pyproj import CRS
    from pyproj.crs import Datum, Ellipsoid, PrimeMeridian

    gcs = k.get(GEOG_TYPE)
    if isinstance(gcs, int) and 0 < gcs != USER_DEFINED:
        return CRS.from_epsg(gcs).to_json_dict()
    if GEOG_TOWGS84 in k:
        raise ValueError("TOWGS84: bound CRS left to GDAL")
    cit = k.get(GEOG_CITATION)
    unit_name, unit_factor = _angular_unit(k)
    pm_code = k.get(GEOG_PM)
    if isinstance(pm_code, int) and 0 < pm_code != USER_DEFINED:
        pm: dict[str, Any] = PrimeMeridian.from_epsg(pm_code).to_json_dict()
    else:
        pm_long = float(k.get(GEOG_PM_LONG, 0.0))
        pm_name = _citation_field(cit, "Primem") or ("Greenwich" if pm_long == 0 else "unknown")
        pm = {"name": pm_name, "longitude": pm_long}
        if unit_name != "degree":
            pm["longitude"] = {
                "value": pm_long,
                "unit": _unit_json(unit_name, unit_factor, "angular"),
            }
    datum_code = k.get(GEOG_DATUM)
    if isinstance(datum_code, int) and 0 < datum_code != USER_DEFINED:
        datum = Datum.from_epsg(datum_code).to_json_dict()
        if pm.get("name") != "Greenwich" or pm.get("longitude", 0) != 0:
            datum["prime_meridian"] = pm
    else:
        ell_code = k.get(GEOG_ELLIPSOID)
        if isinstance(ell_code, int) and 0 < ell_code != USER_DEFINED:
            ell = Ellipsoid.from_epsg(ell_code).to_json_dict()
        else:
            a = float(k[GEOG_SEMI_MAJOR])
            ell = {"name": _citation_field(cit, "Ellipsoid") or "unknown", "semi_major_axis": a}
            if GEOG_INV_FLAT in k and float(k[GEOG_INV_FLAT]) != 0:
                ell["inverse_flattening"] = float(k[GEOG_INV_FLAT])
            elif GEOG_SEMI_MINOR in k and float(k[GEOG_SEMI_MINOR]) != a:
                ell["semi_minor_axis"] = float(k[GEOG_SEMI_MINOR])
            else:
                ell = {"name": ell["name"], "radius": a}
        datum = {
            "type": "GeodeticReferenceFrame",
            "name": _citation_field(cit, "Datum") or "unknown",
            "ellipsoid": ell,
            "prime_meridian": pm,
        }
    datum.pop("$schema", None)
    unit = _unit_json(unit_name, unit_factor, "angular")
    # WGS 84 and others are datum ensembles in the EPSG database
    datum_key = "datum_ensemble" if datum.get("type") == "DatumEnsemble" else "datum"
    return {
        "type": "GeographicCRS",
        "name": _citation_field(cit, "GCS Name") or (cit if isinstance(cit, str) else "unknown"),
        datum_key: datum,
        "coordinate_system": {
            "subtype": "ellipsoidal",
            "axis": [
                {
                    "name": "Geodetic latitude",
                    "abbreviation": "Lat",
                    "direction": "north",
                    "unit": unit,
                },
                {
                    "name": "Geodetic longitude",
                    "abbreviation": "Lon",
                    "direction": "east",
                    "unit": unit,
                },
            ],
        },
    }


# ProjCoordTrans -> (method name, EPSG method code, [(param name, EPSG code, keys, kind)])
_LAT_NAT = ("Latitude of natural origin", 8801)
_LON_NAT = ("Longitude of natural origin", 8802)
_K_NAT = ("Scale factor at natural origin", 8805)
_FE = ("False easting", 8806)
_FN = ("False northing", 8807)
_METHODS: dict[int, tuple[str, int | None, list[tuple[tuple[str, int], tuple[int, ...], str]]]] = {
    1: ("Transverse Mercator", 9807, [
        (_LAT_NAT, (NAT_LAT, C_LAT), "a"), (_LON_NAT, (NAT_LON, C_LON), "a"),
        (_K_NAT, (K_NAT, K_CENTER), "s"), (_FE, (FE, C_E), "l"), (_FN, (FN, C_N), "l")]),
    27: ("Transverse Mercator (South Orientated)", 9808, [
        (_LAT_NAT, (NAT_LAT, C_LAT), "a"), (_LON_NAT, (NAT_LON, C_LON), "a"),
        (_K_NAT, (K_NAT, K_CENTER), "s"), (_FE, (FE, C_E), "l"), (_FN, (FN, C_N), "l")]),
    8: ("Lambert Conic Conformal (2SP)", 9802, [
        (("Latitude of false origin", 8821), (FO_LAT, NAT_LAT, C_LAT), "a"),
        (("Longitude of false origin", 8822), (FO_LON, NAT_LON, C_LON), "a"),
        (("Latitude of 1st standard parallel", 8823), (STD_PAR1,), "a"),
        (("Latitude of 2nd standard parallel", 8824), (STD_PAR2,), "a"),
        (("Easting at false origin", 8826), (FO_E, FE), "l"),
        (("Northing at false origin", 8827), (FO_N, FN), "l")]),
    9: ("Lambert Conic Conformal (1SP)", 9801, [
        (_LAT_NAT, (NAT_LAT, FO_LAT, C_LAT), "a"), (_LON_NAT, (NAT_LON, FO_LON, C_LON), "a"),
        (_K_NAT, (K_NAT, K_CENTER), "s"), (_FE, (FE, FO_E), "l"), (_FN, (FN, FO_N), "l")]),
    10: ("Lambert Azimuthal Equal Area", 9820, [
        (_LAT_NAT, (C_LAT, NAT_LAT), "a"), (_LON_NAT, (C_LON, NAT_LON), "a"),
        (_FE, (FE, C_E), "l"), (_FN, (FN, C_N), "l")]),
    11: ("Albers Equal Area", 9822, [
        (("Latitude of false origin", 8821), (NAT_LAT, FO_LAT, C_LAT), "a"),
        (("Longitude of false origin", 8822), (NAT_LON, FO_LON, C_LON), "a"),
        (("Latitude of 1st standard parallel", 8823), (STD_PAR1,), "a"),
        (("Latitude of 2nd standard parallel", 8824), (STD_PAR2,), "a"),
        (("Easting at false origin", 8826), (FE, FO_E), "l"),
        (("Northing at false origin", 8827), (FN, FO_N), "l")]),
    14: ("Stereographic", None, [
        (_LAT_NAT, (C_LAT, NAT_LAT), "a"), (_LON_NAT, (C_LON, NAT_LON), "a"),
        (_K_NAT, (K_NAT, K_CENTER), "s"), (_FE, (FE, C_E), "l"), (_FN, (FN, C_N), "l")]),
    16: ("Oblique Stereographic", 9809, [
        (_LAT_NAT, (NAT_LAT, C_LAT), "a"), (_LON_NAT, (NAT_LON, C_LON), "a"),
        (_K_NAT, (K_NAT, K_CENTER), "s"), (_FE, (FE, C_E), "l"), (_FN, (FN, C_N), "l")]),
    17: ("Equidistant Cylindrical", 1028, [
        (("Latitude of 1st standard parallel", 8823), (STD_PAR1, NAT_LAT), "a"),
        (_LON_NAT, (C_LON, NAT_LON), "a"), (_FE, (FE,), "l"), (_FN, (FN,), "l")]),
    18: ("Cassini-Soldner", 9806, [
        (_LAT_NAT, (NAT_LAT, C_LAT), "a"), (_LON_NAT, (NAT_LON, C_LON), "a"),
        (_FE, (FE,), "l"), (_FN, (FN,), "l")]),
    21: ("Orthographic", 9840, [
        (_LAT_NAT, (C_LAT, NAT_LAT), "a"), (_LON_NAT, (C_LON, NAT_LON), "a"),
        (_FE, (FE,), "l"), (_FN, (FN,), "l")]),
    24: ("Sinusoidal", None, [
        (_LON_NAT, (C_LON, NAT_LON), "a"), (_FE, (FE,), "l"), (_FN, (FN,), "l")]),
    3: ("Hotine Oblique Mercator (variant A)", 9812, [
        (("Latitude of projection centre", 8811), (C_LAT, NAT_LAT), "a"),
        (("Longitude of projection centre", 8812), (C_LON, NAT_LON), "a"),
        (("Azimuth of initial line", 8813), (AZIMUTH,), "a"),
        (("Angle from Rectified to Skew Grid", 8814), (RECT_ANGLE, AZIMUTH), "a"),
        (("Scale factor on initial line", 8815), (K_CENTER, K_NAT), "s"),
        (_FE, (FE, C_E), "l"), (_FN, (FN, C_N), "l")]),
    9815: ("Hotine Oblique Mercator (variant B)", 9815, [
        (("Latitude of projection centre", 8811), (C_LAT, NAT_LAT), "a"),
        (("Longitude of projection centre", 8812), (C_LON, NAT_LON), "a"),
        (("Azimuth of initial line", 8813), (AZIMUTH,), "a"),
        (("Angle from Rectified to Skew Grid", 8814), (RECT_ANGLE, AZIMUTH), "a"),
        (("Scale factor on initial line", 8815), (K_CENTER, K_NAT), "s"),
        (("Easting at projection centre", 8816), (C_E, FE), "l"),
        (("Northing at projection centre", 8817), (C_N, FN), "l")]),
}  # fmt: skip


def _mercator(k: dict[int, Any]) -> tuple[str, int, list]:
    if STD_PAR1 in k:  # variant B: latitude of true scale
        return (
            "Mercator (variant B)",
            9805,
            [
                (("Latitude of 1st standard parallel", 8823), (STD_PAR1,), "a"),
                (_LON_NAT, (NAT_LON, C_LON), "a"),
                (_FE, (FE,), "l"),
                (_FN, (FN,), "l"),
            ],
        )
    return (
        "Mercator (variant A)",
        9804,
        [
            (_LAT_NAT, (NAT_LAT, C_LAT), "a"),
            (_LON_NAT, (NAT_LON, C_LON), "a"),
            (_K_NAT, (K_NAT, K_CENTER), "s"),
            (_FE, (FE,), "l"),
            (_FN, (FN,), "l"),
        ],
    )


def _polar_stereographic(k: dict[int, Any]) -> tuple[str, int, list]:
    lat = k.get(NAT_LAT, k.get(C_LAT, 90.0))
    pole_lon = (POLE_LON, NAT_LON, C_LON)
    if abs(float(lat)) == 90.0:
        return (
            "Polar Stereographic (variant A)",
            9810,
            [
                (_LAT_NAT, (NAT_LAT, C_LAT), "a"),
                (_LON_NAT, pole_lon, "a"),
                (_K_NAT, (K_NAT, K_CENTER), "s"),
                (_FE, (FE,), "l"),
                (_FN, (FN,), "l"),
            ],
        )
    # GDAL reads a non-polar NatOriginLat as the latitude of true scale (variant B)
    return (
        "Polar Stereographic (variant B)",
        9829,
        [
            (("Latitude of standard parallel", 8832), (NAT_LAT, C_LAT), "a"),
            (("Longitude of origin", 8833), pole_lon, "a"),
            (_FE, (FE,), "l"),
            (_FN, (FN,), "l"),
        ],
    )


def _build(k: dict[int, Any]) -> Any:
    """Build a user-defined CRS from its GeoKeys, or None when the keys are not mappable."""
    from pyproj import CRS
    from pyproj.crs import CoordinateOperation

    model = k.get(MODEL_TYPE)
    geog = _geographic_json(k)
    if model == 2 or (model is None and PROJ_CS_TYPE not in k):
        return CRS.from_json_dict(geog)
    if model != 1:
        return None  # geocentric etc.
    unit_name, unit_factor = _linear_unit(k)
    ang_name, ang_factor = _angular_unit(k)
    proj_code = k.get(PROJECTION)
    ct = k.get(PROJ_COORD_TRANS)
    if isinstance(proj_code, int) and 0 < proj_code != USER_DEFINED:
        conversion = CoordinateOperation.from_epsg(proj_code).to_json_dict()
    elif isinstance(ct, int):
        if ct == 7:
            name, code, params = _mercator(k)
        elif ct == 15:
            name, code, params = _polar_stereographic(k)
        elif ct in _METHODS:
            name, code, params = _METHODS[ct]
        else:
            return None
        if ct == 17 and float(k.get(C_LAT, k.get(NAT_LAT, 0.0))) != 0.0:
            return None  # latitude of origin has no EPSG parameter: leave it to GDAL
        conversion = _conversion_json(
            k, name, code, params, (unit_name, unit_factor), (ang_name, ang_factor)
        )
    else:
        return None
    conversion.pop("$schema", None)
    geog.pop("$schema", None)
    lin = _unit_json(unit_name, unit_factor, "linear")
    east, north = "east", "north"
    if ct == 15 and not (isinstance(proj_code, int) and 0 < proj_code != USER_DEFINED):
        # PROJ/GDAL give polar stereographic axes pointing along meridians
        lat = float(k.get(NAT_LAT, k.get(C_LAT, 90.0)))
        east = north = "south" if lat > 0 else "north"
    cit = k.get(PCS_CITATION) or k.get(GT_CITATION)
    return CRS.from_json_dict(
        {
            "type": "ProjectedCRS",
            "name": cit if isinstance(cit, str) and cit else "unknown",
            "base_crs": geog,
            "conversion": conversion,
            "coordinate_system": {
                "subtype": "Cartesian",
                "axis": [
                    {"name": "Easting", "abbreviation": "E", "direction": east, "unit": lin},
                    {"name": "Northing", "abbreviation": "N", "direction": north, "unit": lin},
                ],
            },
        }
    )


def _conversion_json(
    k: dict[int, Any],
    name: str,
    code: int | None,
    params: list,
    linear: tuple[str, float],
    angular: tuple[str, float],
) -> dict[str, Any]:
    out_params = []
    for (pname, pcode), keys, kind in params:
        value = next((k[key] for key in keys if key in k), None)
        if value is None:
            value = 1.0 if kind == "s" else 0.0
        if kind == "a":
            unit = _unit_json(*angular, "angular")
        elif kind == "l":
            unit = _unit_json(*linear, "linear")
        else:
            unit = "unity"
        out_params.append(
            {
                "name": pname,
                "value": float(value),
                "unit": unit,
                "id": {"authority": "EPSG", "code": pcode},
            }
        )
    method: dict[str, Any] = {"name": name}
    if code is not None:
        method["id"] = {"authority": "EPSG", "code": code}
    return {"name": "unknown", "method": method, "parameters": out_params}


def _gdal_fallback(raw_tags: tuple[tuple[int, Any], ...]) -> Any:
    """Let GDAL interpret the GeoKeys: write a 1x1 TIFF with only these tags and open it."""
    from pyproj import CRS
    from rasterio.io import MemoryFile

    data = _tiny_tiff(dict(raw_tags))
    try:
        with MemoryFile(data) as mf, mf.open() as ds:
            if ds.crs is None:
                return None
            return CRS.from_wkt(ds.crs.to_wkt())
    except Exception:
        return None


def _tiny_tiff(geotags: dict[int, Any]) -> bytes:
    """A valid little-endian 1x1 uint8 TIFF carrying ``geotags`` (34735/34736/34737)."""
    entries: list[tuple[int, int, int, bytes]] = [
        (256, 3, 1, struct.pack("<H", 1)),
        (257, 3, 1, struct.pack("<H", 1)),
        (258, 3, 1, struct.pack("<H", 8)),
        (259, 3, 1, struct.pack("<H", 1)),
        (262, 3, 1, struct.pack("<H", 1)),
        (273, 4, 1, b""),  # strip offset, patched below
        (277, 3, 1, struct.pack("<H", 1)),
        (278, 3, 1, struct.pack("<H", 1)),
        (279, 4, 1, struct.pack("<I", 1)),
        (33550, 12, 3, np.array([1.0, 1.0, 0.0], "<f8").tobytes()),
        (33922, 12, 6, np.zeros(6, "<f8").tobytes()),
    ]
    if 34735 in geotags:
        vals = np.asarray(geotags[34735], "<u2")
        entries.append((34735, 3, len(vals), vals.tobytes()))
    if 34736 in geotags:
        vals = np.asarray(geotags[34736], "<f8")
        entries.append((34736, 12, len(vals), vals.tobytes()))
    if 34737 in geotags:
        text = geotags[34737].encode() + b"\0"
        entries.append((34737, 2, len(text), text))
    entries.sort()
    n = len(entries)
    data_start = 8 + 2 + 12 * n + 4
    blobs = bytearray()
    ifd = bytearray(struct.pack("<H", n))
    strip_offset = data_start
    blobs += b"\0\0"  # the pixel (padded to keep later data even-aligned)
    for tag, typ, count, payload in entries:
        if tag == 273:
            payload = struct.pack("<I", strip_offset)
        if len(payload) <= 4:
            ifd += struct.pack("<HHI", tag, typ, count) + payload.ljust(4, b"\0")
        else:
            ifd += struct.pack("<HHII", tag, typ, count, data_start + len(blobs))
            blobs += payload + (b"\0" if len(payload) % 2 else b"")
    ifd += struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", 8) + bytes(ifd) + bytes(blobs)
