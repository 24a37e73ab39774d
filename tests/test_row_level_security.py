"""PostgreSQL row-level security, seen from the application role with raw SQL."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any, NamedTuple

import psycopg2
import pytest
from helpers import PG_HOST, PG_PORT, PG_USER
from peewee import Database
from schema import TENANT_TABLES, scalar

from relay_peewee.database import catalog, open_database
from relay_peewee.errors import MigrationError
from relay_peewee.models import DEFAULT_TENANT_ID
from relay_peewee.operations.commands import migrate, rollback
from relay_peewee.operations.roles import create_roles

pytestmark = pytest.mark.postgres_only


@pytest.fixture
def pg_migrated(pg_url: str) -> Iterator[Database]:
    db = open_database(pg_url)
    migrate(db)
    try:
        yield db
    finally:
        db.close()


class Roles(NamedTuple):
    app: str
    admin: str
    dbname: str


@pytest.fixture
def roles(pg_url: str) -> Iterator[Roles]:
    """Fresh app and admin roles on a migrated database with two tenants' skills."""
    db = open_database(pg_url)
    migrate(db)
    db.execute_sql(
        "INSERT INTO tenants (id, name, slug, is_active, plan, created_at, updated_at) VALUES "
        "('t-b', 'B', 'b', true, 'freemium', now(), now())"
    )
    for tenant, suffix in ((DEFAULT_TENANT_ID, "a"), ("t-b", "b")):
        db.execute_sql(
            "INSERT INTO skills (id, name, slug, description, category, content, tenant_id)"
            " VALUES (%s, 'n', 'same', 'd', 'c', 'x', %s)",
            (f"s-{suffix}", tenant),
        )
    suffix = secrets.token_hex(4)
    app, admin = f"relay_app_{suffix}", f"relay_admin_{suffix}"
    create_roles(db, app, admin)
    dbname = str(db.database)
    db.close()
    try:
        yield Roles(app, admin, dbname)
    finally:
        # Grants live in the test database; drop them before the roles.
        owner = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname)
        owner.autocommit = True
        with owner.cursor() as cur:
            cur.execute(f"DROP OWNED BY {app}, {admin}")
            cur.execute(f"DROP ROLE IF EXISTS {app}")
            cur.execute(f"DROP ROLE IF EXISTS {admin}")
        owner.close()


def _as(role: str, dbname: str) -> Any:
    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=role, dbname=dbname)
    conn.autocommit = False
    return conn


