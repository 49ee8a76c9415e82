"""HTTP byte ranges (RFC 9110 §14): parse a ``Range`` header, build and split multipart bodies."""

from __future__ import annotations

import re

from tessellum.errors import DataFormatError

__all__ = ["build_multipart", "parse_multipart_byteranges", "parse_range_header"]

_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


def parse_range_header(header: str, size: int) -> list[tuple[int, int]] | None:
    """Resolve a ``Range`` header against a representation of ``size`` bytes.

    Args:
        header: the raw header value, e.g. ``"bytes=0-99,200-"``.
        size: length of the full representation.

    Returns:
        ``None`` when the header is not a valid bytes range (serve the whole body, as
        servers do), otherwise the satisfiable ranges as inclusive ``(first, last)``
        pairs in request order; an empty list means 416 Range Not Satisfiable.
    """
    unit, _, specs = header.partition("=")
    if unit.strip().lower() != "bytes" or not specs.strip():
        return None
    ranges: list[tuple[int, int]] = []
    for spec in specs.split(","):
        match = _SPEC.match(spec)
        if match is None:
            return None
        first_s, last_s = match.groups()
        if first_s == "" and last_s == "":
            return None
        if first_s == "":  # suffix range: the last N bytes
            n = int(last_s)
            if n == 0 or size == 0:
                continue
            ranges.append((max(0, size - n), size - 1))
            continue
        first = int(first_s)
        if last_s and int(last_s) < first:
            return None
        if first >= size:
            continue
        last = int(last_s) if last_s else size - 1
        ranges.append((first, min(last, size - 1)))
    return ranges


def build_multipart(
    data: bytes | memoryview,
    ranges: list[tuple[int, int]],
    *,
    size: int,
    content_type: str,
    boundary: str,
) -> bytes:
    """Build a ``multipart/byteranges`` body for ``ranges`` of ``data``."""
    parts: list[bytes] = []
    for first, last in ranges:
        head = (
            f"\r\n--{boundary}\r\nContent-Type: {content_type}\r\n"
            f"Content-Range: bytes {first}-{last}/{size}\r\n\r\n"
        )
        parts.append(head.encode("ascii"))
        parts.append(bytes(data[first : last + 1]))
    parts.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    return b"".join(parts)


def parse_multipart_byteranges(body: bytes, content_type: str) -> list[tuple[int, int, bytes]]:
    """Split a ``multipart/byteranges`` response body into its parts.

    Args:
        body: the response body.
        content_type: the response's ``Content-Type`` header (carries the boundary).

    Returns:
        ``(first, last, data)`` per part, in the order the server sent them.

    Raises:
        DataFormatError: the body is not a well-formed multipart/byteranges payload.
    """
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.lower().startswith("multipart/byteranges") or match is None:
        raise DataFormatError(f"not a multipart/byteranges content type: {content_type!r}")
    delimiter = b"--" + match.group(1).encode("ascii")
    parts: list[tuple[int, int, bytes]] = []
    pos = body.find(delimiter)
    while pos >= 0:
        pos += len(delimiter)
        if body[pos : pos + 2] == b"--":
            return parts
        head_end = body.find(b"\r\n\r\n", pos)
        if head_end < 0:
            break
        headers = body[pos:head_end].decode("latin-1")
        cr = re.search(r"(?im)^content-range:\s*bytes\s+(\d+)-(\d+)/(\d+|\*)", headers)
        if cr is None:
            raise DataFormatError("multipart part without Content-Range", offset=pos)
        first, last = int(cr.group(1)), int(cr.group(2))
        start = head_end + 4
        end = start + (last - first + 1)
        parts.append((first, last, body[start:end]))
        pos = body.find(delimiter, end)
    raise DataFormatError("multipart/byteranges body is truncated (no closing boundary)")
