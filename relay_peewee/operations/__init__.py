"""The operations behind the CLI, as plain typed functions.

``commands`` holds one function per command (migrate, status, rollback,
tenants); beside it, the operations big enough for a module of their own:
``roles`` (PostgreSQL roles for row-level security), ``lookups`` (API key
and host lookups before the tenant is known), ``user_moves`` (a user and
their rows to another tenant), ``tenant_states`` (deactivating and
activating a tenant), ``tenant_erase`` (erasing one, leaving a tombstone)
and ``makemigration`` (drafting an application's next migration; imported
by its full path, since only that command needs it).
"""

from __future__ import annotations

from .commands import (
    MigrateResult,
    UserMove,
    applied_migrations,
    create_tenant,
    list_tenants,
    migrate,
    migration_sql,
    move_user,
    rollback,
    status,
)
from .roles import APP_ROLE, create_roles, role_statements
from .tenant_erase import Erasure, erase_tenant
from .tenant_states import TenantState, activate_tenant, deactivate_tenant

__all__ = [
    "APP_ROLE",
    "Erasure",
    "MigrateResult",
    "TenantState",
    "UserMove",
    "activate_tenant",
    "applied_migrations",
    "create_roles",
    "create_tenant",
    "deactivate_tenant",
    "erase_tenant",
    "list_tenants",
    "migrate",
    "migration_sql",
    "move_user",
    "role_statements",
    "rollback",
    "status",
]
