"""The audit row ``unscoped()`` writes on entry, committed before the block runs.

Unlike every other audit row (``models.audit_log.write_event``, in the
caller's transaction) it is written on a connection of its own and committed
at once: whatever the caller's transaction does afterwards (an exception
rolls it back) the trace stays, and if it cannot be written the escape hatch
does not open.
"""

from __future__ import annotations

from ..database import is_postgres, unwrap
from ..errors import RelayError
from ..models.audit_log import AuditLog, audit_row_values
from .rls import separate_transaction

__all__ = ["UNSCOPED_ACTION", "record_unscoped"]

UNSCOPED_ACTION = "tenant.unscoped"


def record_unscoped(reason: str, caller_tenant: str | None) -> None:
    """Write and commit the row; ``RelayError`` if it cannot be written."""
    db = unwrap(AuditLog._meta.database)
    values = audit_row_values(
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
