"""Run one async implementation from sync code, also inside a running event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import importlib
import inspect
import os
import threading
import types
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _forget_loop() -> None:
    # a forked child has no copy of the loop's thread: it starts its own when needed
    global _loop
    _loop = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_loop)


def _background_loop() -> asyncio.AbstractEventLoop:
    """A private event loop on a daemon thread, for sync calls made inside a running loop."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="tessellum-sync", daemon=True)
            thread.start()
            _loop = loop
        return _loop


def _run_in_new_loop(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)`` whose main task returns None and hands the result over aside.

    On the main thread, Python 3.11 and 3.12 ``repr()`` the main task, result included,
    twice while ``asyncio.run`` restores the SIGINT handler (the message of an
    ``enum`` lookup that fails; fixed in 3.13). The repr of an xarray Dataset costs
    ~1 ms, of a multi-MB bytes-like object tens of ms.
    """
    box: list[T] = []

    async def main() -> None:
        box.append(await coro)

    asyncio.run(main())
    return box[0]


def _in_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion and return its result.

    Outside an event loop this is ``asyncio.run``. Inside one (Jupyter, an async web
    handler) the coroutine runs on a private background loop, so the caller's loop is
    never re-entered.
    """
    if not _in_running_loop():  # outside the probe's except block: errors chain to nothing
        return _run_in_new_loop(coro)
    # the task is created inside a copy of the caller's context, so contextvars (e.g.
    # settings_override) reach the coroutine on the background loop
    ctx = contextvars.copy_context()
    done: concurrent.futures.Future[T] = concurrent.futures.Future()

    def relay(task: asyncio.Task[T]) -> None:
        if task.cancelled():
            done.cancel()
        elif task.exception() is not None:
            done.set_exception(task.exception())  # type: ignore[arg-type]
        else:
            done.set_result(task.result())

    def start() -> None:
        asyncio.ensure_future(coro).add_done_callback(relay)

    _background_loop().call_soon_threadsafe(start, context=ctx)
    return done.result()


F = TypeVar("F", bound=Callable[..., Any])


def same_signature(twin: Callable[..., Any]) -> Callable[[F], F]:
    """Give a sync function the parameters of the async ``twin`` it runs, so that
    ``help()``, IDEs and ``inspect.signature`` show them instead of ``**kwargs`` (the
    return annotation stays the sync function's own)."""

    def apply(fn: F) -> F:
        own = inspect.signature(fn).return_annotation
        fn.__signature__ = inspect.signature(twin).replace(return_annotation=own)  # type: ignore[attr-defined]
        return fn

    return apply


class _TwinSignature:
    """A sync method shown with the parameters of the async function it runs, resolved
    when first asked for: the twin lives in a module too heavy to import with the
    package (``tessellum.read``), and ``help()``, IDE hovers and ``inspect.signature``
    would otherwise show ``**kwargs``. Calls go straight to the wrapped method."""

    def __init__(self, fn: Callable[..., Any], twin: str) -> None:
        self._fn = fn
        self._twin = twin  # "module:function", its first parameter the collection
        for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
            setattr(self, attr, getattr(fn, attr))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn(*args, **kwargs)

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        return self if obj is None else types.MethodType(self, obj)

    @property
    def __signature__(self) -> inspect.Signature:
        module, name = self._twin.split(":")
        twin = inspect.signature(getattr(importlib.import_module(module), name))
        params = list(twin.parameters.values())
        params[0] = params[0].replace(name="self", annotation=inspect.Parameter.empty)
        own = inspect.signature(self._fn).return_annotation
        return twin.replace(parameters=params, return_annotation=own)


def twin_signature(twin: str) -> Callable[[Callable[..., Any]], Any]:
    """Decorate a sync method that runs ``twin`` (``"module:function"``, taking the
    collection first) so that it shows the twin's parameters (see :class:`_TwinSignature`)."""

    def apply(fn: Callable[..., Any]) -> Any:
        return _TwinSignature(fn, twin)

    return apply
