"""Throw-away databases (PostgreSQL and SQLite) and application roles.

relay_peewee is imported where it is used: a migrating child imports this
module too, and its peak RSS must be its migration's, not the test plugin's.

The server is reached through libpq's variables (PGHOST, PGPORT, PGUSER,
PGDATABASE for the admin database), default root@127.0.0.1:5432/test.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlparse, urlunparse

from peewee import Database, SqliteDatabase

from . import ROOT

PG_HOST = os.environ.get("PGHOST", "127.0.0.1")
PG_PORT = int(os.environ.get("PGPORT", "5432"))
PG_USER = os.environ.get("PGUSER", "root")
PG_ADMIN_DB = os.environ.get("PGDATABASE", "test")


def server_url(scheme: str = "postgresql", dbname: str = PG_ADMIN_DB) -> str:
    """A URL of ``dbname`` on the server; ``psycopg3`` as scheme picks psycopg 3."""
    return f"{scheme}://{PG_USER}@{PG_HOST}:{PG_PORT}/{dbname}"


class _Unreachable(Exception):
    pass


def _unreachable(reason: str) -> NoReturn:
    raise _Unreachable(reason)


@contextmanager
def throwaway(prefix: str, scheme: str = "postgresql", optional: bool = False) -> Iterator[Any]:
    """The URL of a new, empty database, dropped on exit.

    ``optional``: when the server (or its driver) cannot be had, say so and
    yield None instead of failing.
    """
    from relay_peewee.testing import throwaway_postgres_database

    with ExitStack() as stack:
        try:
            url: str | None = stack.enter_context(
                throwaway_postgres_database(
                    server_url(scheme), prefix=prefix, unavailable=_unreachable
                )
            )
        except _Unreachable as exc:
            if not optional:
                raise SystemExit(f"postgres: unreachable ({exc})") from None
            print(f"postgres: skipped ({exc})")
            url = None
        yield url


@contextmanager
def sqlite_url(prefix: str) -> Iterator[str]:
    """A SQLite database file in a temporary folder, removed on exit."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield f"sqlite:///{tmp}/bench.db"


@contextmanager
def app_role(owner_url: str) -> Iterator[str]:
    """A fresh application role (``relay-peewee roles``) on the database; its URL.

    The role and its admin role are dropped afterwards.
    """
    from relay_peewee.database import open_database
    from relay_peewee.operations import create_roles

    suffix = secrets.token_hex(4)
    app, admin = f"relay_app_{suffix}", f"relay_admin_{suffix}"
    owner = open_database(owner_url)
    create_roles(owner, app, admin)
    parsed = urlparse(owner_url)
    try:
        yield urlunparse(parsed._replace(netloc=f"{app}@{parsed.hostname}:{parsed.port}"))
    finally:
        owner.connect(reuse_if_open=True)
        owner.execute_sql(f"DROP OWNED BY {app}, {admin}")
        owner.execute_sql(f"DROP ROLE IF EXISTS {app}")
        owner.execute_sql(f"DROP ROLE IF EXISTS {admin}")
        owner.close()


def sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


@contextmanager
def opened(url: str) -> Iterator[Database]:
    """A plain peewee database on ``url`` (no relay_peewee settings), connected."""
    if url.startswith("sqlite:///"):
        db: Database = SqliteDatabase(sqlite_path(url))
    else:
        from playhouse.db_url import connect

        db = connect(url)
    db.connect()
    try:
        yield db
    finally:
        db.close()


