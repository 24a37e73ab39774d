"""Tenant isolation in the ORM: TenantModel and the context it is scoped to.

One concern per module:

* ``model`` - ``TenantModel``, the base class of every per-tenant table;
* ``context`` - ``tenant_context`` and ``unscoped``, which set the tenant
  ``ContextVar`` (``relay_peewee.scope``, re-exported by ``context``);
* ``scoping`` - reads limited to the tenant in context;
* ``writes`` - writes checked to stay inside it;
* ``references`` - foreign keys checked to point at rows of the same tenant;
* ``rls`` - what a context means to PostgreSQL's row-level security;
* ``unscoped_log`` - the audit row ``unscoped`` commits before it opens;
* ``aio`` - ``async with tenant_context`` on peewee's asyncio databases.
"""

from __future__ import annotations

# ``context`` first (isort's order too): it imports the Tenant model, which
# runs ``relay_peewee.models``' __init__, whose tables import ``model``. Had
# ``model`` come first, those tables would find TenantModel half-built.
# tests/test_layers.py imports every module first in a fresh
# interpreter and fails if this order stops holding.
from .context import current_tenant, require_tenant, tenant_bound, tenant_context, unscoped
from .model import TenantModel, tenant_indexes
from .scoping import TENANT_COLUMN, TENANT_FIELD

__all__ = [
    "TENANT_COLUMN",
    "TENANT_FIELD",
    "TenantModel",
    "current_tenant",
    "require_tenant",
    "tenant_bound",
    "tenant_context",
    "tenant_indexes",
    "unscoped",
]
