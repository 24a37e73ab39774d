"""``postgresql+pool://`` and ``psycopg3+pool://``: pools of PostgreSQL
connections reset when they are handed out."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from peewee import Database
from playhouse.pool import PooledPostgresqlDatabase, _PooledPostgresqlDatabase

__all__ = ["SessionResettingMixin", "SessionResettingPool", "resetting_class"]

logger = logging.getLogger(__name__)


class SessionResettingMixin:
    """Every connection of a playhouse PostgreSQL pool is reset when it is checked out.

    A pooled connection outlives the request that used it. ``tenant_context``
    sets its tenant transaction-locally, but raw SQL can set a session-level
    tenant (``set_config(..., false)``), ``SET ROLE``, or leave temporary
    tables and prepared statements behind; the next checkout would inherit
    them. ``DISCARD ALL`` drops all of it (and ``SET SESSION AUTHORIZATION
    DEFAULT`` undoes any role switch).

    Why at checkout and not at check-in: peewee's pool already spends a
    round trip on every checkout, probing an idle connection with
    ``SELECT 1`` (``is_connection_closed``) so that a dead one is not handed
    out. ``DISCARD ALL`` is that probe and the reset in one: a request pays
    the round trip plain peewee pays, where a reset at check-in was one
    more (about 80 us, a tenth of a one-query page). Nothing but the next
    checkout can use a pooled connection, so the state never reaches
    another request; what it holds on the server (a session advisory lock,
    a ``LISTEN``) is let go when the connection is next handed out or closed.
    ``DISCARD ALL`` cannot run inside a transaction, so one left open is
    rolled back first (peewee's check-in does that already); a connection
    that cannot be reset is closed, not handed out. Both drivers'
    connections have ``autocommit`` and context-managed cursors, so one
    mixin serves psycopg2's pool and psycopg 3's.
    """

    # No __slots__, not even empty ones: a mixin with slots changes the
    # object layout, and a pool the app built could not take the class on.
    _adapter: Any

    def _is_closed(self, conn: Any) -> bool:
        # In place of playhouse's probe (_PooledPostgresqlDatabase._is_closed).
        if conn.closed:
            return True
        adapter = self._adapter
        status = adapter.txn_status(conn)
        if status == adapter.txn_unknown:
            return True
        try:
            if status != adapter.txn_idle:
                adapter.rollback(conn)
            conn.autocommit = True  # peewee's own mode; raw code may have changed it
            with conn.cursor() as cursor:
                cursor.execute("DISCARD ALL")
        except Exception:
            logger.warning("could not reset a pooled connection; closing it", exc_info=True)
            with contextlib.suppress(Exception):
                conn.close()  # the pool only drops it: closed here, not left to the GC
            return True
        return False


class SessionResettingPool(SessionResettingMixin, PooledPostgresqlDatabase):
    """``postgresql+pool://``: psycopg2's pool, reset on checkout."""


_classes: dict[type[Database], type[Database]] = {PooledPostgresqlDatabase: SessionResettingPool}


def resetting_class(db_class: type[Database]) -> type[Database]:
    """``db_class`` resetting sessions on checkout, when it is one of
    playhouse's PostgreSQL pools (``postgresql+pool``, ``psycopg3+pool``,
    ``postgresqlext+pool``); any other class unchanged."""
    if not issubclass(db_class, _PooledPostgresqlDatabase) or issubclass(
        db_class, SessionResettingMixin
    ):
        return db_class
    cls = _classes.get(db_class)
    if cls is None:
        cls = _classes[db_class] = type(db_class.__name__, (SessionResettingMixin, db_class), {})
    return cls
