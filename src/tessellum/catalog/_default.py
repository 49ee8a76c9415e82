"""The process-default catalog, for callers that do not pass catalogs around.

Nothing is registered at import time. The default is *built* on first use from the
shipped catalog, the settings' ``catalog_files`` and ``dataset_overrides``, and rebuilt
when those settings change. :func:`register_dataset` / :func:`set_default_catalog`
replace it explicitly with another immutable :class:`Catalog`; code that wants isolation
passes its own catalog instead.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from ..config import Settings, get_settings
from ._catalog import Catalog, ProviderInfo, builtin_catalog
from ._entry import DatasetEntry

__all__ = [
    "default_catalog",
    "get_dataset",
    "list_datasets",
    "list_providers",
    "register_dataset",
    "reset_default_catalog",
    "set_default_catalog",
]

_lock = threading.Lock()
_explicit: Catalog | None = None  # set only by set_default_catalog / register_dataset
_built: tuple[str, Catalog] | None = None  # (settings key, catalog) of the last build


def _build_key(settings: Settings) -> str:
    return json.dumps(
        [[str(p) for p in settings.catalog_files], settings.dataset_overrides],
        sort_keys=True,
        default=str,
    )


def build_catalog(settings: Settings) -> Catalog:
    """The shipped catalog merged with ``settings.catalog_files`` (in order, later wins),
    then ``settings.dataset_overrides`` applied."""
    catalog = builtin_catalog()
    for path in settings.catalog_files:
        catalog = catalog.merge(Catalog.from_toml(path))
    return catalog.with_overrides(settings.dataset_overrides)


def default_catalog(settings: Settings | None = None) -> Catalog:
    """The process-default catalog.

    Returns the catalog set by :func:`set_default_catalog` / :func:`register_dataset`
    if any; otherwise the one built from ``settings`` (default: current settings),
    cached until ``catalog_files`` or ``dataset_overrides`` change.
    """
    global _built
    if _explicit is not None:
        return _explicit
    settings = settings if settings is not None else get_settings()
    key = _build_key(settings)
    with _lock:
        if _built is not None and _built[0] == key:
            return _built[1]
    catalog = build_catalog(settings)  # outside the lock: reads files
    with _lock:
        _built = (key, catalog)
    return catalog


def set_default_catalog(catalog: Catalog | None) -> None:
    """Make ``catalog`` the process default (``None``: go back to the built one)."""
    global _explicit
    with _lock:
        _explicit = catalog


def reset_default_catalog() -> None:
    """Drop any explicit default and the cached build (re-read files on next use)."""
    global _explicit, _built
    with _lock:
        _explicit = None
        _built = None


def register_dataset(entry: DatasetEntry | Mapping[str, Any], *, replace: bool = False) -> Catalog:
    """Add ``entry`` to the process-default catalog and return the new default.

    This *replaces the process default* with ``default_catalog().register(entry)``
    (catalogs themselves never change). Prefer ``catalog.register(...)`` and passing
    the catalog explicitly when more than one configuration lives in one process.
    """
    global _explicit
    with _lock:
        base = _explicit
    new = (base if base is not None else default_catalog()).register(entry, replace=replace)
    set_default_catalog(new)
    return new


def get_dataset(dataset_id: str, catalog: Catalog | None = None) -> DatasetEntry:
    """``(catalog or default_catalog()).get(dataset_id)``."""
    return (catalog if catalog is not None else default_catalog()).get(dataset_id)


def list_datasets(catalog: Catalog | None = None, **filters: Any) -> list[DatasetEntry]:
    """``(catalog or default_catalog()).list(**filters)``; see :meth:`Catalog.list`."""
    return (catalog if catalog is not None else default_catalog()).list(**filters)


def list_providers(catalog: Catalog | None = None) -> list[ProviderInfo]:
    """``(catalog or default_catalog()).providers()``."""
    return (catalog if catalog is not None else default_catalog()).providers()
