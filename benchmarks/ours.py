"""The "ours" cases: tessellum's engine. PLUG IN HERE.

Each function receives a :class:`~benchmarks.core.CaseContext` and returns a dict with
at least ``checksum`` (``int(arr.sum(dtype="uint64"))``) so the runner can check that all
cases read the same pixels. Only the call is timed; do imports at module level. The
cases run in the runner's process, so do not keep decoded tiles cached between calls
(a header/index cache is fair: it is what tessellum's collections store).
"""

from __future__ import annotations

from typing import Any

from benchmarks.core import CaseContext, CaseNotAvailable

__all__ = ["window_2048"]


def window_2048(ctx: CaseContext) -> dict[str, Any]:
    """Read ``ctx.params["window"]`` (col_off, row_off, width, height) of ``ctx.url("cog")``.

    Expected: ``{"shape": [2048, 2048], "checksum": ...}``.
    """
    raise CaseNotAvailable("tessellum read engine not plugged in yet (benchmarks/ours.py)")
