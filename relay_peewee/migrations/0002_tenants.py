"""The tenants table, and the default tenant that inherits every existing row."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from peewee import BooleanField, DateTimeField, Model, TextField

from relay_peewee.errors import MigrationError

DEFAULT_TENANT_ID = "default-tenant-000-0000-000000000000"


def _tenant_model(db: Any) -> Any:
    # A frozen copy of the table as this migration creates it.
    class Tenant(Model):
        id = TextField(primary_key=True)
        name = TextField()
        slug = TextField()
        domain = TextField(null=True)
        logo = TextField(null=True)
        is_active = BooleanField(default=True)
        plan = TextField(default="freemium")
        created_at = DateTimeField()
        updated_at = DateTimeField()

        class Meta:
            database = db
            table_name = "tenants"

    return Tenant


def up(migrator: Any, db: Any) -> None:
    migrator.step("creating tenants and the default tenant")
    tenant = _tenant_model(db)
    tenant.create_table(safe=False)
    # Named like the Tenant model's own index, not by this frozen class.
    migrator.migrate(migrator.add_index("tenants", ("slug",), unique=True))
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    tenant.insert(
        id=DEFAULT_TENANT_ID, name="Default", slug="default", created_at=now, updated_at=now
    ).execute()


def check_down(migrator: Any, db: Any) -> None:
    tenant = _tenant_model(db)
    others = [t.slug for t in tenant.select().where(tenant.id != DEFAULT_TENANT_ID).limit(6)]
    if others:
        raise MigrationError(
            "refusing to drop tenants: tenants other than the default exist ("
            + ", ".join(others[:5])
            + (", ..." if len(others) > 5 else "")
            + "); delete them first"
        )


def down(migrator: Any, db: Any) -> None:
    check_down(migrator, db)
    migrator.migrate(migrator.drop_table("tenants"))
