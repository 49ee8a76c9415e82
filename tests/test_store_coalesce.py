"""Property-style checks of coalesce_ranges (randomized by hand, seeded)."""

from __future__ import annotations

import itertools
import random

import pytest

from tessellum.errors import ValidationError
from tessellum.store import CoalescePolicy, MergedRange, coalesce_ranges

MiB = 1024 * 1024


def _random_ranges(rng: random.Random) -> tuple[list[int], list[int]]:
    n = rng.randint(0, 40)
    span = rng.choice([100, 10_000, 50 * MiB])
    starts, ends = [], []
    for _ in range(n):
        s = rng.randrange(span)
        length = rng.choice([0, 1, rng.randint(1, 64), rng.randint(1, span // 4 + 1)])
        starts.append(s)
        ends.append(s + length)
    if starts and rng.random() < 0.3:  # duplicates
        i = rng.randrange(len(starts))
        starts.append(starts[i])
        ends.append(ends[i])
    return starts, ends


def _random_policy(rng: random.Random) -> CoalescePolicy:
    return CoalescePolicy(
        max_gap=rng.choice([-1, 0, 1, 16, 1000, 2 * MiB]),
        max_request=rng.choice([1, 64, 4096, 16 * MiB]),
    )


def _check(starts: list[int], ends: list[int], policy: CoalescePolicy, merged: list[MergedRange]):
    # sorted, non-empty requests
    assert [m.start for m in merged] == sorted(m.start for m in merged)
    assert all(m.end > m.start for m in merged)
    served = [i for m in merged for i in m.members]
    # each non-empty input is served exactly once; empty inputs are never requested
    assert sorted(served) == [i for i in range(len(starts)) if ends[i] > starts[i]]
    for m in merged:
        assert len(m.members) == len(m.offsets)
        for i, off in zip(m.members, m.offsets, strict=True):
            # every input byte is covered by its request, at the recorded offset
            assert m.start + off == starts[i]
            assert starts[i] >= m.start and ends[i] <= m.end
        # the request is exactly the hull of its members (no wasted head or tail)
        assert m.start == min(starts[i] for i in m.members)
        assert m.end == max(ends[i] for i in m.members)
        # the cap holds unless one input alone is larger
        biggest = max(ends[i] - starts[i] for i in m.members)
        assert m.size <= max(policy.max_request, biggest)
    # consecutive requests that could have merged were merged: gap above max_gap or cap hit
    for a, b in itertools.pairwise(merged):
        first_end = ends[b.members[0]]  # the range that opened b was refused by a
        assert first_end > a.end  # not contained in a
        too_far = b.start - a.end > policy.max_gap
        too_big = max(a.end, first_end) - a.start > policy.max_request
        assert too_far or too_big


@pytest.mark.parametrize("seed", range(400))
def test_random_properties(seed: int) -> None:
    rng = random.Random(seed)
    starts, ends = _random_ranges(rng)
    policy = _random_policy(rng)
    _check(starts, ends, policy, coalesce_ranges(starts, ends, policy))


def test_bytes_round_trip_through_merged_requests() -> None:
    """Slicing each merged request at the recorded offsets gives back the input bytes."""
    rng = random.Random(7)
    blob = rng.randbytes(5000)
    for _ in range(200):
        starts, ends = [], []
        for _ in range(rng.randint(1, 20)):
            s = rng.randrange(len(blob))
            starts.append(s)
            ends.append(min(len(blob), s + rng.randint(0, 300)))
        merged = coalesce_ranges(starts, ends, _random_policy(rng))
        got: dict[int, bytes] = {}
        for m in merged:
            body = blob[m.start : m.end]
            for i, off in zip(m.members, m.offsets, strict=True):
                got[i] = body[off : off + ends[i] - starts[i]]
        for i in range(len(starts)):
            assert got.get(i, b"") == blob[starts[i] : ends[i]]


def test_examples() -> None:
    policy = CoalescePolicy(max_gap=10, max_request=100)
    # gap 5 merges, gap 11 does not; input order is not sorted
    merged = coalesce_ranges([31, 0, 15], [40, 10, 20], policy)
    assert [(m.start, m.end, m.members) for m in merged] == [(0, 20, (1, 2)), (31, 40, (0,))]
    assert merged[0].offsets == (0, 15)
    merged = coalesce_ranges([30, 0, 15], [40, 10, 20], policy)  # gap 10 <= max_gap
    assert [(m.start, m.end) for m in merged] == [(0, 40)]
    # the cap splits otherwise mergeable ranges
    merged = coalesce_ranges([0, 60], [50, 120], policy)
    assert len(merged) == 2
    # a contained range joins even when the container alone exceeds the cap
    merged = coalesce_ranges([0, 10, 10], [500, 20, 20], policy)
    assert len(merged) == 1 and sorted(merged[0].members) == [0, 1, 2]
    assert merged[0].size == 500
    # duplicates share a request
    merged = coalesce_ranges([5, 5], [9, 9], CoalescePolicy.none())
    assert len(merged) == 1 and set(merged[0].members) == {0, 1}
    assert coalesce_ranges([], [], policy) == []
    assert coalesce_ranges([3], [3], policy) == []


def test_none_policy_keeps_adjacent_ranges_apart() -> None:
    merged = coalesce_ranges([0, 10, 20], [10, 20, 30], CoalescePolicy.none())
    assert len(merged) == 3
    merged = coalesce_ranges([0, 10, 20], [10, 20, 30], CoalescePolicy(max_gap=0))
    assert len(merged) == 1


def test_for_link_derives_gap_from_latency_and_bandwidth() -> None:
    p = CoalescePolicy.for_link(0.02, 50e6)  # 20 ms at 50 MB/s -> 1 MB gap
    assert p.max_gap == 1_000_000
    assert p.max_request == 16 * MiB
    assert CoalescePolicy.for_link(0.1, 1e9).max_gap == 2 * MiB  # capped
    assert CoalescePolicy.for_link(0.0, 1e9).max_gap == 0
    with pytest.raises(ValidationError):
        CoalescePolicy.for_link(-1, 1)


def test_invalid_input() -> None:
    with pytest.raises(ValidationError):
        coalesce_ranges([0, 1], [2], CoalescePolicy())
    with pytest.raises(ValidationError, match=r"\[5, 2\)"):
        coalesce_ranges([5], [2], CoalescePolicy())
    with pytest.raises(ValidationError):
        coalesce_ranges([-1], [2], CoalescePolicy())
    with pytest.raises(ValidationError):
        CoalescePolicy(max_request=0)
