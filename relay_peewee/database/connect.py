"""Opening a database from a URL and binding every model to it.

All models are declared against ``database_proxy``; ``connect()`` opens the
real database (through ``playhouse.db_url``) and points the proxy at it, so
an application and the CLI configure the models the same way.

Two things a multi-tenant application needs from its connections are chosen
here too: ``postgresql+pool://`` opens a pool that resets every connection's
session state when it is handed out (``pool.resetting_class``; so do
``psycopg3+pool://`` and ``postgresqlext+pool://``), and
``connect(url, admin_url=...)`` names the connection ``unscoped()`` opens
to see every tenant, so the application role itself never needs a way out.
"""

from __future__ import annotations

import importlib.util
import os
import weakref
from typing import Any
from urllib.parse import parse_qs, urlparse

from peewee import Database, DatabaseProxy, PostgresqlDatabase, SqliteDatabase
from playhouse import db_url

from ..errors import ConfigurationError
from .backend import POSTGRES_DRIVERS
from .citus import is_citus
from .deferred_begin import deferred_class
from .pool import resetting_class
from .request_connection import request_class, with_request_class

__all__ = [
    "ADMIN_URL_ENV",
    "DEFAULT_URL",
    "admin_database",
    "connect",
    "database_proxy",
    "open_database",
    "resolve_url",
    "set_admin_database",
    "sqlite_memory_copy",
    "sqlite_path",
]

DEFAULT_URL = "sqlite:///relay.db"
# Where connect() finds the URL of unscoped()'s own connection when not given it.
ADMIN_URL_ENV = "RELAY_ADMIN_DATABASE_URL"

# SQLite enforces foreign keys only when asked to, per connection. Without
# this pragma a row pointing at a missing tenant would be accepted silently.
SQLITE_PRAGMAS = {"foreign_keys": 1}
# How long a connection waits for another writer's lock. Given to peewee as
# its own `timeout`, not as a busy_timeout pragma: db.timeout then says what
# is in force, and a value set through it survives a reconnect (the pragma
# would put its own back on every new connection).
SQLITE_TIMEOUT = 10.0

database_proxy = DatabaseProxy()

# Application database -> the database unscoped() connects to (admin role).
_admin_databases: weakref.WeakKeyDictionary[Database, Database] = weakref.WeakKeyDictionary()


def resolve_url(url: str | None = None) -> str:
    """The URL to use: the argument, else ``$DATABASE_URL``, else the default.

    An empty string is an error, not "use the default": ``--database ""``
    (an unset shell variable, most likely) must not create ``./relay.db``.
    """
    if url is not None and not url.strip():
        raise ConfigurationError("the database URL is empty (sqlite:///path.db, postgresql://...)")
    if url:
        return url
    env = os.environ.get("DATABASE_URL")
    if env is not None and not env.strip():
        raise ConfigurationError("DATABASE_URL is set but empty")
    return env or DEFAULT_URL


def sqlite_path(url: str | None) -> str | None:
    """The file a ``sqlite://`` URL names, or None for other URLs and ``:memory:``."""
    url = resolve_url(url)
    if not url.startswith("sqlite://"):
        return None
    # playhouse reads an empty path as ":memory:"; a user who typed
    # "sqlite:///" meant a file, so the path is taken from the URL itself.
    path = url[len("sqlite://") :]
    path = path[1:] if path.startswith("/") else path
    if not path:
        raise ConfigurationError(f"database URL {url!r} names no file (sqlite:///path.db)")
    return None if path == ":memory:" else path


def open_database(url: str | None = None, *, must_exist: bool = False) -> Database:
    """Open (but do not bind) the database a URL names.

    ``must_exist``: refuse a SQLite path with no file rather than create one.
    """
    url = resolve_url(url)
    shown = _redact(url)
    path = sqlite_path(url)
    if must_exist and path is not None and not os.path.exists(path):
        raise ConfigurationError(f"no such database file: {path}")
    try:
        scheme = urlparse(url).scheme
    except ValueError as exc:  # e.g. an unbalanced IPv6 bracket
        raise ConfigurationError(f"malformed database URL {shown!r}: {exc}") from None
    db_class = db_url.schemes.get(scheme)
    if db_class is None:
        known = ", ".join(sorted(s for s in db_url.schemes if "+" not in s))
        raise ConfigurationError(
            f"unsupported database URL {shown!r}: scheme {scheme!r} is not one of {known}"
        )
    kwargs: dict[str, Any] = {}
    if issubclass(db_class, SqliteDatabase):
        kwargs["pragmas"] = dict(SQLITE_PRAGMAS)
        if "timeout" not in parse_qs(urlparse(url).query):  # the URL's own wins
            kwargs["timeout"] = SQLITE_TIMEOUT
    elif issubclass(db_class, PostgresqlDatabase):
        _require_driver(scheme)
    try:
        target = resetting_class(db_class)
        # PostgreSQL: a tenant context's BEGIN rides on its first statement
        # (deferred_begin). Built with the URL's parameters rather than
        # registered in playhouse's scheme table, which is everyone's.
        target = deferred_class(target)
        # A request's connection is the middleware's (request_connection).
        target = request_class(target)
        if target is db_class:
            db: Database = db_url.connect(url, **kwargs)
        else:
            db_url.connect(url, **kwargs)  # its checks of the URL, nothing opened
            db = target(**{**db_url.parse(url), **kwargs})
    except (ImportError, RuntimeError, ValueError) as exc:
        detail = str(exc).replace(url, shown)
        raise ConfigurationError(f"cannot open {shown!r}: {detail}") from None
    try:
        db.connect(reuse_if_open=True)
    except Exception as exc:  # the driver's own error type varies
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigurationError(f"cannot connect to {_redact(url)}: {first_line}") from None
    if isinstance(db, PostgresqlDatabase):
        is_citus(db)  # asked now, once, so that no tenant context pays for it
    return db


