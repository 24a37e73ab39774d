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
                     it; each test runs once per backend: a SQLite file and a
                     throw-away PostgreSQL database, dropped afterwards.
    ``two_tenants``  ``TenantPair(a, b)`` on ``relay_db``: two tenants holding
                     the same shape of data under the same slugs
                     (``SAMPLE_SLUGS``) and the same settings id.

Options (or environment variables)
    ``--relay-backends`` (``RELAY_TEST_BACKENDS``)  ``sqlite,postgres`` by default.
    ``--relay-postgres-url`` (``RELAY_TEST_POSTGRES_URL``)  the server to create
    throw-away databases on; by default libpq's ``PGHOST``, ``PGPORT``,
    ``PGUSER`` and ``PGDATABASE``. Without a reachable server the PostgreSQL
    cases skip, unless ``CI=true``, where they fail.
"""

from __future__ import annotations

import getpass
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlparse, urlunparse

import pytest
from peewee import Database, Model, Table

from .commands import migrate
from .db import connect, database_proxy, is_postgres, unwrap
from .models import (
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
from .tenancy.context import tenant_context, tenant_id_of
from .tenancy.rls import bypass_scope
from .tenancy.scoping import TENANT_COLUMN, TENANT_FIELD

__all__ = [
    "SAMPLE_SLUGS",
    "SampleRows",
    "TenantPair",
    "TenantSnapshot",
    "assert_only_tenant",
    "assert_tenant_untouched",
    "assert_unchanged",
    "bound_by_row_level_security",
    "populate_tenant",
    "snapshot_tenant",
    "throwaway_postgres_database",
]

# postgres_rls: PostgreSQL with row-level security in force: the fixtures
# connect as a fresh application role (not owner, not superuser), so every
# test also proves the database's own isolation holds up under the ORM.
BACKENDS = ("sqlite", "postgres", "postgres_rls")
SAMPLE_SLUGS = ("alpha", "beta", "gamma")


# --- options and backends ----------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("relay_peewee", "relay_peewee tenant-isolation fixtures")
    group.addoption(
        "--relay-backends",
        default=os.environ.get("RELAY_TEST_BACKENDS", ",".join(BACKENDS)),
        help="comma-separated backends the relay_db fixture runs on (default: sqlite,postgres)",
    )
    group.addoption(
        "--relay-postgres-url",
        default=os.environ.get("RELAY_TEST_POSTGRES_URL"),
        help="PostgreSQL server for throw-away test databases (default: libpq PG* variables)",
    )


def _chosen_backends(config: pytest.Config) -> list[str]:
    return [b.strip() for b in str(config.getoption("relay_backends")).split(",") if b.strip()]


def pytest_configure(config: pytest.Config) -> None:
    unknown = sorted(set(_chosen_backends(config)) - set(BACKENDS))
    if unknown:
        raise pytest.UsageError(
            f"--relay-backends: unknown backend(s) {', '.join(unknown)}; "
            f"choose from {', '.join(BACKENDS)}"
        )
    for backend in BACKENDS:
        config.addinivalue_line("markers", f"{backend}_only: runs on the {backend} backend only")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "relay_backend" not in metafunc.fixturenames:
        return
    chosen = _chosen_backends(metafunc.config)
    params = [
        pytest.param(b, id=b, marks=getattr(pytest.mark, f"{b}_only"))
        for b in BACKENDS
        if b in chosen
    ]
    metafunc.parametrize("relay_backend", params)


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL is required in CI: {reason}")
    pytest.skip(reason)


def _server_url(config: pytest.Config) -> str:
    url = config.getoption("relay_postgres_url")
    if url:
        return str(url)
    host = os.environ.get("PGHOST", "127.0.0.1")
    port = os.environ.get("PGPORT", "5432")
    user = os.environ.get("PGUSER") or getpass.getuser()  # libpq's default too
    return f"postgresql://{user}@{host}:{port}/{os.environ.get('PGDATABASE', 'postgres')}"


def _with_database(url: str, name: str) -> str:
    return urlunparse(urlparse(url)._replace(path=f"/{name}"))


@pytest.fixture
def relay_db_url(
    relay_backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[str]:
    """URL of a new, empty database on ``relay_backend``; dropped afterwards."""
    if relay_backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'relay.db'}"
        return
    # postgres and postgres_rls both get a throw-away PostgreSQL database.
    with throwaway_postgres_database(_server_url(request.config)) as url:
        yield url


@contextmanager
def throwaway_postgres_database(
    server: str,
    *,
    prefix: str = "relay_test",
    unavailable: Callable[[str], NoReturn] = _unavailable,
) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server ``server`` (a URL naming
    any database it may connect to); dropped, connections and all, on exit.

    Unreachable, ``unavailable(reason)`` is called before anything is created:
    by default the test is skipped with the reason - or fails under CI=true.
    """
    try:
        import psycopg2
    except ImportError:
        unavailable("psycopg2 is not installed (pip install 'relay_peewee[postgres]')")
    try:
        admin = psycopg2.connect(server, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        unavailable(f"PostgreSQL unreachable at {server}: {' '.join(str(exc).split())}")
    admin.autocommit = True  # CREATE/DROP DATABASE refuse to run in a transaction
    name = f"{prefix}_{secrets.token_hex(6)}"
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield _with_database(server, name)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def relay_db(relay_db_url: str, relay_backend: str) -> Iterator[Database]:
    """A migrated database with every relay_peewee model bound to it."""
    db = connect(relay_db_url)
    migrate(db)
    if relay_backend != "postgres_rls":
        try:
            yield db
        finally:
            db.close()
        return
    with _application_role(db, relay_db_url) as (app_url, admin_url):
        db.close()
        # The recommended setup: unscoped() on its own admin connection.
        app = connect(app_url, admin_url=admin_url)
        try:
            yield app
        finally:
            app.close()


@contextmanager
def _application_role(owner: Database, url: str) -> Iterator[tuple[str, str]]:
    """Fresh app and admin roles (``relay-peewee roles``); their URLs."""
    from .roles import create_roles

    suffix = secrets.token_hex(4)
    app, admin = f"relay_app_{suffix}", f"relay_admin_{suffix}"
    try:
        create_roles(owner, app, admin)
    except Exception as exc:  # not a superuser, most likely
        pytest.skip(f"postgres_rls needs a role that may create roles: {exc}")
    parsed = urlparse(url)
    host = parsed.hostname or ""
    port = f":{parsed.port}" if parsed.port else ""
    try:
        yield (
            urlunparse(parsed._replace(netloc=f"{app}@{host}{port}")),
            urlunparse(parsed._replace(netloc=f"{admin}@{host}{port}")),
        )
    finally:
        # Grants live in this database: drop them before the roles.
        owner.connect(reuse_if_open=True)
        owner.execute_sql(f"DROP OWNED BY {app}, {admin}")
        owner.execute_sql(f"DROP ROLE IF EXISTS {app}")
        owner.execute_sql(f"DROP ROLE IF EXISTS {admin}")
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
    rows: dict[str, SampleRows]

    def other(self, tenant: Tenant | str) -> Tenant:
        return self.b if tenant_id_of(tenant) == self.a.id else self.a

    def rows_of(self, tenant: Tenant | str) -> SampleRows:
        return self.rows[tenant_id_of(tenant)]


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
def two_tenants(relay_db: Database) -> TenantPair:
    """Tenants ``a`` and ``b`` with overlapping sample data on ``relay_db``."""
    # Creating a tenant is an admin operation: the application role may not.
    with bypass_scope(relay_db):
        a = Tenant.create(slug="tenant-a", name="Tenant A")
        b = Tenant.create(slug="tenant-b", name="Tenant B")
    return TenantPair(a, b, {a.id: populate_tenant(a), b.id: populate_tenant(b)})


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
