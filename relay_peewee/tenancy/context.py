"""The tenant context: which tenant the current request, thread or task acts for.

One ``ContextVar`` holds a ``Scope``; it and what reads it (``active_scope``,
``current_tenant``, ``require_tenant``) live in ``relay_peewee.scope``, below
the models, and are re-exported here. This module sets it.

Example::

    with tenant_context(tenant):
        skills = list(Skill.select())          # this tenant's skills only

    async with tenant_context(tenant):         # peewee's asyncio API (``aio``)
        skill = await Skill.aget(Skill.slug == "x")

    with unscoped("nightly usage roll-up"):   # every tenant; leaves an audit row
        total = UsageEvent.select().count()

    executor.submit(tenant_bound(send_digest, user_id))  # on another thread
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from contextvars import Token
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from ..database import database_proxy
from ..errors import InvalidTenantId, TenantInactive
from ..models.tenant import Tenant
from ..scope import Scope, _scope, active_scope, current_tenant, require_tenant
from . import activity
from .rls import bypass_scope, tenant_scope
from .unscoped_log import record_unscoped

__all__ = [
    "Scope",
    "active_scope",
    "current_tenant",
    "require_tenant",
    "tenant_bound",
    "tenant_context",
    "unscoped",
]

P = ParamSpec("P")
R = TypeVar("R")


def tenant_id_of(tenant: Any) -> str:
    """A tenant id from a ``Tenant`` row or an id string."""
    if isinstance(tenant, str):  # the common case first: one type check
        tenant_id = tenant
    else:
        # Only a Tenant: any other row has an `id` too, and would scope to nothing.
        tenant_id = tenant.id if isinstance(tenant, Tenant) else tenant
    if not isinstance(tenant_id, str):
        raise TypeError(f"expected a Tenant or a tenant id, got {tenant!r}")
    if not tenant_id:
        # An empty id must not silently mean "no tenant" (or "all tenants").
        raise InvalidTenantId("a tenant id cannot be empty")
    if "\x00" in tenant_id:
        # Refused on entry, the same on every path, rather than by whichever
        # driver first tries to send it.
        raise InvalidTenantId("a tenant id cannot contain NUL")
    return tenant_id


class _ScopeBlock:
    """Sets a scope on entry and restores the previous one on any exit.

    On PostgreSQL the block is also a transaction that carries the scope to
    row-level security (``rls``); it commits, or rolls back on an exception.
    """

    _token: Token[Scope | None] | None = None
    _database: AbstractContextManager[None] | None = None
    _adatabase: AbstractAsyncContextManager[None] | None = None

    def _enter(self, scope: Scope, database: AbstractContextManager[None]) -> None:
        if self._token is not None:
            raise RuntimeError(f"{type(self).__name__} is already active; create a new one")
        database.__enter__()
        self._database = database
        self._token = _scope.set(scope)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._token is not None and self._database is not None
        # reset(), not set(previous): restores exactly what the enclosing
        # block saw, even if code inside set the variable some other way.
        _scope.reset(self._token)
        self._token = None
        database, self._database = self._database, None
        database.__exit__(exc_type, exc, tb)

    async def _aenter(self, scope: Scope, database: AbstractAsyncContextManager[None]) -> None:
        if self._token is not None:
            raise RuntimeError(f"{type(self).__name__} is already active; create a new one")
        await database.__aenter__()
        self._adatabase = database
        self._token = _scope.set(scope)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._token is not None and self._adatabase is not None
        _scope.reset(self._token)
        self._token = None
        database, self._adatabase = self._adatabase, None
        await database.__aexit__(exc_type, exc, tb)


class tenant_context(_ScopeBlock):
    """Scope every TenantModel query inside the block to one tenant.

    Takes a ``Tenant`` or a tenant id. Nestable: the innermost block wins and
    the outer one is back in force on exit, also when the block raises. A
    deactivated tenant is refused on entry with ``TenantInactive``; the
    answer "active" is remembered for a couple of seconds (``activity``), so
    entering costs no query but one per tenant in that time. Inside
    ``unscoped()`` it is not checked (admin work reaches inactive tenants).
    An id that names no tenant reads nothing and cannot write (the foreign
    key refuses).
    """

    def __init__(self, tenant: Any) -> None:
        self.tenant_id = tenant_id_of(tenant)
        # A row in hand that says inactive is refused without asking again.
        self._inactive_row = isinstance(tenant, Tenant) and tenant.is_active is False

    def _check_needed(self) -> Any:
        """The database to read the tenant's state on, or None (no check)."""
        scope = active_scope()
        if scope is not None and scope.unscoped:
            return None  # admin work: an inactive tenant's rows stay reachable
        if self._inactive_row:
            raise TenantInactive(self.tenant_id)
        db = database_proxy.obj
        if db is None or activity.is_known_active(db, self.tenant_id):
            return None
        return db

    def __enter__(self) -> str:
        db = self._check_needed()
        self._enter(Scope(self.tenant_id), tenant_scope(self.tenant_id, current_tenant()))
        if db is not None:
            # Inside the context: on PostgreSQL the read is the transaction's
            # first statement, sent with its BEGIN (one round trip).
            try:
                activity.require_active(db, self.tenant_id)
            except BaseException as exc:
                self.__exit__(type(exc), exc, exc.__traceback__)
                raise
        return self.tenant_id

    async def __aenter__(self) -> str:
        """``async with``: the same scope; on a pwasyncio database the task's own transaction."""
        from . import aio  # imports pwasyncio (the `async` extra): only async code pays for it

        db = self._check_needed()
        scope = aio.tenant_scope(self.tenant_id, current_tenant())
        await self._aenter(Scope(self.tenant_id), scope)
        if db is not None:
            try:
                await aio.require_active(db, self.tenant_id)
            except BaseException as exc:
                await self.__aexit__(type(exc), exc, exc.__traceback__)
                raise
        return self.tenant_id


class unscoped(_ScopeBlock):
    """See every tenant inside the block: for admin and maintenance work.

    ``reason`` is required and is written, with the caller's tenant, to an
    ``audit_logs`` row (action ``tenant.unscoped``) on entry. If that row cannot
    be written the block is not entered: the escape hatch is only available
    while it leaves a trace. A ``tenant_context`` nested inside scopes again.
    """

    def __init__(self, reason: str) -> None:
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("unscoped() needs a reason, e.g. unscoped('GDPR export for #123')")
        self.reason = reason.strip()

    def __enter__(self) -> None:
        caller = current_tenant()
        record_unscoped(self.reason, caller)
        self._enter(Scope(caller, unscoped=True, reason=self.reason), bypass_scope())


def tenant_bound(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Callable[[], R]:
    """``fn(*args, **kwargs)`` to run on another thread in the tenant in context now.

    The call enters its own ``tenant_context`` where it runs: on PostgreSQL the
    context is a transaction on that thread's connection, which a copied
    ``ContextVar`` alone (``contextvars.copy_context()``) would not open::

        executor.submit(tenant_bound(send_digest, user_id))
        await asyncio.to_thread(tenant_bound(rebuild_index))

    ``TenantRequired`` at once when no tenant is in context.
    """
    tenant_id = require_tenant()

    def run() -> R:
        with tenant_context(tenant_id):
            return fn(*args, **kwargs)

    return run
