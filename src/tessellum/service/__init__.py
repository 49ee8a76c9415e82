"""The stats-only HTTP attribute service (FastAPI); needs the ``service`` extra.

Run it with ``tessellum serve`` or ``uvicorn tessellum.service:create_app --factory``.
See ``docs/service.md``. Names load on first use, so ``tessellum.service.cli`` (the
``serve`` command) does not import FastAPI.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "create_app": ".app",
    "DEFAULT_STATUS_CODES": ".errors",
    "ServiceError": ".errors",
    "add_exception_handlers": ".errors",
    "ServiceSettings": ".settings",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tessellum.service' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
