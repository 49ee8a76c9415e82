"""Retries with backoff, and translation of storage exceptions into tessellum errors.

obstore raises a few exception classes whose messages carry the HTTP status
("status code: 503") or the transport failure ("Timeout", "error sending request");
:func:`classify` reads them once, so the retry loop and the error mapping agree.
obstore's own retries are switched off on stores built by :func:`open_store`
(``max_retries=0``) so that attempts are counted here, once.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from obstore.exceptions import PermissionDeniedError, UnauthenticatedError

from ..errors import (
    DataFormatError,
    NotFoundError,
    ProtocolError,
    TessellumError,
    UpstreamError,
    ValidationError,
)
from ._stats import IOStats

__all__ = ["Failure", "Kind", "RetryPolicy", "classify", "to_tessellum_error", "with_retries"]

T = TypeVar("T")

_STATUS = re.compile(r"status(?: code)?:\s*(\d{3})\b", re.IGNORECASE)
_RETRY_AFTER = re.compile(r"retry-after\W+(\d+(?:\.\d+)?)", re.IGNORECASE)
_TRANSIENT = (
    "timeout",
    "timed out",
    "error sending request",
    "connection",
    "interrupted",
    "incompletebody",
    "body error",
    "broken pipe",
    "reset by peer",
    "unexpectedeof",
)
_MAX_RETRY_AFTER = 60.0  # a server asking for longer is treated as down
_BAD_RANGE = ("requested range was invalid", "invalid range", "range not satisfiable")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter for transient storage failures.

    Retried: HTTP 408, 429, 5xx, timeouts, connection errors and truncated bodies.
    Never retried: other 4xx, missing objects, short or out-of-range responses.
    """

    max_attempts: int = 4
    """Attempts per request, the first included (1 disables retries)."""
    base_delay: float = 0.1
    """Backoff before the first retry in seconds; doubles per attempt."""
    max_delay: float = 5.0
    """Upper bound of one backoff in seconds."""
    throttle_delay: float = 1.0
    """Least wait after HTTP 429. obstore does not expose response headers, so a
    ``Retry-After`` value is honoured only when it appears in the error message;
    otherwise this floor stands in for it."""

    @classmethod
    def from_settings(cls) -> RetryPolicy:
        """The policy the current settings ask for (``retries``, ``retry_backoff_s``)."""
        from ..config import get_settings

        settings = get_settings()
        return cls(max_attempts=settings.retries + 1, base_delay=settings.retry_backoff_s)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValidationError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0 or self.throttle_delay < 0:
            raise ValidationError("retry delays must be >= 0")

    def backoff(self, attempt: int, failure: Failure | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        cap = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        delay = random.uniform(cap / 2, cap)  # "equal jitter": never a zero wait
        if failure is not None and failure.retry_after is not None:
            return max(delay, min(failure.retry_after, _MAX_RETRY_AFTER))
        if failure is not None and failure.status == 429:
            delay = max(delay, self.throttle_delay)
        return delay


class Kind(Enum):
    """What went wrong, as far as retrying and reporting are concerned."""

    TRANSIENT = "transient"
    NOT_FOUND = "not_found"
    BAD_RANGE = "bad_range"
    SHORT = "short"
    FORBIDDEN = "forbidden"
    FATAL = "fatal"


@dataclass(frozen=True, slots=True)
class Failure:
    """A classified exception."""

    kind: Kind
    status: int | None
    retry_after: float | None
    detail: str
    """First line of the original message, without obstore's debug dump."""


def classify(exc: BaseException) -> Failure:
    """Classify an exception raised by a store call."""
    text = str(exc)
    detail = text.split("\n\nDebug source:")[0].strip().splitlines()[0] if text else ""
    detail = detail or type(exc).__name__
    lower = text.lower()
    m = _STATUS.search(text)
    status = int(m.group(1)) if m else None
    m = _RETRY_AFTER.search(text)
    retry_after = float(m.group(1)) if m else None

    def f(kind: Kind, st: int | None = status) -> Failure:
        return Failure(kind, st, retry_after, detail)

    if isinstance(exc, FileNotFoundError) or status == 404:
        return f(Kind.NOT_FOUND)
    if isinstance(exc, PermissionDeniedError | UnauthenticatedError):
        return f(Kind.FORBIDDEN, status or (401 if isinstance(exc, UnauthenticatedError) else 403))
    if status is not None:
        if status == 416:
            return f(Kind.BAD_RANGE)
        if status in (408, 429) or status >= 500:
            return f(Kind.TRANSIENT)
        return f(Kind.FORBIDDEN if status in (401, 403) else Kind.FATAL)
    if "unexpectedrange" in lower or re.search(r"requested \d+\.\.\d+, got", lower):
        return f(Kind.SHORT)
    if any(s in lower for s in _BAD_RANGE):
        return f(Kind.BAD_RANGE)
    if isinstance(exc, TimeoutError | ConnectionError) or any(s in lower for s in _TRANSIENT):
        return f(Kind.TRANSIENT)
    return f(Kind.FATAL)


def to_tessellum_error(
    failure: Failure, *, url: str, what: str, attempts: int = 1
) -> TessellumError:
    """The tessellum error for a classified failure; ``what`` names the request."""
    st = f" (HTTP {failure.status})" if failure.status else ""
    if failure.kind is Kind.NOT_FOUND:
        return NotFoundError(f"not found: {url}{st}", url=url, status=failure.status or 404)
    if failure.kind is Kind.FORBIDDEN:
        return ProtocolError(
            f"access denied to {url}{st}: {failure.detail}", url=url, status=failure.status
        )
    if failure.kind is Kind.SHORT:
        return DataFormatError(f"short response for {what} of {url}: {failure.detail}", url=url)
    if failure.kind is Kind.BAD_RANGE:
        return DataFormatError(f"{what} lies beyond the end of {url}: {failure.detail}", url=url)
    if failure.kind is Kind.TRANSIENT:
        tries = f" after {attempts} attempt{'s' if attempts != 1 else ''}"
        return UpstreamError(
            f"{what} of {url} failed{tries}{st}: {failure.detail}", url=url, status=failure.status
        )
    return ProtocolError(
        f"{what} of {url} failed{st}: {failure.detail}", url=url, status=failure.status
    )


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    url: str,
    what: str,
    stats: IOStats | None = None,
) -> T:
    """Await ``call()`` until it succeeds, retrying transient failures per ``policy``.

    Each attempt counts as one request in ``stats``. Errors leave as tessellum errors.
    """
    attempt = 0
    while True:
        attempt += 1
        if stats is not None:
            stats.add(requests=1, retries=int(attempt > 1))
        try:
            return await call()
        except TessellumError:
            if stats is not None:
                stats.add(errors=1)
            raise
        except Exception as exc:
            if stats is not None:
                stats.add(errors=1)
            failure = classify(exc)
            if failure.kind is not Kind.TRANSIENT or attempt >= policy.max_attempts:
                raise to_tessellum_error(failure, url=url, what=what, attempts=attempt) from exc
            await asyncio.sleep(policy.backoff(attempt, failure))
