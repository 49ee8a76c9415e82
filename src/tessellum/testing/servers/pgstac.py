"""A production-shaped STAC API: a temp PostgreSQL cluster + pgstac + stac-fastapi-pgstac."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tessellum.errors import UpstreamError

from ._process import (
    ManagedServer,
    ServerUnavailable,
    free_port,
    spawn,
    stop_process,
    venv_executable,
    wait_http_ok,
)

__all__ = ["PgStacServer", "find_postgres_bin"]

DB_NAME = "postgis"
DB_USER = "postgres"
DB_PASSWORD = "tessellum"  # trust auth ignores it; stac-fastapi insists on one


def find_postgres_bin() -> Path | None:
    """Folder holding ``initdb`` and ``postgres`` (newest Debian version, else PATH)."""
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _has_postgis() -> bool:
    debian = Path("/usr/share/postgresql").glob("*/extension/postgis.control")
    local = Path("/usr/local/share/postgresql/extension/postgis.control")
    return any(debian) or local.exists()


class PgStacServer(ManagedServer):
    """stac-fastapi-pgstac (uvicorn) over pgstac in a throwaway PostgreSQL cluster.

    Startup ≈ initdb + migrate + app import, a few seconds: share one instance per test
    session (a session-scoped fixture) and :meth:`load` more data into it when needed.
    As root, PostgreSQL runs as the ``postgres`` system user (it refuses root).

    Args:
        collections: STAC Collection dicts loaded at start (upsert).
        items: STAC Item dicts loaded at start (upsert).
    """

    def __init__(
        self,
        collections: Sequence[dict[str, Any]] = (),
        items: Sequence[dict[str, Any]] = (),
    ) -> None:
        super().__init__()
        self.collections = list(collections)
        self.items = list(items)
        self.port: int = 0
        """Port of the STAC API."""
        self.db_port: int = 0
        """Port of PostgreSQL (127.0.0.1)."""
        self._pg: subprocess.Popen[bytes] | None = None
        self._api: subprocess.Popen[bytes] | None = None
        self.timings: dict[str, float] = {}
        """Seconds spent per startup phase (initdb, postgres, migrate, load, api)."""

    @property
    def url(self) -> str:
        """API root URL (``http://127.0.0.1:PORT``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def dsn(self) -> str:
        """libpq connection string of the database."""
        return (
            f"postgresql://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{self.db_port}/{DB_NAME}"
            "?application_name=tessellum-tests"
        )

    def load(
        self, collections: Iterable[dict[str, Any]] = (), items: Iterable[dict[str, Any]] = ()
    ) -> None:
        """Upsert collections, then items, into the running database."""
        from pypgstac.db import PgstacDB
        from pypgstac.load import Loader, Methods

        collections, items = list(collections), list(items)
        with PgstacDB(dsn=self.dsn) as db:
            loader = Loader(db=db)
            if collections:
                loader.load_collections(iter(collections), Methods.upsert)
            if items:
                loader.load_items(iter(items), Methods.upsert)

    # -- lifecycle -----------------------------------------------------------------------

    def _start(self) -> None:
        bindir = self._check_available()
        tmp = self.tmp_dir
        user = self._pg_user()
        data, sock = tmp / "pgdata", tmp / "sock"
        t0 = time.perf_counter()
        if not (data / "PG_VERSION").exists():
            shutil.rmtree(data, ignore_errors=True)
            data.mkdir()
            sock.mkdir(exist_ok=True)
            if user is not None:
                tmp.chmod(0o755)  # the postgres user must traverse our temp dir
                uid, gid = pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid
                for path in (data, sock):
                    os.chown(path, uid, gid)
            init = subprocess.run(
                [
                    *(bindir / "initdb", "-D", data, "-U", DB_USER, "-A", "trust"),
                    *("-E", "UTF8", "--locale=C", "--no-sync"),
                ],
                capture_output=True,
                user=user,
                group=pwd.getpwnam(user).pw_gid if user else None,
                cwd=tmp,
            )
            if init.returncode != 0:
                raise UpstreamError(f"initdb failed: {init.stderr.decode(errors='replace')}")
        self.timings["initdb"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        self.db_port = free_port()
        log_path = tmp / "postgres.log"
        # Durability off: a test database is thrown away, and fsync costs seconds.
        self._pg = spawn(
            [
                *(bindir / "postgres", "-D", data, "-p", str(self.db_port), "-k", sock),
                *("-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"),
                *("-c", "synchronous_commit=off", "-c", "full_page_writes=off"),
            ],
            log_path=log_path,
            cwd=tmp,
            user=user,
            die_signal=signal.SIGINT,
        )
        self._wait_db(log_path)
        self.timings["postgres"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        self._migrate()
        self.timings["migrate"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.load(self.collections, self.items)
        self.timings["load"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        self._start_api()
        self.timings["api"] = time.perf_counter() - t0

    def _check_available(self) -> Path:
        bindir = find_postgres_bin()
        if bindir is None:
            raise ServerUnavailable("PostgreSQL not installed: run scripts/setup-system.sh")
        if not _has_postgis():
            raise ServerUnavailable("PostGIS not installed: run scripts/setup-system.sh")
        for module in ("pypgstac", "psycopg", "stac_fastapi.pgstac", "uvicorn"):
            if not _spec(module):
                raise ServerUnavailable(f"{module} not installed: pip install 'tessellum[testing]'")
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(DB_USER)
            except KeyError:
                raise ServerUnavailable(
                    "running as root and no 'postgres' system user to run PostgreSQL as"
                ) from None
        return bindir

    @staticmethod
    def _pg_user() -> str | None:
        return DB_USER if os.geteuid() == 0 else None

    def _wait_db(self, log_path: Path) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        admin = f"postgresql://{DB_USER}@127.0.0.1:{self.db_port}/postgres"
        while True:
            if self._pg is not None and self._pg.poll() is not None:
                raise UpstreamError(f"postgres exited: {log_path.read_text()[-2000:]}")
            try:
                with psycopg.connect(admin, autocommit=True, connect_timeout=2) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)
                    ).fetchone()
                    if not exists:
                        conn.execute(f"CREATE DATABASE {DB_NAME}")
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _migrate(self) -> None:
        from pypgstac.db import PgstacDB
        from pypgstac.migrate import Migrate

        with PgstacDB(dsn=self.dsn) as db:
            Migrate(db).run_migration()

    def _start_api(self) -> None:
        exe = venv_executable("uvicorn")
        if exe is None:
            raise ServerUnavailable("uvicorn not installed: pip install 'tessellum[testing]'")
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "POSTGRES_"))} | {
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.db_port),
            "PGUSER": DB_USER,
            "PGPASSWORD": DB_PASSWORD,
            "PGDATABASE": DB_NAME,
            "DB_MIN_CONN_SIZE": "1",
            "DB_MAX_CONN_SIZE": "4",
        }
        log_path = self.tmp_dir / "api.log"
        # cwd = temp dir: the settings class reads a ".env" from the working directory.
        self._api = spawn(
            [
                *(exe, "stac_fastapi.pgstac.app:create_app", "--factory"),
                *("--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"),
            ],
            log_path=log_path,
            env=env,
            cwd=self.tmp_dir,
        )
        wait_http_ok(f"{self.url}/", timeout=60, proc=self._api, log_path=log_path)

    def _stop(self) -> None:
        stop_process(self._api)
        self._api = None
        # SIGINT = PostgreSQL "fast" shutdown (SIGTERM waits for clients to disconnect).
        stop_process(self._pg, timeout=10, sig=signal.SIGINT)
        self._pg = None


def _spec(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False
