"""Built-in band maps for well-known STAC collections (band code -> asset key, and
band code -> sample index for multi-sample assets). Plain immutable data, passed
explicitly; users pass their own ``band_map`` / ``band_index_map`` to override."""

from __future__ import annotations

from types import MappingProxyType

_S2_EARTH_SEARCH = {
    "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1",
    "B06": "rededge2", "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09",
    "B11": "swir16", "B12": "swir22", "SCL": "scl", "AOT": "aot", "WVP": "wvp",
}  # fmt: skip
_LANDSAT_C2L2 = {
    "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "nir08",
    "B06": "swir16", "B07": "swir22", "B10": "lwir11", "QA_PIXEL": "qa_pixel",
}  # fmt: skip

BAND_MAPS = MappingProxyType(
    {
        "sentinel-2-l2a": MappingProxyType(_S2_EARTH_SEARCH),
        "landsat-c2-l2": MappingProxyType(_LANDSAT_C2L2),
        "landsat-c2l2-sr": MappingProxyType(_LANDSAT_C2L2),
        "naip": MappingProxyType({"R": "image", "G": "image", "B": "image", "N": "image"}),
    }
)
BAND_INDEX_MAPS = MappingProxyType({"naip": MappingProxyType({"R": 0, "G": 1, "B": 2, "N": 3})})


def builtin_band_map(
    collection: str | None, data_source: str | None = None
) -> dict[str, str] | None:
    """The known band map for a collection id or data source, if any."""
    for key in (data_source, collection):
        if key and key.split("/")[-1] in BAND_MAPS:
            return dict(BAND_MAPS[key.split("/")[-1]])
    return None


def builtin_band_index_map(
    collection: str | None, data_source: str | None = None
) -> dict[str, int] | None:
    """The known band index map for a collection id or data source, if any."""
    for key in (data_source, collection):
        if key and key.split("/")[-1] in BAND_INDEX_MAPS:
            return dict(BAND_INDEX_MAPS[key.split("/")[-1]])
    return None
