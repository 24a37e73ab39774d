"""tenants, and the default tenant that inherits every existing row.

The table as a database migrated by Relay's own migrations has it (0002,
with 0010's column defaults), so the ``Tenant`` model and plain SQL such as
``INSERT INTO tenants (name, slug)`` behave the same on both.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from relay_peewee.database import is_postgres
from relay_peewee.errors import MigrationError

DEFAULT_TENANT_ID = "default-tenant-000-0000-000000000000"

# A version-4 UUID in lower-case text, like gen_random_uuid()::text (0010's).
SQLITE_UUID = (
    "(lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || "
    "substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (random() & 3), 1) || "
    "substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))))"
)

POSTGRES = [
    """CREATE TABLE "tenants" (
        "id" text NOT NULL DEFAULT gen_random_uuid()::text,
        "name" text NOT NULL, "slug" text NOT NULL, "domain" text, "logo" text,
        "is_active" boolean NOT NULL DEFAULT true,
        "plan" text NOT NULL DEFAULT 'freemium',
        "created_at" timestamp NOT NULL DEFAULT now(),
        "updated_at" timestamp NOT NULL DEFAULT now(),
        CONSTRAINT "tenants_pkey" PRIMARY KEY ("id"))""",
    'CREATE UNIQUE INDEX "tenants_slug" ON "tenants" ("slug")',
]
SQLITE = [
    f"""CREATE TABLE "tenants" (
  "id" TEXT NOT NULL PRIMARY KEY DEFAULT {SQLITE_UUID},
  "name" TEXT NOT NULL,
  "slug" TEXT NOT NULL,
  "domain" TEXT,
  "logo" TEXT,
  "is_active" INTEGER NOT NULL DEFAULT (1),
  "plan" TEXT NOT NULL DEFAULT ('freemium'),
  "created_at" DATETIME NOT NULL DEFAULT (CURRENT_TIMESTAMP),
  "updated_at" DATETIME NOT NULL DEFAULT (CURRENT_TIMESTAMP)
)""",
    'CREATE UNIQUE INDEX "tenants_slug" ON "tenants" ("slug")',
]

# Committed with the run, not as a model: the script must not follow the code.
INSERT_DEFAULT = (
    'INSERT INTO "tenants" ("id", "name", "slug", "is_active", "plan", "created_at",'
    ' "updated_at") VALUES ({p}, {p}, {p}, {true}, {p}, {p}, {p})'
)


def up(migrator: Any, db: Any) -> None:
    migrator.step("creating tenants and the default tenant")
    pg = is_postgres(db)
    migrator.migrate(*[migrator.sql(s) for s in (POSTGRES if pg else SQLITE)])
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    sql = INSERT_DEFAULT.format(p=db.param, true="true" if pg else "1")
    db.execute_sql(sql, (DEFAULT_TENANT_ID, "Default", "default", "freemium", now, now))


def check_down(migrator: Any, db: Any) -> None:
    rows = db.execute_sql(
        f'SELECT "slug" FROM "tenants" WHERE "id" <> {db.param} ORDER BY "slug" LIMIT 6',
        (DEFAULT_TENANT_ID,),
    ).fetchall()
    others = [r[0] for r in rows]
    if others:
        raise MigrationError(
            "refusing to drop tenants: tenants other than the default exist ("
            + ", ".join(others[:5])
            + (", ..." if len(others) > 5 else "")
            + "); delete them first"
        )


def down(migrator: Any, db: Any) -> None:
    check_down(migrator, db)
    migrator.migrate(migrator.sql('DROP TABLE "tenants"'))
