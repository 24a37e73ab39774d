"""pytest plugin: test that your code keeps tenants apart, on SQLite and PostgreSQL.

Installed with relay_peewee and registered through the ``pytest11`` entry
point, so the fixtures are there without any import::

    from relay_peewee import tenant_context
    from relay_peewee.models import Skill
    from relay_peewee.testing import assert_only_tenant, assert_tenant_untouched

    def test_listing_shows_one_tenant(two_tenants):
        a, b = two_tenants.a, two_tenants.b
        with assert_tenant_untouched(b), tenant_context(a):
            rows = list(Skill.select().where(Skill.slug == "alpha"))
            assert_only_tenant(rows, a)

Fixtures
    ``relay_db``     a database built by ``migrate`` with every model bound to
                     it; each test runs once per backend and gets its own
                     copy (see "How the fixtures stay fast" below).
    ``two_tenants``  ``TenantPair(a, b)`` on ``relay_db``: two tenants holding
                     the same shape of data under the same slugs
                     (``SAMPLE_SLUGS``) and the same settings id.
    ``inside_tenant`` tenant ``a`` of ``two_tenants``, active (``tenant_context``)
                     for the whole test, as acts_as_tenant's test tenant.
    ``relay_db_url`` the URL of a new, empty database (nothing migrated).

How the fixtures stay fast
    The migrated database (and, for ``two_tenants``, the populated one) is
    built once per session and backend - a *template* - by ``build_schema``,
    the one place that calls ``migrate``. Each test gets a database holding
    exactly what the template holds. SQLite copies the template file with
    SQLite's backup API (into /dev/shm where there is one). PostgreSQL makes
    three copies per template (``CREATE DATABASE ... TEMPLATE``) that tests
    take turns with: after a test, once its connections are gone, a
    background thread proves from the catalogs that only table rows and
    sequence values changed, puts the rows
    of the tables that changed back (from the template's, kept in memory)
    and every sequence, while the next test runs on another copy
    (``template_copies`` says how the proof works). A test that changed
    anything else - a table, column, index, policy, grant, ``TRUNCATE``, a
    database setting - or left a connection open has its copy dropped and
    replaced instead: slower, never wrong. Putting rows back skips triggers,
    which needs a superuser; as any other role each test gets a new copy.
    With ``-v`` the summary counts the copies reset and says why others were
    replaced. Tests stay fully independent, including tests that commit, open
    more connections or change the schema; each sees real commits on a real
    database. A test that needs a database migrated from empty by itself
    asks with ``@pytest.mark.relay_fresh_db``.

Options (or environment variables)
    ``--relay-backends`` (``RELAY_TEST_BACKENDS``)  comma-separated; by default
    all three: ``sqlite,postgres,postgres_rls``.
    ``--relay-driver`` (``RELAY_TEST_DRIVER``)  ``psycopg2`` or ``psycopg3``:
    the driver the PostgreSQL backends use; by default psycopg2 when it is
    installed, else psycopg 3.
    ``--relay-postgres-url`` (``RELAY_TEST_POSTGRES_URL``)  the server to create
    throw-away databases on; by default libpq's ``PGHOST``, ``PGPORT``,
    ``PGUSER`` and ``PGDATABASE``. Without a reachable server the PostgreSQL
    cases skip, unless ``CI=true``, where they fail.

An application's own tables
    ``build_schema`` (so every ``relay_db``) also applies the application's
    migrations, after Relay's: the packages are read from the
    ``relay_migrations`` ini option (in ``[tool.pytest.ini_options]``), else
    from ``[tool.relay_peewee]`` of the pyproject.toml at the rootdir - the
    same names the CLI uses (``application_config``).
"""

from __future__ import annotations

import copy
import getpass
import importlib.util
import os
import secrets
import shutil
import sqlite3
import tempfile
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlparse, urlunparse

import pytest
from peewee import Database, Model, SqliteDatabase, Table

