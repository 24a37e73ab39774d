"""One connection per request: the middleware's, opened clean and given back after the body.

peewee's own web recipes open the connection when a request starts and close
it when it ends (``before_request: db.connect()``, ``teardown_request:
db.close()``, ``playhouse.flask_utils.FlaskDB``). Behind the tenant
middleware the request's tenant context - on PostgreSQL a transaction - is
entered before the app's first hook and left after its last one (after the
body, which may stream), so the app's ``close()`` would find the
transaction open and its ``connect()`` the connection open.

So the middleware owns the request's connection (``request_connection``):
it closes whatever this thread had left open, connects - a new connection,
or one from the pool, reset as it is handed out - before the tenant is
resolved, and closes it (back to the pool) once the context has ended.
In between, ``connect()`` and ``close()`` on the database are no-ops
(``request_class``), so an app written for plain peewee runs
unchanged; outside a request they are peewee's own. Every request therefore
starts on a connection no other request left state on (a session setting,
an open server transaction, a temporary table), and a thread-per-request
server returns each connection to the pool when its request ends.

Which database: the one ``relay_peewee.connect()`` returns (also
``database_proxy.obj``). ``connect()`` gives every database it opens or is
given this class; asyncio databases (``playhouse.pwasyncio``) keep a
connection per task and manage it themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from peewee import Database

__all__ = ["give_back", "request_class", "request_connection", "with_request_class"]

logger = logging.getLogger(__name__)

# Set on the thread's connection state (peewee's ``db._state``, a
# threading.local) while a request owns the connection.
_OWNED = "relay_request_owned"


def _owned(db: Any) -> bool:
    return bool(getattr(db._state, _OWNED, False))


_classes: dict[type[Database], type[Database]] = {}


def request_class(db_class: type[Database]) -> type[Database]:
    """``db_class`` whose ``connect()``/``close()`` are no-ops while a request
    owns the thread's connection (built once per class).

    A direct subclass with the two methods in its own namespace rather than
    a mixin base: CPython refuses to move an instance (``with_request_class``)
    to a class with a second base.
    """
    if getattr(db_class, "relay_request_connections", False) or hasattr(db_class, "aexecute_sql"):
        return db_class
    cls = _classes.get(db_class)
    if cls is not None:
        return cls
    base_connect, base_close = db_class.connect, db_class.close

    def connect(self: Any, reuse_if_open: bool = False) -> bool:
        if not self._state.closed and _owned(self):
            return False  # the middleware connected, and will close
        return bool(base_connect(self, reuse_if_open))

    def close(self: Any) -> bool:
        if _owned(self):
            return False  # closed by the middleware after the response body
        return bool(base_close(self))

    attrs = {
        "__slots__": (),
        "__module__": db_class.__module__,
        "connect": connect,
        "close": close,
        "relay_request_connections": True,
    }
    cls = _classes[db_class] = type(db_class.__name__, (db_class,), attrs)
    return cls


def with_request_class(db: Database) -> Database:
    """``db`` itself, moved to ``request_class``: models bound to it stay bound."""
    cls = request_class(type(db))
    if cls is not type(db):
        db.__class__ = cls
    return db


def _manageable(db: Any) -> bool:
    # An in-memory SQLite database lives exactly as long as its connection.
    in_memory = getattr(db, "database", None) == ":memory:"
    return bool(getattr(db, "relay_request_connections", False)) and not in_memory


@contextmanager
def request_connection(db: Any) -> Iterator[None]:
    """The thread's connection for one request: opened clean, given back on exit.

    Left alone (the request runs on it as it is) when another request on this
    thread owns it already, when a transaction is open on it (a test that
    wraps requests in one), and on databases without the mixin.
    """
    if db is None or not _manageable(db) or _owned(db):
        yield
        return
    if db.in_transaction():
        yield
        return
    if not db.is_closed():
        db.close()  # what this thread did before stays with that connection
    db.connect()
    db._state.relay_request_owned = True
    try:
        yield
    finally:
        db._state.relay_request_owned = False
        give_back(db)


def give_back(db: Any) -> None:
    """Close the thread's connection (a pool checks it in), even with a transaction open.

    A transaction still open here was begun and never ended by the app
    (``db.atomic().__enter__()`` without its exit, an abandoned generator):
    it goes with the connection - rolled back by the pool's check-in, or by
    the server when the connection closes - rather than into the next request.
    """
    if not db.in_transaction():
        db.close()
        return
    logger.warning("a request left a transaction open on its connection; rolling it back")
    state = db._state
    conn = state.conn
    state.reset()
    if conn is not None:
        db._close(conn)
