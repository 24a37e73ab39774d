"""api_keys: hashed credentials. key_hash stays unique across all tenants."""

from __future__ import annotations

import uuid
from typing import Any

from peewee import DateTimeField, TextField, UUIDField

from ..fields import TenantForeignKeyField
from ..tenancy.model import TenantModel
from ._columns import utcnow
from ._registry import registered_delete, registered_save
from .user import User

__all__ = ["ApiKey"]


class ApiKey(TenantModel):
    id = UUIDField(primary_key=True, default=uuid.uuid4)
    user = TenantForeignKeyField(User, backref="api_keys", on_delete="CASCADE", index=False)
    # Globally unique: a presented key must resolve to exactly one tenant.
    key_hash = TextField(unique=True)
    key_prefix = TextField()
    name = TextField(default="Default")
    last_used_at = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)
    revoked_at = DateTimeField(null=True)
    expires_at = DateTimeField(null=True)

    class Meta:
        table_name = "api_keys"
        audit_events = "api_key"  # api_key.create / api_key.update / api_key.delete

    # Citus: the global unique lives in a reference table (models._registry).
    def save(self, force_insert: bool = False, only: Any = None) -> Any:
        return registered_save(
            self, lambda: super(ApiKey, self).save(force_insert, only), force_insert
        )

    def delete_instance(self, recursive: bool = False, delete_nullable: bool = False) -> Any:
        return registered_delete(
            self, lambda: super(ApiKey, self).delete_instance(recursive, delete_nullable)
        )
