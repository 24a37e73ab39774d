"""Close what the owner's rights opened: views, and the audit log itself.

PostgreSQL:

* every plain view in the search path that reads a tenant table (or
  ``audit_logs``), directly or through another view, gets
  ``security_invoker = true``: it then reads with the rights of whoever
  queries it, so row-level security applies to the caller, not to the view's
  owner (who bypasses it). Safe for a legacy application: a role that
  selects from the view must now hold SELECT on the tables too, which the
  owner has and ``relay-peewee roles`` grants the application role.
  Materialized views cannot be made safe (they store rows read as their
  owner) and SECURITY DEFINER functions and rules would change meaning:
  ``relay-peewee audit`` reports those, each with its fix;
* ``audit_logs`` gets the ``tenant_isolation`` policy, enabled and forced:
  a tenant sees and writes only its own events; events with no tenant
  (system events) only a role that bypasses RLS sees or writes;
* ``created_at`` of an audit event is the database's clock, whatever the
  writer sent (a BEFORE INSERT trigger).

SQLite: a BEFORE INSERT trigger refuses an event whose id exists already
(``REPLACE`` and ``INSERT OR REPLACE`` delete the old row without firing
DELETE triggers), and one whose ``created_at`` is more than a minute away
from the database's clock (SQLite cannot change a row's values in a BEFORE
trigger, and an AFTER trigger's UPDATE is refused by 0007).
"""

from __future__ import annotations

from typing import Any

from relay_peewee.database import is_postgres
from relay_peewee.database.catalog import PostgresCatalog

ONLINE = True
# SQLite: nothing here needs earlier migrations' queued rebuilds.
MERGES_REBUILDS = True

TENANT_TABLES = (
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
AUDIT_TABLE = "audit_logs"
# Seconds an SQLite audit event's created_at may differ from the database's clock.
CLOCK_SLACK = 60

POSTGRES_CREATED_AT = [
    """CREATE FUNCTION relay_audit_logs_created_at() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            NEW.created_at := clock_timestamp() AT TIME ZONE 'UTC';
            RETURN NEW;
        END
        $$""",
    """CREATE TRIGGER audit_logs_created_at BEFORE INSERT ON audit_logs
        FOR EACH ROW EXECUTE FUNCTION relay_audit_logs_created_at()""",
]
POSTGRES_CREATED_AT_DOWN = [
    "DROP TRIGGER IF EXISTS audit_logs_created_at ON audit_logs",
    "DROP FUNCTION IF EXISTS relay_audit_logs_created_at()",
]
SQLITE_UP = [
    """CREATE TRIGGER audit_logs_no_replace BEFORE INSERT ON audit_logs
        WHEN EXISTS (SELECT 1 FROM audit_logs WHERE id = NEW.id)
        BEGIN SELECT RAISE(ABORT, 'audit_logs is append-only: REPLACE refused'); END""",
    f"""CREATE TRIGGER audit_logs_created_at BEFORE INSERT ON audit_logs
        WHEN NEW.created_at IS NOT NULL
         AND abs(julianday(NEW.created_at) - julianday('now')) * 86400 > {CLOCK_SLACK}
        BEGIN SELECT RAISE(ABORT, 'audit_logs.created_at must be the current time'); END""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS audit_logs_created_at",
    "DROP TRIGGER IF EXISTS audit_logs_no_replace",
]


def _views(db: Any) -> list[str]:
    readers = PostgresCatalog(db).views_reading((*TENANT_TABLES, AUDIT_TABLE))
    return [f'"{v.schema}"."{v.name}"' for v in readers if v.kind == "view"]


def up(migrator: Any, db: Any) -> None:
    if not is_postgres(db):
        migrator.step("audit_logs: refuse REPLACE and a created_at from another clock")
        migrator.migrate(*[migrator.sql(s) for s in SQLITE_UP])
        return
    for view in _views(db):
        migrator.step(f"{view}: security_invoker, so row-level security binds its reader")
        migrator.migrate(migrator.sql(f"ALTER VIEW {view} SET (security_invoker = true)"))
    migrator.step("audit_logs: created_at from the database's clock")
    migrator.migrate(*[migrator.sql(s) for s in POSTGRES_CREATED_AT])
    migrator.enable_row_level_security((AUDIT_TABLE,))


def down(migrator: Any, db: Any) -> None:
    if not is_postgres(db):
        migrator.migrate(*[migrator.sql(s) for s in SQLITE_DOWN])
        return
    migrator.disable_row_level_security((AUDIT_TABLE,))
    migrator.migrate(*[migrator.sql(s) for s in POSTGRES_CREATED_AT_DOWN])
    for view in _views(db):
        migrator.migrate(migrator.sql(f"ALTER VIEW {view} RESET (security_invoker)"))
