"""Template databases: migrate once per session and backend, copy per test."""

from __future__ import annotations

import os
import secrets
import sqlite3
import tempfile
import threading
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from peewee import Database

from ..config import AppConfig, read_config
from ..database import (
    connect,
)
from ..models import (
    Tenant,
)
from ..operations.commands import migrate
from .backends import create_test_roles, postgres_server_url, skip_or_fail
from .sample_data import TenantPair, populate_tenant
from .template_copies import (
    Pristine,
    admin_connection,
    capture,
    create_database,
    drop_database,
    is_superuser,
    next_xid,
    reset,
    with_database,
)

# PostgreSQL copies per template that tests take turns with: one in use,
# the others being reset meanwhile.
SPARE_COPIES = 3


# Threads dropping PostgreSQL databases.
DROPPERS = 4


def application_config(config: pytest.Config) -> AppConfig:
    """The application's migrations, models and base set: the ini options,
    else pyproject.toml."""
    found = read_config(config.rootpath)
    migrations = tuple(config.getini("relay_migrations")) or found.migrations
    models = tuple(config.getini("relay_models")) or found.models
    given = str(config.getini("relay_schema") or "").strip().lower()
    if given not in ("", "true", "false"):
        raise pytest.UsageError(f"relay_schema (ini option): true or false, not {given!r}")
    relay_schema = found.relay_schema if not given else given == "true"
    return AppConfig(migrations, models, found.source, relay_schema)


class Hooks:
    @pytest.hookspec
    def pytest_relay_build_schema(self, db: Database) -> None:
        """Called after ``migrate`` on every database ``relay_db`` is made from
        (each template once, each ``relay_fresh_db`` database): create what the
        application's tests need and no migration creates, e.g.
        ``db.create_tables([Project])`` for its own TenantModels."""


def build_schema(db: Database, config: pytest.Config | None = None) -> None:
    """What every ``relay_db`` holds: the one place the fixtures migrate.

    Templates and ``relay_fresh_db`` databases both come from here, so an
    application's own migrations, once ``migrate`` runs them, land in both,
    and so do the tables ``pytest_relay_build_schema`` hooks create.
    """
    # The one integration point with the application: its migration
    # packages, run after Relay's or the core's (``application_config``).
    app = application_config(config) if config is not None else AppConfig()
    migrate(db, migrations=app.migrations, relay_schema=app.relay_schema)
    if config is not None:
        config.hook.pytest_relay_build_schema(db=db)


def two_tenants_rows(relay_schema: bool = True) -> TenantPair:
    """Tenants a and b; with Relay's schema, each holding the sample rows.

    With the tenancy core alone there are no tables of relay_peewee's to
    fill: the pair is the two tenants, and the application's tests (or its
    ``pytest_relay_build_schema`` hook) write their own rows.
    """
    a = Tenant.create(slug="tenant-a", name="Tenant A")
    b = Tenant.create(slug="tenant-b", name="Tenant B")
    if not relay_schema:
        return TenantPair(a, b, {})
    return TenantPair(a, b, {a.id: populate_tenant(a), b.id: populate_tenant(b)})


@dataclass
class Template:
    """One built database (migrated, perhaps populated) and how to copy it."""

    url: str  # the template itself, never connected to after it is built
    pair: TenantPair | None
    roles: tuple[str, str] | None = None  # (app, admin) on postgres_rls
    pristine: Pristine | None = None  # PostgreSQL: what a reset copy must hold
    admins: dict[str, Database] = field(default_factory=dict)  # postgres_rls, by URL
    # PostgreSQL: the copies not in use, oldest first, each made or being reset.
    spares: deque[Future[_Copy]] = field(default_factory=deque)


@dataclass(frozen=True)
class _Copy:
    """A PostgreSQL copy of a template."""

    url: str
    template: Template
    # The next xid when it was made or last reset: its test's transactions
    # all have this one or a later one (template_copies.reset).
    marker: int

    @property
    def name(self) -> str:
        return urlparse(self.url).path[1:]


