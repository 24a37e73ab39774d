"""audit_logs: the record of security events.

As Relay's migrations leave it (0005, 0009, 0010): ids and ``created_at``
defaulted by the database, and on PostgreSQL the ``tenant_isolation``
policy, enabled and forced (a tenant sees and writes only its own events).
0003 makes it append-only; rolling that back is how an operator lifts the
guard, deliberately, as with Relay's 0007.
"""

from __future__ import annotations

import importlib
from typing import Any

from relay_peewee.database import is_postgres
from relay_peewee.errors import MigrationError

_0001 = importlib.import_module("relay_peewee.migrations.core.0001_tenants")

TABLE = "audit_logs"
INDEXES = (("tenant_id", "created_at"), ("actor_id", "created_at"), ("action", "created_at"))

POSTGRES = [
    """CREATE TABLE "audit_logs" (
        "id" uuid NOT NULL DEFAULT gen_random_uuid(),
        "actor_id" text, "tenant_id" text, "action" text NOT NULL,
        "resource_type" text, "resource_id" text, "ip_address" text, "metadata" jsonb,
        "created_at" timestamp NOT NULL DEFAULT now(),
        CONSTRAINT "audit_logs_pkey" PRIMARY KEY ("id"))""",
]
SQLITE = [
    f"""CREATE TABLE "audit_logs" (
  "id" TEXT NOT NULL PRIMARY KEY DEFAULT {_0001.SQLITE_UUID},
  "actor_id" TEXT,
  "tenant_id" TEXT,
  "action" TEXT NOT NULL,
  "resource_type" TEXT,
  "resource_id" TEXT,
  "ip_address" TEXT,
  "metadata" TEXT,
  "created_at" DATETIME NOT NULL DEFAULT (CURRENT_TIMESTAMP)
)""",
]
INDEX_SQL = [
    f'CREATE INDEX "audit_logs_{a}_{b}" ON "audit_logs" ("{a}", "{b}")' for a, b in INDEXES
]


def up(migrator: Any, db: Any) -> None:
    migrator.step("creating audit_logs")
    statements = [*(POSTGRES if is_postgres(db) else SQLITE), *INDEX_SQL]
    migrator.migrate(*[migrator.sql(s) for s in statements])
    migrator.enable_row_level_security((TABLE,))  # PostgreSQL; a step line on SQLite


def check_down(migrator: Any, db: Any) -> None:
    count = db.execute_sql('SELECT count(*) FROM "audit_logs"').fetchone()[0]
    if count:
        raise MigrationError(
            f"refusing to drop audit_logs: it holds {count} security event(s); export them, "
            "lift the append-only rule (`relay-peewee rollback --to "
            "relay_peewee.migrations.core:3`), delete them, then roll back again"
        )


def down(migrator: Any, db: Any) -> None:
    check_down(migrator, db)
    migrator.disable_row_level_security((TABLE,))
    migrator.migrate(migrator.sql('DROP TABLE "audit_logs"'))
