"""Date ranges with inclusive, whole-day ends (a range ending "2024-01-31" keeps items
acquired at 23:10 that day)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ValidationError


def parse_datetime(value: Any, *, end: bool = False, name: str = "date") -> dt.datetime:
    """Parse a date or datetime into an aware UTC datetime.

    A date without a time means the start of that day, or with ``end=True`` its last
    microsecond. That holds for ``datetime.date``, ``numpy.datetime64`` with day unit and
    every ISO 8601 date-only string (``2024-01-31``, ``20240131``, ``2024-W05-3``). Naive
    datetimes are taken as UTC.
    """
    if isinstance(value, dt.datetime):
        out = value
    elif isinstance(value, dt.date):
        out = dt.datetime(value.year, value.month, value.day)
        if end:
            out = out + dt.timedelta(days=1, microseconds=-1)
    elif isinstance(value, str):
        text = value.strip()
        try:
            # Any form date.fromisoformat takes (extended, basic, week) is date-only;
            # datetime.fromisoformat would accept them too but as midnight.
            day = dt.date.fromisoformat(text)
        except ValueError:
            day = None
        if day is not None:
            return parse_datetime(day, end=end, name=name)
        try:
            # RFC 3339 (STAC's datetimes) allows a lower-case "z" as well
            out = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValidationError(
                f"{name}: cannot parse {value!r} as an ISO date or datetime"
            ) from None
    elif isinstance(value, np.datetime64):
        return _from_datetime64(value, end=end, name=name)
    elif hasattr(value, "to_pydatetime"):  # pandas timestamps
        out = value.to_pydatetime()
    else:
        raise ValidationError(f"{name}: cannot interpret {value!r} as a date")
    if out.tzinfo is None:
        out = out.replace(tzinfo=dt.UTC)
    return out.astimezone(dt.UTC)


def _from_datetime64(value: np.datetime64, *, end: bool, name: str) -> dt.datetime:
    """A numpy datetime64 (naive, taken as UTC): day unit is date-only, finer units are
    instants (truncated to microseconds); month/year/week units and NaT are refused."""
    unit, _ = np.datetime_data(value.dtype)
    if np.isnat(value):
        raise ValidationError(f"{name}: {value!r} is NaT (not a time)")
    if unit in ("Y", "M", "W"):
        raise ValidationError(f"{name}: {value!r} has unit {unit!r}; give a day or a finer unit")
    try:
        if unit == "D":
            return parse_datetime(value.astype(object), end=end, name=name)
        out = value.astype("datetime64[us]").astype(object)
    except (OverflowError, ValueError):
        out = None
    if not isinstance(out, dt.datetime):  # outside years 1..9999
        raise ValidationError(f"{name}: {value!r} is outside years 1..9999")
    return out.replace(tzinfo=dt.UTC)


def parse_date_range(
    value: Sequence[Any] | None, *, name: str = "date_range"
) -> tuple[dt.datetime, dt.datetime] | None:
    """``(start, end)`` -> aware UTC datetimes, end inclusive of its whole day; either
    side may be None, ``".."`` or ``""`` (open, as in a STAC datetime interval)."""
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValidationError(f"{name} must be a (start, end) pair, got {value!r}")
    first, last = (None if _is_open(v) else v for v in value)
    start = (
        parse_datetime(first, name=name)
        if first is not None
        else dt.datetime.min.replace(tzinfo=dt.UTC)
    )
    stop = (
        parse_datetime(last, end=True, name=name)
        if last is not None
        else dt.datetime.max.replace(tzinfo=dt.UTC)
    )
    if start > stop:
        raise ValidationError(f"{name} start {value[0]!r} is after end {value[1]!r}")
    return start, stop


def _is_open(value: Any) -> bool:
    """Whether a date range side is open: None, or STAC's ``".."`` (or an empty string)."""
    return value is None or (isinstance(value, str) and value.strip() in ("", ".."))


def stac_interval(rng: tuple[dt.datetime, dt.datetime]) -> str:
    """A STAC ``datetime`` search parameter for an inclusive range."""

    def fmt(d: dt.datetime) -> str:
        if d.year in (1, 9999):
            return ".."
        return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    return f"{fmt(rng[0])}/{fmt(rng[1])}"
