"""tenants: one row per customer organisation.

Creating, renaming, deactivating or deleting a tenant is an admin operation
(the CLI, or code outside any tenant context, or inside ``unscoped``): inside
a ``tenant_context`` the ORM refuses it with ``CrossTenantWrite`` on both
backends, and on PostgreSQL the application role holds only SELECT on the
table (``relay-peewee roles``).
"""

from __future__ import annotations

from typing import Any

from peewee import BooleanField, DateTimeField, TextField, classmethod_only

from ..errors import CrossTenantWrite
from ..scope import active_scope
from ._columns import new_id, utcnow
from .audited import AuditedModel

__all__ = [
    "DEFAULT_TENANT_ID",
    "DEFAULT_TENANT_SLUG",
    "Tenant",
    "tenants_changed",
    "tenants_generation",
]

# The id Relay's own TypeScript migration gave the tenant that inherits all
# pre-tenancy rows; using it too means both migrations agree on a database.
DEFAULT_TENANT_ID = "default-tenant-000-0000-000000000000"
DEFAULT_TENANT_SLUG = "default"


# Bumped whenever this process writes to tenants (any query the Tenant model
# builds, and the operations after they commit), so what was resolved from
# the table before - the web resolvers' cache of hosts - is dropped at once
# in this process. Other processes' caches expire on their own clock.
_generation = 0


def tenants_changed() -> None:
    """Drop what this process has cached about tenants (a tenant was changed)."""
    global _generation
    _generation += 1


def tenants_generation() -> int:
    """How many times this process has changed tenants; caches compare it."""
    return _generation


def _admin_only(what: str) -> None:
    tenants_changed()
    scope = active_scope()
    if scope is not None and not scope.unscoped:
        raise CrossTenantWrite(
            f"{what} a tenant is an admin operation, refused inside tenant_context: "
            "use `relay-peewee tenants` or `unscoped(reason)`"
        )


def _delete(cls: Any) -> Any:
    _admin_only("deleting")
    return cls._delete_query(cls)


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

    @classmethod
    def insert(cls, data: Any = None, /, **insert: Any) -> Any:
        _admin_only("creating")
        return super().insert(data, **insert)

    @classmethod
    def insert_many(cls, rows: Any, fields: Any = None) -> Any:
        _admin_only("creating")
        return super().insert_many(rows, fields)

    @classmethod
    def insert_from(cls, query: Any, fields: Any) -> Any:
        _admin_only("creating")
        return super().insert_from(query, fields)

    @classmethod
    def replace(cls, data: Any = None, /, **insert: Any) -> Any:
        _admin_only("replacing")
        return super().replace(data, **insert)

    @classmethod
    def update(cls, data: Any = None, /, **update: Any) -> Any:
        _admin_only("changing")
        return super().update(data, **update)

    # classmethod_only, as peewee's: `instance.delete()` is an error, not a table wipe.
    delete: Any = classmethod_only(_delete)
