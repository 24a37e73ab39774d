"""The backends a test runs on: choosing them, the PostgreSQL server, throw-away
databases and the test roles of ``postgres_rls``.
"""

from __future__ import annotations

import getpass
import importlib.util
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn
from urllib.parse import urlparse, urlunparse

import pytest
from peewee import Database

from ..database import (
    admin_database,
    connect,
    set_admin_database,
)
from ..migrator import HISTORY_TABLE
from ..models import (
    MODELS,
)
from ..operations.roles import create_roles
from .template_copies import (
    admin_connection,
    create_database,
    drop_database,
    with_database,
)

# postgres_rls: PostgreSQL with row-level security in force: the fixtures
# connect as a fresh application role (not owner, not superuser), so every
# test also proves the database's own isolation holds up under the ORM.
BACKENDS = ("sqlite", "postgres", "postgres_rls")


def _default_driver() -> str:
    return "psycopg2" if importlib.util.find_spec("psycopg2") else "psycopg3"


def chosen_backends(config: pytest.Config) -> list[str]:
    """The backends ``--relay-backends`` (else ``$RELAY_TEST_BACKENDS``) asks for."""
    value = (
        config.getoption("relay_backends")
        or os.environ.get("RELAY_TEST_BACKENDS")
        or ",".join(BACKENDS)
    )
    return [b.strip() for b in str(value).split(",") if b.strip()]


def chosen_driver(config: pytest.Config) -> str:
    """``--relay-driver``, else ``$RELAY_TEST_DRIVER``, else the installed one."""
    value = config.getoption("relay_driver") or os.environ.get("RELAY_TEST_DRIVER")
    return str(value or _default_driver())


def backend_params(backends: Iterable[str] = BACKENDS) -> list[Any]:
    """``pytest.param`` per backend, id'd and marked as ``relay_backend`` is."""
    return [pytest.param(b, id=b, marks=_marks(b)) for b in backends]


def _marks(backend: str) -> list[pytest.MarkDecorator]:
    # postgres_rls is PostgreSQL too: `-m postgres_only` keeps it,
    # `-m sqlite_only` leaves it out.
    if backend == "sqlite":
        return [pytest.mark.sqlite_only]
    if backend == "postgres":
        return [pytest.mark.postgres_only]
    return [pytest.mark.postgres_only, pytest.mark.postgres_rls_only]


def skip_or_fail(reason: str) -> NoReturn:
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
    scheme = "psycopg3" if chosen_driver(config) == "psycopg3" else "postgresql"
    return urlunparse(urlparse(str(url))._replace(scheme=scheme))


@contextmanager
def throwaway_postgres_database(
    server: str,
    *,
    prefix: str = "relay_test",
    unavailable: Callable[[str], NoReturn] = skip_or_fail,
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


def connect_as_app_role(
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


def create_test_roles(owner: Database) -> tuple[str, str]:
    """Fresh app and admin roles (``relay-peewee roles``) with random names."""
    suffix = secrets.token_hex(4)
    app, admin = f"relay_app_{suffix}", f"relay_admin_{suffix}"
    # The application's own tables (a pytest_relay_build_schema hook's) get
    # exactly what `relay-peewee roles` grants an application's tables, no
    # more: a test then fails where production would (a sequence, say).
    granted = {m._meta.table_name for m in MODELS} | {HISTORY_TABLE}
    theirs = [t for t in owner.get_tables() if t not in granted]
    try:
        create_roles(owner, app, admin, tables=theirs)
    except Exception as exc:  # not a superuser, most likely
        pytest.skip(f"postgres_rls needs a role that may create roles: {exc}")
    return app, admin


def drop_test_roles(url: str, roles: tuple[str, str]) -> None:
    # Grants live in the database: drop them before the roles.
    owner = connect(url)
    try:
        owner.execute_sql(f"DROP OWNED BY {', '.join(roles)}")
        for role in roles:
            owner.execute_sql(f"DROP ROLE IF EXISTS {role}")
    finally:
        owner.close()
