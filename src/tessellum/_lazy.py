"""Lazy re-exports: public names resolved from their modules on first access (PEP 562),
so importing a package does not import its heavy dependencies."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(
    package: str, names: Mapping[str, str], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving ``names`` (public name -> relative module).

    Args:
        package: the package's ``__name__`` (relative modules resolve against it).
        names: public name -> module, e.g. ``{"decode_tile": ".decode"}``.
        namespace: the package's ``globals()``; resolved names are cached there.
    """

    def resolve(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    return resolve
