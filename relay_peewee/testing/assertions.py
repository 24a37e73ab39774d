"""Assertions for tests of isolation.

They read through plain peewee ``Table`` objects, never the TenantModels, so
a bug in scoping cannot hide itself from the check.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from peewee import Database, Model, Table

from ..database import (
    database_proxy,
    is_postgres,
    unwrap,
)
from ..database.catalog import column_names
from ..models import (
    TENANT_MODELS,
    AuditLog,
    Tenant,
)
from ..tenancy.context import tenant_id_of
from ..tenancy.rls import bypass_scope
from ..tenancy.scoping import TENANT_COLUMN, TENANT_FIELD


def bound_database(database: Database | None) -> Database:
    return unwrap(database if database is not None else database_proxy)


def _rows_to_check(rows: Any) -> Iterator[Any]:
    stack = [rows]
    while stack:
        item = stack.pop()
        if isinstance(item, Model):
            yield item
            # Rows joined in (rating.skill after a join) count as seen too.
            stack.extend(v for v in item.__rel__.values() if isinstance(v, Model))
        elif isinstance(item, dict):
            yield item
        elif isinstance(item, Iterable) and not isinstance(item, (str, bytes, tuple)):
            stack.extend(item)
        else:
            raise TypeError(
                f"cannot tell which tenant {item!r} belongs to: pass model instances or "
                "dicts() rows holding tenant_id"
            )


def _key_text(pk: Any, value: Any) -> str:
    # One spelling per key: a UUID read back from SQLite is hex, from psycopg2 text.
    return str(pk.python_value(pk.db_value(value)))


def _owners(model: Any, keys: list[Any], db: Database) -> dict[str, str]:
    """Primary key (as ``_key_text``) -> tenant id, read without the ORM."""
    pk = model._meta.primary_key
    table = Table(model._meta.table_name, schema=model._meta.schema)
    column = table.c[pk.column_name]
    found: dict[str, str] = {}
    with bypass_scope(db):  # the owners of rows row-level security hides too
        for start in range(0, len(keys), 500):
            chunk = [pk.db_value(k) for k in keys[start : start + 500]]
            query = table.select(column, table.c[TENANT_COLUMN]).where(column.in_(chunk))
            for key, owner in query.tuples().execute(db):
                found[_key_text(pk, key)] = owner
    return found


def assert_only_tenant(rows: Any, tenant: Tenant | str, database: Database | None = None) -> None:
    """Fail unless every row in ``rows`` belongs to ``tenant``.

    ``rows``: model instances (with anything joined onto them), dicts holding
    ``tenant_id``, or iterables of those - a query is executed. An instance
    read without its tenant column is looked up by primary key.
    """
    tenant_id = tenant_id_of(tenant)
    foreign: list[str] = []
    by_key: dict[Any, list[Any]] = {}
    for row in _rows_to_check(rows):
        if isinstance(row, dict):
            owner = row.get(TENANT_COLUMN, row.get(TENANT_FIELD))
            if owner is None:
                raise TypeError(f"row {row!r} holds no tenant_id to check")
            if owner != tenant_id:
                foreign.append(f"{row!r} (tenant {owner})")
            continue
        instance: Any = row
        owner = instance.__data__.get(TENANT_FIELD)
        if owner is not None:
            if owner != tenant_id:
                foreign.append(f"{type(row).__name__} {instance._pk!r} (tenant {owner})")
        elif hasattr(type(row), TENANT_FIELD):
            meta = instance._meta
            if meta.primary_key is False or meta.composite_key or instance._pk is None:
                raise TypeError(f"{row!r} was read without its tenant or its key: select them")
            by_key.setdefault(type(row), []).append(instance._pk)
    db = bound_database(database) if by_key else None
    for model, keys in by_key.items():
        assert db is not None
        owners = _owners(model, keys, db)
        pk = model._meta.primary_key
        for key in keys:
            owner = owners.get(_key_text(pk, key), tenant_id)  # deleted since: not foreign
            if owner != tenant_id:
                foreign.append(f"{model.__name__} {key!r} (tenant {owner})")
    if foreign:
        shown = ", ".join(foreign[:5]) + (
            f", and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        )
        raise AssertionError(f"rows of another tenant than {tenant_id!r} were visible: {shown}")


@dataclass(frozen=True)
class TenantSnapshot:
    """Every row of one tenant, per table, as sorted text tuples."""

    tenant_id: str
    tables: dict[str, list[tuple[str, ...]]]


def tenant_tables(database: Database | None = None) -> list[str]:
    """Every table of the database that holds tenants' rows (has ``tenant_id``):
    Relay's that exist, in their order, then the application's, by name.

    Read from the catalog, not from the models: with the tenancy core alone
    (``relay_schema = false``) the tenant tables are all the application's.
    ``audit_logs`` is left out: ``unscoped()`` appends to it by design.
    """
    db = bound_database(database)
    found = column_names(db, [t for t in db.get_tables() if not t.startswith("sqlite_")])
    relays = [m._meta.table_name for m in TENANT_MODELS if m._meta.table_name in found]
    others = sorted(
        t
        for t, cols in found.items()
        if TENANT_COLUMN in cols and t not in relays and t != AuditLog._meta.table_name
    )
    return relays + others


def snapshot_tenant(tenant: Tenant | str, database: Database | None = None) -> TenantSnapshot:
    """Every row of ``tenant`` in every tenant table (``tenant_tables``)."""
    db = bound_database(database)
    tenant_id = tenant_id_of(tenant)
    tables: dict[str, list[tuple[str, ...]]] = {}
    with bypass_scope(db):  # another tenant's rows, whatever RLS would show
        for name in tenant_tables(db):
            table = Table(name)
            query = table.select().where(table.c[TENANT_COLUMN] == tenant_id)
            tables[table.__name__] = sorted(
                tuple(repr(v) for v in row) for row in query.tuples().execute(db)
            )
    return TenantSnapshot(tenant_id, tables)


def assert_unchanged(snapshot: TenantSnapshot, database: Database | None = None) -> None:
    """Fail if any row of the snapshot's tenant was added, changed or removed."""
    now = snapshot_tenant(snapshot.tenant_id, database)
    changed = []
    for name, before in snapshot.tables.items():
        after = now.tables.get(name, [])
        if after != before:
            gone = len(set(before) - set(after))
            new = len(set(after) - set(before))
            changed.append(f"{name} ({gone} rows gone or changed, {new} new or changed)")
    if changed:
        raise AssertionError(f"tenant {snapshot.tenant_id!r} was modified: {', '.join(changed)}")


@contextmanager
def assert_tenant_untouched(
    tenant: Tenant | str, database: Database | None = None
) -> Iterator[None]:
    """Fail if the block adds, changes or removes any row of ``tenant``."""
    snapshot = snapshot_tenant(tenant, database)
    yield
    assert_unchanged(snapshot, database)


def bound_by_row_level_security(database: Database | None = None) -> bool:
    """Whether the connected role is one PostgreSQL's row-level security binds.

    True on the ``postgres_rls`` backend; a test whose setup needs more than
    the application role may do (DDL, say) can skip on it.
    """
    db = bound_database(database)
    if not is_postgres(db):
        return False
    row = db.execute_sql(
        "SELECT NOT (rolsuper OR rolbypassrls) FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    return bool(row[0])