def sqlite_memory_copy(db: SqliteDatabase) -> SqliteDatabase:
    """An in-memory copy of a SQLite database, opened with the same pragmas.

    For "what would happen" runs: they change the copy, never the file, so
    they need no write access and take no write lock (SQLite's backup API
    only reads the source)."""
    copy = SqliteDatabase(":memory:", pragmas=dict(SQLITE_PRAGMAS), timeout=SQLITE_TIMEOUT)
    copy.connect()
    db.connection().backup(copy.connection())
    return copy


def connect(url: str | Database | None = None, *, admin_url: str | None = None) -> Database:
    """Open the database and bind every relay_peewee model (and TenantModel) to it.

    ``url`` may also be a database opened by the application, e.g. a
    ``playhouse.pwasyncio`` ``AsyncPostgresqlDatabase`` or
    ``AsyncSqliteDatabase`` (``pragmas={"foreign_keys": 1}`` on SQLite): it is
    bound as it is, and connects on its first query; on PostgreSQL its reads
    go through asyncpg's statement cache (``statement_cache``).

    ``admin_url`` (else ``$RELAY_ADMIN_DATABASE_URL``) is the database as a
    role that bypasses row-level security (``relay_admin``): ``unscoped()``
    opens its own connection there, so the application role needs no way
    out of its tenant. Checked now, connected only while ``unscoped`` runs.
    """
    if isinstance(url, Database):
        db = with_request_class(_resetting_sessions(url))
    else:
        db = open_database(url)
        if db.database != ":memory:":  # an in-memory database lives as long as its connection
            # Checked; not left open in this (the importing) thread, where
            # the app's own db.connect() would find it.
            db.close()
    if hasattr(db, "aexecute_sql") and isinstance(db, PostgresqlDatabase):
        # playhouse.pwasyncio (already imported: the caller built db with it)
        from .statement_cache import with_cached_reads

        with_cached_reads(db)
    admin_url = admin_url or os.environ.get(ADMIN_URL_ENV)
    if admin_url:
        admin = open_database(admin_url)
        admin.close()
        _admin_databases[db] = admin
    database_proxy.initialize(db)
    return db


def _resetting_sessions(db: Database) -> Database:
    """A bare playhouse PostgreSQL pool the app built, made to reset sessions.

    Without it a pooled connection carries a session-level tenant setting,
    a ``SET ROLE`` or a temporary table into whichever request gets it next;
    ``postgresql+pool://`` and ``psycopg3+pool://`` open resetting pools
    already. The instance keeps its identity and settings; only its class
    changes (playhouse's own pool classes only: an app's subclasses are the
    app's to reset).
    """
    if type(db).__module__.startswith("playhouse."):
        db.__class__ = resetting_class(type(db))
    return db


def admin_database(db: Database) -> Database | None:
    """The database ``unscoped()`` connects to for ``db``, if one was given."""
    return _admin_databases.get(db)


def set_admin_database(db: Database, admin: Database | None) -> None:
    """Name (or, with None, forget) the admin database ``unscoped()`` uses for ``db``."""
    if admin is None:
        _admin_databases.pop(db, None)
    else:
        _admin_databases[db] = admin


def _require_driver(scheme: str) -> None:
    wanted = ["psycopg3"] if scheme.startswith("psycopg3") else ["psycopg2", "psycopg3"]
    if not any(importlib.util.find_spec(POSTGRES_DRIVERS[d]) for d in wanted):
        raise ConfigurationError(
            "PostgreSQL needs a driver: pip install 'relay_peewee[psycopg3]' (psycopg 3) "
            "or 'relay_peewee[postgres]' (psycopg2)"
            if len(wanted) > 1
            else "psycopg3:// needs psycopg 3: pip install 'relay_peewee[psycopg3]'"
        )


def _redact(url: str) -> str:
    """The URL with its password, if any, replaced by ***."""
    try:
        password = urlparse(url).password
    except ValueError:
        password = None
    if password:
        return url.replace(f":{password}@", ":***@")
    return url
