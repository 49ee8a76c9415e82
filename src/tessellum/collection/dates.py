"""Date ranges with inclusive, whole-day ends (a range ending "2024-01-31" keeps items
acquired at 23:10 that day)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

from ..errors import ValidationError

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_datetime(value: Any, *, end: bool = False, name: str = "date") -> dt.datetime:
    """Parse a date or datetime into an aware UTC datetime.

    A date without a time means the start of that day, or with ``end=True`` its last
    microsecond. Naive datetimes are taken as UTC.
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
            if _DATE_ONLY.match(text):
                return parse_datetime(dt.date.fromisoformat(text), end=end, name=name)
            out = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(
                f"{name}: cannot parse {value!r} as an ISO date or datetime"
            ) from None
    elif hasattr(value, "to_pydatetime"):  # pandas / numpy timestamps
        out = value.to_pydatetime()
    else:
        raise ValidationError(f"{name}: cannot interpret {value!r} as a date")
    if out.tzinfo is None:
        out = out.replace(tzinfo=dt.UTC)
    return out.astimezone(dt.UTC)


def parse_date_range(
    value: Sequence[Any] | None, *, name: str = "date_range"
) -> tuple[dt.datetime, dt.datetime] | None:
    """``(start, end)`` -> aware UTC datetimes, end inclusive of its whole day; either
    side may be None (open)."""
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValidationError(f"{name} must be a (start, end) pair, got {value!r}")
    start = (
        parse_datetime(value[0], name=name)
        if value[0] is not None
        else dt.datetime.min.replace(tzinfo=dt.UTC)
    )
    stop = (
        parse_datetime(value[1], end=True, name=name)
        if value[1] is not None
        else dt.datetime.max.replace(tzinfo=dt.UTC)
    )
    if start > stop:
        raise ValidationError(f"{name} start {value[0]!r} is after end {value[1]!r}")
    return start, stop


def stac_interval(rng: tuple[dt.datetime, dt.datetime]) -> str:
    """A STAC ``datetime`` search parameter for an inclusive range."""

    def fmt(d: dt.datetime) -> str:
        if d.year in (1, 9999):
            return ".."
        return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    return f"{fmt(rng[0])}/{fmt(rng[1])}"
