"""Benchmark building blocks: cases, contexts, results, and how one trial runs."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Benchmark",
    "Case",
    "CaseContext",
    "CaseNotAvailable",
    "TrialResult",
    "run_trial",
]

REPO_ROOT = Path(__file__).resolve().parent.parent


class CaseNotAvailable(Exception):
    """A case cannot run here (peer not installed, engine not plugged in yet)."""


@dataclass(frozen=True)
class CaseContext:
    """What a case function receives; JSON round-trips into a worker process."""

    base_url: str
    """Base URL of the data (the latency proxy in front of the HTTP server)."""
    files: dict[str, str]
    """Logical name -> path relative to the served directory."""
    latency_ms: float
    """Delay the proxy adds per request."""
    params: dict[str, Any] = field(default_factory=dict)
    """Benchmark parameters (window, bands, ...)."""

    def url(self, name: str) -> str:
        """HTTP URL of a named file."""
        return f"{self.base_url}/{self.files[name]}"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> CaseContext:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Case:
    """One way of doing a benchmark's task.

    ``target`` names a function ``module:function`` taking a :class:`CaseContext` and
    returning a JSON-able dict (put a ``checksum`` in it so results can be compared
    across cases). Only the call is timed, not imports.
    """

    name: str
    target: str
    fresh_process: bool = False
    """Run every trial in a new interpreter (peers with process-wide caches, e.g. GDAL)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment for fresh-process trials."""
    warmup: str | None = None
    """``module:function`` run untimed before each trial in the trial's process (e.g.
    GDAL driver registration, which a long-lived process pays once)."""
    description: str = ""


@dataclass(frozen=True)
class Benchmark:
    """A named task, its inputs and the cases that perform it."""

    name: str
    description: str
    prepare: Callable[[], dict[str, Path]]
    """Create or find inputs; returns logical name -> absolute path (all in one dir)."""
    cases: tuple[Case, ...]
    params: dict[str, Any] = field(default_factory=dict)
    reference: str = "ours"
    """Case the others are compared with (ratio = reference / case; < 1: reference faster)."""


@dataclass
class TrialResult:
    """One timed trial of one case."""

    seconds: float
    requests: int = 0
    bytes_down: int = 0
    output: dict[str, Any] = field(default_factory=dict)


def resolve(target: str) -> Callable[[CaseContext], dict[str, Any]]:
    """Import ``module:function``."""
    module_name, _, func_name = target.partition(":")
    return getattr(importlib.import_module(module_name), func_name)


def _timed_call(
    target: str, ctx: CaseContext, warmup: str | None = None
) -> tuple[float, dict[str, Any]]:
    fn = resolve(target)  # import outside the timed region
    if warmup:
        resolve(warmup)(ctx)
    t0 = time.perf_counter()
    output = fn(ctx) or {}
    seconds = time.perf_counter() - t0
    return seconds, checked(output)


def checked(output: dict[str, Any]) -> dict[str, Any]:
    """A case's output, verified after the timer stopped: verifying the pixels is not
    part of reading them (summing the full image alone takes ~0.1 s), and the peers in
    other interpreters (rasteret) checksum outside their timers too.

    ``"array"`` (the pixels read) becomes ``shape`` and ``checksum``
    (``int(array.sum(dtype="uint64"))``); ``"after"`` (a callable) is called and its
    dict merged in.
    """
    array = output.pop("array", None)
    if array is not None:
        output["shape"] = list(array.shape)
        output["checksum"] = int(array.sum(dtype="uint64"))
    after = output.pop("after", None)
    if after is not None:
        output.update(after())
    return output


def run_trial(case: Case, ctx: CaseContext) -> TrialResult:
    """Run ``case`` once, in this process or a fresh one.

    Raises:
        CaseNotAvailable: the case says it cannot run here.
        RuntimeError: the worker process failed.
    """
    if not case.fresh_process:
        seconds, output = _timed_call(case.target, ctx, case.warmup)
        return TrialResult(seconds=_measured(seconds, output), output=output)
    env = {**os.environ, **case.env}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.worker", case.target, case.warmup or ""],
        input=ctx.to_json(),
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=600,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{case.name} worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    reply = json.loads(lines[-1])
    if "not_available" in reply:
        raise CaseNotAvailable(reply["not_available"])
    return TrialResult(seconds=_measured(reply["seconds"], reply["output"]), output=reply["output"])


def _measured(seconds: float, output: dict[str, Any]) -> float:
    """The trial's time: the case's own timing of the measured call (``inner_seconds``)
    when it runs that call in a process of its own (a peer in another venv: starting
    that interpreter and importing the peer are not the peer's work), else ours."""
    inner = output.get("inner_seconds")
    return float(inner) if inner is not None else seconds
