"""audit_logs: append-only record of security events."""

from __future__ import annotations

import uuid

from peewee import DateTimeField, TextField, UUIDField

from ..fields import JSONField
from ._columns import utcnow
from .base import BaseModel

__all__ = ["AuditLog"]


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
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "audit_logs"
        indexes = (
            (("tenant_id", "created_at"), False),
            (("actor_id", "created_at"), False),
            (("action", "created_at"), False),
        )
