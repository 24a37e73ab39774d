"""``postgresql+pool://`` and ``psycopg3+pool://``: pools of PostgreSQL
connections reset on check-in."""

from __future__ import annotations

import logging
from typing import Any

from peewee import Database
from playhouse.pool import PooledPostgresqlDatabase, _PooledPostgresqlDatabase

__all__ = ["SessionResettingMixin", "SessionResettingPool", "resetting_class"]

logger = logging.getLogger(__name__)


class SessionResettingMixin:
    """Every connection of a playhouse PostgreSQL pool is reset when it is checked in.

    A pooled connection outlives the request that used it. ``tenant_context``
    sets its tenant transaction-locally, but raw SQL can set a session-level
    tenant (``set_config(..., false)``), ``SET ROLE``, or leave temporary
    tables and prepared statements behind; the next checkout would inherit
    them. ``DISCARD ALL`` drops all of it (and ``SET SESSION AUTHORIZATION
    DEFAULT`` undoes any role switch). It cannot run inside a transaction,
    so peewee's own check-in (which rolls back what was left open) runs
    first; a connection that cannot be reset is closed, not pooled. Both
    drivers' connections have ``autocommit`` and context-managed cursors, so
    one mixin serves psycopg2's pool and psycopg 3's.
    """

    # No __slots__, not even empty ones: a mixin with slots changes the
    # object layout, and a pool the app built could not take the class on.

    def _can_reuse(self, conn: Any) -> bool:
        if not super()._can_reuse(conn):  # type: ignore[misc]
            return False
        autocommit = conn.autocommit
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute("DISCARD ALL")
        except Exception:
            logger.warning("could not reset a pooled connection; closing it", exc_info=True)
            return False
        finally:
            try:
                conn.autocommit = autocommit
            except Exception:
                return False
        return True


class SessionResettingPool(SessionResettingMixin, PooledPostgresqlDatabase):
    """``postgresql+pool://``: psycopg2's pool, reset on check-in."""


_classes: dict[type[Database], type[Database]] = {PooledPostgresqlDatabase: SessionResettingPool}


def resetting_class(db_class: type[Database]) -> type[Database]:
    """``db_class`` resetting sessions on check-in, when it is one of
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
