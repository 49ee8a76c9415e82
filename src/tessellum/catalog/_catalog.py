"""The immutable :class:`Catalog` of datasets, and loading it from TOML."""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pydantic

from ..errors import ConfigurationError, DatasetNotFoundError, ValidationError
from ._entry import DatasetEntry

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Settings
    from ._resolve import ResolvedDataset

__all__ = ["Catalog", "ProviderInfo", "builtin_catalog"]

_SCHEMA_VERSION = 1
_BUILTIN = "datasets.toml"


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """A provider as the catalog sees it: the datasets sharing one provider slug."""

    slug: str
    """Provider slug, e.g. ``copernicus_dem``."""
    name: str
    """Display name."""
    protocol: str
    """Protocol of its datasets (``a, b`` when they differ)."""
    datasets: tuple[str, ...]
    """Ids of its datasets."""
    license: str
    """License of its datasets (``a; b`` when they differ)."""
    supports_raster: bool
    """Whether any of its datasets supports raster mode."""


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _entry_error(exc: pydantic.ValidationError, ident: str, source: str) -> ConfigurationError:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        problems.append(f"field {loc!r}: {msg}" if loc else msg)
    return ConfigurationError(f"{source}: dataset {ident!r}: " + "; ".join(problems))


def make_entry(data: DatasetEntry | Mapping[str, Any], source: str = "<entry>") -> DatasetEntry:
    """Validate ``data`` into a :class:`DatasetEntry`.

    Raises:
        ConfigurationError: naming the entry and the offending field.
    """
    if isinstance(data, DatasetEntry):
        return data
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"{source}: a dataset entry must be a table/mapping, got {data!r}")
    ident = str(data.get("id") or f"{data.get('provider')}:{data.get('variable')}")
    try:
        return DatasetEntry.model_validate(dict(data))
    except pydantic.ValidationError as exc:
        raise _entry_error(exc, ident, source) from None


