"""An application's own tables, whatever their names and keys, end to end.

Names: a reserved word and mixed case, quoted everywhere.

``user`` is what peewee names a ``User`` model's table by default and a
reserved word in PostgreSQL; ``"Order"`` only exists quoted. Both are
tenantized (a per-tenant unique on a reserved-word column, a reference),
get their roles and RLS policies, audit clean, are used as the application
role (ORM and raw SQL) and are rolled back - on both backends.

Keys: serial ids, whose sequences the application role must be granted by
``roles`` (and the audit must miss no right the application needs to write).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from peewee import (
    AutoField,
    Database,
    ForeignKeyField,
    IntegerField,
    IntegrityError,
    Model,
    TextField,
)

import relay_peewee
from relay_peewee import TenantModel, tenant_context
from relay_peewee.audit import audit_schema
from relay_peewee.database import is_postgres
from relay_peewee.fields import TenantForeignKeyField
from relay_peewee.migrator import migrator_for
from relay_peewee.operations.commands import create_tenant
from relay_peewee.operations.roles import create_roles
from relay_peewee.testing.backends import _as_role, create_test_roles, drop_test_roles


class LegacyUser(Model):
    id = AutoField()
    order = IntegerField(unique=True)
    name = TextField(column_name="Name")

    class Meta:
        table_name = "user"


class LegacyOrder(Model):
    id = AutoField()
    user = ForeignKeyField(LegacyUser, index=False)
    group = TextField(column_name="Group")

    class Meta:
        table_name = "Order"


class User(TenantModel):
    id = AutoField()
    order = IntegerField()
    name = TextField(column_name="Name")

    class Meta:
        table_name = "user"
        tenant_unique = [("order",), ("id",)]


class Order(TenantModel):
    id = AutoField()
    user = TenantForeignKeyField(User, index=False)
    group = TextField(column_name="Group")

    class Meta:
        table_name = "Order"


MODELS: list[Any] = [User, Order]


@pytest.fixture
def tenantized(migrated_db: Database) -> Iterator[Database]:
    db = migrated_db
    with db.bind_ctx([LegacyUser, LegacyOrder]):
        db.create_tables([LegacyUser, LegacyOrder])
        for i in range(3):
            LegacyOrder.create(user=LegacyUser.create(order=i, name=f"n{i}"), group="g")
    migrator = migrator_for(db)
    with migrator.run_context():
        migrator.tenantize(*MODELS)
    yield db


def _errors(db: Database, **kw: Any) -> list[str]:
    return [f.message for f in audit_schema(db, models=MODELS, **kw) if f.severity == "error"]


def test_reserved_and_mixed_case_names_tenantize_and_audit_clean(tenantized: Database) -> None:
    db = tenantized
    assert _errors(db) == []
    rows = db.execute_sql('SELECT count(*) FROM "Order" o JOIN "user" u ON u.id = o.user_id')
    assert rows.fetchone()[0] == 3
    # Back again: the per-tenant unique on "order" becomes a global one.
    migrator = migrator_for(db)
    with migrator.run_context():
        migrator.untenantize(*MODELS)
    p = db.param
    with pytest.raises(IntegrityError), db.atomic():
        db.execute_sql(f'INSERT INTO "user" ("order", "Name") VALUES ({p}, {p})', (0, "dup"))


@pytest.mark.postgres_only
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_roles_and_policies_on_reserved_and_mixed_case_names(
    tenantized: Database, db_url: str
) -> None:
    db = tenantized
    assert is_postgres(db)
    suffix = secrets.token_hex(3)
    roles = (f"app_{suffix}", f"admin_{suffix}")
    create_roles(db, *roles, models=MODELS)
    tenant_a = create_tenant(db, f"a-{suffix}", "A").id
    tenant_b = create_tenant(db, f"b-{suffix}", "B").id
    assert _errors(db, app_role=roles[0], admin_role=roles[1]) == []
    # An audit fix is SQL that runs as written on these names too.
    db.execute_sql('ALTER TABLE "Order" NO FORCE ROW LEVEL SECURITY')
    (found,) = [f for f in audit_schema(db, models=MODELS) if f.check == "rls-forced"]
    db.execute_sql(found.message.split("fix: ", 1)[1])
    assert not [f for f in audit_schema(db, models=MODELS) if f.check == "rls-forced"]
    app = relay_peewee.connect(_as_role(db_url, roles[0]))
    try:
        with tenant_context(tenant_a):
            user = User.create(id=100, order=7, name="a")
            Order.create(id=100, user=user, group="x")
        with tenant_context(tenant_b):
            assert User.select().count() == 0
            raw = app.execute_sql('SELECT count(*) FROM "user" JOIN "Order" ON true')
            assert raw.fetchone()[0] == 0
            # The same per-tenant "order" in another tenant is allowed.
            User.create(id=101, order=7, name="b")
        with tenant_context(tenant_a):
            assert [u.id for u in User.select()] == [100]
    finally:
        app.close()
        db.close()
        drop_test_roles(db_url, roles)


@pytest.fixture
def app_roles(tenantized: Database, db_url: str) -> Iterator[tuple[str, str]]:
    suffix = secrets.token_hex(3)
    roles = (f"app_{suffix}", f"admin_{suffix}")
    create_roles(tenantized, *roles, models=MODELS)
    try:
        yield roles
    finally:
        tenantized.close()
        drop_test_roles(db_url, roles)


@pytest.mark.postgres_only
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_the_application_role_inserts_with_serial_keys(
    tenantized: Database, db_url: str, app_roles: tuple[str, str]
) -> None:
    tenant = create_tenant(tenantized, "serial", "Serial").id
    app = relay_peewee.connect(_as_role(db_url, app_roles[0]))
    try:
        with tenant_context(tenant):
            user = User.create(order=10, name="first")  # nextval("user_id_seq")
            Order.create(user=user, group="g")
            assert user.id > 3
        assert app.execute_sql("SELECT 1").fetchone() == (1,)
    finally:
        app.close()


def _checks(db: Database, role: str) -> set[tuple[str, str]]:
    found = audit_schema(db, models=MODELS, app_role=role)
    return {(f.check, f.table) for f in found if f.severity == "error"}


@pytest.mark.postgres_only
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_audit_reports_an_application_role_that_cannot_write(
    tenantized: Database, app_roles: tuple[str, str]
) -> None:
    db, role = tenantized, app_roles[0]
    assert _checks(db, role) == set()
    db.execute_sql(f'REVOKE USAGE ON SEQUENCE "user_id_seq" FROM {role}')
    db.execute_sql(f'REVOKE UPDATE ON "Order" FROM {role}')
    assert _checks(db, role) == {
        ("app-role-sequence", "user"),
        ("app-role-table-rights", "Order"),
    }
    for f in audit_schema(db, models=MODELS, app_role=role):
        if f.check.startswith("app-role-"):
            db.execute_sql(f.message.split(", or ", 1)[1])  # the GRANT it names
    assert _checks(db, role) == set()


@pytest.mark.postgres_only
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_the_plugins_test_roles_get_what_roles_grants_and_no_more(
    migrated_db: Database, db_url: str
) -> None:
    db = migrated_db
    db.execute_sql("CREATE TABLE app_things (id serial PRIMARY KEY)")
    db.execute_sql("CREATE SEQUENCE stray_seq")
    app, admin = create_test_roles(db)
    try:
        usable = db.execute_sql(
            "SELECT has_sequence_privilege(%s, 'app_things_id_seq', 'USAGE'),"
            " has_sequence_privilege(%s, 'stray_seq', 'USAGE')",
            (app, app),
        ).fetchone()
        assert usable == (True, False)
    finally:
        db.close()
        drop_test_roles(db_url, (app, admin))
