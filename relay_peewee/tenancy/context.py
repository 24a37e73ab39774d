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
from contextlib import AbstractAsyncContextManager, AbstractContextManager, suppress
from contextvars import Token
from threading import get_ident
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from ..database import database_proxy
from ..errors import ContextAbandoned, InvalidTenantId, TenantInactive
from ..models.tenant import Tenant
from ..scope import Scope, _scope, active_scope, current_tenant, in_force, require_tenant
from . import activity
from .rls import bypass_scope, discard_thread_blocks, tenant_scope, thread_blocks
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

    Blocks end in the order they began, on the thread and in the context
    they began in. One that does not - a generator suspended inside it and
    closed later (collected while a block entered after it is open, or on
    another thread, or from another asyncio task) - cannot put everything
    back: its scope is closed (no reader sees it any more, in any context),
    the transactions it and the blocks inside it hold on the thread's
    connection are rolled back, and ``ContextAbandoned`` is raised, here and
    at the exit of every block caught inside it.
    """

    _token: Token[Scope | None] | None = None
    _database: AbstractContextManager[None] | None = None
    _adatabase: AbstractAsyncContextManager[None] | None = None
    scope: Scope  # the scope this block put in force
    _thread: int
    _blocks: list[Any] | None = None  # this thread's open blocks (deferred_begin.BLOCKS)
    _task_conn: Any = None  # pwasyncio: the task's asyncpg connection

    def _set(self, scope: Scope) -> None:
        self.scope = scope
        self._thread = get_ident()
        blocks = self._blocks = thread_blocks()
        if blocks is not None:
            blocks.append(self)
        self._token = _scope.set(scope)

    def _enter(self, scope: Scope, database: AbstractContextManager[None]) -> None:
        if self._token is not None:
            raise RuntimeError(f"{type(self).__name__} is already active; create a new one")
        database.__enter__()
        self._database = database
        self._set(scope)

    def _in_order(self) -> bool:
        """Whether this block is the innermost open one, here, where it began;
        if so its scope is taken out of the ContextVar."""
        scope, blocks = self.scope, self._blocks
        if (
            scope.closed
            or self._thread != get_ident()
            or in_force() is not scope
            or (blocks and blocks[-1] is not self)
        ):
            return False
        try:
            # reset(), not set(previous): restores exactly what the enclosing
            # block saw, even if code inside set the variable some other way.
            _scope.reset(self._token)  # type: ignore[arg-type]
        except ValueError:  # entered in another Context (this one is a copy)
            return False
        if blocks:
            blocks.pop()
        return True

    def unwind(self) -> None:
        """End the database side with a rollback, as an exception would:
        for a block ended out of order (``deferred_begin.discard_blocks``),
        innermost first, on the thread it began on."""
        database, self._database = self._database, None
        adatabase, self._adatabase = self._adatabase, None
        object.__setattr__(self.scope, "closed", True)
        sync = database if database is not None else getattr(adatabase, "sync", None)
        if sync is not None:
            with suppress(Exception):  # discard_blocks rolls back what is left
                sync.__exit__(ContextAbandoned, ContextAbandoned(), None)

    def _abandon(self) -> ContextAbandoned:
        """The out-of-order exit: close the scope and those entered inside it
        here; roll back what they hold on this thread's connection."""
        scope, blocks = self.scope, self._blocks
        already = scope.closed
        inner, found = _scope.get(), []
        while inner is not None and inner is not scope:
            found.append(inner)
            inner = inner.outer
        if inner is scope:  # this context: every scope entered inside it ends too
            for later in found:
                object.__setattr__(later, "closed", True)
        object.__setattr__(scope, "closed", True)
        if _scope.get() is scope:
            with suppress(ValueError):
                _scope.reset(self._token)  # type: ignore[arg-type]
        if self._thread == get_ident() and blocks is not None and self in blocks:
            discard_thread_blocks()
        # On another thread the connection is not ours to touch: its thread's
        # next statement finds the closed block and unwinds it (deferred_begin).
        if already:
            return ContextAbandoned(
                f"{type(self).__name__} was rolled back: a block it was nested in ended "
                "out of order (a generator suspended inside it, closed later?)"
            )
        return ContextAbandoned(
            f"{type(self).__name__} ended out of order or outside the thread/context "
            "it began in (a generator suspended inside it, closed later?): it and the "
            "blocks inside it were rolled back"
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._token is not None
        try:
            if self._database is not None and self._in_order():
                database, self._database = self._database, None
                database.__exit__(exc_type, exc, tb)
                return
            raise self._abandon()
        finally:
            self._token = None

    async def _aenter(self, scope: Scope, database: AbstractAsyncContextManager[None]) -> None:
        if self._token is not None:
            raise RuntimeError(f"{type(self).__name__} is already active; create a new one")
        await database.__aenter__()
        self._adatabase = database
        self._set(scope)
        if self._blocks is None:
            self._task_conn = _task_connection()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._token is not None
        try:
            if self._adatabase is not None and self._in_order():
                database, self._adatabase = self._adatabase, None
                await database.__aexit__(exc_type, exc, tb)
                return
            if self._adatabase is not None and self._task_conn is not None:
                # Exited from another task (asyncio finalizes an abandoned
                # async generator in a task of its own), whose connection is
                # not the block's: closing the block's ends its transaction on
                # the server, and its task's next statement fails rather than
                # run as this tenant.
                self._adatabase = None
                self._task_conn.terminate()
            raise self._abandon()
        finally:
            self._token = None


def _task_connection() -> Any:
    """This task's asyncpg connection on a pwasyncio PostgreSQL database, else None."""
    db = database_proxy.obj
    if db is None or not hasattr(db, "aexecute_sql"):
        return None
    conn = getattr(db._state.conn, "conn", None)  # pwasyncio's wrapper, then asyncpg's
    return conn if hasattr(conn, "terminate") else None


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
        self._enter(
            Scope(self.tenant_id, False, None, _scope.get()),
            tenant_scope(self.tenant_id, current_tenant()),
        )
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
        await self._aenter(Scope(self.tenant_id, False, None, _scope.get()), scope)
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
        self._enter(Scope(caller, True, self.reason, _scope.get()), bypass_scope())


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
