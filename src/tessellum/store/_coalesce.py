"""Coalescing byte ranges into few GET requests: a pure function, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ValidationError

__all__ = ["CoalescePolicy", "MergedRange", "coalesce_ranges"]

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class CoalescePolicy:
    """When two byte ranges of one object are fetched by one request."""

    max_gap: int = 1 * MiB
    """Largest gap (bytes, inclusive) read through to join two ranges; adjacent ranges
    (gap 0) join when ``max_gap >= 0``; ``-1`` joins only overlapping ranges."""

    max_request: int = 16 * MiB
    """Largest merged request in bytes; a single larger input range is never split."""

    def __post_init__(self) -> None:
        if self.max_gap < -1:
            raise ValidationError(f"max_gap must be >= -1, got {self.max_gap}")
        if self.max_request < 1:
            raise ValidationError(f"max_request must be >= 1, got {self.max_request}")

    @classmethod
    def for_link(
        cls,
        latency_s: float,
        bandwidth_Bps: float,  # noqa: N803 (the public parameter name)
        *,
        max_gap_cap: int = 2 * MiB,
        max_request: int = 16 * MiB,
    ) -> CoalescePolicy:
        """Derive a policy from a link's round-trip latency and bandwidth.

        Reading a gap of ``latency * bandwidth`` bytes costs as much time as one more
        round trip, so any smaller gap is cheaper to read through than to skip.

        Args:
            latency_s: Round-trip time per request in seconds (e.g. 0.05 for S3 in-region).
            bandwidth_Bps: Sustained bandwidth per request in bytes per second.
            max_gap_cap: Upper bound on the derived gap, so a fast link does not
                read megabytes of unwanted data.
            max_request: Largest merged request.

        Returns:
            The policy.
        """
        if latency_s < 0 or bandwidth_Bps < 0:
            raise ValidationError("latency_s and bandwidth_Bps must be >= 0")
        gap = min(int(latency_s * bandwidth_Bps), max_gap_cap)
        return cls(max_gap=gap, max_request=max(max_request, 1))

    @classmethod
    def none(cls) -> CoalescePolicy:
        """A policy that joins only overlapping ranges (one request per range)."""
        return cls(max_gap=-1, max_request=1)


@dataclass(frozen=True, slots=True)
class MergedRange:
    """One request ``[start, end)`` and the input ranges it serves."""

    start: int
    end: int
    members: tuple[int, ...]
    """Indices into the input sequences of the ranges this request serves."""
    offsets: tuple[int, ...]
    """For each member, where its bytes begin inside this request (``start_i - start``)."""

    @property
    def size(self) -> int:
        """Number of bytes requested."""
        return self.end - self.start


def coalesce_ranges(
    starts: Sequence[int], ends: Sequence[int], policy: CoalescePolicy | None = None
) -> list[MergedRange]:
    """Merge byte ranges ``[starts[i], ends[i])`` into few requests.

    Ranges are sorted by start; a range joins the current request when it lies inside
    it (free), or when the gap before it is at most ``policy.max_gap`` and the merged
    request stays within ``policy.max_request``. Duplicate and overlapping ranges are
    served by one request. Empty ranges (``start == end``) are not requested at all.

    Args:
        starts: Inclusive start offsets.
        ends: Exclusive end offsets, one per start.
        policy: Merge rules; defaults to ``CoalescePolicy()``.

    Returns:
        Requests sorted by start; each input range (except empty ones) is member of
        exactly one request that contains it.

    Raises:
        ValidationError: lengths differ, or a range is negative or reversed.
    """
    policy = policy or CoalescePolicy()
    if len(starts) != len(ends):
        raise ValidationError(f"{len(starts)} starts but {len(ends)} ends")
    order = []
    for i, (s, e) in enumerate(zip(starts, ends, strict=True)):
        if s < 0 or e < s:
            raise ValidationError(f"invalid byte range [{s}, {e}) at index {i}")
        if e > s:
            order.append(i)
    order.sort(key=lambda i: (starts[i], ends[i]))

    merged: list[MergedRange] = []
    cur: list[int] = []
    cur_start = cur_end = 0
    for i in order:
        s, e = int(starts[i]), int(ends[i])
        if cur:
            inside = e <= cur_end
            fits = s - cur_end <= policy.max_gap and max(e, cur_end) - cur_start <= (
                policy.max_request
            )
            if inside or fits:
                cur.append(i)
                cur_end = max(cur_end, e)
                continue
            merged.append(_close(cur, cur_start, cur_end, starts))
        cur, cur_start, cur_end = [i], s, e
    if cur:
        merged.append(_close(cur, cur_start, cur_end, starts))
    return merged


def _close(members: list[int], start: int, end: int, starts: Sequence[int]) -> MergedRange:
    return MergedRange(
        start=start,
        end=end,
        members=tuple(members),
        offsets=tuple(int(starts[i]) - start for i in members),
    )
