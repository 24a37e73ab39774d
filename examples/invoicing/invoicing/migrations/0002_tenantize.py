"""customers, invoices and payments become tenant-scoped, like Relay's own tables.

Written by `relay-peewee makemigration`, then read: the plan is frozen here
(it never follows the models, which may move on), and it is exactly what
``tenancy_plan([Customer, Invoice, Payment])`` derives from them.
"""

from __future__ import annotations

from typing import Any

from relay_peewee.migrator import TenancyPlan, TenantReference, TenantTable

# With `migrate --online` on PostgreSQL, each step commits on its own and a
# crashed run resumes from the catalog.
ONLINE = True

PLAN = TenancyPlan(
    tables=(
        TenantTable(
            "customers",
            unique_swaps=((("email",), ("tenant_id", "email")), ((), ("tenant_id", "id"))),
        ),
        TenantTable(
            "invoices",
            unique_swaps=((("number",), ("tenant_id", "number")), ((), ("tenant_id", "id"))),
        ),
        TenantTable("payments"),
    ),
    references=(
        TenantReference("invoices", "customer_id", "customers"),
        TenantReference("invoices", "owner_id", "users"),
        TenantReference("payments", "invoice_id", "invoices"),
    ),
)


def up(migrator: Any, db: Any) -> None:
    migrator.tenantize(PLAN)


def check_down(migrator: Any, db: Any) -> None:
    migrator.refuse_unless_single_tenant(PLAN.table_names, "default-tenant-000-0000-000000000000")


def down(migrator: Any, db: Any) -> None:
    migrator.untenantize(PLAN)
