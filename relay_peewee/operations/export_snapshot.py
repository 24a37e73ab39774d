"""Worker connections that read exactly what the exporting connection reads.

A parallel export (``parallel_export``) reads tables on connections of its
own; each must see the rows the main connection sees - the same moment
(one snapshot) and the same tenants (the same role, past row-level
security) - or the file would not be one tenant at one moment.

* PostgreSQL: the main transaction (REPEATABLE READ) exports its snapshot;
  a worker connects as the main connection did - to the admin database
  when ``bypass_scope`` moved there, else to the database itself, with the
  same parameters, past any pool - begins REPEATABLE READ, imports the
  snapshot, and switches to the main connection's role when that one had
  switched (``SET LOCAL ROLE relay_admin``, ``bypass_scope``'s opt-in path).
* SQLite: connections to the same file, in worker processes
  (``export_processes``: threads do not pay on SQLite). A write lock
  (``BEGIN IMMEDIATE`` on a connection apart) is held from before the main
  connection's first read until every worker has read once, so no commit
  can land between their snapshots; writers wait only for that moment.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from peewee import Database, SqliteDatabase
from playhouse.pool import PooledDatabase

from ..database import admin_database
from ..database.quoting import quote
from .parallel_export import Connections

__all__ = ["SqliteSnapshot", "postgres_connections", "sqlite_in_memory"]

# How long the SQLite write lock is waited for; past it the export runs serially.
_LOCK_WAIT_MS = 2000


def _raw(source: Database) -> tuple[Callable[[], Any], Callable[[Any], None]]:
    """``source``'s own connect and close (its driver parameters, pragmas), past a pool:
    a worker's connection is closed, not handed to the next request."""
    if isinstance(source, PooledDatabase):
        base: Any = super(PooledDatabase, source)
        return base._connect, base._close
    return source._connect, source._close  # type: ignore[attr-defined]


def _cancel(conn: Any) -> None:
    # psycopg 3.2+ has cancel_safe (cancel is deprecated there); psycopg2 has cancel.
    (getattr(conn, "cancel_safe", None) or conn.cancel)()


def postgres_connections(db: Database, snapshot: str, on_admin: bool) -> Connections:
    """Workers onto ``snapshot`` (``pg_export_snapshot()`` of the main transaction),
    as the role the main connection reads as now; run inside that transaction.

    ``on_admin``: the main thread runs on its own connection to the admin
    database (``bypass_scope``) rather than on ``db``'s.
    """
    current, session = db.execute_sql("SELECT current_user, session_user").fetchone()
    source = admin_database(db) if on_admin else db
    assert source is not None
    connect, close = _raw(source)
    literal = "'" + snapshot.replace("'", "''") + "'"
    setup = [
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        f"SET TRANSACTION SNAPSHOT {literal}",
    ]
    if current != session:  # the main connection switched roles (SET LOCAL ROLE)
        setup.append(f"SET LOCAL ROLE {quote(str(current))}")
    # As _snapshot sets them for the main connection: the format's encoding.
    setup += ["SET LOCAL TimeZone = 'UTC'", "SET LOCAL extra_float_digits = 1"]
    sql = "; ".join(setup)

    def open_worker() -> Any:
        conn = connect()
        try:
            cursor = conn.cursor()
            cursor.execute(sql)
            cursor.close()
        except BaseException:
            with suppress(Exception):
                close(conn)
            raise
        return conn

    # Closing the connection ends its (read-only) transaction.
    return Connections(open=open_worker, close=close, cancel=_cancel)


def sqlite_in_memory(db: SqliteDatabase) -> bool:
    """An in-memory database: no other connection sees its rows."""
    name = str(db.database)
    return name in ("", ":memory:") or "mode=memory" in name


class SqliteSnapshot:
    """The write lock that puts every reader's snapshot at one moment."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        self.lock: sqlite3.Connection | None = None
        self.guard = threading.Lock()  # released by a worker or by the main thread

    def acquire(self) -> bool:
        """Take the write lock; False when another writer keeps it (export serially then)."""
        # A plain connection: it takes a lock and reads nothing. Released by
        # whichever worker pins its snapshot last, hence check_same_thread off.
        uri = bool(self.db.connect_params.get("uri", False))
        conn = sqlite3.connect(
            self.db.database, isolation_level=None, check_same_thread=False, uri=uri
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {_LOCK_WAIT_MS}")
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:  # locked, or a read-only file
            conn.close()
            return False
        self.lock = conn
        return True

    def release(self) -> None:
        with self.guard:
            conn, self.lock = self.lock, None
        if conn is not None:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            conn.close()
