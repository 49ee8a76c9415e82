"""Progress bars that appear only for humans: on a TTY unless ``progress=False``."""

from __future__ import annotations

import sys
from typing import Any


def want_progress(progress: bool | None) -> bool:
    """Resolve ``progress=None`` (auto) to whether stderr is a terminal."""
    if progress is None:
        return sys.stderr.isatty()
    return bool(progress)


class _NoBar:
    """Stands in for a disabled bar without importing tqdm (it costs ~0.1 s to import)."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str, progress: bool | None = None, unit: str = "it") -> Any:
    """A tqdm bar, or a no-op object with the same ``update``/``close`` when not wanted."""
    if not want_progress(progress):
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False)