from .commands import migrate
from .config import AppConfig, read_config
from .db import (
    POSTGRES_DRIVERS,
    admin_database,
    connect,
    database_proxy,
    is_postgres,
    set_admin_database,
    unwrap,
)
from .migrator import HISTORY_TABLE
from .models import (
    MODELS,
    TENANT_MODELS,
    ApiKey,
    Rating,
    SiteSettings,
    Skill,
    SkillEmbedding,
    SkillReview,
    SkillVersion,
    Tenant,
    UsageEvent,
    User,
)
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
from .tenancy.context import tenant_context, tenant_id_of
from .tenancy.rls import bypass_scope
from .tenancy.scoping import TENANT_COLUMN, TENANT_FIELD

__all__ = [
    "BACKENDS",
    "FRESH_MARK",
    "MARKERS",
    "SAMPLE_SLUGS",
    "SampleRows",
    "TenantPair",
    "TenantSnapshot",
    "application_config",
    "assert_only_tenant",
    "assert_tenant_untouched",
    "assert_unchanged",
    "backend_params",
    "bound_by_row_level_security",
    "build_schema",
    "chosen_backends",
    "populate_tenant",
    "postgres_server_url",
    "snapshot_tenant",
    "throwaway_postgres_database",
]

# postgres_rls: PostgreSQL with row-level security in force: the fixtures
# connect as a fresh application role (not owner, not superuser), so every
# test also proves the database's own isolation holds up under the ORM.
BACKENDS = ("sqlite", "postgres", "postgres_rls")
SAMPLE_SLUGS = ("alpha", "beta", "gamma")
FRESH_MARK = "relay_fresh_db"
# PostgreSQL copies per template that tests take turns with: one in use,
# the others being reset meanwhile.
SPARE_COPIES = 3
# Threads dropping PostgreSQL databases.
DROPPERS = 4

# Every marker this plugin and relay_peewee's own tests use, declared here once.
MARKERS = {
    "sqlite_only": "needs no PostgreSQL server: the sqlite backend, and every test that "
    "has no backend marker (the plugin adds this one to those)",
    "postgres_only": "runs on a PostgreSQL backend only (postgres or postgres_rls)",
    "postgres_rls_only": "runs on the postgres_rls backend only",
    FRESH_MARK: "relay_db is migrated from empty for this test instead of copied from a template",
}


# --- options and backends ----------------------------------------------------


def _default_driver() -> str:
    return "psycopg2" if importlib.util.find_spec("psycopg2") else "psycopg3"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("relay_peewee", "relay_peewee tenant-isolation fixtures")
    group.addoption(
        "--relay-backends",
        default=os.environ.get("RELAY_TEST_BACKENDS", ",".join(BACKENDS)),
        help="comma-separated backends the relay_db fixture runs on "
        f"(default: {','.join(BACKENDS)})",
    )
    group.addoption(
        "--relay-driver",
        default=os.environ.get("RELAY_TEST_DRIVER") or None,
        help="PostgreSQL driver: psycopg2 or psycopg3 "
        "(default: psycopg2 if installed, else psycopg3)",
    )
    group.addoption(
        "--relay-postgres-url",
        default=os.environ.get("RELAY_TEST_POSTGRES_URL"),
        help="PostgreSQL server for throw-away test databases (default: libpq PG* variables)",
    )
    parser.addini(
        "relay_migrations",
        type="linelist",
        default=[],
        help="the application's migration packages relay_db applies after Relay's "
        "(default: [tool.relay_peewee] migrations in pyproject.toml)",
    )
    parser.addini(
        "relay_models",
        type="linelist",
        default=[],
        help="the application's model modules (default: [tool.relay_peewee] models)",
    )


def application_config(config: pytest.Config) -> AppConfig:
    """The application's migrations and models: the ini options, else pyproject.toml."""
    found = read_config(config.rootpath)
    migrations = tuple(config.getini("relay_migrations")) or found.migrations
    models = tuple(config.getini("relay_models")) or found.models
    return AppConfig(migrations, models, found.source)


def _chosen_backends(config: pytest.Config) -> list[str]:
    return [b.strip() for b in str(config.getoption("relay_backends")).split(",") if b.strip()]


def _driver(config: pytest.Config) -> str:
    return str(config.getoption("relay_driver") or _default_driver())


