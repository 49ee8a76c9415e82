"""GDAL's private TIFF tags: GDAL_METADATA (42112) and GDAL_NODATA (42113)."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np

__all__ = ["band_item", "gdal_atof", "parse_gdal_metadata", "parse_nodata"]

#: The longest number GDAL's CPLAtofM reads at the start of a string (ASCII digits, "."
#: or "," as the decimal mark, an exponent only when it has digits).
_ATOF_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:[.,][0-9]*)?|[.,][0-9]+)(?:[eE][+-]?[0-9]+)?")
_ATOF_SPECIAL = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}
#: GDAL reads an Item's sample as a band only in this range; others are ignored.
_MAX_SAMPLE = 65535


def parse_gdal_metadata(xml: str | None) -> dict[str, Any]:
    """Parse GDAL_METADATA XML into ``{"dataset": {...}, "bands": {index: {...}}}``.

    Item names are kept as written (``SCALE``, ``OFFSET``, ``DESCRIPTION``, ``UNITTYPE``
    for bands); items of a non-default domain are keyed ``"DOMAIN:NAME"``. Band indices
    are 0-based samples, as GDAL writes them.
    """
    out: dict[str, Any] = {"dataset": {}, "bands": {}}
    if not xml:
        return out
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return out
    for item in root.iter("Item"):
        name = item.get("name")
        if name is None:
            continue
        domain = item.get("domain")
        key = f"{domain}:{name}" if domain else name
        value = item.text or ""
        sample = item.get("sample")
        if sample is None:
            out["dataset"][key] = value
            continue
        band = _atoi(sample)
        if 0 <= band <= _MAX_SAMPLE:  # as GDAL: an item of another sample is ignored
            out["bands"].setdefault(band, {})[key] = value
    return out


def _atoi(text: str) -> int:
    """C ``atoi`` as GDAL applies it to ``sample``: the leading integer, 0 when none."""
    m = re.match(r"\s*([+-]?[0-9]+)", text)
    return int(m.group(1)) if m else 0


def gdal_atof(text: str) -> float:
    """A number as GDAL reads SCALE/OFFSET items (``CPLAtofM``): the longest number at
    the start (after leading blanks; ``"1,5"`` is 1.5), ``inf``/``nan`` spelled alone,
    0.0 when there is none (``"abc"``), never an error."""
    s = text.lstrip()
    if s[:1] == "+":
        s = s[1:]
    special = _ATOF_SPECIAL.get(s.lower())
    if special is not None:
        return special
    m = _ATOF_NUMBER.match(s)
    return float(m.group().replace(",", ".")) if m else 0.0


def band_item(meta: dict[str, Any], band: int, name: str) -> str | None:
    """The band's metadata item ``name`` (e.g. ``"SCALE"``) or None."""
    return meta.get("bands", {}).get(band, {}).get(name)


def parse_nodata(raw: str | None, dtype: str | np.dtype) -> np.generic | None:
    """Return GDAL_NODATA as an exactly typed numpy scalar of ``dtype``, or None.

    Integers are parsed without going through float (int64 min and uint64 max stay
    exact); a value the dtype cannot hold yields None, as GDAL ignores it.
    """
    if raw is None:
        return None
    text = raw.strip().rstrip("\0").strip()
    if not text:
        return None
    dt = np.dtype(dtype)
    if dt.kind in "ui":
        try:
            value = int(text)
        except ValueError:
            try:
                f = float(text)
            except ValueError:
                return None
            if not math.isfinite(f) or f != int(f):
                return None
            value = int(f)
        info = np.iinfo(dt)
        if not info.min <= value <= info.max:
            return None
        return dt.type(value)
    try:
        f = float(text)
    except ValueError:
        return None
    if dt.kind == "c":
        return dt.type(complex(f, 0))
    return dt.type(f)
