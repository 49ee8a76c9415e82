"""The benchmarks, by name. Add a module with a ``BENCHMARK`` and list it here."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from benchmarks import full_image, window_2048
from benchmarks.core import Benchmark

__all__ = ["BENCHMARKS"]

BENCHMARKS: Mapping[str, Benchmark] = MappingProxyType(
    {b.name: b for b in (window_2048.BENCHMARK, full_image.BENCHMARK)}
)
