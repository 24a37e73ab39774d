"""Indexes under the tenant-consistent keys, so deleting a parent is not a scan.

0006 and 0011 gave the data tables composite keys ``(tenant_id, col) ->
parent (tenant_id, id)``; Relay's schema had no index leading with most of
those columns. Deleting a parent row (a user, a skill, a skill version)
makes the database find the rows that point at it: without an index that
reads every row of the tenant in the child table, once per deleted parent,
so erasing a tenant (``relay-peewee tenants erase``), or any bulk delete,
took time growing with the square of the tenant's size. One index per such
key, ``(tenant_id, col)``, makes each lookup an index probe. Keys already
served by an index (``skill_embeddings`` and ``skill_reviews`` on
``skill_id``, ``api_keys.user_id``) get none. SQLite's triggers from 0011
look the same rows up, so it gets the same indexes.
"""

from __future__ import annotations

from typing import Any

from playhouse.migrate import make_index_name

from relay_peewee.database import is_postgres

# With `migrate --online` (PostgreSQL): each index built CONCURRENTLY, and a
# rerun after a crash drops an invalid leftover and builds it again.
ONLINE = True
MERGES_REBUILDS = True

# Frozen: (table, column) of every key above with no index of its own.
KEYED = (
    ("skills", "author_id"),
    ("skills", "forked_from_id"),
    ("skills", "published_version_id"),
    ("skills", "draft_version_id"),
    ("skill_versions", "skill_id"),
    ("skill_versions", "created_by"),
    ("ratings", "skill_id"),
    ("ratings", "user_id"),
    ("usage_events", "user_id"),
    ("skill_reviews", "requested_by"),
)
INDEXES = tuple(
    (table, ("tenant_id", column), make_index_name(table, ("tenant_id", column)))
    for table, column in KEYED
)


def up(migrator: Any, db: Any) -> None:
    if is_postgres(db) and hasattr(migrator, "ensure_index"):  # migrate --online
        for table, columns, name in INDEXES:
            migrator.ensure_index(table, columns, unique=False, name=name)
        return
    migrator.step("an index under each tenant-consistent key (deletes of their parents)")
    migrator.migrate(
        *[
            migrator.sql(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({', '.join(columns)})")
            for table, columns, name in INDEXES
        ]
    )


def down(migrator: Any, db: Any) -> None:
    migrator.migrate(*[migrator.sql(f"DROP INDEX IF EXISTS {name}") for _t, _c, name in INDEXES])
