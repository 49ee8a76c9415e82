"""Progress bars that appear only for humans: on a TTY unless ``progress=False``."""

from __future__ import annotations

import sys
from typing import Any


def want_progress(progress: bool | None) -> bool:
    """Resolve ``progress=None`` (auto) to whether stderr is a terminal."""
    if progress is None:
        return sys.stderr.isatty()
    return bool(progress)


def progress_bar(total: int, desc: str, progress: bool | None = None, unit: str = "it") -> Any:
    """A tqdm bar, disabled when not wanted (the object still accepts update/close)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not want_progress(progress), leave=False)
