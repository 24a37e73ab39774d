"""The global uniques of a distributed Citus schema, kept in step by the ORM.

``relay-peewee distribute`` moves ``users.email`` and ``api_keys.key_hash``
into reference tables (``relay_user_emails``, ``relay_api_key_hashes``)
whose key is the value, with a foreign key ``(tenant_id, value)`` from the
table to its registry: a row whose value is not registered is refused, and a
value registered by another tenant is a unique violation, as the global
unique of a single PostgreSQL would be. A trigger cannot do the registering
on Citus (a shard's trigger may not write a reference table inside a
transaction that set the tenant), so ``User`` and ``ApiKey`` do it here, in
the statement's own transaction: the new value before the row, the old one
after. Raw SQL must do the same (docs/citus.md); the key makes forgetting it
an error, never a silent duplicate.

Nothing happens off Citus, or before ``distribute`` made the registries.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from peewee import Database

from ..database.citus import known_citus
from ..scope import current_tenant

__all__ = ["REGISTRIES", "registered_delete", "registered_save"]

# table -> (column, registry table)
REGISTRIES = {
    "users": ("email", "relay_user_emails"),
    "api_keys": ("key_hash", "relay_api_key_hashes"),
}

_present: weakref.WeakKeyDictionary[Database, bool] = weakref.WeakKeyDictionary()


def _registry_db(instance: Any) -> Database | None:
    db = type(instance)._meta.database
    db = getattr(db, "obj", db)
    if db is None or not known_citus(db):
        return None
    found = _present.get(db)
    if found is None:  # once per database: distribute made them, or not yet
        row = db.execute_sql("SELECT to_regclass('relay_user_emails') IS NOT NULL").fetchone()
        found = _present[db] = bool(row and row[0])
    return db if found else None


def registered_save(instance: Any, save: Callable[[], Any], force_insert: bool) -> Any:
    db = _registry_db(instance)
    if db is None:
        return save()
    table = type(instance)._meta.table_name
    column, registry = REGISTRIES[table]
    tenant = instance.__data__.get("tenant_id") or current_tenant()
    value = instance.__data__.get(column)
    updating = not force_insert and instance._pk is not None
    with db.atomic():
        old = None
        if updating:
            row = db.execute_sql(
                f"SELECT {column} FROM {table} WHERE tenant_id = %s AND id = %s",
                (tenant, str(instance._pk)),
            ).fetchone()
            old = row[0] if row else None
        if not updating or (old is not None and old != value):
            db.execute_sql(
                f"INSERT INTO {registry} ({column}, tenant_id) VALUES (%s, %s)", (value, tenant)
            )
        rows = save()
        if updating and old is not None and old != value:
            _unregister(db, registry, column, old, tenant)
    return rows


def registered_delete(instance: Any, delete: Callable[[], Any]) -> Any:
    db = _registry_db(instance)
    if db is None:
        return delete()
    column, registry = REGISTRIES[type(instance)._meta.table_name]
    tenant = instance.__data__.get("tenant_id") or current_tenant()
    with db.atomic():
        rows = delete()
        _unregister(db, registry, column, instance.__data__.get(column), tenant)
    return rows


def _unregister(db: Database, registry: str, column: str, value: Any, tenant: Any) -> None:
    db.execute_sql(
        f"DELETE FROM {registry} WHERE {column} = %s AND tenant_id = %s", (value, tenant)
    )
