"""Shared plumbing for the local test servers: ports, child processes, readiness, cleanup."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from tessellum.errors import ConfigurationError, UpstreamError

__all__ = [
    "ManagedServer",
    "ServerUnavailable",
    "find_executable",
    "free_port",
    "spawn",
    "stop_process",
    "venv_executable",
    "wait_http_ok",
    "wait_tcp",
]

# Servers still running at interpreter exit are stopped by one atexit hook; weak references
# so a forgotten server object can still be garbage collected.
_LIVE: weakref.WeakSet[ManagedServer] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()
_PR_SET_PDEATHSIG = 1


class ServerUnavailable(ConfigurationError):
    """A server cannot run here because a binary or package is missing.

    Tests turn this into ``pytest.skip(str(err))``.
    """


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    Another process may take it before the caller binds it; callers retry their start
    (see :meth:`ManagedServer.start`).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def venv_executable(name: str) -> Path | None:
    """Find a console script installed beside the running interpreter (the virtualenv's bin)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return candidate
    found = shutil.which(name)
    return Path(found) if found else None


def find_executable(name: str, extra_dirs: Sequence[str | Path] = ()) -> Path | None:
    """Find ``name`` on PATH or in ``extra_dirs`` (system binaries such as /usr/sbin/nginx)."""
    found = shutil.which(name)
    if found:
        return Path(found)
    for folder in extra_dirs:
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def spawn(
    args: Sequence[str | Path],
    *,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
    die_signal: signal.Signals = signal.SIGTERM,
) -> subprocess.Popen[bytes]:
    """Start a child in its own process group, stdout+stderr appended to ``log_path``.

    A separate process group lets :func:`stop_process` signal the whole tree (uvicorn
    workers, postgres backends) without touching anything else. ``user`` runs the child
    as that user (root only), e.g. postgres, which refuses to run as root. The child
    receives ``die_signal`` if this process dies without stopping it.
    """
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [str(a) for a in args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
            user=user,
            group=_primary_group(user) if user else None,
            preexec_fn=_die_with_parent(die_signal),
        )


def _die_with_parent(sig: signal.Signals) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to send ``sig`` to the child when we die.

    Covers what atexit cannot: the parent killed by SIGTERM/SIGKILL (a CI timeout, a
    killed job). Linux ties this to the spawning *thread*: start servers from a thread that
    outlives them (the main thread, as pytest and the benchmark runner do).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # resolved before fork, not in the child
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)

    return preexec


def _primary_group(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid


def stop_process(
    proc: subprocess.Popen[bytes] | None,
    timeout: float = 5.0,
    sig: signal.Signals = signal.SIGTERM,
) -> None:
    """Signal ``proc``'s process group (``sig``), then SIGKILL it; always reaps the child."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


def wait_http_ok(
    url: str,
    *,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
    interval: float = 0.02,
) -> None:
    """Poll ``url`` with GET until it answers 2xx.

    Raises:
        UpstreamError: the child exited or ``timeout`` elapsed; the message ends with the
            tail of its log.
    """
    deadline = time.monotonic() + timeout
    last: str = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise UpstreamError(
                f"server exited with code {proc.returncode} before {url} answered"
                + _log_tail(log_path),
                url=url,
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if 200 <= resp.status < 300:
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as err:
            last = f"HTTP {err.code}"
        except (OSError, urllib.error.URLError) as err:
            last = str(err)
        time.sleep(interval)
    raise UpstreamError(
        f"{url} not ready after {timeout:.0f} s ({last})" + _log_tail(log_path), url=url
    )


def wait_tcp(
    host: str,
    port: int,
    *,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> None:
    """Wait until ``host:port`` accepts a TCP connection (servers without a 2xx route)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise UpstreamError(
                f"server exited with code {proc.returncode} before {host}:{port} accepted"
                + _log_tail(log_path)
            )
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.01)
    raise UpstreamError(f"{host}:{port} not accepting after {timeout:.0f} s" + _log_tail(log_path))


def _log_tail(log_path: Path | None, n_chars: int = 2000) -> str:
    if log_path is None or not log_path.exists():
        return ""
    text = log_path.read_text(errors="replace")[-n_chars:]
    return f"\n--- {log_path} (tail) ---\n{text}"


class ManagedServer:
    """Base for the local servers: temp dir, start/stop, context manager, atexit safety net.

    Subclasses implement :meth:`_start` (raise on failure; it is retried a few times because
    an ephemeral port can be taken between :func:`free_port` and bind) and :meth:`_stop`
    (idempotent).
    """

    #: How many times :meth:`start` retries a failed ``_start`` (port races).
    start_attempts: int = 3

    def __init__(self) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._running = False
        self.startup_seconds: float | None = None
        """Wall time the last successful :meth:`start` took."""

    @property
    def tmp_dir(self) -> Path:
        """Temporary directory holding this server's config, logs and state."""
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"tessellum-{type(self).__name__}-")
        return Path(self._tmp.name)

    @property
    def running(self) -> bool:
        """True between a successful :meth:`start` and :meth:`stop`."""
        return self._running

    def start(self) -> Self:
        """Start the server and wait until it answers; no-op when already running.

        Raises:
            ServerUnavailable: a required binary or package is missing.
            UpstreamError: the server did not come up after retries.
        """
        if self._running:
            return self
        t0 = time.perf_counter()
        error: Exception | None = None
        for _ in range(self.start_attempts):
            try:
                self._start()
            except ServerUnavailable:
                self._cleanup()
                raise
            except Exception as err:
                error = err
                self._stop()
                continue
            self._running = True
            self.startup_seconds = time.perf_counter() - t0
            with _LIVE_LOCK:
                _LIVE.add(self)
            return self
        self._cleanup()
        assert error is not None
        raise error

    def stop(self) -> None:
        """Stop the server, its children, and remove its temp dir; safe to call twice."""
        self._running = False
        with _LIVE_LOCK:
            _LIVE.discard(self)
        self._stop()
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.cleanup()
            self._tmp = None

    def _start(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _stop(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        # Last resort for servers dropped without stop(); never raise from a finalizer.
        with contextlib.suppress(Exception):
            if self._running:
                self.stop()


def _stop_all() -> None:
    with _LIVE_LOCK:
        servers = list(_LIVE)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()


atexit.register(_stop_all)