def _rows(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else []


def _set_tenant(conn: Any, tenant: str) -> None:
    _rows(conn, "SELECT set_config('app.current_tenant_id', %s, true)", (tenant,))


def test_every_tenant_table_has_a_forced_policy(pg_migrated: Database) -> None:
    for table in TENANT_TABLES:
        assert catalog.row_security(pg_migrated, table) == (True, True), table
        assert catalog.has_policy(pg_migrated, table, "tenant_isolation"), table


def test_the_app_role_sees_only_the_tenant_it_set(roles: Roles) -> None:
    conn = _as(roles.app, roles.dbname)
    try:
        _set_tenant(conn, DEFAULT_TENANT_ID)
        assert _rows(conn, "SELECT id FROM skills ORDER BY id") == [("s-a",)]
        conn.commit()
        # the setting was transaction-local: the next transaction has no tenant
        assert _rows(conn, "SELECT id FROM skills") == []
        conn.rollback()
        _set_tenant(conn, "t-b")
        assert _rows(conn, "SELECT id FROM skills") == [("s-b",)]
        conn.rollback()
    finally:
        conn.close()


def test_the_app_role_cannot_write_another_tenants_rows(roles: Roles) -> None:
    conn = _as(roles.app, roles.dbname)
    try:
        _set_tenant(conn, DEFAULT_TENANT_ID)
        with conn.cursor() as cur:
            cur.execute("UPDATE skills SET name = 'hijacked' WHERE id = 's-b'")
            assert cur.rowcount == 0  # invisible, so untouched
            cur.execute("DELETE FROM skills WHERE id = 's-b'")
            assert cur.rowcount == 0
            with pytest.raises(psycopg2.Error, match="row-level security"):
                cur.execute(
                    "INSERT INTO skills (id, name, slug, description, category, content,"
                    " tenant_id) VALUES ('s-x', 'n', 'x', 'd', 'c', 'x', 't-b')"
                )
        conn.rollback()
        _set_tenant(conn, DEFAULT_TENANT_ID)
        with conn.cursor() as cur, pytest.raises(psycopg2.Error, match="row-level security"):
            cur.execute("UPDATE skills SET tenant_id = 't-b' WHERE id = 's-a'")  # move it away
        conn.rollback()
    finally:
        conn.close()
    owner = open_database(f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{roles.dbname}")
    try:
        assert scalar(owner, "SELECT name FROM skills WHERE id = 's-b'") == "n"
        assert scalar(owner, "SELECT tenant_id FROM skills WHERE id = 's-a'") == DEFAULT_TENANT_ID
    finally:
        owner.close()


def test_the_app_role_cannot_leave_its_tenant_by_sql(roles: Roles) -> None:
    conn = _as(roles.app, roles.dbname)
    try:
        # The recommended setup: no membership in the admin role.
        with pytest.raises(psycopg2.Error, match="permission denied to set role"):
            _rows(conn, f"SET ROLE {roles.admin}")
        conn.rollback()
        _set_tenant(conn, DEFAULT_TENANT_ID)
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO audit_logs (id, tenant_id, action, created_at) "
                "VALUES (gen_random_uuid(), %s, 'x', now())",
                (DEFAULT_TENANT_ID,),
            )
            # the app role may only append: no grant, then the trigger
            with pytest.raises(psycopg2.Error, match="permission denied for table audit_logs"):
                cur.execute("DELETE FROM audit_logs")
        conn.rollback()
    finally:
        conn.close()


def test_set_role_to_the_admin_role_is_an_explicit_opt_in(roles: Roles) -> None:
    owner = open_database(f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{roles.dbname}")
    try:
        create_roles(owner, roles.app, roles.admin, allow_set_role=True)
    finally:
        owner.close()
    conn = _as(roles.app, roles.dbname)
    try:
        _rows(conn, f"SET LOCAL ROLE {roles.admin}")
        assert _rows(conn, "SELECT id FROM skills ORDER BY id") == [("s-a",), ("s-b",)]
        conn.rollback()
        assert _rows(conn, "SELECT id FROM skills") == []  # SET LOCAL ended with it
        conn.rollback()
        _rows(conn, f"SET LOCAL ROLE {roles.admin}")
        with conn.cursor() as cur, pytest.raises(psycopg2.Error, match="permission denied"):
            cur.execute("UPDATE audit_logs SET action = 'y'")
        conn.rollback()
    finally:
        conn.close()
    owner = open_database(f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{roles.dbname}")
    try:  # running `roles` again without the opt-in takes the grant back
        create_roles(owner, roles.app, roles.admin)
    finally:
        owner.close()
    conn = _as(roles.app, roles.dbname)
    try:
        with pytest.raises(psycopg2.Error, match="permission denied to set role"):
            _rows(conn, f"SET ROLE {roles.admin}")
    finally:
        conn.close()


def test_migrations_refuse_a_role_that_cannot_bypass_rls(roles: Roles) -> None:
    db = open_database(f"postgresql://{roles.app}@{PG_HOST}:{PG_PORT}/{roles.dbname}")
    try:
        with pytest.raises(MigrationError, match="cannot bypass it"):
            rollback(db)
    finally:
        db.close()


def test_rls_rolls_back_and_forward(pg_migrated: Database) -> None:
    assert rollback(pg_migrated, to="0008") == [
        "0014_foreign_key_indexes",
        "0013_audit_log_imports",
        "0012_api_keys_of_active_tenants",
        "0011_tenant_consistent_ids",
        "0010_relay_app_compat",
        "0009_isolation_hardening",
        "0008_row_level_security",
    ]
    assert catalog.forced_rls_tables(pg_migrated) == []
    assert migrate(pg_migrated).applied == [
        "0008_row_level_security",
        "0009_isolation_hardening",
        "0010_relay_app_compat",
        "0011_tenant_consistent_ids",
        "0012_api_keys_of_active_tenants",
        "0013_audit_log_imports",
        "0014_foreign_key_indexes",
    ]
    forced = [*TENANT_TABLES, "audit_logs"]
    assert sorted(catalog.forced_rls_tables(pg_migrated)) == sorted(forced)
