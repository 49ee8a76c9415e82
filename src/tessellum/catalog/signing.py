"""Signing asset hrefs: Planetary-Computer-style SAS tokens, or nothing.

Planetary Computer serves its COGs from Azure Blob Storage; a read needs a short-lived
SAS token from ``{token_endpoint}/{account}/{container}``, answered as
``{"msedge.expiry": "<ISO time>", "token": "<query string>"}``. The signer caches one
token per (account, container) until shortly before it expires and appends it to hrefs
as their query string. Other hrefs pass through unchanged.

Which hosts need a token is a setting (``sign_hosts``), so tests exercise the real path
against local servers: ``*.blob.core.windows.net`` hrefs are read virtual-host style
(``https://{account}.blob.core.windows.net/{container}/...``), any other matching host
path-style (``http://127.0.0.1:10000/{account}/{container}/...``, as Azurite serves).
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import fnmatch
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from ..errors import ProtocolError

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Settings
    from ._entry import DatasetEntry

__all__ = ["NoSigner", "PlanetaryComputerSigner", "Signer", "signer_for"]

_BLOB_SUFFIX = ".blob.core.windows.net"
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@runtime_checkable
class Signer(Protocol):
    """Turns an asset href into one that can be read."""

    async def sign(self, href: str) -> str:
        """The readable form of ``href``."""
        ...

    async def sign_item(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of a STAC item (as a dict) with every asset href signed."""
        ...


