"""A STAC API in memory: ``rustac serve`` over collections and items given as dicts."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._process import (
    ManagedServer,
    ServerUnavailable,
    free_port,
    spawn,
    stop_process,
    venv_executable,
    wait_http_ok,
)

__all__ = ["RustacServer", "write_stac_inputs"]


def write_stac_inputs(
    folder: Path, collections: Sequence[dict[str, Any]], items: Sequence[dict[str, Any]]
) -> tuple[list[Path], Path]:
    """Write one JSON file per collection and one FeatureCollection of all items.

    Returns:
        The collection paths and the items path.
    """
    coll_paths = []
    for i, collection in enumerate(collections):
        path = folder / f"collection-{i:03d}.json"
        path.write_text(json.dumps(collection))
        coll_paths.append(path)
    items_path = folder / "items.json"
    items_path.write_text(json.dumps({"type": "FeatureCollection", "features": list(items)}))
    return coll_paths, items_path


class RustacServer(ManagedServer):
    """``rustac serve`` with its memory backend: a STAC API in ≈0.1 s.

    POST ``/search`` supports ``bbox``, ``intersects``, ``datetime``, ``collections``,
    ``ids`` and ``limit`` with ``next`` links; the memory backend ignores CQL2 ``filter``,
    and GET ``/search`` fails when a next page is needed with array parameters: use POST.

    Args:
        collections: STAC Collection dicts.
        items: STAC Item dicts; items whose collection is not given get one created.
    """

    def __init__(
        self, collections: Sequence[dict[str, Any]], items: Sequence[dict[str, Any]]
    ) -> None:
        super().__init__()
        self.collections = list(collections)
        self.items = list(items)
        self.port: int = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """API root URL (``http://127.0.0.1:PORT``), the landing page."""
        return f"http://127.0.0.1:{self.port}"

    def _start(self) -> None:
        exe = venv_executable("rustac")
        if exe is None:
            raise ServerUnavailable("rustac not installed: pip install rustac")
        coll_paths, items_path = write_stac_inputs(self.tmp_dir, self.collections, self.items)
        known = {c["id"] for c in self.collections}
        needs_create = any(item.get("collection") not in known for item in self.items)
        self.port = free_port()
        args: list[str | Path] = [exe, "serve", *coll_paths, items_path]
        args += ["-a", f"127.0.0.1:{self.port}"]
        if needs_create:
            args.append("--create-collections")
        log_path = self.tmp_dir / "rustac.log"
        self._proc = spawn(args, log_path=log_path, cwd=self.tmp_dir)
        wait_http_ok(f"{self.url}/", timeout=30, proc=self._proc, log_path=log_path)

    def _stop(self) -> None:
        stop_process(self._proc)
        self._proc = None
