"""The tenant in context: one ``ContextVar`` and what reads it.

``contextvars`` rather than a global or a thread-local because a thread-local
leaks between asyncio tasks that share a thread, while a ``ContextVar`` is
copied into each task (and each ``asyncio.to_thread`` call) and starts empty
in a new thread. Every query on a TenantModel reads it once, at
SQL-generation time.

This module imports nothing of the package but ``errors``: the models, the
audit writer, scoping and checked writes read the scope on their hot paths
and import it from here, below all of them, so that ``tenancy.context``
(which sets it: ``tenant_context``, ``unscoped``) can in turn import the
``Tenant`` model and the audit writer. It sits outside ``tenancy/`` because
importing any module of a package runs that package's ``__init__`` first,
and ``tenancy``'s loads ``TenantModel`` and with it the models.
``relay_peewee.tenancy.context`` re-exports every public name.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field

from .errors import TenantRequired

__all__ = ["Scope", "active_scope", "current_tenant", "in_force", "require_tenant"]


@dataclass(frozen=True, slots=True)
class Scope:
    """What queries may see: one tenant, or (``unscoped``) every tenant."""

    tenant_id: str | None
    unscoped: bool = False
    reason: str | None = None
    # The scope in force when the block began, and whether the block is over.
    # A block that ends out of order (a generator suspended inside it,
    # collected later) cannot reset the ContextVar of every context that
    # still holds its scope: it marks the scope closed instead, and readers
    # skip a closed scope for the one it was entered in (``in_force``).
    outer: Scope | None = field(default=None, compare=False, repr=False)
    closed: bool = field(default=False, compare=False, repr=False)


# Set only by tenancy.context's blocks (and tenancy.aio), which reset it on exit.
_scope: ContextVar[Scope | None] = ContextVar("relay_peewee_scope", default=None)


def in_force() -> Scope | None:
    """The innermost scope whose block is still open, or ``None``."""
    scope = _scope.get()
    while scope is not None and scope.closed:
        scope = scope.outer
    return scope


def active_scope() -> Scope | None:
    """The innermost ``tenant_context`` or ``unscoped`` block, or ``None``."""
    return in_force()


def current_tenant() -> str | None:
    """The id of the tenant in context, or ``None``.

    Inside ``unscoped`` this is the tenant of the enclosing context (the caller),
    although queries there are not restricted to it.
    """
    scope = in_force()
    return scope.tenant_id if scope is not None else None


def require_tenant() -> str:
    """The id of the tenant in context; ``TenantRequired`` when there is none."""
    scope = in_force()
    if scope is None or scope.tenant_id is None:
        raise TenantRequired(
            "no tenant in context: wrap the work in `with tenant_context(tenant):`"
        )
    return scope.tenant_id
