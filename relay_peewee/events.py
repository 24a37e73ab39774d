"""The audit log: ``record_event`` and the writer behind every audit row.

Rows are written in the caller's transaction, inside a savepoint: they commit
or roll back with the change they describe, and a failure to write one is
logged on the ``relay_peewee.events`` logger, never raised.

The row ``unscoped()`` needs is the exception: it is written on a connection
of its own and committed before the block runs, so whatever the caller's
transaction does afterwards (an exception rolls it back) the trace stays; if
it cannot be written the escape hatch does not open.
The events models record on their own are in ``audited_model``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from peewee import Database, DatabaseProxy, Value

from .db import is_postgres, unwrap
from .errors import RelayError
from .tenancy.context import current_tenant
from .tenancy.rls import separate_transaction

__all__ = ["UNSCOPED_ACTION", "record_event", "record_unscoped", "write_event"]

logger = logging.getLogger("relay_peewee.events")

UNSCOPED_ACTION = "tenant.unscoped"


def record_event(
    action: str,
    *,
    resource_type: str | None = None,
    resource_id: str | None = None,
    actor_id: str | None = None,
    ip_address: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    database: Database | DatabaseProxy | None = None,
) -> uuid.UUID | None:
    """Write one ``audit_logs`` row for the tenant in context (NULL outside one).

    Returns the new row's id, or ``None`` when it could not be written; that
    failure is logged with its traceback and leaves the caller's transaction
    usable. ``database`` defaults to the one ``AuditLog`` is bound to.
    """
    if not isinstance(action, str) or not action:
        raise ValueError("record_event() needs an action such as 'user.invite'")
    return write_event(
        database,
        {
            "action": action,
            "tenant_id": current_tenant(),
            "resource_type": resource_type,
            "resource_id": None if resource_id is None else str(resource_id),
            "actor_id": actor_id,
            "ip_address": ip_address,
            "metadata": metadata,
        },
        strict=False,
    )


def record_unscoped(reason: str, caller_tenant: str | None) -> None:
    """The audit row ``unscoped()`` writes on entry, committed apart; raises if it cannot."""
    from .models.audit_log import AuditLog

    db = unwrap(AuditLog._meta.database)
    values = _row_values(
        {
            "action": UNSCOPED_ACTION,
            "tenant_id": caller_tenant,
            "metadata": {"reason": reason, "tenant_id": caller_tenant},
        }
    )
    query = AuditLog.insert(values)
    try:
        if not db.in_transaction() and not is_postgres(db):
            # SQLite outside a transaction: the statement commits as it returns.
            query.execute(db)
        else:
            sql, params = query.sql()
            with separate_transaction(db, caller_tenant) as cursor:
                cursor.execute(sql, params)
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = (
            "; on SQLite enter unscoped() before the transaction that holds the lock"
            if not is_postgres(db)
            else ""
        )
        raise RelayError(
            f"unscoped() refused: its audit row could not be committed ({detail}){hint}"
        ) from None


def _row_values(row: dict[str, Any]) -> dict[str, Any]:
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
    # Imported here: the models package imports this module (via audited_model).
    from .models.audit_log import AuditLog

    db = database if database is not None else AuditLog._meta.database
    try:
        values = _row_values(row)
        row_id = values["id"]
        # A savepoint when the caller is inside a transaction: a failed insert
        # rolls back to it and leaves the caller's transaction usable.
        with db.atomic():
            AuditLog.insert(values).execute(db)
    except Exception:
        if strict:
            raise
        logger.exception("could not record audit event %r", row.get("action"))
        return None
    return row_id
