"""Resolve a catalog entry against settings at lookup time (endpoints, signer, credentials)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..config import Settings, get_settings
from ..errors import ConfigurationError
from ._entry import DatasetEntry
from .signing import Signer, signer_for

__all__ = ["ResolvedDataset", "resolve"]


@dataclass(frozen=True, slots=True)
class ResolvedDataset:
    """A dataset ready to be read: its entry with endpoints overridden by settings.

    Readers use ``entry`` (never the catalogued one) so that tests and deployments
    swap base URLs through settings alone and run the production code path.
    """

    entry: DatasetEntry
    """The entry with ``stac_api`` / ``wcs_url`` replaced per :attr:`settings`."""
    catalogued: DatasetEntry = field(repr=False)
    """The entry as the catalog holds it (original endpoints, for provenance)."""
    settings: Settings = field(repr=False)
    """The settings this resolution used."""

    @property
    def id(self) -> str:
        """Dataset id."""
        return self.entry.id

    @property
    def stac_api(self) -> str | None:
        """STAC API URL to search."""
        return self.entry.stac_api

    @property
    def wcs_url(self) -> str | None:
        """WCS endpoint to query."""
        return self.entry.wcs_url

    @property
    def collections(self) -> tuple[str, ...]:
        """STAC collections to search."""
        return self.entry.collections

    @property
    def asset(self) -> str | None:
        """Asset key to read."""
        return self.entry.asset

    def signer(self) -> Signer:
        """The href signer this dataset needs (shared, token-caching for PC datasets)."""
        return signer_for(self.entry, self.settings)

    def credentials(self) -> dict[str, str]:
        """Values of the entry's ``credentials_env`` variables, read now.

        Raises:
            ConfigurationError: a variable is unset; the message names it and where to
                register.
        """
        missing = [name for name in self.entry.credentials_env if not os.environ.get(name)]
        if missing:
            where = f" Register at {self.entry.homepage}." if self.entry.homepage else ""
            raise ConfigurationError(
                f"dataset {self.entry.id!r} needs credentials: set {', '.join(missing)}.{where}"
            )
        return {name: os.environ[name] for name in self.entry.credentials_env}


def resolve(entry: DatasetEntry, settings: Settings | None = None) -> ResolvedDataset:
    """Apply ``settings`` (default: the current settings) to ``entry``."""
    settings = settings if settings is not None else get_settings()
    return ResolvedDataset(
        entry=entry.with_overrides(settings), catalogued=entry, settings=settings
    )
