"""``postgresql+pool://`` and ``psycopg3+pool://``: pools of PostgreSQL
connections reset before a request uses them again."""

from __future__ import annotations

import contextlib
import logging
import select
from typing import Any

from peewee import Database, Psycopg3Adapter
from playhouse.pool import PooledPostgresqlDatabase, _PooledPostgresqlDatabase

from .deferred_begin import _runs_alone

__all__ = ["SessionResettingMixin", "SessionResettingPool", "resetting_class"]

logger = logging.getLogger(__name__)


# What DISCARD ALL does, as statements that may share a query string (DISCARD
# ALL itself may not: it refuses to run in the string's implicit transaction).
_RESET = (
    "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; DEALLOCATE ALL; "
    "UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; "
    "DISCARD SEQUENCES"
)


class SessionResettingMixin:
    """Every connection of a playhouse PostgreSQL pool is reset before it is used again.

    A pooled connection outlives the request that used it. ``tenant_context``
    sets its tenant transaction-locally, but raw SQL can set a session-level
    tenant (``set_config(..., false)``), ``SET ROLE``, or leave temporary
    tables and prepared statements behind; the next checkout would inherit
    them. ``DISCARD ALL`` drops all of it (and ``SET SESSION AUTHORIZATION
    DEFAULT`` undoes any role switch).

    When: not at check-in, which would cost every request a round trip of
    its own (about 80 us, a tenth of a one-query page), but before the next
    checkout sends anything. playhouse's pool probes every connection it
    hands out with ``SELECT 1`` (``is_connection_closed``), a round trip of
    its own too; this pool skips the probe, and the reset goes out in front
    of the connection's first statement, in the same query string, when
    that statement is a single plain read (``deferred_begin._runs_alone``;
    with a tenant context's ``SET LOCAL`` in front of it, the common first
    statement of a request). What the probe was for - not handing out a
    connection the server closed while it sat in the pool - is checked
    without a round trip: such a connection has the server's last message
    waiting on its socket (``_has_input``), and gets the synchronous reset,
    which fails and replaces it. Anything else first - a write, ``BEGIN``,
    a server-side cursor, a raw ``db.cursor()`` or ``db.connection()`` -
    gets the reset, which is also the probe, as a ``DISCARD ALL`` of its
    own before it. A statement that opens the connection itself (peewee's
    autoconnect, no ``db.connect()`` first) is treated the same way, and
    raw code turning the driver's ``autocommit`` off is undone at checkout.
    So a request pays the round trips it pays on plain peewee, less the
    probe.

    Nothing but its next checkout uses a pooled connection, so the state
    never reaches another request; what it holds on the server (a session
    advisory lock, a ``LISTEN``) is let go when the connection is next used
    or closed. A transaction left open is rolled back at check-in (peewee's
    own) and at checkout. Two kinds of pool send ``DISCARD ALL`` at
    checkout, before the connection is handed out: psycopg 3's (it binds
    parameters on the server, one statement per message) and one whose
    class sets up each connection in ``_initialize_connection``.
    """

    # No __slots__, not even empty ones: a mixin with slots changes the
    # object layout, and a pool the app built could not take the class on.
    _adapter: Any
    _state: Any

    @property
    def _unreset(self) -> set[int]:
        # ids of idle-then-handed-out connections whose reset has not gone
        # out yet. A set on the pool: a driver connection takes no attributes.
        found: set[int] | None = self.__dict__.get("_relay_unreset")
        if found is None:
            found = self.__dict__.setdefault("_relay_unreset", set())
        return found

    def _is_closed(self, conn: Any) -> bool:
        # In place of playhouse's probe (_PooledPostgresqlDatabase._is_closed).
        if conn.closed:
            return True
        adapter = self._adapter
        status = adapter.txn_status(conn)
        if status == adapter.txn_unknown:
            return True
        # Reset now, before it is handed out: a transaction left open (it
        # must be rolled back first), psycopg 3 (one statement per message),
        # a pool with its own per-connection setup.
        eager = isinstance(adapter, Psycopg3Adapter) or _sets_up_sessions(self)
        if status != adapter.txn_idle or eager:
            return not self._reset(conn)
        # peewee's own mode: raw code may have turned it off, and the reset
        # riding on a read would not turn it back on (no round trip: it is
        # the driver's flag while the connection is idle).
        conn.autocommit = True
        self._unreset.add(id(conn))  # reset with, or before, its first statement
        return False

    def _reset(self, conn: Any) -> bool:
        """Roll back, ``DISCARD ALL``: whether the connection is usable."""
        self._unreset.discard(id(conn))
        adapter = self._adapter
        try:
            if adapter.txn_status(conn) != adapter.txn_idle:
                adapter.rollback(conn)
            conn.autocommit = True  # peewee's own mode; raw code may have changed it
            with conn.cursor() as cursor:
                cursor.execute("DISCARD ALL")
        except Exception:
            if not conn.closed:  # alive but refusing: not a connection to hand out
                logger.warning("could not reset a pooled connection; closing it", exc_info=True)
            with contextlib.suppress(Exception):
                conn.close()  # the pool only drops it: closed here, not left to the GC
            return False
        return True

    def _usable(self) -> Any:
        """The thread's connection, reset if it was not yet: replaced if it is dead."""
        conn = self._state.conn
        while conn is not None and id(conn) in self._unreset and not self._reset(conn):
            conn = self._replace(conn)
        return conn

    def _replace(self, conn: Any) -> Any:
        """Swap the thread's dead connection for another from the pool.

        Only the connection: the thread's transaction blocks stay, since
        nothing of them reached the dead one's server yet (this runs only
        before a checkout's first statement).
        """
        self._close(conn, close_conn=True)  # type: ignore[attr-defined]
        fresh = self._connect()  # type: ignore[attr-defined]
        self._state.conn = fresh
        return fresh

    def _close_raw(self, conn: Any) -> None:
        self._unreset.discard(id(conn))
        super()._close_raw(conn)  # type: ignore[misc]

    def _open(self) -> None:
        # peewee's autoconnect: the connection a statement would open by
        # itself is opened here, so that its reset is not skipped.
        if self._state.closed and getattr(self, "autoconnect", True):
            self.connect()  # type: ignore[attr-defined]

    def connection(self) -> Any:
        super().connection()  # type: ignore[misc]
        return self._usable()

    def cursor(self, named_cursor: Any = None) -> Any:
        self._open()
        self._usable()
        return super().cursor(named_cursor)  # type: ignore[misc]

    def execute_sql(self, sql: str, params: Any = None, **options: Any) -> Any:
        self._open()
        conn = self._state.conn
        if (
            conn is None
            or id(conn) not in self._unreset
            or options  # a named (server-side) cursor: DECLARE takes one statement
            or not _single_read(sql)
            or _has_input(conn)
        ):
            # cursor() resets it on its own first, when that is still to do.
            return super().execute_sql(sql, params, **options)  # type: ignore[misc]
        self._unreset.discard(id(conn))
        try:
            return super().execute_sql(f"{_RESET}; {sql}", params, **options)  # type: ignore[misc]
        except BaseException:
            # The reset rolled back with the failed read: it goes out again
            # (or, on a connection that died meanwhile, the pool drops it).
            # Not sent again elsewhere: a read may have run before the
            # connection died (nextval(), a function with effects).
            self._unreset.add(id(conn))
            raise


