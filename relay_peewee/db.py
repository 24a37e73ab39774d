"""Opening a database from a URL and binding every model to it.

All models are declared against ``database_proxy``; ``connect()`` opens the
real database (through ``playhouse.db_url``) and points the proxy at it, so
an application and the CLI configure the models the same way.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any
from urllib.parse import urlparse

from peewee import Database, DatabaseProxy, PostgresqlDatabase, SqliteDatabase
from playhouse import db_url

from .deferred_begin import deferred_class
from .errors import ConfigurationError

__all__ = [
    "DEFAULT_URL",
    "connect",
    "database_proxy",
    "is_postgres",
    "is_sqlite",
    "resolve_url",
    "unwrap",
]

DEFAULT_URL = "sqlite:///relay.db"

# SQLite enforces foreign keys only when asked to, per connection. Without
# this pragma a row pointing at a missing tenant would be accepted silently.
SQLITE_PRAGMAS = {"foreign_keys": 1, "busy_timeout": 10_000}

database_proxy = DatabaseProxy()


def resolve_url(url: str | None = None) -> str:
    """The URL to use: the argument, else ``$DATABASE_URL``, else the default."""
    return url or os.environ.get("DATABASE_URL") or DEFAULT_URL


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
    elif issubclass(db_class, PostgresqlDatabase) and importlib.util.find_spec("psycopg2") is None:
        raise ConfigurationError(
            "PostgreSQL needs its driver: pip install 'relay_peewee[postgres]' (psycopg2)"
        )
    try:
        db: Database = db_url.connect(url, **kwargs)
        deferred = deferred_class(db_class)
        if deferred is not db_class:
            # PostgreSQL: a tenant context's BEGIN rides on its first
            # statement. Built with the URL's parameters, as db_url.connect
            # (above) checked them, rather than registered in playhouse's
            # scheme table, which is everyone's.
            db = deferred(**{**db_url.parse(url), **kwargs})
    except (ImportError, RuntimeError, ValueError) as exc:
        detail = str(exc).replace(url, shown)
        raise ConfigurationError(f"cannot open {shown!r}: {detail}") from None
    try:
        db.connect(reuse_if_open=True)
    except Exception as exc:  # the driver's own error type varies
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigurationError(f"cannot connect to {_redact(url)}: {first_line}") from None
    return db


def connect(url: str | Database | None = None) -> Database:
    """Open the database and bind every relay_peewee model (and TenantModel) to it.

    ``url`` may also be a database opened by the application, e.g. a
    ``playhouse.pwasyncio`` ``AsyncPostgresqlDatabase`` or
    ``AsyncSqliteDatabase`` (``pragmas={"foreign_keys": 1}`` on SQLite): it is
    bound as it is, and connects on its first query.
    """
    if isinstance(url, Database):
        database_proxy.initialize(url)
        return url
    db = open_database(url)
    database_proxy.initialize(db)
    return db


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


def _redact(url: str) -> str:
    """The URL with its password, if any, replaced by ***."""
    try:
        password = urlparse(url).password
    except ValueError:
        password = None
    if password:
        return url.replace(f":{password}@", ":***@")
    return url
