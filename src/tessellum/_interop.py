"""Optional dependencies, checked in one place without importing them."""

from __future__ import annotations

import importlib.util
from functools import cache

from .errors import ConfigurationError


@cache
def has(module: str) -> bool:
    """True when ``module`` can be imported (looked up, not imported)."""
    return importlib.util.find_spec(module) is not None


def require(module: str, extra: str) -> None:
    """Raise a clear error naming the pip extra when ``module`` is missing."""
    if not has(module):
        raise ConfigurationError(
            f"{module!r} is required for this feature: pip install 'tessellum[{extra}]'"
        )
