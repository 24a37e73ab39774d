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
    same names the CLI uses (``application_config``). With ``relay_schema =
    false`` there (or the ``relay_schema`` ini option) ``relay_db`` holds the
    tenancy core alone and the application's tables, and ``two_tenants`` is
    the two tenants without sample rows.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peewee import Database, SqliteDatabase

from ..database import (
    POSTGRES_DRIVERS,
    connect,
)
from ..models import (
    Tenant,
)
from ..tenancy.context import tenant_context
from . import templates
from .backends import (
    BACKENDS,
    backend_params,
    chosen_backends,
    chosen_driver,
    connect_as_app_role,
    create_test_roles,
    drop_test_roles,
    postgres_server_url,
    throwaway_postgres_database,
)
from .sample_data import TenantPair, copy_pair
from .templates import Hooks, Template, Templates, ram_directory, two_tenants_rows

FRESH_MARK = "relay_fresh_db"


# Every marker this plugin and relay_peewee's own tests use, declared here once.
MARKERS = {
    "sqlite_only": "needs no PostgreSQL server: the sqlite backend, and every test that "
    "has no backend marker (the plugin adds this one to those, in a suite that uses "
    "its fixtures or markers)",
    "postgres_only": "runs on a PostgreSQL backend only (postgres or postgres_rls)",
    "postgres_rls_only": "runs on the postgres_rls backend only",
    "citus": "runs on the Citus cluster of shared/citus (skipped when it is unreachable, "
    "failed under CI=true)",
    FRESH_MARK: "relay_db is migrated from empty for this test instead of copied from a template",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("relay_peewee", "relay_peewee tenant-isolation fixtures")
    group.addoption(
        "--relay-backends",
        # None, not the environment's value: a stray $RELAY_TEST_BACKENDS is
        # read (and checked) only by a suite that uses the fixtures.
        default=None,
        help="comma-separated backends the relay_db fixture runs on "
        f"(default: $RELAY_TEST_BACKENDS, else {','.join(BACKENDS)})",
    )
    group.addoption(
        "--relay-driver",
        default=None,
        help="PostgreSQL driver: psycopg2 or psycopg3 "
        "(default: $RELAY_TEST_DRIVER, else psycopg2 if installed, else psycopg3)",
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
        "relay_schema",
        type="string",
        default="",
        help="false: relay_db holds the tenancy core alone, without Relay's tables "
        "(default: [tool.relay_peewee] relay_schema in pyproject.toml, else true)",
    )
    parser.addini(
        "relay_models",
        type="linelist",
        default=[],
        help="the application's model modules (default: [tool.relay_peewee] models)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # An option given on the command line is checked at once; what only the
    # environment says waits until a test uses the fixtures (below).
    given = config.getoption("relay_backends") or config.getoption("relay_driver")
    if given:
        _check_choices(config)
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


def _check_choices(config: pytest.Config) -> None:
    unknown = sorted(set(chosen_backends(config)) - set(BACKENDS))
    if unknown:
        raise pytest.UsageError(
            f"--relay-backends: unknown backend(s) {', '.join(unknown)}; "
            f"choose from {', '.join(BACKENDS)}"
        )
    if chosen_driver(config) not in POSTGRES_DRIVERS:
        raise pytest.UsageError(
            f"--relay-driver: unknown driver {chosen_driver(config)!r}; "
            f"choose from {', '.join(POSTGRES_DRIVERS)}"
        )


# What makes a test one of this plugin's: it takes one of these fixtures or
# carries one of its markers. A suite with none of them is left as it is.
PLUGIN_FIXTURES = frozenset(
    {"relay_backend", "relay_db", "relay_db_url", "relay_templates", "two_tenants", "inside_tenant"}
)


def _uses_plugin(item: pytest.Item) -> bool:
    if PLUGIN_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    return any(item.get_closest_marker(name) for name in MARKERS)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects anything
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any(_uses_plugin(item) for item in items):
        return  # a plain suite in an environment that happens to have the plugin
    _check_choices(config)
    # `-m sqlite_only` is "everything that runs without PostgreSQL": it
    # keeps the tests that use no database backend at all.
    for item in items:
        if not any(item.get_closest_marker(m) for m in ("sqlite_only", "postgres_only")):
            item.add_marker(pytest.mark.sqlite_only)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "relay_backend" not in metafunc.fixturenames:
        return
    chosen = chosen_backends(metafunc.config)
    metafunc.parametrize("relay_backend", backend_params(b for b in BACKENDS if b in chosen))


@pytest.fixture
def relay_db_url(relay_backend: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of the test's database on ``relay_backend``, as its owner.

    With ``relay_db`` in the test: the database ``relay_db`` is connected to
    (a copy of the session's template, or under ``relay_fresh_db`` a new one
    it migrates). Without: a new, empty database. Removed afterwards.
    """
    if "relay_db" in request.fixturenames and request.node.get_closest_marker(FRESH_MARK) is None:
        templates: Templates = request.getfixturevalue("relay_templates")
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


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(Hooks)


@pytest.fixture(scope="session")
def relay_templates(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Templates]:
    """The session's templates: ``get(backend, populated)``, ``copy(...)``, ``discard(url)``."""
    in_memory = ram_directory()
    directory = in_memory or tmp_path_factory.mktemp("relay_templates")
    templates = Templates(request.config, directory)
    request.config.stash[_OUTCOMES] = templates.outcomes
    try:
        yield templates
    finally:
        templates.close()
        if in_memory is not None:
            shutil.rmtree(in_memory, ignore_errors=True)


_OUTCOMES = pytest.StashKey[Counter[str]]()


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
        request.node.stash[_PAIR] = copy_pair(template.pair)
    if template.roles is None:
        db = connect(relay_db_url)
    else:
        db = connect_as_app_role(relay_db_url, template.roles, template.admins)
    if isinstance(db, SqliteDatabase):
        # A copy thrown away after the test needs no fsync per commit, on
        # any of its connections (permanent=True: every thread's too).
        db.pragma("synchronous", 0, permanent=True)
    try:
        yield db
    finally:
        db.close()


_TEMPLATE = pytest.StashKey[Template]()


_PAIR = pytest.StashKey[TenantPair]()


def _fresh_relay_db(
    relay_backend: str, url: str, request: pytest.FixtureRequest
) -> Iterator[Database]:
    db = connect(url)
    # Through the module, so one override of templates.build_schema reaches
    # both the template builds and the fresh databases.
    templates.build_schema(db, request.config)
    if "two_tenants" in request.fixturenames:
        relay_schema = templates.application_config(request.config).relay_schema
        request.node.stash[_PAIR] = two_tenants_rows(relay_schema)
    if relay_backend != "postgres_rls":
        try:
            yield db
        finally:
            db.close()
        return
    roles = create_test_roles(db)
    db.close()
    app = connect_as_app_role(url, roles)
    try:
        yield app
    finally:
        app.close()
        drop_test_roles(url, roles)


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
