"""Tenant foreign keys, per-tenant uniques in place of global ones, tenant indexes.

It also drops the default 0003 put on tenant_id: from here on a row that
omits its tenant is refused.

users.email and api_keys.key_hash stay globally unique: they are identities
(a login, a presented credential) that must resolve to exactly one tenant.
"""

from __future__ import annotations

from typing import Any

from relay_peewee.migrator.backends import TenantTable

# With `migrate --online` on PostgreSQL, this migration's steps run one short
# transaction each and resume from the catalog after an interruption.
ONLINE = True

DEFAULT_TENANT_ID = "default-tenant-000-0000-000000000000"
T = "tenant_id"

SPECS = (
    TenantTable("users"),
    TenantTable("skills", unique_swaps=[(("slug",), (T, "slug"))]),
    TenantTable("skill_versions"),
    TenantTable("ratings"),
    TenantTable("usage_events"),
    TenantTable("skill_embeddings", unique_swaps=[(("skill_id",), (T, "skill_id"))]),
    TenantTable("skill_reviews", unique_swaps=[(("skill_id",), (T, "skill_id"))]),
    TenantTable("api_keys"),
    TenantTable("site_settings", primary_key=(T, "id"), old_primary_key=("id",)),
)


# SQLite: its statements do not need earlier migrations' queued table
# rebuilds to have run, so they are merged with its own (one copy per table).
MERGES_REBUILDS = True


def up(migrator: Any, db: Any) -> None:
    migrator.enforce_tenant_keys(SPECS)


def check_down(migrator: Any, db: Any) -> None:
    migrator.refuse_unless_single_tenant([s.table for s in SPECS], DEFAULT_TENANT_ID)


def down(migrator: Any, db: Any) -> None:
    check_down(migrator, db)
    migrator.relax_tenant_keys(SPECS, DEFAULT_TENANT_ID)
