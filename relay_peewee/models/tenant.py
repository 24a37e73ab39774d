"""tenants: one row per customer organisation."""

from __future__ import annotations

from peewee import BooleanField, DateTimeField, TextField

from ..audited_model import AuditedModel
from ._columns import new_id, utcnow

__all__ = ["DEFAULT_TENANT_ID", "DEFAULT_TENANT_SLUG", "Tenant"]

# The id Relay's own TypeScript migration gave the tenant that inherits all
# pre-tenancy rows; using it too means both migrations agree on a database.
DEFAULT_TENANT_ID = "default-tenant-000-0000-000000000000"
DEFAULT_TENANT_SLUG = "default"


class Tenant(AuditedModel):
    id = TextField(primary_key=True, default=new_id)
    name = TextField()
    slug = TextField(unique=True)
    domain = TextField(null=True)
    logo = TextField(null=True)
    is_active = BooleanField(default=True)
    plan = TextField(default="freemium")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "tenants"
        audit_events = "tenant"  # tenant.create / tenant.update / tenant.delete