@dataclass
class Templates:
    """Every template of the session, built on first use and dropped at its end."""

    config: pytest.Config
    directory: Path
    built: dict[tuple[str, bool], Template] = field(default_factory=dict)
    failed: dict[tuple[str, bool], str] = field(default_factory=dict)
    # How each used PostgreSQL copy went back into service: "reset", or the
    # reason it was dropped and replaced.
    outcomes: Counter[str] = field(default_factory=Counter)
    _copies: int = 0
    _resettable: bool | None = None  # reset needs a superuser; else a copy per test
    _closing: bool = False
    _in_use: dict[str, _Copy] = field(default_factory=dict)
    # PostgreSQL: copies are made and reset by two threads and dropped by
    # others, each on its own admin connection, so a test waits for neither.
    _workers: ThreadPoolExecutor | None = None
    _dropper: ThreadPoolExecutor | None = None
    _local: threading.local = field(default_factory=threading.local)
    _connections: list[Any] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, backend: str, populated: bool) -> Template:
        key = (backend, populated)
        if key in self.failed:
            skip_or_fail(self.failed[key])
        if key not in self.built:
            try:
                self.built[key] = self._build(backend, populated)
            except pytest.skip.Exception as exc:
                self.failed[key] = str(exc.msg)
                raise
        return self.built[key]

    def _build(self, backend: str, populated: bool) -> Template:
        kind = f"{backend}_{'two_tenants' if populated else 'empty'}"
        if backend == "sqlite":
            url = f"sqlite:///{self.directory / f'{kind}.db'}"
        else:
            server = postgres_server_url(self.config)
            name = f"relay_tpl_{secrets.token_hex(6)}"
            create_database(self._admin(), name)
            url = with_database(server, name)
        db = connect(url)
        try:
            build_schema(db, self.config)
            relay_schema = application_config(self.config).relay_schema
            pair = two_tenants_rows(relay_schema) if populated else None
            roles = None
            if backend == "postgres_rls":
                roles = create_test_roles(db)
        finally:
            db.close()
        template = Template(url, pair, roles)
        if backend != "sqlite":
            if self._resettable is None:
                self._resettable = is_superuser(self._admin())
            if self._resettable:
                conn = admin_connection(url, skip_or_fail)
                try:
                    template.pristine = capture(conn)
                finally:
                    conn.close()
        return template

    def copy(self, backend: str, template: Template, folder: Path | None = None) -> str:
        """A database holding what ``template`` holds; its URL. SQLite: a new
        file in ``folder`` (default: the session's, removed by ``discard``);
        PostgreSQL: a copy no test is using."""
        if backend == "sqlite":
            self._copies += 1
            target = (folder or self.directory) / f"copy_{self._copies}.db"
            dest = sqlite3.connect(target)
            try:
                # A copy thrown away after the test needs no fsync: 1 ms, not 5.
                dest.execute("PRAGMA synchronous = OFF")
                dest.execute("PRAGMA journal_mode = OFF")
                source = sqlite3.connect(urlparse(template.url).path[1:])
                try:
                    source.backup(dest)
                finally:
                    source.close()
            finally:
                dest.close()
            return f"sqlite:///{target}"
        if self._workers is None:
            self._workers = ThreadPoolExecutor(SPARE_COPIES, thread_name_prefix="relay_copy")
        # The first test of a template makes its copies; later tests take
        # turns with them, each reset while another test runs.
        while len(template.spares) < SPARE_COPIES:
            template.spares.append(self._workers.submit(self._make_copy, template))
        taken = template.spares.popleft().result()
        self._in_use[taken.url] = taken
        return taken.url

    def discard(self, url: str) -> None:
        """Give back a copy: remove a SQLite file; reset a PostgreSQL database
        for the next test, or replace it (in the background: the test is over)."""
        if url.startswith("sqlite"):
            path = Path(urlparse(url).path[1:])
            for leftover in (path, path.with_name(path.name + "-journal")):
                leftover.unlink(missing_ok=True)
            return
        used = self._in_use.pop(url)
        assert self._workers is not None
        used.template.spares.append(self._workers.submit(self._recycle, used))

    def _admin(self) -> Any:
        """This thread's admin connection to the server."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = admin_connection(postgres_server_url(self.config), skip_or_fail)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _make_copy(self, template: Template) -> _Copy:
        name = f"relay_copy_{secrets.token_hex(6)}"
        admin = self._admin()
        create_database(admin, name, urlparse(template.url).path[1:])
        return _Copy(with_database(template.url, name), template, next_xid(admin))

    def _recycle(self, used: _Copy) -> _Copy:
        """``used`` put back to its template after a test, or a new copy."""
        if self._closing:  # the session is over: the copy is about to be dropped
            return used
        why = "resetting needs a superuser"
        if used.template.pristine is not None:
            try:
                conn = admin_connection(used.url, skip_or_fail)
                try:
                    found = reset(conn, used.template.pristine, used.marker)
                    if found is None:
                        self._count("reset")
                        return _Copy(used.url, used.template, next_xid(conn))
                    why = found
                finally:
                    conn.close()
            except Exception as exc:  # the copy is replaced: nothing is lost
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                why = f"reset failed: {type(exc).__name__}: {first}"
        self._count(why)
        self._drop_later(used.name)
        return self._make_copy(used.template)

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.outcomes[outcome] += 1

    def _drop_later(self, name: str) -> None:
        # Several threads: concurrent DROP DATABASEs share the checkpoint
        # each one waits for.
        with self._lock:  # called from the copying threads too
            if self._dropper is None:
                self._dropper = ThreadPoolExecutor(DROPPERS, thread_name_prefix="relay_drop")
        self._dropper.submit(self._drop, name)

    def _drop(self, name: str) -> None:
        drop_database(self._admin(), name)

    def close(self) -> None:
        self._closing = True
        if self._workers is not None:
            self._workers.shutdown(wait=True)
        for key, template in self.built.items():
            if key[0] == "sqlite":
                continue
            for spare in template.spares:
                if spare.exception() is None:
                    self._drop_later(spare.result().name)
            self._drop_later(urlparse(template.url).path[1:])
        for used in self._in_use.values():  # a test that never gave its copy back
            self._drop_later(used.name)
        if self._dropper is not None:
            self._dropper.shutdown(wait=True)
        for template in self.built.values():
            if template.roles is not None:
                with self._admin().cursor() as cur:
                    for role in template.roles:
                        cur.execute(f"DROP ROLE IF EXISTS {role}")
        for conn in self._connections:
            conn.close()


def ram_directory() -> Path | None:
    """A new folder on /dev/shm (a RAM disk on Linux), or None where there is none.

    Every SQLite test writes its copy of the template and deletes it again;
    on a disk mounted with ``discard`` each delete is a TRIM, and the same
    suite took from 2x to 3x plain peewee's time from run to run. In memory
    the copy costs what the copying costs, and other processes (a CLI the
    test runs) still open it by its path.
    """
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        return None
    return Path(tempfile.mkdtemp(prefix="relay_templates_", dir=shm))
