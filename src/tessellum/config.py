"""Settings: one immutable value, read from ``TESSELLUM_*`` environment variables.

The process has one *current* :class:`Settings`. :func:`get_settings` returns it (read
from the environment on first use, never at import), :func:`configure` derives a new one
from keyword overrides and makes it current, and :func:`settings_override` swaps it for a
``with`` block only (a context variable, so concurrent tasks do not see each other's
overrides). Components that resolve endpoints (the catalog, the signer) read settings at
*lookup time*, so pointing tessellum at local servers means changing base URLs only::

    TESSELLUM_STAC_API=http://127.0.0.1:8080            # every dataset's STAC API
    TESSELLUM_STAC_API_COPERNICUS_DEM=http://...         # one provider's STAC API
    TESSELLUM_WCS_URL_TANDEM_X=http://...                # one provider's WCS endpoint
    TESSELLUM_SIGN_HOSTS=127.0.0.1,*.blob.core.windows.net
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any

import pydantic
from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from .errors import ConfigurationError

__all__ = [
    "DEFAULT_PC_TOKEN_ENDPOINT",
    "Settings",
    "configure",
    "get_settings",
    "load_settings",
    "reset_settings",
    "settings_override",
]

ENV_PREFIX = "TESSELLUM_"
DEFAULT_PC_TOKEN_ENDPOINT = "https://planetarycomputer.microsoft.com/api/sas/v1/token"

# env prefixes collected into per-provider maps: TESSELLUM_STAC_API_<PROVIDER>=url
_PER_PROVIDER_ENV = {
    "stac_api_overrides": f"{ENV_PREFIX}STAC_API_",
    "wcs_url_overrides": f"{ENV_PREFIX}WCS_URL_",
}


def _split_list(value: Any) -> Any:
    """Accept ``a,b`` (and ``os.pathsep``) strings for list settings besides JSON arrays."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        parts = text.replace(os.pathsep, ",").split(",")
        return tuple(part.strip() for part in parts if part.strip())
    return value


def _norm_url(url: str) -> str:
    return url.rstrip("/")


