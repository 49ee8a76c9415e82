"""Build cache: a collection is reused only when every parameter that shapes it matches."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .schema import SCHEMA_VERSION


def default_workspace() -> Path:
    """``$TESSELLUM_WORKSPACE`` or ``~/.tessellum/collections``."""
    env = os.environ.get("TESSELLUM_WORKSPACE")
    return Path(env) if env else Path.home() / ".tessellum" / "collections"


def cache_key(params: dict[str, Any]) -> str:
    """A stable hash of the build parameters (name, endpoint, collection, bbox, dates,
    query/filter, band maps, ...): a different bbox never returns a stale collection."""
    payload = json.dumps({"schema": SCHEMA_VERSION, **params}, sort_keys=True, default=repr)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def cache_path(workspace_dir: str | os.PathLike | None, name: str, params: dict[str, Any]) -> Path:
    """Where the collection built with these parameters lives."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return Path(workspace_dir or default_workspace()) / f"{safe}-{cache_key(params)}"