class Workspace:
    """Owns every throw-away database, file and child process of one run.

    ``close`` kills a child still running, drops every database created
    through it and removes its folder; call it in a ``finally``.
    """

    def __init__(self, workdir: str | None = None) -> None:
        self.token = secrets.token_hex(3)
        self.dir = Path(tempfile.mkdtemp(prefix="relay_bench_", dir=workdir))
        self.pg_databases: list[str] = []
        self._admin: Any = None
        self.child: subprocess.Popen[str] | None = None

    def admin(self) -> Any:
        if self._admin is None:
            import psycopg2

            self._admin = psycopg2.connect(
                host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=PG_ADMIN_DB, connect_timeout=5
            )
            # CREATE/DROP DATABASE refuse to run inside a transaction.
            self._admin.autocommit = True
        return self._admin

    def pg_exec(self, sql: str) -> list[tuple[Any, ...]]:
        with self.admin().cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else []

    def pg_create(self, name: str, template: str | None = None) -> str:
        self.pg_databases.append(name)
        if template is None:
            self.pg_exec(f'CREATE DATABASE "{name}"')
        else:
            # FILE_COPY copies the files after a checkpoint; the default
            # WAL_LOG strategy would push the whole database through WAL and
            # leave a checkpoint due in the middle of the timed run.
            self.pg_exec(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
        return server_url(dbname=name)

    def pg_drop(self, name: str) -> None:
        self.pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.pg_databases:
            self.pg_databases.remove(name)

    def create(self, backend: str, name: str, template: str | None = None) -> str:
        """The URL of a new database ``name``: empty, or a copy of ``template``'s."""
        if backend == "postgres":
            return self.pg_create(name, template and template.rsplit("/", 1)[1])
        path = self.dir / f"{name}.db"
        if template is not None:
            shutil.copyfile(sqlite_path(template), path)
        return f"sqlite:///{path}"

    def drop(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            Path(sqlite_path(url)).unlink(missing_ok=True)
        else:
            self.pg_drop(url.rsplit("/", 1)[1])

    def settle(self, backend: str) -> None:
        """Start a timed run from a quiet state: no checkpoint due, no dirty
        pages from copying a template still being written back."""
        if backend == "postgres":
            self.pg_exec("CHECKPOINT")
        os.sync()

    def environment(self, backends: list[str]) -> str:
        """The code's revision, the machine and the database versions, in one line."""
        try:
            git = ["git", "-C", str(ROOT)]
            rev = subprocess.run(
                [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
            ).stdout.strip()
            dirty = subprocess.run(
                [*git, "status", "--porcelain", "--", "relay_peewee"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            code = f"relay_peewee @ {rev}" + (" + uncommitted changes" if dirty else "")
        except (OSError, subprocess.CalledProcessError):
            code = "relay_peewee @ unknown revision"
        parts = [code, f"{os.cpu_count()} CPUs", f"Python {sys.version.split()[0]}"]
        if "sqlite" in backends:
            parts.append(f"SQLite {sqlite3.sqlite_version}")
        if "postgres" in backends:
            parts.append(f"PostgreSQL {self.pg_exec('SHOW server_version')[0][0]}")
        return ", ".join(parts)

    def close(self) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.kill()
            self.child.wait()
        errors = []
        for name in list(self.pg_databases):
            try:
                self.pg_drop(name)
            except Exception as exc:  # keep cleaning up the rest
                errors.append(f"{name}: {exc}")
        if self._admin is not None:
            self._admin.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        for err in errors:
            print(f"warning: could not drop database {err}", file=sys.stderr)


def run_in_workspace(
    title: str, backends: list[str], body: Callable[[Workspace], bool], workdir: str | None = None
) -> int:
    """Run ``body`` on a fresh workspace, always cleaned up; the exit status.

    Prints the run's environment and command line first. SIGTERM and SIGHUP
    become a KeyboardInterrupt, so their cleanup runs too.
    """

    def stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    ws = Workspace(workdir)
    ok = False
    try:
        print(f"{title}: {ws.environment(backends)}")
        print(
            f"command: python benchmarks/{Path(sys.argv[0]).name} {' '.join(sys.argv[1:])}".rstrip()
        )
        ok = body(ws)
    except KeyboardInterrupt as exc:
        print(f"interrupted ({exc}); cleaning up", file=sys.stderr)
    except Exception:
        traceback.print_exc()
    finally:
        ws.close()
    return 0 if ok else 1
