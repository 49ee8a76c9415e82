"""Run one case once in a fresh interpreter.

``python -m benchmarks.worker module:function [warmup_module:function]``

Reads a :class:`~benchmarks.core.CaseContext` as JSON on stdin and prints one JSON line,
``{"seconds": ..., "output": {...}}`` or ``{"not_available": reason}``.
"""

from __future__ import annotations

import json
import sys

from benchmarks.core import CaseContext, CaseNotAvailable, _timed_call


def main() -> None:
    target = sys.argv[1]
    warmup = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None
    ctx = CaseContext.from_json(sys.stdin.read())
    try:
        seconds, output = _timed_call(target, ctx, warmup)
    except CaseNotAvailable as err:
        print(json.dumps({"not_available": str(err)}))
        return
    print(json.dumps({"seconds": seconds, "output": output}))


if __name__ == "__main__":
    main()
