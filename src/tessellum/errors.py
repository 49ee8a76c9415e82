"""One exception hierarchy for tessellum.

Every error raised on purpose derives from :class:`TessellumError`; where the meaning
matches a builtin, the class also derives from it (``except ValueError`` keeps working).
Errors know nothing of HTTP: ``tessellum.service`` maps classes to status codes.
"""

from __future__ import annotations

__all__ = [
    "CRSError",
    "CollectionError",
    "ConfigurationError",
    "DataFormatError",
    "DatasetNotFoundError",
    "ExtractionError",
    "NotFoundError",
    "ProtocolError",
    "RasterUnsupportedError",
    "ReadError",
    "TessellumError",
    "TessellumWarning",
    "UpstreamError",
    "ValidationError",
]


class TessellumError(Exception):
    """Root of every error tessellum raises on purpose."""


class ValidationError(TessellumError, ValueError):
    """A public function was given an invalid argument; the message names the value."""


class ConfigurationError(TessellumError, ValueError):
    """Configuration (settings, catalog files, environment variables) is invalid."""


class CRSError(ValidationError):
    """A coordinate reference system cannot be parsed or two CRSs do not match."""


class ProtocolError(TessellumError):
    """A remote service failed or answered outside its protocol (STAC, HTTP, S3, WCS).

    Also raised when a search finds no item intersecting the request.
    """

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None):
        super().__init__(message)
        self.url = url
        self.status = status


class UpstreamError(ProtocolError):
    """A storage request failed after retries (5xx, 429, timeouts, connection errors)."""


class NotFoundError(ProtocolError, FileNotFoundError):
    """The object does not exist upstream (HTTP 404, missing key, missing file)."""


class DataFormatError(TessellumError):
    """Bytes do not form what they should: corrupt/truncated TIFF, a short response, an
    HTML error page where a GeoTIFF was expected.

    ``url`` and ``offset`` locate the problem when known.
    """

    def __init__(self, message: str, *, url: str | None = None, offset: int | None = None):
        super().__init__(message)
        self.url = url
        self.offset = offset


class RasterUnsupportedError(TessellumError):
    """A valid raster uses a feature tessellum does not support, or a dataset/protocol
    does not support raster mode or the requested option."""


class ExtractionError(TessellumError):
    """An extraction failed as a whole (e.g. the per-provider timeout elapsed)."""


class ReadError(TessellumError):
    """Pixels could not be read for a request."""


class CollectionError(TessellumError):
    """A collection cannot be built, loaded or saved."""


class DatasetNotFoundError(TessellumError, KeyError):
    """A dataset id is not in the catalog."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class TessellumWarning(UserWarning):
    """Warnings tessellum emits (e.g. assets that failed during a build)."""
