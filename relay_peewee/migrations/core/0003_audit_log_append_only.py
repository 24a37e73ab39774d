"""audit_logs becomes append-only, and its clock the database's.

Relay's own statements (0007, 0009), frozen in its scripts: one definition
of "append-only", which `relay-peewee audit` checks on both sets. UPDATE and
DELETE are refused by triggers (TRUNCATE too on PostgreSQL), even for the
table's owner; ``created_at`` is the database's clock (PostgreSQL sets it,
SQLite refuses another), and SQLite refuses ``REPLACE``. Rolling this
migration back is how an operator with schema rights removes the guard,
deliberately.
"""

from __future__ import annotations

import importlib
from typing import Any

from relay_peewee.database import is_postgres

_0007 = importlib.import_module("relay_peewee.migrations.0007_audit_log_append_only")
_0009 = importlib.import_module("relay_peewee.migrations.0009_isolation_hardening")


def up(migrator: Any, db: Any) -> None:
    migrator.step("audit_logs: refuse UPDATE and DELETE; created_at from the database's clock")
    if is_postgres(db):
        statements = [*_0007.POSTGRES_UP, *_0009.POSTGRES_CREATED_AT]
    else:
        statements = [*_0007.SQLITE_UP, *_0009.SQLITE_UP]
    migrator.migrate(*[migrator.sql(s) for s in statements])


def down(migrator: Any, db: Any) -> None:
    if is_postgres(db):
        statements = [*_0009.POSTGRES_CREATED_AT_DOWN, *_0007.POSTGRES_DOWN]
    else:
        statements = [*_0009.SQLITE_DOWN, *_0007.SQLITE_DOWN]
    migrator.migrate(*[migrator.sql(s) for s in statements])