class Catalog:
    """An immutable set of :class:`DatasetEntry` keyed by id.

    Every "change" returns a new catalog (:meth:`register`, :meth:`merge`,
    :meth:`with_overrides`); pass catalogs explicitly to the functions that use them.
    """

    __slots__ = ("_entries",)

    def __init__(self, entries: Iterable[DatasetEntry | Mapping[str, Any]] = ()) -> None:
        """Build a catalog; duplicate ids raise :class:`ConfigurationError`."""
        table: dict[str, DatasetEntry] = {}
        for item in entries:
            entry = make_entry(item)
            if entry.id in table:
                raise ConfigurationError(f"duplicate dataset id {entry.id!r}")
            table[entry.id] = entry
        self._entries: Mapping[str, DatasetEntry] = MappingProxyType(dict(sorted(table.items())))

    # --- construction ---------------------------------------------------------------
    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "<mapping>") -> Catalog:
        """Build from the parsed form of a catalog file: ``{"datasets": {id: {...}}}``."""
        unknown = sorted(set(data) - {"schema_version", "datasets"})
        if unknown:
            raise ConfigurationError(f"{source}: unknown top-level key(s): {', '.join(unknown)}")
        version = data.get("schema_version", _SCHEMA_VERSION)
        if version != _SCHEMA_VERSION:
            raise ConfigurationError(
                f"{source}: schema_version {version!r} is not supported (expected {_SCHEMA_VERSION})"
            )
        datasets = data.get("datasets", {})
        if not isinstance(datasets, Mapping):
            raise ConfigurationError(f"{source}: 'datasets' must be a table of tables")
        entries = []
        for ident, fields in datasets.items():
            if not isinstance(fields, Mapping):
                raise ConfigurationError(f"{source}: dataset {ident!r} must be a table")
            if "id" in fields and fields["id"] != ident:
                raise ConfigurationError(
                    f"{source}: dataset {ident!r}: field 'id' = {fields['id']!r} differs "
                    "from its table name"
                )
            entries.append(make_entry({**fields, "id": ident}, source))
        return cls(entries)

    @classmethod
    def from_toml(cls, path: str | Path) -> Catalog:
        """Load a catalog file (see the shipped ``datasets.toml`` for the format).

        Raises:
            ConfigurationError: unreadable file, bad TOML, or an invalid entry (the
                message names the file, the entry and the field).
        """
        path = Path(path)
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigurationError(f"cannot read catalog file {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{path}: invalid TOML: {exc}") from None
        return cls.from_mapping(data, source=str(path))

    # --- mapping protocol -----------------------------------------------------------
    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[DatasetEntry]:
        return iter(self._entries.values())

    def __contains__(self, dataset_id: object) -> bool:
        return dataset_id in self._entries

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Catalog) and dict(self._entries) == dict(other._entries)

    __hash__ = None  # type: ignore[assignment]  # equality by value, not hashable

    def __repr__(self) -> str:
        return f"Catalog({len(self)} datasets: {', '.join(self._entries)})"

    @property
    def ids(self) -> tuple[str, ...]:
        """All dataset ids, sorted."""
        return tuple(self._entries)

    # --- lookups --------------------------------------------------------------------
    def get(self, dataset_id: str) -> DatasetEntry:
        """The entry with id ``dataset_id``.

        Raises:
            DatasetNotFoundError: unknown id; the message suggests close matches.
        """
        try:
            return self._entries[dataset_id]
        except (KeyError, TypeError):
            raise DatasetNotFoundError(self._not_found_message(dataset_id)) from None

    def _not_found_message(self, dataset_id: object) -> str:
        text = str(dataset_id)
        ids = list(self._entries)
        matches = difflib.get_close_matches(text, ids, n=3, cutoff=0.6)
        # a bare provider slug ("copernicus_dem") or variable also suggests its datasets
        matches += [i for i in ids if text in i.split(":") and i not in matches]
        if not matches:  # compare provider slugs alone: "copernicus_dme:elev" → provider typo
            slugs = {e.provider for e in self}
            close = difflib.get_close_matches(text.split(":")[0], slugs, n=2, cutoff=0.6)
            matches = [e.id for e in self if e.provider in close]
        hint = f"; did you mean {' or '.join(repr(m) for m in matches[:3])}?" if matches else ""
        return f"unknown dataset {text!r}{hint} (list them with `tessellum datasets`)"

    def list(
        self,
        *,
        provider: str | None = None,
        variable: str | None = None,
        kind: str | None = None,
        protocol: str | None = None,
        supports_raster: bool | None = None,
        bbox: tuple[float, float, float, float] | None = None,
    ) -> list[DatasetEntry]:
        """Entries matching every given filter, sorted by id.

        Args:
            provider: provider slug.
            variable: variable slug (``elevation``, ``land_cover``...).
            kind: ``continuous`` or ``categorical``.
            protocol: ``stac_cog`` or ``wcs``.
            supports_raster: keep only datasets that do (``True``) / do not support raster mode.
            bbox: CRS84 (min_lon, min_lat, max_lon, max_lat); keeps datasets whose coarse
                extent meets it.
        """
        if kind is not None and kind not in ("continuous", "categorical"):
            raise ValidationError(f"kind must be 'continuous' or 'categorical', got {kind!r}")
        if bbox is not None and len(bbox) != 4:
            raise ValidationError(
                f"bbox must be (min_lon, min_lat, max_lon, max_lat), got {bbox!r}"
            )
        return [
            e
            for e in self
            if (provider is None or e.provider == provider)
            and (variable is None or e.variable == variable)
            and (kind is None or e.kind == kind)
            and (protocol is None or e.protocol == protocol)
            and (supports_raster is None or e.supports_raster == supports_raster)
            and (bbox is None or e.intersects(tuple(bbox)))  # type: ignore[arg-type]
        ]

    def providers(self) -> list[ProviderInfo]:
        """One :class:`ProviderInfo` per provider slug, sorted by slug."""
        groups: dict[str, list[DatasetEntry]] = {}
        for entry in self:
            groups.setdefault(entry.provider, []).append(entry)
        return [
            ProviderInfo(
                slug=slug,
                name=entries[0].provider_name,
                protocol=", ".join(_unique(e.protocol for e in entries)),
                datasets=tuple(e.id for e in entries),
                license="; ".join(_unique(e.license for e in entries)),
                supports_raster=any(e.supports_raster for e in entries),
            )
            for slug, entries in sorted(groups.items())
        ]

    # --- derivation -----------------------------------------------------------------
    def register(
        self, entry: DatasetEntry | Mapping[str, Any], *, replace: bool = False
    ) -> Catalog:
        """A new catalog with ``entry`` added; this catalog is unchanged.

        A STAC/COG dataset becomes raster-capable by declaring ``collections``, ``asset``
        and ``supports_raster=True``.

        Args:
            entry: a :class:`DatasetEntry` or its fields as a mapping.
            replace: allow replacing an existing entry with the same id.

        Raises:
            ConfigurationError: an invalid entry, or an existing id without ``replace``.
        """
        new = make_entry(entry)
        if new.id in self._entries and not replace:
            raise ConfigurationError(
                f"dataset {new.id!r} is already in the catalog; pass replace=True to replace it"
            )
        return Catalog([*(e for e in self if e.id != new.id), new])

    def merge(self, other: Catalog) -> Catalog:
        """A new catalog with the entries of both; ``other`` wins on equal ids."""
        table = {**self._entries, **other._entries}
        return Catalog(table.values())

    def with_overrides(self, overrides: Mapping[str, Mapping[str, Any]]) -> Catalog:
        """A new catalog with per-dataset field overrides applied and re-validated.

        Raises:
            DatasetNotFoundError: an override names an unknown dataset.
            ConfigurationError: an override makes an entry invalid.
        """
        if not overrides:
            return self
        table = dict(self._entries)
        for ident, fields in overrides.items():
            base = self.get(ident)
            table[ident] = make_entry(
                {**base.model_dump(exclude_defaults=True), **fields, "id": ident},
                source="dataset_overrides",
            )
        return Catalog(table.values())

    def resolve(
        self, dataset: str | DatasetEntry, settings: Settings | None = None
    ) -> ResolvedDataset:
        """Look up ``dataset`` and apply the endpoint overrides of ``settings``.

        Args:
            dataset: a dataset id or an entry.
            settings: defaults to :func:`tessellum.config.get_settings` *now*.
        """
        from ._resolve import resolve

        entry = dataset if isinstance(dataset, DatasetEntry) else self.get(dataset)
        return resolve(entry, settings)


@cache
def builtin_catalog() -> Catalog:
    """The catalog shipped with tessellum (``tessellum/catalog/datasets.toml``)."""
    ref = resources.files(__package__).joinpath(_BUILTIN)
    data = tomllib.loads(ref.read_text(encoding="utf-8"))
    return Catalog.from_mapping(data, source=f"tessellum/catalog/{_BUILTIN}")
