"""audit_logs: append-only record of security events.

Inside a ``tenant_context`` the ORM shows and writes only that tenant's
events (on PostgreSQL row-level security says the same for raw SQL, see
migration 0009): ``select()`` is limited to the tenant when its SQL is
generated, an insert naming another tenant (or none) raises
``CrossTenantWrite``. Outside any context (the CLI, admin jobs) and inside
``unscoped`` every event is visible. ``replace()`` is refused everywhere:
an event is never rewritten.

``write_event`` is the writer behind every audit row (``record_event``,
``AuditedModel``'s own events): in the caller's transaction, inside a
savepoint, so a row commits or rolls back with the change it describes and a
failure to write one leaves the caller's transaction usable. It lives beside
the table it writes, below ``AuditedModel``, which calls it.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from peewee import (
    Context,
    Database,
    DatabaseProxy,
    DateTimeField,
    ModelSelect,
    TextField,
    UUIDField,
    Value,
)

from ..database.citus import SYSTEM_TENANT_ID, known_citus
from ..errors import CrossTenantWrite
from ..fields import JSONField
from ..scope import active_scope
from ._columns import utcnow
from .base import BaseModel

__all__ = ["AuditLog", "audit_row_values", "write_event"]

# The logger's name predates this module: events.py held the writer.
logger = logging.getLogger("relay_peewee.events")

_Select: Any = ModelSelect


def _events_tenant() -> str | None:
    """The tenant whose events alone are visible and writable now, if limited to one."""
    scope = active_scope()
    if scope is None or scope.unscoped:
        return None
    return scope.tenant_id


class TenantEvents(_Select):
    """``AuditLog.select()``: limited to the tenant in context when rendered."""

    def __sql__(self, ctx: Context) -> Any:
        tenant_id = _events_tenant()
        if tenant_id is None:
            return super().__sql__(ctx)
        # A copy: the query object itself may run again under another tenant.
        copy = object.__new__(type(self))
        copy.__dict__ = self.__dict__.copy()
        predicate = AuditLog.tenant_id == tenant_id
        copy._where = predicate if copy._where is None else (copy._where & predicate)
        return super(TenantEvents, copy).__sql__(ctx)


def _check_row(row: Any, fields: Any, tenant_id: str) -> None:
    if isinstance(row, Mapping):
        owners = [
            v
            for k, v in row.items()
            if k is AuditLog.tenant_id or (isinstance(k, str) and k == "tenant_id")
        ]
    elif isinstance(row, (tuple, list)) and fields is not None:
        names = [f if isinstance(f, str) else f.name for f in fields]
        owners = [v for name, v in zip(names, row, strict=False) if name == "tenant_id"]
    else:
        owners = [getattr(row, "tenant_id", None)]
    if owners != [tenant_id]:
        shown = owners[0] if owners else None
        raise CrossTenantWrite(
            f"refused to write an audit event of tenant {shown!r} "
            f"in the context of tenant {tenant_id!r}"
        )


class AuditLog(BaseModel):
    id = UUIDField(primary_key=True, default=uuid.uuid4)
    actor_id = TextField(null=True)
    # Plain text, not a foreign key: NULL for system and cross-tenant events,
    # and the history of a tenant must outlive the tenant itself.
    tenant_id = TextField(null=True)
    action = TextField()
    resource_type = TextField(null=True)
    resource_id = TextField(null=True)
    ip_address = TextField(null=True)
    metadata = JSONField(null=True)
    # The database's clock decides (migration 0009); this fills the column
    # on a database older than that.
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "audit_logs"
        indexes = (
            (("tenant_id", "created_at"), False),
            (("actor_id", "created_at"), False),
            (("action", "created_at"), False),
        )

    @classmethod
    def select(cls, *fields: Any) -> Any:
        return TenantEvents(cls, fields or cls._meta.sorted_fields, is_default=not fields)

    @classmethod
    def insert(cls, data: Any = None, /, **insert: Any) -> Any:
        tenant_id = _events_tenant()
        if tenant_id is not None:
            row = dict(data or {}, **insert)
            _check_row(row, None, tenant_id)
        elif _on_citus() and isinstance(data, Mapping) and not insert:
            data = _with_system_tenant(data)
        return super().insert(data, **insert)

    @classmethod
    def insert_many(cls, rows: Iterable[Any], fields: Any = None) -> Any:
        tenant_id = _events_tenant()
        if tenant_id is not None:
            rows = list(rows)
            for row in rows:
                _check_row(row, fields, tenant_id)
        return super().insert_many(rows, fields)

    @classmethod
    def insert_from(cls, query: Any, fields: Any) -> Any:
        if _events_tenant() is not None:
            raise CrossTenantWrite("AuditLog.insert_from() cannot be checked against the tenant")
        return super().insert_from(query, fields)

    @classmethod
    def replace(cls, data: Any = None, /, **insert: Any) -> Any:
        raise CrossTenantWrite("audit_logs is append-only: replace() refused, use insert()")

    @classmethod
    def replace_many(cls, rows: Iterable[Any], fields: Any = None) -> Any:
        raise CrossTenantWrite("audit_logs is append-only: replace_many() refused")


def _on_citus() -> bool:
    # known_citus, not is_citus: never a query here (an asyncio database
    # is asked by its first tenant context; connect() asks the others).
    db = AuditLog._meta.database
    db = getattr(db, "obj", db)
    return db is not None and bool(known_citus(db))


def _with_system_tenant(row: Mapping[Any, Any]) -> dict[Any, Any]:
    """A row of no tenant, given ``SYSTEM_TENANT_ID`` (Citus: the
    distribution column cannot be NULL)."""
    out = dict(row)
    keys = [k for k in out if k is AuditLog.tenant_id or (isinstance(k, str) and k == "tenant_id")]
    if all(out[k] is None for k in keys):
        for k in keys or ["tenant_id"]:
            out[k] = SYSTEM_TENANT_ID
    return out


def audit_row_values(row: dict[str, Any]) -> dict[str, Any]:
    """The values to insert for one audit row: a new id, the metadata as JSON text."""
    values = dict(row, id=uuid.uuid4())
    if values.get("metadata") is not None:
        # Serialised here rather than by JSONField, which asks the proxy for
        # the backend and so fails when the write went to a database the
        # proxy does not point at (the CLI's). Both backends take JSON text.
        # default=str: a UUID or datetime in metadata must not lose the event.
        text = json.dumps(values["metadata"], default=str, sort_keys=True)
        values["metadata"] = Value(text, converter=False)
    return values


def write_event(
    database: Database | DatabaseProxy | None, row: dict[str, Any], *, strict: bool
) -> uuid.UUID | None:
    """Insert one audit row in a savepoint; ``strict`` raises instead of logging."""
    db = database if database is not None else AuditLog._meta.database
    try:
        values = audit_row_values(row)
        row_id = values["id"]
        # A savepoint when the caller is inside a transaction: a failed insert
        # rolls back to it and leaves the caller's transaction usable.
        with db.atomic():
            # .returning() with nothing: peewee decides RETURNING when the
            # query is built, from the database the model is bound to, which
            # need not be ``db`` (the CLI writes to its own while the models
            # may still point at another backend); the id is ours already.
            AuditLog.insert(values).returning().execute(db)
    except Exception:
        if strict:
            raise
        logger.exception("could not record audit event %r", row.get("action"))
        return None
    return row_id
