"""WCS 2.0.1 GetCoverage passthrough: one request at the server's native grid.

The server chooses the pixel grid (its native resolution over the requested subset);
tessellum only checks that the answer is a georeferenced GeoTIFF and turns an OGC
exception report (XML) or an HTML error page into :class:`DataFormatError` carrying the
server's own message.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataFormatError, ProtocolError, UpstreamError

__all__ = ["Coverage", "exception_message", "get_coverage_async", "getcoverage_params"]

_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Coverage:
    """A GetCoverage answer: the first band, its GeoTIFF profile and the request URL."""

    array: np.ndarray
    profile: dict[str, Any]
    url: str


def getcoverage_params(
    coverage_id: str,
    bbox: tuple[float, float, float, float],
    *,
    axis_labels: tuple[str, str] = ("Long", "Lat"),
    fmt: str = "image/tiff",
) -> list[tuple[str, str]]:
    """Query parameters of a WCS 2.0.1 KVP GetCoverage over a (west, south, east, north)
    box; ``SUBSET`` appears once per axis, in the order the standard shows."""
    w, s, e, n = bbox
    x, y = axis_labels
    return [
        ("SERVICE", "WCS"),
        ("VERSION", "2.0.1"),
        ("REQUEST", "GetCoverage"),
        ("COVERAGEID", coverage_id),
        ("FORMAT", fmt),
        ("SUBSET", f"{x}({w!r},{e!r})"),
        ("SUBSET", f"{y}({s!r},{n!r})"),
    ]


def exception_message(body: bytes) -> str:
    """The human message of an OWS exception report or an HTML error page."""
    text = body.decode("utf-8", errors="replace")
    found = re.findall(r"<(?:\w+:)?ExceptionText>(.*?)</(?:\w+:)?ExceptionText>", text, re.S)
    if not found:
        found = re.findall(r"<(?:\w+:)?ServiceException(?:\s[^>]*)?>(.*?)</", text, re.S)
    if not found:
        found = re.findall(r"<title>(.*?)</title>", text, re.S | re.I)
        found += re.findall(r"<h1>(.*?)</h1>", text, re.S | re.I)
    if not found:
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)).strip()[:500]
    codes = re.findall(r'exceptionCode="([^"]+)"', text)
    msg = " | ".join(re.sub(r"\s+", " ", f).strip() for f in found)
    return f"{codes[0]}: {msg}" if codes else msg


def _looks_like_markup(body: bytes, content_type: str) -> bool:
    ctype = content_type.lower()
    if "xml" in ctype or "html" in ctype:
        return True
    return body.lstrip()[:1] == b"<"


async def get_coverage_async(
    url: str,
    coverage_id: str,
    bbox: tuple[float, float, float, float],
    *,
    axis_labels: tuple[str, str] = ("Long", "Lat"),
    auth: tuple[str, str] | None = None,
    timeout_s: float = 30.0,
    retries: int = 3,
    backoff_s: float = 0.5,
) -> Coverage:
    """GetCoverage over ``bbox`` from the WCS endpoint ``url``.

    Args:
        url: the WCS endpoint (may already carry a query, e.g. MapServer's ``map=``).
        coverage_id: the coverage to cut.
        bbox: (west, south, east, north) in the coverage's CRS axes.
        axis_labels: the subset axis names (``Long``/``Lat`` for geographic coverages).
        auth: HTTP basic credentials.
        timeout_s: per-request timeout.
        retries: retries on 5xx/429/timeouts/connection errors, with doubling backoff.
        backoff_s: first retry delay.

    Raises:
        DataFormatError: an exception report / HTML page (the server's message), or bytes
            that are not a georeferenced single-band GeoTIFF.
        ProtocolError: another HTTP error; ``UpstreamError`` when retries are exhausted.
    """
    import httpx

    from ._cog import read_geotiff_bytes

    params = getcoverage_params(coverage_id, bbox, axis_labels=axis_labels)
    delay = backoff_s
    async with httpx.AsyncClient(timeout=timeout_s, auth=auth, follow_redirects=True) as client:
        for attempt in range(retries + 1):
            try:
                resp = await client.get(url, params=_merge_query(url, params))
            except httpx.HTTPError as exc:
                if attempt < retries:
                    await asyncio.sleep(delay)
                    delay *= 2
                    continue
                raise UpstreamError(
                    f"WCS GetCoverage failed at {url}: {type(exc).__name__}: {exc}", url=url
                ) from exc
            if resp.status_code in _RETRY_STATUS and attempt < retries:
                await asyncio.sleep(delay)
                delay *= 2
                continue
            break
    full = str(resp.url)
    body = resp.content
    if _looks_like_markup(body, resp.headers.get("content-type", "")):
        raise DataFormatError(
            f"WCS {url} answered an error instead of a GeoTIFF (HTTP {resp.status_code}): "
            f"{exception_message(body)}",
            url=full,
        )
    if resp.status_code >= 400:
        cls = UpstreamError if resp.status_code >= 500 else ProtocolError
        raise cls(
            f"WCS GetCoverage at {url} failed: HTTP {resp.status_code} {body[:200]!r}",
            url=full,
            status=resp.status_code,
        )
    array, profile = await asyncio.to_thread(read_geotiff_bytes, body, full)
    return Coverage(array, profile, full)


def _merge_query(url: str, params: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    # httpx replaces a URL's query with ``params``; keep the endpoint's own (``map=...``)
    from urllib.parse import parse_qsl, urlsplit

    own = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    return [*own, *params]
