"""Known datasets: ids, endpoints, assets, license, units, nodata, valid range.

A dataset id is ``provider:variable`` (``copernicus_dem:elevation``). Catalogs are
immutable values: ``register``/``merge`` return new ones, and functions that read data
take a catalog explicitly (default: :func:`default_catalog`)::

    from tessellum.catalog import default_catalog

    cat = default_catalog()
    entry = cat.get("copernicus_dem:elevation")
    resolved = cat.resolve(entry)          # endpoints after settings overrides
    mine = cat.register({...})             # a new catalog; ``cat`` is unchanged
"""

from __future__ import annotations

from ._catalog import Catalog, ProviderInfo, builtin_catalog
from ._default import (
    build_catalog,
    default_catalog,
    get_dataset,
    list_datasets,
    list_providers,
    register_dataset,
    reset_default_catalog,
    set_default_catalog,
)
from ._entry import DatasetEntry
from ._resolve import ResolvedDataset, resolve
from .signing import NoSigner, PlanetaryComputerSigner, Signer, signer_for

__all__ = [
    "Catalog",
    "DatasetEntry",
    "NoSigner",
    "PlanetaryComputerSigner",
    "ProviderInfo",
    "ResolvedDataset",
    "Signer",
    "build_catalog",
    "builtin_catalog",
    "default_catalog",
    "get_dataset",
    "list_datasets",
    "list_providers",
    "register_dataset",
    "reset_default_catalog",
    "resolve",
    "set_default_catalog",
    "signer_for",
]
