"""Indexes under 0011's three keys on ``skills``, so deleting a parent is not a scan.

0011 gave ``skills.forked_from_id``, ``published_version_id`` and
``draft_version_id`` tenant-consistent keys ``(tenant_id, col) -> parent
(tenant_id, id) ON DELETE SET NULL (col)``, with no index leading with their
columns. Deleting a skill version (or a skill) makes the database find the
skills that point at it: without an index that reads every skill of the
tenant, once per deleted row, so erasing a tenant (``relay-peewee tenants
erase``), or any bulk delete of versions, took time growing with the square
of the tenant's skills. One index per key, ``(tenant_id, col)``, makes each
lookup an index probe. SQLite's triggers from 0011 and its set-null
triggers look the same rows up, so it gets the same indexes.
"""

from __future__ import annotations

import importlib
from typing import Any

from playhouse.migrate import make_index_name

from relay_peewee.database import is_postgres

# With `migrate --online` (PostgreSQL): each index built CONCURRENTLY, and a
# rerun after a crash drops an invalid leftover and builds it again.
ONLINE = True
MERGES_REBUILDS = True

_0011 = importlib.import_module("relay_peewee.migrations.0011_tenant_consistent_ids")

INDEXES = tuple(
    (ref.table, ("tenant_id", ref.column), make_index_name(ref.table, ("tenant_id", ref.column)))
    for ref in _0011.KEYS
)


def up(migrator: Any, db: Any) -> None:
    if is_postgres(db) and hasattr(migrator, "ensure_index"):  # migrate --online
        for table, columns, name in INDEXES:
            migrator.ensure_index(table, columns, unique=False, name=name)
        return
    migrator.step("skills: an index under each of 0011's keys (deletes of their parents)")
    migrator.migrate(
        *[
            migrator.sql(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({', '.join(columns)})")
            for table, columns, name in INDEXES
        ]
    )


def down(migrator: Any, db: Any) -> None:
    migrator.migrate(*[migrator.sql(f"DROP INDEX IF EXISTS {name}") for _t, _c, name in INDEXES])
