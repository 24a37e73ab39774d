"""tenant_id on the nine data tables; every existing row joins the default tenant.

The column is added NOT NULL with a constant default, which both backends
store in the catalog instead of writing it into every row. The default
stays until 0004 drops it (on SQLite with the table rebuild, where dropping
a default is itself a rebuild): while an online migration runs, inserts by
the still tenant-unaware application land in the default tenant instead of
failing.
"""

from __future__ import annotations

from typing import Any

# With `migrate --online` on PostgreSQL, this migration's steps run one short
# transaction each and resume from the catalog after an interruption.
ONLINE = True

DEFAULT_TENANT_ID = "default-tenant-000-0000-000000000000"
TABLES = (
    "users",
    "skills",
    "skill_versions",
    "ratings",
    "usage_events",
    "skill_embeddings",
    "skill_reviews",
    "api_keys",
    "site_settings",
)


def up(migrator: Any, db: Any) -> None:
    for table in TABLES:
        migrator.step(f"{table}: add tenant_id (default tenant)")
        migrator.add_tenant_column(table, DEFAULT_TENANT_ID)


def check_down(migrator: Any, db: Any) -> None:
    migrator.refuse_unless_single_tenant(TABLES, DEFAULT_TENANT_ID)


def down(migrator: Any, db: Any) -> None:
    check_down(migrator, db)
    for table in reversed(TABLES):
        migrator.step(f"{table}: drop tenant_id")
        migrator.drop_tenant_column(table)
