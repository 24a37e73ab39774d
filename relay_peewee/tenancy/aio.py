"""asyncio: tenant contexts on peewee's asyncio databases (``playhouse.pwasyncio``).

``async with tenant_context(t):`` sets the same ``ContextVar`` as the sync
block, and on PostgreSQL opens the same transaction with the same
``set_config`` (``rls.tenant_setting_literal_sql``): the outermost context
sends both in one message (``_TenantTransaction``), a nested one is
pwasyncio's own ``async with db.atomic()``, a savepoint. pwasyncio gives
every task its own connection and runs peewee's sync code (``await
Model.aget(...)``, ``await db.list(query)``, ``await row.asave()``) in a
greenlet that sees the task's context, so the scoping and the write checks
are the sync ones, unchanged.

Imported only when async code asks for it (``tenant_context.__aenter__``, or a
sync block on a pwasyncio database): pwasyncio needs ``greenlet`` and a driver
(``asyncpg``, ``aiosqlite``), the ``async`` extra.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    suppress,
)
from typing import Any

from peewee import Database
from peewee import __exception_wrapper__ as _exception_wrapper  # type: ignore[attr-defined]
from playhouse.pwasyncio import AsyncDatabaseMixin, AsyncPgAtomic, AsyncPostgresqlDatabase

try:
    from asyncpg.transaction import TransactionState as _TransactionState
except ImportError:  # no asyncpg (an AsyncSqliteDatabase), or it moved
    _TransactionState = None

from ..database import database_proxy, is_postgres
from ..database.citus import DETECT_SQL, known_citus, remember_citus
from . import activity, rls

__all__ = ["require_active", "tenant_scope"]


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


async def require_active(db: Any, tenant_id: str) -> None:
    """``activity.require_active`` for ``async with``: on a pwasyncio database
    through its greenlet bridge, on the task's connection (inside its
    transaction); on a sync one directly, as the sync side does."""
    if isinstance(db, AsyncDatabaseMixin):
        await db.run(activity.require_active, db, tenant_id)
    else:
        activity.require_active(db, tenant_id)


@asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield


class _SyncScope:
    """The sync database side under ``async with``; ``sync`` is what a block
    ended out of order unwinds (``context._ScopeBlock``), without awaiting."""

    __slots__ = ("sync",)

    def __init__(self, sync: AbstractContextManager[None]) -> None:
        self.sync = sync

    async def __aenter__(self) -> None:
        self.sync.__enter__()

    async def __aexit__(self, *exc_info: Any) -> None:
        self.sync.__exit__(*exc_info)


def _sync_scope(tenant_id: str, outer_tenant: str | None) -> AbstractAsyncContextManager[None]:
    return _SyncScope(rls.tenant_scope(tenant_id, outer_tenant))


@asynccontextmanager
async def _async_scope(db: Any, tenant_id: str, outer_tenant: str | None) -> AsyncIterator[None]:
    # The task's own connection: a transaction, or a savepoint inside one.
    if not db.in_transaction() and isinstance(db, AsyncPostgresqlDatabase):
        async with _TenantTransaction(db, tenant_id):
            yield
        return
    # A savepoint. Leaving it must put the enclosing context's tenant back
    # whatever interrupts the exit: a timeout landing there would otherwise
    # leave this tenant's setting in force under the outer block, whose
    # current_tenant() already says the outer tenant again.
    conn = (await db.aconnect()).conn
    await _detect_citus(db, conn)
    restore = rls.tenant_setting_literal_for(db, outer_tenant or "")
    savepoint = db.atomic()
    await savepoint.__aenter__()
    try:
        await _set_tenant(db, tenant_id)
        yield
    except BaseException as exc:
        try:
            # ROLLBACK TO SAVEPOINT: the outer tenant's setting comes back
            # with it, unless this is interrupted too - hence the restore.
            await savepoint.__aexit__(type(exc), exc, exc.__traceback__)
        finally:
            await _restore_setting(conn, restore)
        raise
    # Before the release, so that a release cut short leaves the outer
    # tenant's setting in force, not this one's (a released savepoint keeps
    # what was set inside it).
    await _restore_setting(conn, restore)
    await savepoint.__aexit__(None, None, None)


async def _restore_setting(conn: Any, sql: str) -> None:
    """Run ``sql`` (the enclosing tenant's setting) to its end, even when the
    task is cancelled meanwhile; the cancellation is raised afterwards.

    ``conn`` is asyncpg's: the shielded statement runs in a task of its own,
    which pwasyncio would give another connection. Where the setting cannot
    be put back on a transaction still usable, the connection is closed:
    better a failing request than statements in the wrong tenant.
    """
    running = asyncio.ensure_future(conn.execute(sql))
    cancelled: BaseException | None = None
    while not running.done():
        try:
            await asyncio.shield(running)
        except asyncio.CancelledError as exc:
            cancelled = exc  # shield() gave up waiting; the statement goes on
    failure = None if running.cancelled() else running.exception()
    if running.cancelled() or (
        failure is not None and getattr(failure, "sqlstate", None) != _IN_FAILED_TRANSACTION
    ):
        # In a failed transaction nothing runs until the rollback: no
        # statement can read with the wrong tenant. Anything else, close it.
        conn.terminate()
    if cancelled is not None:
        raise cancelled


# SQLSTATE of "current transaction is aborted, commands ignored until end of
# transaction block"
_IN_FAILED_TRANSACTION = "25P02"


class _TenantTransaction(AsyncPgAtomic):
    """The outermost async context: BEGIN and the tenant setting in one message.

    pwasyncio begins with asyncpg's ``Transaction.start()`` (BEGIN: a round
    trip) and the setting would be a second; on asyncio a round trip costs
    ~100 us here, a tenth of a one-read request. This sends ``BEGIN; SELECT
    set_config(...)`` on the simple protocol and then records the transaction
    where ``start()`` would have (the connection's ``_top_xact``, the
    transaction's state): savepoints (nested ``db.atomic()``),
    ``db.iterate()``, COMMIT and ROLLBACK go through asyncpg as before. Those
    are asyncpg internals, so where they are not what this expects it falls
    back to ``start()`` and the setting on its own.
    """

    def __init__(self, db: Any, tenant_id: str) -> None:
        super().__init__(db)
        self._tenant_id = tenant_id

    async def _abegin(self) -> Any:  # also after a commit() inside the block
        conn = await self.db.aconnect()
        await _detect_citus(self.db, conn.conn)
        self._setting = rls.tenant_setting_literal_for(self.db, self._tenant_id)
        tx = conn.conn.transaction()
        # peewee's own error types, as pwasyncio's _abegin raises them
        with _exception_wrapper:
            if not await _begin_with(tx, self._setting):
                await tx.start()
                await conn.conn.execute(self._setting)
        self._tx = tx
        return tx


async def _begin_with(tx: Any, setting: str) -> bool:
    """``start()`` for an outermost asyncpg transaction, with ``setting`` in
    the same message; False (nothing sent) where asyncpg is not as expected."""
    con: Any = getattr(tx, "_connection", None)
    if (
        _TransactionState is None
        or getattr(tx, "_state", None) is not _TransactionState.NEW
        or getattr(con, "_top_xact", False) is not None
        or con.is_in_transaction()
    ):
        return False
    con._top_xact = tx
    try:
        await con.execute(f"BEGIN; {setting}")
    except BaseException:
        con._top_xact = None
        tx._state = _TransactionState.FAILED
        # Always, not only when is_in_transaction() says so: cancelled (a
        # timeout) while the message was in flight, asyncpg has not seen the
        # server's reply yet, and the transaction - with this tenant's
        # setting - may well be open. Shielded, so the same cancellation
        # cannot stop it; a ROLLBACK with nothing open is a warning.
        with suppress(Exception):
            await asyncio.shield(con.execute("ROLLBACK"))
        raise
    tx._state = _TransactionState.STARTED
    return True


async def _set_tenant(db: Any, tenant_id: str) -> None:
    # One round trip on asyncpg's simple protocol, where the parameterised
    # aexecute_sql is two (prepare, execute). The task's own connection,
    # idle here: nothing else of this task can be using it.
    wrapper = await db.aconnect()
    await _detect_citus(db, wrapper.conn)
    await wrapper.conn.execute(rls.tenant_setting_literal_for(db, tenant_id))


async def _detect_citus(db: Any, conn: Any) -> None:
    """Ask once per database whether it is Citus (``database.citus``): on the
    asyncpg connection, since the sync ``is_citus`` cannot run here."""
    if known_citus(db) is None:
        remember_citus(db, bool(await conn.fetchval(DETECT_SQL)))