def _has_input(conn: Any) -> bool:
    """Whether the server has sent an idle connection something.

    What the skipped ``SELECT 1`` probe was for, without a round trip: a
    connection the server closed while it sat in the pool (idle timeout,
    ``pg_terminate_backend``, a restart) has its error message or the end
    of the stream waiting on the socket, as has one with a notification
    pending. Such a connection gets the synchronous reset, which replaces
    it when it is dead.
    """
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _sets_up_sessions(db: Any) -> bool:
    # An app's _initialize_connection (peewee's per-connection hook: SET
    # search_path, say) runs right after every checkout: a reset after it
    # would undo it, so such a pool resets before handing the connection out.
    # (The hook is missing from peewee's stubs.)
    hook = getattr(Database, "_initialize_connection")  # noqa: B009
    return getattr(type(db), "_initialize_connection", hook) is not hook


def _single_read(sql: str) -> bool:
    """One plain read, maybe behind a ``SET LOCAL``: it may carry the reset
    (and, failing, roll it back with nothing else of the request's done)."""
    if sql.startswith("SET LOCAL "):
        _setting, sep, sql = sql.partition("; ")
        if not sep:
            return False
    return ";" not in sql and _runs_alone(sql)


class SessionResettingPool(SessionResettingMixin, PooledPostgresqlDatabase):
    """``postgresql+pool://``: psycopg2's pool, each connection reset before its next use."""


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
