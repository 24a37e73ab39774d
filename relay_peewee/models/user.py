"""users: the people who sign in. email stays unique across all tenants."""

from __future__ import annotations

from typing import Any

from peewee import DateTimeField, TextField

from ..tenancy.model import TenantModel
from ._columns import new_id, utcnow
from ._registry import registered_delete, registered_save

__all__ = ["User"]


class User(TenantModel):
    id = TextField(primary_key=True, default=new_id)
    # Globally unique on purpose: the address is the login identity, and one
    # person must not be able to hold two accounts that resolve ambiguously.
    email = TextField(unique=True)
    name = TextField(null=True)
    email_verified = DateTimeField(null=True)
    image = TextField(null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "users"
        # The key (tenant_id, id) that tenant-consistent references use; it
        # also serves every lookup by tenant.
        tenant_unique = [("id",)]
        audit_events = "user"  # user.create / user.update / user.delete

    # Citus: the global unique lives in a reference table (models._registry).
    def save(self, force_insert: bool = False, only: Any = None) -> Any:
        return registered_save(
            self, lambda: super(User, self).save(force_insert, only), force_insert
        )

    def delete_instance(self, recursive: bool = False, delete_nullable: bool = False) -> Any:
        return registered_delete(
            self, lambda: super(User, self).delete_instance(recursive, delete_nullable)
        )
