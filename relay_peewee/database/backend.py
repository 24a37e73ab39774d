"""Which backend and driver a database is, and the driver's own ways of saying things.

Everything here reads a database object or a driver error; nothing opens a
connection. It sits below every other module of the package that asks
"PostgreSQL or SQLite?", so the answer is given one way.
"""

from __future__ import annotations

from typing import Any

from peewee import Database, DatabaseProxy, PostgresqlDatabase, Psycopg3Adapter, SqliteDatabase

from ..errors import ConfigurationError

__all__ = [
    "POSTGRES_DRIVERS",
    "is_postgres",
    "is_sqlite",
    "mogrify",
    "postgres_driver",
    "sqlstate",
    "unwrap",
]

# PostgreSQL driver -> the module it imports. peewee 4 speaks both: a
# ``postgresql://`` URL uses psycopg2 when it is installed and psycopg 3
# otherwise; ``psycopg3://`` always uses psycopg 3.
POSTGRES_DRIVERS = {"psycopg2": "psycopg2", "psycopg3": "psycopg"}


def postgres_driver(db: Database | DatabaseProxy) -> str:
    """``"psycopg2"`` or ``"psycopg3"``: the driver a PostgreSQL database uses."""
    adapter = getattr(unwrap(db), "_adapter", None)  # peewee 4 picks it in init()
    return "psycopg3" if isinstance(adapter, Psycopg3Adapter) else "psycopg2"


def sqlstate(exc: BaseException | None) -> str | None:
    """The PostgreSQL SQLSTATE of a driver error, or of the one peewee wrapped.

    psycopg2 calls it ``pgcode``, psycopg 3 ``sqlstate``; peewee re-raises
    either as its own exception type while handling the original, which is
    then ``__context__``. None for SQLite and non-database errors.
    """
    for candidate in (exc, getattr(exc, "__context__", None)):
        code = getattr(candidate, "pgcode", None) or getattr(candidate, "sqlstate", None)
        if isinstance(code, str):
            return code
    return None


def mogrify(db: Database, sql: str, params: Any) -> str:
    """``sql`` with ``params`` bound as PostgreSQL literals, by the driver itself.

    psycopg2 cursors have ``mogrify``; psycopg 3 binds on the server and
    leaves client-side binding to its ``ClientCursor``.
    """
    conn = unwrap(db).connection()
    if postgres_driver(db) == "psycopg3":
        from psycopg import ClientCursor

        return ClientCursor(conn).mogrify(sql, params)
    rendered = conn.cursor().mogrify(sql, params)
    return rendered.decode() if isinstance(rendered, bytes) else str(rendered)


def unwrap(db: Database | DatabaseProxy) -> Database:
    """The real database behind a proxy."""
    if isinstance(db, DatabaseProxy):
        if db.obj is None:
            raise ConfigurationError("no database: call relay_peewee.connect(url) first")
        return db.obj
    return db


def is_postgres(db: Database | DatabaseProxy) -> bool:
    return isinstance(unwrap(db), PostgresqlDatabase)


def is_sqlite(db: Database | DatabaseProxy) -> bool:
    return isinstance(unwrap(db), SqliteDatabase)
