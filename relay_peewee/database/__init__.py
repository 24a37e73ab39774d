"""The database layer: how a database is opened and what its connections send.

``connect`` opens a database from a URL and binds the models to it;
``backend`` answers "PostgreSQL or SQLite, which driver?"; ``pool`` is the
pool that resets a connection as it hands it out. Three modules are imported by
their full path only, so that ``import relay_peewee`` does not pay for
them: ``deferred_begin`` (a tenant context's BEGIN sent with its first
statement), ``statement_cache`` (asyncio reads through asyncpg's cache) and
``catalog`` (what the live database says about a table).
"""

from __future__ import annotations

from .backend import (
    POSTGRES_DRIVERS,
    is_postgres,
    is_sqlite,
    mogrify,
    postgres_driver,
    sqlstate,
    unwrap,
)
from .connect import (
    ADMIN_URL_ENV,
    DEFAULT_URL,
    admin_database,
    connect,
    database_proxy,
    open_database,
    resolve_url,
    set_admin_database,
    sqlite_memory_copy,
    sqlite_path,
)
from .pool import SessionResettingPool

__all__ = [
    "ADMIN_URL_ENV",
    "DEFAULT_URL",
    "POSTGRES_DRIVERS",
    "SessionResettingPool",
    "admin_database",
    "connect",
    "database_proxy",
    "is_postgres",
    "is_sqlite",
    "mogrify",
    "open_database",
    "postgres_driver",
    "resolve_url",
    "set_admin_database",
    "sqlite_memory_copy",
    "sqlite_path",
    "sqlstate",
    "unwrap",
]
