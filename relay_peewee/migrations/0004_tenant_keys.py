"""Tenant foreign keys, per-tenant uniques in place of global ones, tenant indexes.

users.email and api_keys.key_hash stay globally unique: they are identities
(a login, a presented credential) that must resolve to exactly one tenant.
"""

from __future__ import annotations

from typing import Any

from relay_peewee.migrator.backends import TenantTable

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


def up(migrator: Any, db: Any) -> None:
    migrator.enforce_tenant_keys(SPECS)


def check_down(migrator: Any, db: Any) -> None:
    migrator.refuse_unless_single_tenant([s.table for s in SPECS], DEFAULT_TENANT_ID)


def down(migrator: Any, db: Any) -> None:
    check_down(migrator, db)
    from relay_peewee.db import is_postgres

    if is_postgres(db):
        migrator.relax_tenant_keys(SPECS)
    else:
        migrator.relax_tenant_keys(SPECS, DEFAULT_TENANT_ID)
