"""tenantize

Drafted by `relay-peewee makemigration` from the models and the database.

Plain ForeignKeyFields between TenantModels get the key a
TenantForeignKeyField has, (tenant_id, column) -> parent (tenant_id, id),
so the database refuses a row that points into another tenant:
    Message.user -> user
    Relationship.from_user -> user
    Relationship.to_user -> user
"""

from __future__ import annotations

from typing import Any

from relay_peewee.migrator import TenancyPlan, TenantReference, TenantTable

# With `migrate --online` on PostgreSQL, each step commits on its own and a
# crashed run resumes from the catalog.
ONLINE = True

PLAN = TenancyPlan(
    (
        TenantTable("user", unique_swaps=((("username",), ("tenant_id", "username")),)),
        TenantTable("message"),
        TenantTable("relationship"),
    ),
    references=(
        TenantReference("message", "user_id", "user"),
        TenantReference("relationship", "from_user_id", "user"),
        TenantReference("relationship", "to_user_id", "user"),
    ),
)
DEFAULT_TENANT = "default-tenant-000-0000-000000000000"


def up(migrator: Any, db: Any) -> None:
    migrator.tenantize(PLAN)


def check_down(migrator: Any, db: Any) -> None:
    # Refused while tenants other than the default hold rows down() would drop.
    migrator.refuse_unless_single_tenant(PLAN.table_names, DEFAULT_TENANT)


def down(migrator: Any, db: Any) -> None:
    migrator.untenantize(PLAN)