def pytest_configure(config: pytest.Config) -> None:
    unknown = sorted(set(_chosen_backends(config)) - set(BACKENDS))
    if unknown:
        raise pytest.UsageError(
            f"--relay-backends: unknown backend(s) {', '.join(unknown)}; "
            f"choose from {', '.join(BACKENDS)}"
        )
    if _driver(config) not in POSTGRES_DRIVERS:
        raise pytest.UsageError(
            f"--relay-driver: unknown driver {_driver(config)!r}; "
            f"choose from {', '.join(POSTGRES_DRIVERS)}"
        )
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


def backend_params(backends: Iterable[str] = BACKENDS) -> list[Any]:
    """``pytest.param`` per backend, id'd and marked as ``relay_backend`` is."""
    return [pytest.param(b, id=b, marks=_marks(b)) for b in backends]


def chosen_backends(config: pytest.Config) -> list[str]:
    """The backends ``--relay-backends`` asks for."""
    return _chosen_backends(config)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects anything
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # `-m sqlite_only` is "everything that runs without PostgreSQL": it
    # keeps the tests that use no database backend at all.
    for item in items:
        if not any(item.get_closest_marker(m) for m in ("sqlite_only", "postgres_only")):
            item.add_marker(pytest.mark.sqlite_only)


def _marks(backend: str) -> list[pytest.MarkDecorator]:
    # postgres_rls is PostgreSQL too: `-m postgres_only` keeps it,
    # `-m sqlite_only` leaves it out.
    if backend == "sqlite":
        return [pytest.mark.sqlite_only]
    if backend == "postgres":
        return [pytest.mark.postgres_only]
    return [pytest.mark.postgres_only, pytest.mark.postgres_rls_only]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "relay_backend" not in metafunc.fixturenames:
        return
    chosen = _chosen_backends(metafunc.config)
    metafunc.parametrize("relay_backend", backend_params(b for b in BACKENDS if b in chosen))


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL is required in CI: {reason}")
    pytest.skip(reason)


def postgres_server_url(config: pytest.Config) -> str:
    """The server throw-away databases go on, with the scheme of the chosen
    driver (``postgresql://`` for psycopg2, ``psycopg3://`` for psycopg 3)."""
    url = config.getoption("relay_postgres_url")
    if not url:
        host = os.environ.get("PGHOST", "127.0.0.1")
        port = os.environ.get("PGPORT", "5432")
        user = os.environ.get("PGUSER") or getpass.getuser()  # libpq's default too
        url = f"postgresql://{user}@{host}:{port}/{os.environ.get('PGDATABASE', 'postgres')}"
    scheme = "psycopg3" if _driver(config) == "psycopg3" else "postgresql"
    return urlunparse(urlparse(str(url))._replace(scheme=scheme))


