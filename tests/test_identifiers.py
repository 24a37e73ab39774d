"""Names peewee writes unquoted nowhere: a reserved word and mixed case, end to end.

``user`` is what peewee names a ``User`` model's table by default and a
reserved word in PostgreSQL; ``"Order"`` only exists quoted. Both are
tenantized (a per-tenant unique on a reserved-word column, a reference),
get their roles and RLS policies, audit clean, are used as the application
role (ORM and raw SQL) and are rolled back - on both backends.
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
from relay_peewee.testing.backends import _as_role, drop_test_roles


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
