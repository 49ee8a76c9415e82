"""Argument checks shared by every layer: a ``ValidationError`` naming the argument and
the value given, never a bare ``TypeError`` from deeper down."""

from __future__ import annotations

import math
import numbers
from typing import Any

from .errors import ValidationError


def int_arg(value: Any, name: str, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (numpy integers too; not a bool)."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValidationError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def number_arg(value: Any, name: str, minimum: float | None = None) -> float:
    """``value`` as a finite float (>= ``minimum`` when given; not a bool)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
        raise ValidationError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValidationError(f"{name} must be >= {minimum}, got {value!r}")
    return float(value)
