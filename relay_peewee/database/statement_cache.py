"""asyncio on PostgreSQL: reads through asyncpg's statement cache.

``playhouse.pwasyncio`` runs every statement as ``conn.prepare(sql)`` and
then ``stmt.fetch(...)``: two round trips, and a new server-side prepared
statement each time. asyncpg's own ``conn.fetch(sql, *args)`` keeps prepared
statements in a per-connection cache (``statement_cache_size``, 100 by
default; 0 turns it off) and runs a cached one in a single round trip.

A tenant context on PostgreSQL pays round trips of its own (its transaction
and ``set_config``: ``tenancy.aio``), so ``relay_peewee.connect()`` gives a
pwasyncio PostgreSQL database this path for the statements that only return
rows (``SELECT``). Everything else keeps pwasyncio's path, which reads the
row count of a write from the command status. Extending pwasyncio here, in
one place, rather than upstream: its connection wrapper is built in
``_pool_acquire``, which the database class below overrides.

Safe with row-level security: the tenant is the transaction's setting, read
when a statement runs, never part of a cached statement, and PostgreSQL
re-plans a cached statement for another role. A statement whose result
columns a schema change altered is re-prepared by asyncpg (outside a
transaction; inside one the error reaches the caller once, as in any asyncpg
application); peewee names every column it selects, so adding columns to a
table does not touch it.
"""

from __future__ import annotations

from typing import Any

from playhouse.pwasyncio import AsyncPostgresqlConnection, AsyncPostgresqlDatabase, CursorAdapter

__all__ = ["CachedReadsConnection", "CachedReadsMixin", "with_cached_reads"]


class CachedReadsConnection(AsyncPostgresqlConnection):
    """pwasyncio's asyncpg connection wrapper, ``SELECT`` through the statement cache."""

    async def _execute(self, sql: str, params: Any = None) -> Any:
        # Only a statement that returns its rows: `SELECT ... INTO t` returns
        # none, and its row count is in the status, which fetch() drops.
        if sql[:6].upper() != "SELECT" or " INTO " in sql.upper():
            return await super()._execute(sql, params)
        if params:
            sql = self._translate_placeholders(sql)
        records = await self.conn.fetch(sql, *(params or ()))
        # As pwasyncio builds it: column names from the first row, and the
        # row count a SELECT's command status would give.
        # (.keys(): iterating an asyncpg Record yields its values)
        description = [(name,) for name in records[0].keys()] if records else []  # noqa: SIM118
        return CursorAdapter(records, rowcount=len(records), description=description)


class CachedReadsMixin:
    """An ``AsyncPostgresqlDatabase`` whose connections are ``CachedReadsConnection``."""

    # No __slots__, not even empty ones: a mixin with slots changes the
    # object layout, and an opened database could not take it on.

    async def _pool_acquire(self, pool: Any) -> Any:
        wrapper = await super()._pool_acquire(pool)  # type: ignore[misc]
        return CachedReadsConnection(wrapper.conn)


_classes: dict[type, type] = {}


def with_cached_reads(db: Any) -> Any:
    """``db`` with ``CachedReadsMixin`` when it is a pwasyncio PostgreSQL database.

    The instance keeps its identity and settings; only its class changes (to
    a subclass built once per class), so models bound to it stay bound.
    """
    cls = type(db)
    if not isinstance(db, AsyncPostgresqlDatabase) or isinstance(db, CachedReadsMixin):
        return db
    cached = _classes.get(cls)
    if cached is None:
        cached = _classes[cls] = type(cls.__name__, (CachedReadsMixin, cls), {})
    db.__class__ = cached
    return db
