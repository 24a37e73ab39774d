"""PostgreSQL row-level security on the nine tenant tables.

Each table gets the policy ``tenant_isolation``: a row is visible and
writable only when its tenant_id equals the transaction's
``app.current_tenant_id`` (``tenant_context`` sets it with
``set_config(..., true)``). RLS is FORCEd, so the table owner is bound too;
superusers and roles with BYPASSRLS are not - that is how migrations and
``unscoped()`` (through the ``relay_admin`` role) see every tenant.

SQLite has no row-level security: this migration records itself and does
nothing there.
"""

from __future__ import annotations

from typing import Any

ONLINE = True
# SQLite: nothing here needs earlier migrations' queued rebuilds.
MERGES_REBUILDS = True

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
    migrator.enable_row_level_security(TABLES)


def down(migrator: Any, db: Any) -> None:
    migrator.disable_row_level_security(TABLES)
