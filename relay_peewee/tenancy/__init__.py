"""Tenant isolation in the ORM: TenantModel and the context it is scoped to.

One concern per module:

* ``model`` - ``TenantModel``, the base class of every per-tenant table;
* ``context`` - the tenant ``ContextVar``, ``tenant_context`` and ``unscoped``;
* ``scoping`` - reads limited to the tenant in context;
* ``writes`` - writes checked to stay inside it;
* ``references`` - foreign keys checked to point at rows of the same tenant;
* ``rls`` - what a context means to PostgreSQL's row-level security;
* ``aio`` - ``async with tenant_context`` on peewee's asyncio databases.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .context import current_tenant, require_tenant, tenant_bound, tenant_context, unscoped
from .scoping import TENANT_COLUMN, TENANT_FIELD

if TYPE_CHECKING:
    from .model import TenantModel, tenant_indexes

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

# ``model`` is imported on first use, not here. TenantModel derives from
# AuditedModel, whose module imports ``events`` and the models package, and
# both of those import ``context`` from this package while they load: an import
# of ``model`` here would wait for modules that are still waiting for this one.
_LAZY = {"TenantModel", "tenant_indexes"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
