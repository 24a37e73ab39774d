"""asyncio: tenant contexts on peewee's asyncio databases (``playhouse.pwasyncio``).

``async with tenant_context(t):`` sets the same ``ContextVar`` as the sync
block, and on PostgreSQL opens the same transaction with the same
``set_config`` (``rls.tenant_setting_sql``), through pwasyncio's own
``async with db.atomic()``. pwasyncio gives every task its own connection and
runs peewee's sync code (``await Model.aget(...)``, ``await db.list(query)``,
``await row.asave()``) in a greenlet that sees the task's context, so the
scoping and the write checks are the sync ones, unchanged.

Imported only when async code asks for it (``tenant_context.__aenter__``, or a
sync block on a pwasyncio database): pwasyncio needs ``greenlet`` and a driver
(``asyncpg``, ``aiosqlite``), the ``async`` extra.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from greenlet import getcurrent
from peewee import Database
from playhouse.pwasyncio import AsyncDatabaseMixin

from ..db import database_proxy, is_postgres
from ..errors import RelayError
from . import rls

__all__ = ["require_bridge", "tenant_scope"]


def _bound() -> Database | None:
    return database_proxy.obj


def tenant_scope(tenant_id: str, outer_tenant: str | None) -> AbstractAsyncContextManager[None]:
    """The database side of ``async with tenant_context`` (nothing off PostgreSQL)."""
    db = _bound()
    if isinstance(db, AsyncDatabaseMixin):
        return _async_scope(db, tenant_id, outer_tenant) if is_postgres(db) else _nothing()
    # A sync database under `async with`: the sync side, run on the loop's thread
    # (and refused if another task holds this thread's connection).
    return _sync_scope(tenant_id, outer_tenant)


@asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield


@asynccontextmanager
async def _sync_scope(tenant_id: str, outer_tenant: str | None) -> AsyncIterator[None]:
    with rls.tenant_scope(tenant_id, outer_tenant):
        yield


@asynccontextmanager
async def _async_scope(db: Any, tenant_id: str, outer_tenant: str | None) -> AsyncIterator[None]:
    # The task's own connection: a transaction, or a savepoint inside one.
    async with db.atomic():
        await _set_tenant(db, tenant_id)
        yield
    if db.in_transaction():
        # As in the sync block: the enclosing context's tenant comes back.
        await _set_tenant(db, outer_tenant or "")


async def _set_tenant(db: Any, tenant_id: str) -> None:
    # One round trip on asyncpg's simple protocol, where the parameterised
    # aexecute_sql is two (prepare, execute). The task's own connection,
    # idle here: nothing else of this task can be using it.
    wrapper = await db.aconnect()
    await wrapper.conn.execute(rls.tenant_setting_literal_sql(tenant_id))


def require_bridge(db: Database) -> None:
    """Refuse a sync block on a pwasyncio database outside its greenlet bridge.

    There every statement would fail with pwasyncio's MissingGreenletBridge;
    inside ``await db.run(fn)`` the sync block works as on a sync database.
    """
    if isinstance(db, AsyncDatabaseMixin) and getcurrent().parent is None:
        raise RelayError(
            "`with tenant_context(...)` on an asyncio database: use "
            "`async with tenant_context(...)`, or run the sync code with `await db.run(fn)`"
        )
