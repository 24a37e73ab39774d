"""An imported tenant's audit events keep their times; everyone else's get the clock's.

0009 made ``created_at`` of every audit event the database's clock, so no
writer can back-date the security history. ``relay-peewee tenants import``
must write a tenant's events with the times they happened (its append-only
history moved, not rewritten). On PostgreSQL the trigger now keeps the
writer's ``created_at`` when both hold:

* the transaction set ``relay.import_audit_times`` to ``on``
  (``set_config(..., true)``: it ends with the transaction), and
* the role writing bypasses row-level security (a superuser or BYPASSRLS,
  the admin role): any role can set a custom setting, so the setting alone
  proves nothing; the application role, bound by the policies, always gets
  the clock.

SQLite has no session settings a trigger can read: the import drops its
clock trigger inside its own write transaction, where no other connection
can write, and creates it again before COMMIT. Nothing changes in a SQLite
database; the migration is recorded there all the same, so that both
backends' histories read alike.
"""

from __future__ import annotations

from typing import Any

# With `migrate --online`: one short lock-bounded transaction.
ONLINE = True
MERGES_REBUILDS = True

SETTING = "relay.import_audit_times"

POSTGRES_UP = f"""CREATE OR REPLACE FUNCTION relay_audit_logs_created_at() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.created_at IS NOT NULL
           AND current_setting('{SETTING}', true) = 'on' THEN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user
                       AND (rolsuper OR rolbypassrls)) THEN
                RETURN NEW;
            END IF;
        END IF;
        NEW.created_at := clock_timestamp() AT TIME ZONE 'UTC';
        RETURN NEW;
    END
    $$"""
# 0009's definition.
POSTGRES_DOWN = """CREATE OR REPLACE FUNCTION relay_audit_logs_created_at() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        NEW.created_at := clock_timestamp() AT TIME ZONE 'UTC';
        RETURN NEW;
    END
    $$"""


def _apply(migrator: Any, db: Any, statement: str, step: str) -> None:
    from relay_peewee.database import is_postgres

    if not is_postgres(db):
        return
    migrator.step(step)
    if hasattr(migrator, "locked"):  # migrate --online
        migrator.locked(step, statement)
    else:
        migrator.migrate(migrator.sql(statement))


def up(migrator: Any, db: Any) -> None:
    _apply(
        migrator, db, POSTGRES_UP, "audit_logs: an admin's tenant import keeps its events' times"
    )


def down(migrator: Any, db: Any) -> None:
    _apply(migrator, db, POSTGRES_DOWN, "audit_logs: created_at from the clock only (0009)")