class NoSigner:
    """Signer for public data: hrefs are returned unchanged."""

    async def sign(self, href: str) -> str:
        """Return ``href`` unchanged."""
        return href

    async def sign_item(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """Return a deep copy of ``item``."""
        return copy.deepcopy(dict(item))


@dataclass(frozen=True, slots=True)
class _Token:
    token: str
    expires_at: float  # epoch seconds


def _parse_expiry(text: str) -> float:
    stamp = dt.datetime.fromisoformat(text.strip())
    if stamp.tzinfo is None:  # the API answers in UTC
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


class PlanetaryComputerSigner:
    """Signs Azure Blob Storage hrefs with cached Planetary Computer SAS tokens.

    Safe to share between tasks and event loops: concurrent requests for one container
    on one loop share a single token request.

    Args:
        token_endpoint: SAS token API root.
        sign_hosts: fnmatch patterns of hosts (``host`` or ``host:port``) to sign.
        timeout_s: timeout of one token request.
        retries: retries of a failed token request (5xx, 429, connection errors).
        backoff_s: first retry delay, doubling.
        refresh_margin_s: refresh a token this long before it expires.
        clock: epoch-seconds clock, injectable so expiry can be tested without waiting.
    """

    def __init__(
        self,
        token_endpoint: str = "https://planetarycomputer.microsoft.com/api/sas/v1/token",
        *,
        sign_hosts: tuple[str, ...] = ("*.blob.core.windows.net",),
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        refresh_margin_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token_endpoint = token_endpoint.rstrip("/")
        self.sign_hosts = tuple(p.lower() for p in sign_hosts)
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.refresh_margin_s = refresh_margin_s
        self._clock = clock
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._inflight: dict[tuple[int, str, str], asyncio.Task[_Token]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> PlanetaryComputerSigner:
        """A signer configured by ``settings`` (token endpoint, hosts, timeouts)."""
        return cls(
            settings.pc_token_endpoint,
            sign_hosts=settings.sign_hosts,
            timeout_s=settings.request_timeout_s,
            retries=settings.retries,
            backoff_s=settings.retry_backoff_s,
            refresh_margin_s=settings.token_refresh_margin_s,
        )

    def __repr__(self) -> str:
        return f"PlanetaryComputerSigner({self.token_endpoint!r}, sign_hosts={self.sign_hosts})"

    # --- which hrefs ----------------------------------------------------------------
    def container_of(self, href: str) -> tuple[str, str] | None:
        """``(account, container)`` of an href that needs signing, else ``None``."""
        parts = urlsplit(href)
        host = (parts.hostname or "").lower()
        if not host or parts.scheme not in ("http", "https"):
            return None
        names = [host] if parts.port is None else [host, f"{host}:{parts.port}"]
        if not any(fnmatch.fnmatch(n, pat) for pat in self.sign_hosts for n in names):
            return None
        segments = [s for s in parts.path.split("/") if s]
        if host.endswith(_BLOB_SUFFIX):  # virtual-host style
            account = host.removesuffix(_BLOB_SUFFIX)
            return (account, segments[0]) if segments else None
        return (segments[0], segments[1]) if len(segments) >= 2 else None  # path style

    # --- signing --------------------------------------------------------------------
    async def sign(self, href: str) -> str:
        """``href`` with a SAS token as its query string, when its host needs one.

        Hrefs already carrying a signature (``sig=``) are returned unchanged.

        Raises:
            ProtocolError: the token endpoint failed; the message names its URL.
        """
        target = self.container_of(href)
        if target is None:
            return href
        query = urlsplit(href).query
        if "sig=" in query:
            return href
        token = await self.token(*target)
        return f"{href}{'&' if query else '?'}{token}"

    def sign_sync(self, href: str) -> str:
        """Blocking :meth:`sign` (works inside a running event loop too)."""
        from .._sync import run_sync

        return run_sync(self.sign(href))

    async def sign_item(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """A deep copy of a STAC item dict with every asset ``href`` signed."""
        signed = copy.deepcopy(dict(item))
        assets = [a for a in (signed.get("assets") or {}).values() if isinstance(a, dict)]
        hrefs = await asyncio.gather(*(self.sign(a["href"]) for a in assets if "href" in a))
        for asset, href in zip((a for a in assets if "href" in a), hrefs, strict=True):
            asset["href"] = href
        return signed

    async def token(self, account: str, container: str) -> str:
        """The cached SAS token of ``account/container``, fetched when missing or expiring."""
        key = (account, container)
        cached = self._tokens.get(key)
        if cached is not None and self._clock() + self.refresh_margin_s < cached.expires_at:
            return cached.token
        loop = asyncio.get_running_loop()
        # one request per container per loop, however many hrefs wait for it
        flight = (id(loop), account, container)
        task = self._inflight.get(flight)
        if task is None or task.get_loop() is not loop:
            task = loop.create_task(self._fetch(account, container))
            self._inflight[flight] = task
            task.add_done_callback(lambda t, f=flight: self._drop_inflight(f, t))
        fresh = await asyncio.shield(task)
        self._tokens[key] = fresh
        return fresh.token

    def _drop_inflight(self, flight: tuple[int, str, str], task: asyncio.Task[_Token]) -> None:
        if self._inflight.get(flight) is task:
            del self._inflight[flight]
        if not task.cancelled():
            task.exception()  # mark retrieved: waiters re-raise it, nobody else should log it

    def clear(self) -> None:
        """Forget cached tokens."""
        self._tokens.clear()

    async def _fetch(self, account: str, container: str) -> _Token:
        import httpx  # only signing needs an HTTP client

        url = f"{self.token_endpoint}/{account}/{container}"
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                    response = await client.get(url)
            except httpx.HTTPError as exc:
                if last:
                    raise ProtocolError(
                        f"SAS token request to {url} failed: {type(exc).__name__}: {exc}", url=url
                    ) from exc
            else:
                if response.status_code == 200:
                    return _parse_token(response, url)
                if last or response.status_code not in _RETRY_STATUS:
                    raise ProtocolError(
                        f"SAS token request to {url} failed: HTTP {response.status_code}: "
                        f"{response.text[:200]!r}",
                        url=url,
                        status=response.status_code,
                    )
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover


def _parse_token(response: Any, url: str) -> _Token:
    try:
        body = response.json()
        return _Token(
            token=str(body["token"]).lstrip("?"), expires_at=_parse_expiry(body["msedge.expiry"])
        )
    except (ValueError, KeyError, TypeError):
        raise ProtocolError(
            f"SAS token response from {url} is not {{'msedge.expiry', 'token'}} JSON: "
            f"{response.text[:200]!r}",
            url=url,
            status=response.status_code,
        ) from None


@lru_cache(maxsize=16)
def _shared_pc_signer(
    endpoint: str,
    sign_hosts: tuple[str, ...],
    timeout_s: float,
    retries: int,
    backoff_s: float,
    margin_s: float,
) -> PlanetaryComputerSigner:
    # a cache (not a registry): equal settings share one signer, hence one token cache
    return PlanetaryComputerSigner(
        endpoint,
        sign_hosts=sign_hosts,
        timeout_s=timeout_s,
        retries=retries,
        backoff_s=backoff_s,
        refresh_margin_s=margin_s,
    )


def signer_for(entry: DatasetEntry, settings: Settings | None = None) -> Signer:
    """The signer ``entry`` needs under ``settings`` (default: current settings).

    Planetary Computer datasets get a signer shared by every caller with equal settings,
    so tokens are fetched once per container, not once per request.
    """
    if entry.signing != "planetary_computer":
        return NoSigner()
    if settings is None:
        from ..config import get_settings

        settings = get_settings()
    return _shared_pc_signer(
        settings.pc_token_endpoint.rstrip("/"),
        tuple(settings.sign_hosts),
        settings.request_timeout_s,
        settings.retries,
        settings.retry_backoff_s,
        settings.token_refresh_margin_s,
    )
