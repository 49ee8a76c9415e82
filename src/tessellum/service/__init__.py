"""The stats-only HTTP attribute service (FastAPI); needs the ``service`` extra.

Run it with ``tessellum serve`` or ``uvicorn tessellum.service:create_app --factory``.
See ``docs/service.md``. Names load on first use, so ``tessellum.service.cli`` (the
``serve`` command) does not import FastAPI.
"""

from __future__ import annotations

from .._lazy import lazy_getattr

_LAZY = {
    "create_app": ".app",
    "DEFAULT_STATUS_CODES": ".errors",
    "ServiceError": ".errors",
    "add_exception_handlers": ".errors",
    "ServiceSettings": ".settings",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