@pytest.fixture
def relay_db_url(relay_backend: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of the test's database on ``relay_backend``, as its owner.

    With ``relay_db`` in the test: the database ``relay_db`` is connected to
    (a copy of the session's template, or under ``relay_fresh_db`` a new one
    it migrates). Without: a new, empty database. Removed afterwards.
    """
    if "relay_db" in request.fixturenames and request.node.get_closest_marker(FRESH_MARK) is None:
        templates: _Templates = request.getfixturevalue("relay_templates")
        template = templates.get(relay_backend, "two_tenants" in request.fixturenames)
        url = templates.copy(relay_backend, template)
        request.node.stash[_TEMPLATE] = template
        try:
            yield url
        finally:
            templates.discard(url)
        return
    if relay_backend == "sqlite":
        # tmp_path only here: pytest makes a folder per test for it (~0.3 ms),
        # which a test on a template copy does not need.
        tmp_path: Path = request.getfixturevalue("tmp_path")
        yield f"sqlite:///{tmp_path / 'relay.db'}"
        return
    # postgres and postgres_rls both get a throw-away PostgreSQL database.
    with throwaway_postgres_database(postgres_server_url(request.config)) as url:
        yield url


@contextmanager
def throwaway_postgres_database(
    server: str,
    *,
    prefix: str = "relay_test",
    unavailable: Callable[[str], NoReturn] = _unavailable,
    template: str | None = None,
) -> Iterator[str]:
    """A new database on the PostgreSQL server ``server`` (a URL naming any
    database it may connect to; its scheme picks the driver); dropped,
    connections and all, on exit. Empty, or a copy of ``template``.

    Unreachable, ``unavailable(reason)`` is called before anything is created:
    by default the test is skipped with the reason - or fails under CI=true.
    """
    admin = admin_connection(server, unavailable)
    name = f"{prefix}_{secrets.token_hex(6)}"
    try:
        create_database(admin, name, template)
        yield with_database(server, name)
    finally:
        drop_database(admin, name)
        admin.close()


# --- templates: migrate once per session, copy per test ----------------------


class _Hooks:
    @pytest.hookspec
    def pytest_relay_build_schema(self, db: Database) -> None:
        """Called after ``migrate`` on every database ``relay_db`` is made from
        (each template once, each ``relay_fresh_db`` database): create what the
        application's tests need and no migration creates, e.g.
        ``db.create_tables([Project])`` for its own TenantModels."""


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(_Hooks)


def build_schema(db: Database, config: pytest.Config | None = None) -> None:
    """What every ``relay_db`` holds: the one place the fixtures migrate.

    Templates and ``relay_fresh_db`` databases both come from here, so an
    application's own migrations, once ``migrate`` runs them, land in both,
    and so do the tables ``pytest_relay_build_schema`` hooks create.
    """
    # The one integration point with the application: its migration
    # packages, run after Relay's (``application_config``).
    migrations = application_config(config).migrations if config is not None else ()
    migrate(db, migrations=migrations)
    if config is not None:
        config.hook.pytest_relay_build_schema(db=db)


def _two_tenants_rows() -> TenantPair:
    a = Tenant.create(slug="tenant-a", name="Tenant A")
    b = Tenant.create(slug="tenant-b", name="Tenant B")
    return TenantPair(a, b, {a.id: populate_tenant(a), b.id: populate_tenant(b)})


@dataclass
class _Template:
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
    template: _Template
    # The next xid when it was made or last reset: its test's transactions
    # all have this one or a later one (template_copies.reset).
    marker: int

    @property
    def name(self) -> str:
        return urlparse(self.url).path[1:]


@dataclass
class _Templates:
    """Every template of the session, built on first use and dropped at its end."""

    config: pytest.Config
    directory: Path
    built: dict[tuple[str, bool], _Template] = field(default_factory=dict)
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

    def get(self, backend: str, populated: bool) -> _Template:
        key = (backend, populated)
        if key in self.failed:
            _unavailable(self.failed[key])
        if key not in self.built:
            try:
                self.built[key] = self._build(backend, populated)
            except pytest.skip.Exception as exc:
                self.failed[key] = str(exc.msg)
                raise
        return self.built[key]

    def _build(self, backend: str, populated: bool) -> _Template:
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
            pair = _two_tenants_rows() if populated else None
            roles = None
            if backend == "postgres_rls":
                roles = _create_test_roles(db)
        finally:
            db.close()
        template = _Template(url, pair, roles)
        if backend != "sqlite":
            if self._resettable is None:
                self._resettable = is_superuser(self._admin())
            if self._resettable:
                conn = admin_connection(url, _unavailable)
                try:
                    template.pristine = capture(conn)
                finally:
                    conn.close()
        return template

    def copy(self, backend: str, template: _Template, folder: Path | None = None) -> str:
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
            conn = admin_connection(postgres_server_url(self.config), _unavailable)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _make_copy(self, template: _Template) -> _Copy:
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
                conn = admin_connection(used.url, _unavailable)
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


@pytest.fixture(scope="session")
def relay_templates(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_Templates]:
    """The session's templates: ``get(backend, populated)``, ``copy(...)``, ``discard(url)``."""
    in_memory = _ram_directory()
    directory = in_memory or tmp_path_factory.mktemp("relay_templates")
    templates = _Templates(request.config, directory)
    request.config.stash[_OUTCOMES] = templates.outcomes
    try:
        yield templates
    finally:
        templates.close()
        if in_memory is not None:
            shutil.rmtree(in_memory, ignore_errors=True)


def _ram_directory() -> Path | None:
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


_OUTCOMES = pytest.StashKey["Counter[str]"]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    # With -v: why a suite's PostgreSQL tests were slower than they might be.
    outcomes = config.stash.get(_OUTCOMES, None)
    if not outcomes or config.get_verbosity() < 1:
        return
    reused = outcomes.get("reset", 0)
    replaced = sorted((n, why) for why, n in outcomes.items() if why != "reset")
    text = f"relay_peewee: PostgreSQL copies reset for the next test: {reused}"
    text += f", replaced: {sum(n for n, _ in replaced)}"
    terminalreporter.write_line(text)
    for n, why in reversed(replaced):
        terminalreporter.write_line(f"    {n:>5}  {why}")


@pytest.fixture
def relay_db(
    relay_backend: str, relay_db_url: str, request: pytest.FixtureRequest
) -> Iterator[Database]:
    """A migrated database with every relay_peewee model bound to it; the test's own."""
    template = request.node.stash.get(_TEMPLATE, None)
    if template is None:  # relay_fresh_db
        yield from _fresh_relay_db(relay_backend, relay_db_url, request)
        return
    if template.pair is not None:
        # Each test its own objects: one test changing a.name must not
        # change the next test's pair.
        request.node.stash[_PAIR] = _copy_pair(template.pair)
    if template.roles is None:
        db = connect(relay_db_url)
    else:
        db = _connect_as_app_role(relay_db_url, template.roles, template.admins)
    if isinstance(db, SqliteDatabase):
        # A copy thrown away after the test needs no fsync per commit, on
        # any of its connections (permanent=True: every thread's too).
        db.pragma("synchronous", 0, permanent=True)
    try:
        yield db
    finally:
        db.close()


_TEMPLATE = pytest.StashKey["_Template"]()
_PAIR = pytest.StashKey["TenantPair"]()


def _fresh_relay_db(
    relay_backend: str, url: str, request: pytest.FixtureRequest
) -> Iterator[Database]:
    db = connect(url)
    build_schema(db, request.config)
    if "two_tenants" in request.fixturenames:
        request.node.stash[_PAIR] = _two_tenants_rows()
    if relay_backend != "postgres_rls":
        try:
            yield db
        finally:
            db.close()
        return
    roles = _create_test_roles(db)
    db.close()
    app = _connect_as_app_role(url, roles)
    try:
        yield app
    finally:
        app.close()
        _drop_test_roles(url, roles)


def _connect_as_app_role(
    url: str, roles: tuple[str, str], admins: dict[str, Database] | None = None
) -> Database:
    """The database as the application role, in the recommended setup:
    ``unscoped()`` on its own connection as the admin role.

    ``admins``: the admin databases ``connect`` checked already, by URL; a
    copy's next test skips connecting once more just to check it."""
    admin_url = _as_role(url, roles[1])
    admin = admins.get(admin_url) if admins is not None else None
    if admin is None:
        app = connect(_as_role(url, roles[0]), admin_url=admin_url)
        if admins is not None:
            admins[admin_url] = admin_database(app)  # type: ignore[assignment]
    else:
        app = connect(_as_role(url, roles[0]))
        set_admin_database(app, admin)
    app.relay_admin_role = roles[1]  # type: ignore[attr-defined]
    return app


def _as_role(url: str, role: str) -> str:
    parsed = urlparse(url)
    host = parsed.hostname or ""
    port = f":{parsed.port}" if parsed.port else ""
    return urlunparse(parsed._replace(netloc=f"{role}@{host}{port}"))


def _create_test_roles(owner: Database) -> tuple[str, str]:
    """Fresh app and admin roles (``relay-peewee roles``) with random names."""
    from .roles import create_roles

    suffix = secrets.token_hex(4)
    app, admin = f"relay_app_{suffix}", f"relay_admin_{suffix}"
    try:
        create_roles(owner, app, admin)
    except Exception as exc:  # not a superuser, most likely
        pytest.skip(f"postgres_rls needs a role that may create roles: {exc}")
    # The application's own tables (a pytest_relay_build_schema hook's):
    # the app role may use them as it may use Relay's.
    granted = {m._meta.table_name for m in MODELS} | {HISTORY_TABLE}
    theirs = [t for t in owner.get_tables() if t not in granted]
    if theirs:
        names = ", ".join(f'"{t}"' for t in theirs)
        owner.execute_sql(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {names} TO {app}, {admin}")
        owner.execute_sql(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {app}, {admin}")
    return app, admin


def _drop_test_roles(url: str, roles: tuple[str, str]) -> None:
    # Grants live in the database: drop them before the roles.
    owner = connect(url)
    try:
        owner.execute_sql(f"DROP OWNED BY {', '.join(roles)}")
        for role in roles:
            owner.execute_sql(f"DROP ROLE IF EXISTS {role}")
    finally:
        owner.close()


# --- two populated tenants ---------------------------------------------------


@dataclass(frozen=True)
class SampleRows:
    """What ``populate_tenant`` wrote for one tenant."""

    users: list[User]
    skills: list[Skill]
    versions: list[SkillVersion]
    ratings: list[Rating]
    usage_events: list[UsageEvent]
    embeddings: list[SkillEmbedding]
    reviews: list[SkillReview]
    api_keys: list[ApiKey]
    settings: SiteSettings


@dataclass(frozen=True)
class TenantPair:
    """Two populated tenants; ``rows[tenant.id]`` is what each holds."""

    a: Tenant
    b: Tenant
    rows: Mapping[str, SampleRows]

    def other(self, tenant: Tenant | str) -> Tenant:
        return self.b if tenant_id_of(tenant) == self.a.id else self.a

    def rows_of(self, tenant: Tenant | str) -> SampleRows:
        return self.rows[tenant_id_of(tenant)]


def _copy_row(row: Any, memo: dict[int, Any]) -> Any:
    """A new instance with a copy of the row's values, and of the related rows
    it holds (``skill.author``), each copied once per pair (``memo``)."""
    if id(row) in memo:
        return memo[id(row)]
    new = type(row)(__no_default__=True)
    memo[id(row)] = new
    new.__data__ = {
        k: copy.deepcopy(v) if isinstance(v, (list, dict)) else v  # the rest is immutable
        for k, v in row.__data__.items()
    }
    new.__rel__ = {k: _copy_row(v, memo) for k, v in row.__rel__.items()}
    return new


def _copy_sample(sample: SampleRows, memo: dict[int, Any]) -> SampleRows:
    copied: dict[str, Any] = {}
    for f in fields(sample):
        value = getattr(sample, f.name)
        copied[f.name] = (
            _copy_row(value, memo)
            if isinstance(value, Model)
            else [_copy_row(r, memo) for r in value]
        )
    return SampleRows(**copied)


class _CopiedOnRead(Mapping[str, SampleRows]):
    """The template's sample rows, each tenant's copied when a test first reads
    them: most tests never do, and copying ~50 rows costs a millisecond.

    (``copy.deepcopy`` of the pair cost 15 ms a test: it copies far more than
    the rows.)"""

    def __init__(self, template: Mapping[str, SampleRows], memo: dict[int, Any]) -> None:
        self._template = template
        self._memo = memo
        self._copies: dict[str, SampleRows] = {}

    def __getitem__(self, tenant_id: str) -> SampleRows:
        if tenant_id not in self._copies:
            self._copies[tenant_id] = _copy_sample(self._template[tenant_id], self._memo)
        return self._copies[tenant_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._template)

    def __len__(self) -> int:
        return len(self._template)


def _copy_pair(pair: TenantPair) -> TenantPair:
    """The test's own objects: one test changing ``a.name`` must not change
    the next test's pair. Related rows point at the copies, as they did."""
    memo: dict[int, Any] = {}
    a, b = _copy_row(pair.a, memo), _copy_row(pair.b, memo)
    return TenantPair(a, b, _CopiedOnRead(pair.rows, memo))


def populate_tenant(tenant: Tenant) -> SampleRows:
    """Sample data for one tenant; two tenants given it share every slug."""
    tag = tenant.slug
    # One transaction: ~30 rows, not ~30 commits (each an fsync on SQLite).
    with _database(None).atomic(), tenant_context(tenant):
        users = [User.create(email=f"{who}@{tag}.example", name=who) for who in ("ann", "bob")]
        skills = [
            Skill.create(
                name=f"{slug} of {tag}",
                slug=slug,
                description=f"{slug} skill",
                category="writing" if i % 2 else "coding",
                tags=[slug],
                content=f"# {slug} for {tag}",
                author=users[i % 2],
            )
            for i, slug in enumerate(SAMPLE_SLUGS)
        ]
        versions: list[SkillVersion] = []
        ratings: list[Rating] = []
        usage: list[UsageEvent] = []
        embeddings: list[SkillEmbedding] = []
        reviews: list[SkillReview] = []
        for skill in skills:
            versions.append(
                SkillVersion.create(
                    skill=skill,
                    version=1,
                    content_url=f"s3://{tag}/{skill.slug}",
                    content_hash=f"{tag}-{skill.slug}",
                    content_type="text/markdown",
                    name=skill.name,
                    description=skill.description,
                    created_by=users[0],
                )
            )
            ratings.extend(
                Rating.create(skill=skill, user=u, rating=4 + i) for i, u in enumerate(users)
            )
            usage.append(UsageEvent.create(tool_name="cli", skill=skill, user=users[0]))
            embeddings.append(
                SkillEmbedding.create(
                    skill=skill,
                    embedding=[0.5, 0.25],
                    model_name="m",
                    dimensions=2,
                    input_hash=f"{tag}-{skill.slug}",
                )
            )
            reviews.append(
                SkillReview.create(
                    skill=skill,
                    categories={"ok": True},
                    summary="fine",
                    reviewed_content_hash=f"{tag}-{skill.slug}",
                    model_name="m",
                    requested_by=users[1],
                )
            )
        keys = [
            ApiKey.create(user=u, key_hash=f"hash-{tag}-{u.name}", key_prefix=f"rk_{tag}")
            for u in users
        ]
        settings = SiteSettings.for_tenant()
    return SampleRows(users, skills, versions, ratings, usage, embeddings, reviews, keys, settings)


@pytest.fixture
def two_tenants(relay_db: Database, request: pytest.FixtureRequest) -> TenantPair:
    """Tenants ``a`` and ``b`` with overlapping sample data on ``relay_db``.

    ``relay_db`` built them already (it copies a populated template when a
    test asks for this fixture); this hands the test its own objects.
    """
    return request.node.stash[_PAIR]


@pytest.fixture
def inside_tenant(two_tenants: TenantPair) -> Iterator[Tenant]:
    """Tenant ``a`` of ``two_tenants``, the current tenant for the whole test."""
    with tenant_context(two_tenants.a):
        yield two_tenants.a


# --- assertions --------------------------------------------------------------
# They read through plain peewee ``Table`` objects, never the TenantModels, so
# a bug in scoping cannot hide itself from the check.


def _database(database: Database | None) -> Database:
    return unwrap(database if database is not None else database_proxy)


def _rows_to_check(rows: Any) -> Iterator[Any]:
    stack = [rows]
    while stack:
        item = stack.pop()
        if isinstance(item, Model):
            yield item
            # Rows joined in (rating.skill after a join) count as seen too.
            stack.extend(v for v in item.__rel__.values() if isinstance(v, Model))
        elif isinstance(item, dict):
            yield item
        elif isinstance(item, Iterable) and not isinstance(item, (str, bytes, tuple)):
            stack.extend(item)
        else:
            raise TypeError(
                f"cannot tell which tenant {item!r} belongs to: pass model instances or "
                "dicts() rows holding tenant_id"
            )


def _key_text(pk: Any, value: Any) -> str:
    # One spelling per key: a UUID read back from SQLite is hex, from psycopg2 text.
    return str(pk.python_value(pk.db_value(value)))


def _owners(model: Any, keys: list[Any], db: Database) -> dict[str, str]:
    """Primary key (as ``_key_text``) -> tenant id, read without the ORM."""
    pk = model._meta.primary_key
    table = Table(model._meta.table_name, schema=model._meta.schema)
    column = table.c[pk.column_name]
    found: dict[str, str] = {}
    with bypass_scope(db):  # the owners of rows row-level security hides too
        for start in range(0, len(keys), 500):
            chunk = [pk.db_value(k) for k in keys[start : start + 500]]
            query = table.select(column, table.c[TENANT_COLUMN]).where(column.in_(chunk))
            for key, owner in query.tuples().execute(db):
                found[_key_text(pk, key)] = owner
    return found


def assert_only_tenant(rows: Any, tenant: Tenant | str, database: Database | None = None) -> None:
    """Fail unless every row in ``rows`` belongs to ``tenant``.

    ``rows``: model instances (with anything joined onto them), dicts holding
    ``tenant_id``, or iterables of those - a query is executed. An instance
    read without its tenant column is looked up by primary key.
    """
    tenant_id = tenant_id_of(tenant)
    foreign: list[str] = []
    by_key: dict[Any, list[Any]] = {}
    for row in _rows_to_check(rows):
        if isinstance(row, dict):
            owner = row.get(TENANT_COLUMN, row.get(TENANT_FIELD))
            if owner is None:
                raise TypeError(f"row {row!r} holds no tenant_id to check")
            if owner != tenant_id:
                foreign.append(f"{row!r} (tenant {owner})")
            continue
        instance: Any = row
        owner = instance.__data__.get(TENANT_FIELD)
        if owner is not None:
            if owner != tenant_id:
                foreign.append(f"{type(row).__name__} {instance._pk!r} (tenant {owner})")
        elif hasattr(type(row), TENANT_FIELD):
            meta = instance._meta
            if meta.primary_key is False or meta.composite_key or instance._pk is None:
                raise TypeError(f"{row!r} was read without its tenant or its key: select them")
            by_key.setdefault(type(row), []).append(instance._pk)
    db = _database(database) if by_key else None
    for model, keys in by_key.items():
        assert db is not None
        owners = _owners(model, keys, db)
        pk = model._meta.primary_key
        for key in keys:
            owner = owners.get(_key_text(pk, key), tenant_id)  # deleted since: not foreign
            if owner != tenant_id:
                foreign.append(f"{model.__name__} {key!r} (tenant {owner})")
    if foreign:
        shown = ", ".join(foreign[:5]) + (
            f", and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        )
        raise AssertionError(f"rows of another tenant than {tenant_id!r} were visible: {shown}")


@dataclass(frozen=True)
class TenantSnapshot:
    """Every row of one tenant, per table, as sorted text tuples."""

    tenant_id: str
    tables: dict[str, list[tuple[str, ...]]]


def snapshot_tenant(tenant: Tenant | str, database: Database | None = None) -> TenantSnapshot:
    db = _database(database)
    tenant_id = tenant_id_of(tenant)
    tables: dict[str, list[tuple[str, ...]]] = {}
    with bypass_scope(db):  # another tenant's rows, whatever RLS would show
        for model in TENANT_MODELS:
            table = Table(model._meta.table_name, schema=model._meta.schema)
            query = table.select().where(table.c[TENANT_COLUMN] == tenant_id)
            tables[table.__name__] = sorted(
                tuple(repr(v) for v in row) for row in query.tuples().execute(db)
            )
    return TenantSnapshot(tenant_id, tables)


def assert_unchanged(snapshot: TenantSnapshot, database: Database | None = None) -> None:
    """Fail if any row of the snapshot's tenant was added, changed or removed."""
    now = snapshot_tenant(snapshot.tenant_id, database)
    changed = []
    for name, before in snapshot.tables.items():
        after = now.tables[name]
        if after != before:
            gone = len(set(before) - set(after))
            new = len(set(after) - set(before))
            changed.append(f"{name} ({gone} rows gone or changed, {new} new or changed)")
    if changed:
        raise AssertionError(f"tenant {snapshot.tenant_id!r} was modified: {', '.join(changed)}")


@contextmanager
def assert_tenant_untouched(
    tenant: Tenant | str, database: Database | None = None
) -> Iterator[None]:
    """Fail if the block adds, changes or removes any row of ``tenant``."""
    snapshot = snapshot_tenant(tenant, database)
    yield
    assert_unchanged(snapshot, database)


def bound_by_row_level_security(database: Database | None = None) -> bool:
    """Whether the connected role is one PostgreSQL's row-level security binds.

    True on the ``postgres_rls`` backend; a test whose setup needs more than
    the application role may do (DDL, say) can skip on it.
    """
    db = _database(database)
    if not is_postgres(db):
        return False
    row = db.execute_sql(
        "SELECT NOT (rolsuper OR rolbypassrls) FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    return bool(row[0])
