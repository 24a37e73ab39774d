"""Whether a PostgreSQL database is a Citus coordinator: asked once per database.

On Citus a tenant context must send its tenant differently (``tenancy.rls``):
``set_config(..., true)`` stays on the coordinator, so row-level security
on the workers would see no tenant; ``SET LOCAL`` reaches them (with
``citus.propagate_set_commands = 'local'``), but only as a statement of its
own - a ``SET LOCAL ...; SELECT ...`` string is replayed whole on each
worker and fails there. And ``audit_logs.tenant_id`` is the distribution
column there, which cannot be NULL: system events carry ``SYSTEM_TENANT_ID``.

The answer is read when ``open_database`` connects (or on first use for a
database the application opened itself) and kept per database object, so
no request pays a query for it.
"""

from __future__ import annotations

import weakref
from typing import Any

from peewee import Database

from ..errors import InvalidTenantId

__all__ = [
    "DETECT_SQL",
    "PROPAGATE_SQL",
    "SYSTEM_TENANT_ID",
    "is_citus",
    "known_citus",
    "remember_citus",
    "set_local_sql",
]

DETECT_SQL = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')"
# Sent with every tenant context's BEGIN as well as set by `distribute` for
# the database: a pooled connection opened before `distribute` ran (or a
# role with its own settings) would otherwise keep SET LOCAL on the coordinator.
PROPAGATE_SQL = "SET LOCAL citus.propagate_set_commands = 'local'"
# The tenant of events that belong to no tenant (tenant.create, unscoped()
# outside any context) on Citus, where the distribution column cannot be
# NULL. No tenant row has it: ids are uuids, slugs lower-case words.
SYSTEM_TENANT_ID = "__relay_system__"

_known: weakref.WeakKeyDictionary[Database, bool] = weakref.WeakKeyDictionary()


def known_citus(db: Database) -> bool | None:
    """What was found for ``db``, or None when it was not asked yet."""
    return _known.get(db)


def remember_citus(db: Database, found: bool) -> bool:
    _known[db] = found
    return found


def is_citus(db: Database) -> bool:
    """Whether ``db`` (a PostgreSQL database) has the citus extension.

    Asked on a raw cursor, outside peewee's execute_sql: the question must
    not open a tenant context's deferred transaction.
    """
    found = _known.get(db)
    if found is None and hasattr(db, "aexecute_sql"):
        # playhouse.pwasyncio, in sync code: only its execute_sql crosses
        # the greenlet bridge (its connection's cursor is a stand-in).
        row = db.execute_sql(DETECT_SQL).fetchone()
        found = remember_citus(db, bool(row and row[0]))
    if found is None:
        cursor: Any = db.connection().cursor()
        try:
            cursor.execute(DETECT_SQL)
            row = cursor.fetchone()
        finally:
            cursor.close()
        found = remember_citus(db, bool(row and row[0]))
    return found


def set_local_sql(setting: str, tenant_id: str) -> str:
    """``SET LOCAL setting = tenant_id`` with the id as a literal.

    A literal because psycopg 3 binds parameters on the server, where a
    utility statement takes none; an E'' string, whose escaping does not
    depend on ``standard_conforming_strings``.
    """
    if "\x00" in tenant_id:
        raise InvalidTenantId("a tenant id cannot contain NUL")
    literal = "E'" + tenant_id.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"SET LOCAL {setting} = {literal}"
