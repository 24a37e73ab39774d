"""Foreign keys that cannot cross tenants.

A rating must belong to the same tenant as its skill and its user: each
reference becomes (tenant_id, column) -> parent (tenant_id, id), keeping its
ON DELETE action, and the parents get the unique key (tenant_id, id) that
such a reference needs. usage_events.skill_id has no foreign key at all
(usage history outlives a deleted skill), so it gets none here either.

If existing rows already point into another tenant, the migration stops
before changing anything and names them.
"""

from __future__ import annotations

from typing import Any

from relay_peewee.migrator.backends import TenantReference

ONLINE = True

REFERENCES = (
    TenantReference("skills", "author_id", "users"),
    TenantReference("skill_versions", "skill_id", "skills"),
    TenantReference("skill_versions", "created_by", "users"),
    TenantReference("ratings", "skill_id", "skills"),
    TenantReference("ratings", "user_id", "users"),
    TenantReference("usage_events", "user_id", "users"),
    TenantReference("skill_embeddings", "skill_id", "skills"),
    TenantReference("skill_reviews", "skill_id", "skills"),
    TenantReference("skill_reviews", "requested_by", "users"),
    TenantReference("api_keys", "user_id", "users"),
)
# users(tenant_id, id) now serves every lookup users(tenant_id) did.
REDUNDANT_INDEXES = (("users", "users_tenant_id"),)


# SQLite: its statements do not need earlier migrations' queued table
# rebuilds to have run, so they are merged with its own (one copy per table).
MERGES_REBUILDS = True


def up(migrator: Any, db: Any) -> None:
    migrator.refuse_cross_tenant_references(REFERENCES)
    migrator.enforce_tenant_references(REFERENCES, REDUNDANT_INDEXES)


def down(migrator: Any, db: Any) -> None:
    migrator.relax_tenant_references(REFERENCES, REDUNDANT_INDEXES)
