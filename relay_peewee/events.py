"""The audit log's public face: ``record_event``.

Rows are written in the caller's transaction, inside a savepoint: they commit
or roll back with the change they describe, and a failure to write one is
logged on the ``relay_peewee.events`` logger, never raised.

The writer itself (``write_event``) lives beside its table in
``models.audit_log``, below ``AuditedModel`` which records the events models
write on their own; the row ``unscoped()`` commits apart is written by
``tenancy.unscoped_log``. Both are re-exported here. Nothing in the package
below this module imports it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from peewee import Database, DatabaseProxy

from .models.audit_log import write_event
from .scope import current_tenant
from .tenancy.unscoped_log import UNSCOPED_ACTION, record_unscoped

__all__ = ["UNSCOPED_ACTION", "record_event", "record_unscoped", "write_event"]


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
