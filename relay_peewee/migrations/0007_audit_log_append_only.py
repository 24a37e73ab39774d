"""audit_logs becomes append-only: the database refuses UPDATE and DELETE.

A trigger, not a permission: even the table's owner (and raw SQL that
bypasses the ORM) cannot rewrite the security history. On PostgreSQL a
statement trigger refuses TRUNCATE too. Rolling this migration back is how
an operator with schema rights removes the guard, deliberately.
"""

from __future__ import annotations

from typing import Any

from relay_peewee.database import is_postgres

MESSAGE = "audit_logs is append-only"

# psycopg2 formats every statement, so PL/pgSQL's own % is written %%.
POSTGRES_UP = [
    f"""CREATE FUNCTION relay_audit_logs_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '{MESSAGE}: %% refused', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$""",
    """CREATE TRIGGER audit_logs_append_only BEFORE UPDATE OR DELETE ON audit_logs
        FOR EACH ROW EXECUTE FUNCTION relay_audit_logs_append_only()""",
    """CREATE TRIGGER audit_logs_no_truncate BEFORE TRUNCATE ON audit_logs
        FOR EACH STATEMENT EXECUTE FUNCTION relay_audit_logs_append_only()""",
]
POSTGRES_DOWN = [
    "DROP TRIGGER IF EXISTS audit_logs_no_truncate ON audit_logs",
    "DROP TRIGGER IF EXISTS audit_logs_append_only ON audit_logs",
    "DROP FUNCTION IF EXISTS relay_audit_logs_append_only()",
]
SQLITE_UP = [
    f"""CREATE TRIGGER audit_logs_no_update BEFORE UPDATE ON audit_logs
        BEGIN SELECT RAISE(ABORT, '{MESSAGE}: UPDATE refused'); END""",
    f"""CREATE TRIGGER audit_logs_no_delete BEFORE DELETE ON audit_logs
        BEGIN SELECT RAISE(ABORT, '{MESSAGE}: DELETE refused'); END""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS audit_logs_no_delete",
    "DROP TRIGGER IF EXISTS audit_logs_no_update",
]


# SQLite: its statements do not need earlier migrations' queued table
# rebuilds to have run, so they are merged with its own (one copy per table).
MERGES_REBUILDS = True


def up(migrator: Any, db: Any) -> None:
    migrator.step("audit_logs: refuse UPDATE and DELETE")
    statements = POSTGRES_UP if is_postgres(db) else SQLITE_UP
    migrator.migrate(*[migrator.sql(s) for s in statements])


def down(migrator: Any, db: Any) -> None:
    statements = POSTGRES_DOWN if is_postgres(db) else SQLITE_DOWN
    migrator.migrate(*[migrator.sql(s) for s in statements])