class Settings(BaseSettings):
    """Runtime configuration. Immutable; derive new values with :func:`configure`.

    Every field can be set with an environment variable ``TESSELLUM_<FIELD>`` (case
    insensitive); mappings take JSON, lists take JSON or comma-separated values.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
    )

    # --- endpoints -------------------------------------------------------------------
    stac_api: str | None = None
    """Replacement for *every* dataset's STAC API URL (``TESSELLUM_STAC_API``)."""
    stac_api_overrides: dict[str, str] = Field(default_factory=dict)
    """Original STAC API URL or provider slug -> replacement URL. Also filled from
    ``TESSELLUM_STAC_API_<PROVIDER>`` variables. Provider keys win over URL keys, which
    win over :attr:`stac_api`."""
    wcs_url: str | None = None
    """Replacement for every dataset's WCS endpoint (``TESSELLUM_WCS_URL``)."""
    wcs_url_overrides: dict[str, str] = Field(default_factory=dict)
    """Original WCS URL or provider slug -> replacement URL (``TESSELLUM_WCS_URL_<PROVIDER>``)."""

    # --- signing ---------------------------------------------------------------------
    pc_token_endpoint: str = DEFAULT_PC_TOKEN_ENDPOINT
    """Planetary Computer SAS token API; tokens come from ``{endpoint}/{account}/{container}``."""
    sign_hosts: Annotated[tuple[str, ...], NoDecode] = ("*.blob.core.windows.net",)
    """Host patterns (fnmatch, against ``host`` or ``host:port``) whose hrefs need a SAS
    token. Hosts other than ``*.blob.core.windows.net`` are read path-style
    (``/{account}/{container}/...``, as Azurite serves them)."""
    token_refresh_margin_s: float = Field(default=60.0, ge=0)
    """A cached SAS token is refreshed this many seconds before it expires."""

    # --- catalog ---------------------------------------------------------------------
    catalog_files: Annotated[tuple[Path, ...], NoDecode] = ()
    """Extra TOML catalog files merged over the shipped catalog (later files win)."""
    dataset_overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Dataset id -> field overrides applied to the default catalog (re-validated)."""

    # --- I/O -------------------------------------------------------------------------
    max_concurrency: int = Field(default=64, ge=1)
    """Upper bound on concurrent range requests, process-wide."""
    header_prefix_bytes: int = Field(default=65536, ge=1024)
    """Size of the speculative prefix read that parses a COG header."""
    request_timeout_s: float = Field(default=30.0, gt=0)
    """Timeout of one HTTP request (connect + read)."""
    retries: int = Field(default=3, ge=0)
    """Retries of a failed upstream request (5xx, 429, timeouts), with backoff."""
    retry_backoff_s: float = Field(default=0.5, ge=0)
    """First retry delay; doubles on each further retry."""
    provider_timeout_s: float = Field(default=120.0, gt=0)
    """Wall-clock limit of one extraction against one provider."""
    output_pool_bytes: int = Field(default=512 * 1024 * 1024, ge=0)
    """Memory of large read outputs (8 MiB and more) kept for reuse once every array
    over it is gone, so the next large read pays no page faults; 0 keeps none."""
    heap_retain_bytes: int = Field(default=256 * 1024 * 1024, ge=0)
    """glibc only: freed heap memory kept for reuse at the top of each malloc arena
    (malloc's trim threshold, set when the first store opens; never more than the
    arena held at its peak), so the HTTP client's response buffers do not cost fresh
    page faults on every read; 0 leaves malloc as it is."""
    max_output_pixels: int = Field(default=100_000_000, ge=1)
    """Raster mode refuses outputs larger than this many pixels."""
    zonal_processes: int = Field(default=0, ge=0)
    """Worker processes for the zonal passes of large attribute batches; 0 computes
    in-process (datasets side by side in threads). Workers pay for shipping each mosaic,
    so they pay off for many datasets or very large batches; batches under 256 polygons
    per dataset always stay in-process."""

    # --- attribute cache -------------------------------------------------------------
    cache_enabled: bool = True
    """Whether the attribute (statistics) cache is used."""
    cache_ttl_s: float = Field(default=86_400.0, ge=0)
    """Lifetime of a cached attribute result."""
    cache_max_entries: int = Field(default=10_000, ge=0)
    """Size bound of the in-memory attribute cache."""
    redis_url: str | None = None
    """When set, the attribute cache lives in Redis at this URL."""

    # --- UI --------------------------------------------------------------------------
    progress: bool | None = None
    """Progress bars: ``True``/``False`` force them, ``None`` shows them on a TTY."""

    @field_validator("sign_hosts", "catalog_files", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("stac_api_overrides", "wcs_url_overrides", mode="after")
    @classmethod
    def _normalise_keys(cls, value: dict[str, str]) -> dict[str, str]:
        # URL keys compare without a trailing slash; provider keys are lower-case slugs
        return {(_norm_url(k) if "://" in k else k.lower()): v for k, v in value.items() if v}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Add the ``TESSELLUM_STAC_API_<PROVIDER>`` source after the plain env source."""
        return (
            init_settings,
            env_settings,
            _PerProviderEnvSource(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )

    # --- lookups ---------------------------------------------------------------------
    def stac_api_for(self, provider: str, url: str | None) -> str | None:
        """The STAC API URL to use for ``provider`` whose catalogued API is ``url``."""
        return _pick(self.stac_api_overrides, self.stac_api, provider, url)

    def wcs_url_for(self, provider: str, url: str | None) -> str | None:
        """The WCS endpoint to use for ``provider`` whose catalogued endpoint is ``url``."""
        return _pick(self.wcs_url_overrides, self.wcs_url, provider, url)

    def show_progress(self, explicit: bool | None = None) -> bool:
        """Whether to show a progress bar: ``explicit``, else :attr:`progress`, else TTY."""
        if explicit is not None:
            return explicit
        if self.progress is not None:
            return self.progress
        return sys.stderr.isatty()


def _pick(
    overrides: Mapping[str, str], everywhere: str | None, provider: str, url: str | None
) -> str | None:
    if provider.lower() in overrides:
        return overrides[provider.lower()]
    if url is not None and _norm_url(url) in overrides:
        return overrides[_norm_url(url)]
    if everywhere and url is not None:
        return everywhere
    return url


class _PerProviderEnvSource(PydanticBaseSettingsSource):
    """Collects ``TESSELLUM_STAC_API_<PROVIDER>`` / ``TESSELLUM_WCS_URL_<PROVIDER>`` into
    the override maps (pydantic-settings has no wildcard variables)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for field, prefix in _PER_PROVIDER_ENV.items():
            exact = f"{ENV_PREFIX}{field}".upper()  # the JSON variable of the map itself
            values = {
                key.upper()[len(prefix) :].lower(): value
                for key, value in os.environ.items()
                if key.upper().startswith(prefix) and key.upper() != exact and value
            }
            if values:
                found[field] = values
        return found


def _config_error(exc: pydantic.ValidationError, origin: str) -> ConfigurationError:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
        for err in exc.errors()
    )
    return ConfigurationError(f"invalid tessellum settings ({origin}): {problems}")


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment, with ``overrides`` taking precedence.

    Raises:
        ConfigurationError: a value (from the environment or ``overrides``) is invalid;
            the message names the field.
    """
    try:
        return Settings(**overrides)
    except pydantic.ValidationError as exc:
        raise _config_error(exc, "environment / arguments") from None


def _derive(base: Settings, overrides: Mapping[str, Any]) -> Settings:
    unknown = sorted(set(overrides) - set(Settings.model_fields))
    if unknown:
        raise ConfigurationError(
            f"unknown tessellum setting(s): {', '.join(unknown)}; "
            f"known: {', '.join(sorted(Settings.model_fields))}"
        )
    data = {**base.model_dump(), **overrides}
    try:
        # model_validate skips the env sources: a derived value is exactly base + overrides
        return Settings.model_validate(data)
    except pydantic.ValidationError as exc:
        raise _config_error(exc, "configure()") from None


_lock = threading.Lock()
_process_settings: Settings | None = None
_scoped: ContextVar[Settings | None] = ContextVar("tessellum_settings", default=None)


def _process() -> Settings:
    global _process_settings
    with _lock:
        if _process_settings is None:
            _process_settings = load_settings()
        return _process_settings


def get_settings() -> Settings:
    """The current settings: a :func:`settings_override` value, else the process value."""
    scoped = _scoped.get()
    return scoped if scoped is not None else _process()


def configure(**overrides: Any) -> Settings:
    """Derive new process-wide settings from the current ones and make them current.

    Example::

        tessellum.configure(stac_api="http://127.0.0.1:8080", max_concurrency=16)

    Inside a :func:`settings_override` block the override still wins for that block.

    Returns:
        The new :class:`Settings`.

    Raises:
        ConfigurationError: an unknown field or an invalid value.
    """
    global _process_settings
    new = _derive(_process(), overrides)
    with _lock:
        _process_settings = new
    return new


def reset_settings() -> None:
    """Forget the process-wide settings; the next :func:`get_settings` re-reads the env."""
    global _process_settings
    with _lock:
        _process_settings = None


@contextlib.contextmanager
def settings_override(**overrides: Any) -> Iterator[Settings]:
    """Use settings derived from the current ones for the duration of a ``with`` block.

    The override is held in a context variable: it applies to this thread / task and
    to tasks it starts, and is undone on exit even on error.
    """
    new = _derive(get_settings(), overrides)
    token = _scoped.set(new)
    try:
        yield new
    finally:
        _scoped.reset(token)
