"""Erasing a tenant (GDPR art. 17): every row of its data, then a tombstone.

What is deleted: every row with the tenant's ``tenant_id`` in every table of
the database that has that column - Relay's nine tables and the
application's own (TenantModels or not: the live catalog is asked, so a
table nobody named in ``[tool.relay_peewee] models`` is not missed) -
children before parents, by the database's own foreign keys.

What remains, on purpose:

* the ``tenants`` row, as a **tombstone**: inactive, slug ``erased:<id>``
  (the slug is free for a new tenant), name ``erased``, no domain, no logo.
  Its id stays, so the audit events that name it keep their key;
* the **audit log**, append-only (migrations 0005/0007): its rows of the
  tenant stay, with a ``tenant.erase`` event holding the row counts deleted.

Refused, with nothing changed: the default tenant, an active tenant
(``tenants deactivate`` first: no request may be writing while its rows go),
a tombstone (already erased).

``batch_size=None`` erases in one transaction. With a batch size each batch
is a transaction of its own (``DELETE ... LIMIT n`` by row id), with a
``tenant.erase.batch`` audit row of its counts committed alongside: killed
at any point, a rerun deletes what is left and its final ``tenant.erase``
event adds up every batch. A rerun after the tombstone was written is
told the tenant is already erased.

It runs as the admin path (``bypass_scope``), as ``users move`` does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from peewee import Database, DatabaseProxy

from ..database import is_postgres, unwrap
from ..database.catalog import catalog_for
from ..database.quoting import quote
from ..errors import RelayError
from ..models.tenant import DEFAULT_TENANT_ID, tenants_changed
from ..tenancy.rls import bypass_scope
from ..tenancy.scoping import TENANT_COLUMN
from .tenant_states import ERASED_SLUG_PREFIX, TenantRow, find_tenant, placeholder, record

__all__ = [
    "ERASE_ACTION",
    "ERASE_BATCH_ACTION",
    "Erasure",
    "erase_order",
    "erase_tenant",
]

ERASE_ACTION = "tenant.erase"
ERASE_BATCH_ACTION = "tenant.erase.batch"
# Tables that hold a tenant_id but are not the tenant's data.
_KEPT = {"tenants", "audit_logs"}

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Erasure:
    tenant_id: str
    slug: str
    deleted: dict[str, int] = field(default_factory=dict)  # table -> rows, every batch counted
    batches: int = 0


def erase_order(db: Database) -> list[str]:
    """The tables holding tenant rows, each before every table it references.

    From the live catalog. A table is emptied once nothing left to empty
    references it; a cycle (skills and skill_versions reference each other
    on PostgreSQL) is broken at a key the database resolves on its own when
    the parent goes (``CASCADE``/``SET NULL``).
    """
    catalog = catalog_for(db)
    tables = sorted(
        t
        for t, cols in catalog.column_names(db.get_tables()).items()
        if TENANT_COLUMN in cols and t not in _KEPT
    )
    # parent -> {child: the child's key to it blocks the parent's deletion}
    children: dict[str, dict[str, bool]] = {t: {} for t in tables}
    for child in tables:
        for fk in catalog.foreign_keys(child):
            if fk.ref_table in children and fk.ref_table != child:
                blocks = fk.on_delete.upper() not in ("CASCADE", "SET NULL", "SET DEFAULT")
                previous = children[fk.ref_table].get(child, False)
                children[fk.ref_table][child] = previous or blocks
    order: list[str] = []
    left = list(tables)
    while left:
        ready = [t for t in left if not any(c in left for c in children[t])]
        if not ready:  # a cycle: go on where only keys the database resolves hold it
            ready = [t for t in left if not any(c in left and b for c, b in children[t].items())]
        if not ready:  # keys that block either way: let the database name one
            ready = left[:1]
        for table in ready:
            order.append(table)
            left.remove(table)
    return order


def erase_tenant(
    db: Database | DatabaseProxy,
    slug: str,
    *,
    batch_size: int | None = None,
    actor_id: str | None = None,
    progress: Progress | None = None,
) -> Erasure:
    """Delete every row of the tenant ``slug`` and leave its tombstone; see the module."""
    database = unwrap(db)
    if batch_size is not None and batch_size < 1:
        raise RelayError(f"the batch size must be at least 1, not {batch_size}")
    say = progress or (lambda _message: None)
    with bypass_scope(database):
        tenant = _erasable(database, slug)
        order = erase_order(database)
    try:
        if batch_size is None:
            say(f"erasing {tenant.slug}: {len(order)} tables in one transaction")
            with database.atomic(), bypass_scope(database):
                _erasable(database, slug, lock=True)
                deleted = {t: _delete(database, t, tenant.id, None) for t in order}
                _tombstone(database, tenant, deleted, 0, actor_id)
            return Erasure(tenant.id, tenant.slug, deleted, 0)
        batches = 0
        for table in order:
            while True:
                say(f"erasing {tenant.slug}: {table}, batch {batches + 1}")
                with database.atomic(), bypass_scope(database):
                    _erasable(database, slug, lock=True)
                    n = _delete(database, table, tenant.id, batch_size)
                    if n:
                        _event(database, ERASE_BATCH_ACTION, tenant, {"deleted": {table: n}})
                if n:
                    batches += 1
                if n < batch_size:
                    break
        say(f"erasing {tenant.slug}: the tombstone")
        with database.atomic(), bypass_scope(database):
            _erasable(database, slug, lock=True)
            # Anything left (an admin's insert since) goes with the tombstone.
            late = {t: _delete(database, t, tenant.id, None) for t in order}
            deleted = _batch_counts(database, tenant.id, order)
            for table, n in late.items():
                deleted[table] += n
            _tombstone(database, tenant, deleted, batches, actor_id)
        return Erasure(tenant.id, tenant.slug, deleted, batches)
    finally:
        tenants_changed()


def _erasable(db: Database, slug: str, *, lock: bool = False) -> TenantRow:
    try:
        tenant = find_tenant(db, slug, lock=lock)
    except RelayError:
        erased = _erased_as(db, slug)
        if erased is None:
            raise
        # A rerun after the tombstone committed (a crash before it reported).
        raise RelayError(f"tenant {slug!r} is already erased (its id was {erased})") from None
    if tenant.erased:
        raise RelayError(f"tenant {tenant.id} is already erased")
    if tenant.id == DEFAULT_TENANT_ID:
        raise RelayError("the default tenant cannot be erased: it holds Relay's pre-tenancy rows")
    if tenant.is_active:
        raise RelayError(
            f"tenant {slug!r} is active: `relay-peewee tenants deactivate --slug {slug}` first, "
            "so that no request writes while its rows are deleted"
        )
    return tenant


def _erased_as(db: Database, slug: str) -> str | None:
    """The id of an erased tenant that had ``slug``, from its ``tenant.erase`` event."""
    p = placeholder(db)
    rows = db.execute_sql(
        f"SELECT tenant_id, metadata FROM audit_logs WHERE action = {p}", (ERASE_ACTION,)
    ).fetchall()
    for tenant_id, metadata in rows:
        data: Any = json.loads(metadata) if isinstance(metadata, str) else metadata
        if isinstance(data, dict) and data.get("slug") == slug:
            return str(tenant_id)
    return None


def _delete(db: Database, table: str, tenant_id: str, limit: int | None) -> int:
    p, name = placeholder(db), quote(table)
    where = f"{quote(TENANT_COLUMN)} = {p}"
    if limit is None:
        return int(db.execute_sql(f"DELETE FROM {name} WHERE {where}", (tenant_id,)).rowcount)
    # By physical row id: any table has one, whatever its primary key.
    rowid = "ctid" if is_postgres(db) else "rowid"
    batch = f"SELECT {rowid} FROM {name} WHERE {where} LIMIT {int(limit)}"
    if is_postgres(db):
        sql = f"DELETE FROM {name} WHERE ctid = ANY(ARRAY({batch}))"
    else:
        sql = f"DELETE FROM {name} WHERE rowid IN ({batch})"
    return int(db.execute_sql(sql, (tenant_id,)).rowcount)


def _batch_counts(db: Database, tenant_id: str, order: list[str]) -> dict[str, int]:
    """Rows every committed batch deleted, from their audit rows (this run's and earlier)."""
    p = placeholder(db)
    totals = dict.fromkeys(order, 0)
    rows = db.execute_sql(
        f"SELECT metadata FROM audit_logs WHERE tenant_id = {p} AND action = {p}",
        (tenant_id, ERASE_BATCH_ACTION),
    ).fetchall()
    for (metadata,) in rows:
        data: Any = json.loads(metadata) if isinstance(metadata, str) else metadata
        for table, n in (data or {}).get("deleted", {}).items():
            totals[table] = totals.get(table, 0) + int(n)
    return totals


def _tombstone(
    db: Database, tenant: TenantRow, deleted: dict[str, int], batches: int, actor_id: str | None
) -> None:
    p = placeholder(db)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    db.execute_sql(
        f"UPDATE tenants SET slug = {p}, name = {p}, domain = NULL, logo = NULL,"
        f" is_active = {p}, updated_at = {p} WHERE id = {p}",
        (ERASED_SLUG_PREFIX + tenant.id, "erased", False, now, tenant.id),
    )
    metadata = {"slug": tenant.slug, "deleted": deleted, "batches": batches}
    _event(db, ERASE_ACTION, tenant, metadata, actor_id)


def _event(
    db: Database,
    action: str,
    tenant: TenantRow,
    metadata: dict[str, Any],
    actor_id: str | None = None,
) -> None:
    record(
        db,
        {
            "action": action,
            "tenant_id": tenant.id,
            "resource_type": "tenant",
            "resource_id": tenant.id,
            "actor_id": actor_id,
            "metadata": metadata,
        },
    )
