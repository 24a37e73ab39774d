"""Hand-written migrations the project's ``migrate`` is measured against.

Each baseline reaches the same end state as migrations 0002-0005 on the
nine tenant tables (tenant_id NOT NULL, no default, FK to tenants; per-tenant
uniques in place of the global ones; tenant indexes; site_settings keyed by
(tenant_id, id)), plus the tenants and audit_logs tables, in ONE transaction.
They deliberately share no code with ``relay_peewee``: a floor that used the
project's helpers would inherit its costs. The benchmark checks that each
baseline's end state matches the project's (see ``checks.fingerprint``),
so a baseline cannot look fast by doing less.

* ``floor_postgres``: constant-default ``ADD COLUMN ... REFERENCES`` (PG >= 11
  stores the default in the catalog, no row is rewritten; the FK costs one
  scan), then ``DROP DEFAULT``.
* ``floor_sqlite``: sqlite.org's 12-step rebuild (lang_altertable.html s.7),
  each table copied exactly once.
* ``naive_postgres``: what Relay's own SQL did - nullable column, ``UPDATE``
  backfill of every row, ``SET NOT NULL``, then the same keys and indexes.

Names of new indexes follow peewee's ``make_index_name`` (``<table>_<cols>``)
because that is what the project creates; the end-state comparison needs
equal names.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_TENANT_ID",
    "SPECS",
    "StatementLog",
    "floor_postgres",
    "floor_sqlite",
    "naive_postgres",
    "run_baseline",
]

DEFAULT_TENANT_ID = "default-tenant-000-0000-000000000000"
T = "tenant_id"


@dataclass(frozen=True)
class Spec:
    table: str
    # Global unique column replaced by a (tenant_id, column) unique index.
    swap: str | None = None
    # site_settings: the primary key becomes (tenant_id, id).
    tenant_pk: bool = False

    @property
    def tenant_index(self) -> bool:
        # A key that starts with tenant_id already serves as its index.
        return self.swap is None and not self.tenant_pk


SPECS: tuple[Spec, ...] = (
    Spec("users"),
    Spec("skills", swap="slug"),
    Spec("skill_versions"),
    Spec("ratings"),
    Spec("usage_events"),
    Spec("skill_embeddings", swap="skill_id"),
    Spec("skill_reviews", swap="skill_id"),
    Spec("api_keys"),
    Spec("site_settings", tenant_pk=True),
)


@dataclass
class StatementLog:
    """Runs statements on a DB-API cursor and records how long each took."""

    cursor: Any
    timings: list[tuple[float, str]] = field(default_factory=list)

    def __call__(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        start = time.perf_counter()
        if params is None:
            self.cursor.execute(sql)
        else:
            self.cursor.execute(sql, params)
        self.timings.append((time.perf_counter() - start, " ".join(sql.split())))
        return self.cursor


Run = Callable[[str], Any]


def run_baseline(approach: str, url: str) -> list[tuple[float, str]]:
    """Migrate ``url`` by the baseline ``approach`` (floor or naive) on a
    connection set up as ``open_database`` sets up the project's."""
    if url.startswith("sqlite:///"):
        # Autocommit driver, foreign_keys ON, default journal and cache.
        conn: Any = sqlite3.connect(
            url.removeprefix("sqlite:///"), isolation_level=None, timeout=10
        )
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA busy_timeout = 10000")
        statements = floor_sqlite(conn)
    else:
        import psycopg2

        conn = psycopg2.connect(url)
        statements = (floor_postgres if approach == "floor" else naive_postgres)(conn)
    conn.close()
    return statements


# --- PostgreSQL ---------------------------------------------------------------

_PG_TENANTS = [
    """CREATE TABLE tenants (
        id text NOT NULL PRIMARY KEY, name text NOT NULL, slug text NOT NULL,
        domain text, logo text, is_active boolean NOT NULL, plan text NOT NULL,
        created_at timestamp NOT NULL, updated_at timestamp NOT NULL)""",
    "CREATE UNIQUE INDEX tenants_slug ON tenants (slug)",
    f"""INSERT INTO tenants VALUES ('{DEFAULT_TENANT_ID}', 'Default', 'default', NULL, NULL,
        true, 'freemium', now(), now())""",
]
_PG_AUDIT = [
    """CREATE TABLE audit_logs (
        id uuid NOT NULL PRIMARY KEY, actor_id text, tenant_id text, action text NOT NULL,
        resource_type text, resource_id text, ip_address text, metadata jsonb,
        created_at timestamp NOT NULL)""",
    "CREATE INDEX audit_logs_tenant_id_created_at ON audit_logs (tenant_id, created_at)",
    "CREATE INDEX audit_logs_actor_id_created_at ON audit_logs (actor_id, created_at)",
    "CREATE INDEX audit_logs_action_created_at ON audit_logs (action, created_at)",
]


def _pg_keys(run: Run, spec: Spec) -> None:
    """Per-tenant unique swap, tenant index and key, as 0004 leaves them."""
    t = spec.table
    if spec.swap:
        # New composite unique first: while the old global one holds, the
        # composite cannot fail on existing rows.
        run(f"CREATE UNIQUE INDEX {t}_{T}_{spec.swap} ON {t} ({T}, {spec.swap})")
        run(f"ALTER TABLE {t} DROP CONSTRAINT {t}_{spec.swap}_unique")
    if spec.tenant_index:
        run(f"CREATE INDEX {t}_{T} ON {t} ({T})")
    if spec.tenant_pk:
        run(
            f"ALTER TABLE {t} DROP CONSTRAINT {t}_pkey, "
            f"ADD CONSTRAINT {t}_pkey PRIMARY KEY ({T}, id)"
        )


def _pg_migration(conn: Any, add_tenant: Callable[[Run, str], None]) -> list[tuple[float, str]]:
    """tenants, ``add_tenant`` + keys per table, audit_logs; one transaction."""
    log = StatementLog(conn.cursor())
    conn.autocommit = False
    for sql in _PG_TENANTS:
        log(sql)
    for spec in SPECS:
        add_tenant(log, spec.table)
        _pg_keys(log, spec)
    for sql in _PG_AUDIT:
        log(sql)
    start = time.perf_counter()
    conn.commit()
    log.timings.append((time.perf_counter() - start, "COMMIT"))
    return log.timings


def floor_postgres(conn: Any) -> list[tuple[float, str]]:
    """Constant-default columns, no row rewritten; one transaction."""

    def add_tenant(log: Run, t: str) -> None:
        log(
            f"ALTER TABLE {t} ADD COLUMN {T} text NOT NULL DEFAULT '{DEFAULT_TENANT_ID}' "
            f"CONSTRAINT {t}_{T}_fkey REFERENCES tenants (id)"
        )
        # No default may stay: a row that omits its tenant must be refused.
        log(f"ALTER TABLE {t} ALTER COLUMN {T} DROP DEFAULT")

    return _pg_migration(conn, add_tenant)


def naive_postgres(conn: Any) -> list[tuple[float, str]]:
    """Relay's own approach: backfill every row with UPDATE; one transaction."""

    def add_tenant(log: Run, t: str) -> None:
        log(f"ALTER TABLE {t} ADD COLUMN {T} text")
        log(f"UPDATE {t} SET {T} = '{DEFAULT_TENANT_ID}'")
        log(f"ALTER TABLE {t} ALTER COLUMN {T} SET NOT NULL")
        log(
            f"ALTER TABLE {t} ADD CONSTRAINT {t}_{T}_fkey FOREIGN KEY ({T}) REFERENCES tenants (id)"
        )

    return _pg_migration(conn, add_tenant)


# --- SQLite -------------------------------------------------------------------

_SQLITE_TENANTS = [
    """CREATE TABLE tenants (
        id TEXT NOT NULL PRIMARY KEY, name TEXT NOT NULL, slug TEXT NOT NULL,
        domain TEXT, logo TEXT, is_active INTEGER NOT NULL, plan TEXT NOT NULL,
        created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL)""",
    "CREATE UNIQUE INDEX tenants_slug ON tenants (slug)",
    f"""INSERT INTO tenants VALUES ('{DEFAULT_TENANT_ID}', 'Default', 'default', NULL, NULL,
        1, 'freemium', datetime('now'), datetime('now'))""",
]
_SQLITE_AUDIT = [
    """CREATE TABLE audit_logs (
        id TEXT NOT NULL PRIMARY KEY, actor_id TEXT, tenant_id TEXT, action TEXT NOT NULL,
        resource_type TEXT, resource_id TEXT, ip_address TEXT, metadata TEXT,
        created_at DATETIME NOT NULL)""",
    "CREATE INDEX audit_logs_tenant_id_created_at ON audit_logs (tenant_id, created_at)",
    "CREATE INDEX audit_logs_actor_id_created_at ON audit_logs (actor_id, created_at)",
    "CREATE INDEX audit_logs_action_created_at ON audit_logs (action, created_at)",
]


def _replace_once(sql: str, old: str, new: str) -> str:
    # The edits below are written against tests/legacy.py's 'inline' style;
    # fail loudly if that schema changes rather than build something else.
    if sql.count(old) != 1:
        raise RuntimeError(f"floor_sqlite: expected one {old!r} in {sql!r}")
    return sql.replace(old, new)


def _sqlite_new_table(sql: str, spec: Spec) -> str:
    """The legacy CREATE TABLE, edited into its multi-tenant form."""
    _create, _, body = sql.partition("(")
    body = body.rstrip().removesuffix(")")
    if spec.swap:
        body = _replace_once(
            body, f"{spec.swap} TEXT NOT NULL UNIQUE", f"{spec.swap} TEXT NOT NULL"
        )
    columns = f',\n    "{T}" TEXT NOT NULL REFERENCES "tenants" ("id")'
    if spec.tenant_pk:
        body = _replace_once(body, "id TEXT PRIMARY KEY", "id TEXT NOT NULL")
        columns += f',\n    PRIMARY KEY ("{T}", "id")'
    return f'CREATE TABLE "_new_{spec.table}" ({body}{columns}\n)'


def floor_sqlite(conn: Any) -> list[tuple[float, str]]:
    """sqlite.org's 12-step rebuild, each table copied once, in one transaction.

    ``conn`` is a ``sqlite3`` connection in autocommit mode
    (``isolation_level=None``) with ``foreign_keys`` ON, as the project's
    ``open_database`` leaves it.
    """
    log = StatementLog(conn.cursor())
    # 1. Outside any transaction: inside one the pragma is silently ignored,
    # and DROP TABLE would then cascade into ON DELETE CASCADE children.
    log("PRAGMA foreign_keys = OFF")
    log("BEGIN")  # 2.
    for sql in _SQLITE_TENANTS:
        log(sql)
    tables = [s.table for s in SPECS]
    marks = ",".join("?" * len(tables))
    # 3. Save indexes (not the automatic ones), triggers and views.
    indexes = log(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        f"AND tbl_name IN ({marks}) ORDER BY rowid",
        tables,
    ).fetchall()
    others = log(
        "SELECT type, name, sql FROM sqlite_master WHERE type IN ('trigger', 'view') ORDER BY rowid"
    ).fetchall()
    # Drop views and triggers first: SQLite >= 3.26 re-parses them on rename
    # and fails on one that names a table that is momentarily gone.
    for kind, name, _sql in reversed(others):
        log(f'DROP {kind.upper()} "{name}"')
    for spec in SPECS:
        t = spec.table
        (create,) = log(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (t,)
        ).fetchone()
        log(_sqlite_new_table(create, spec))  # 4.
        cols = ", ".join(f'"{r[1]}"' for r in log(f'PRAGMA table_info("{t}")').fetchall())
        # 5. The one copy; the constant fills tenant_id as rows stream past.
        log(
            f'INSERT INTO "_new_{t}" ({cols}, "{T}") '
            f"SELECT {cols}, '{DEFAULT_TENANT_ID}' FROM \"{t}\""
        )
        log(f'DROP TABLE "{t}"')  # 6.
        log(f'ALTER TABLE "_new_{t}" RENAME TO "{t}"')  # 7.
    # 8. Indexes (legacy ones, minus the dropped global uniques, which were
    # inline and so have no saved SQL), then the new tenant keys.
    for (sql,) in indexes:
        log(sql)
    for spec in SPECS:
        t = spec.table
        if spec.swap:
            log(f'CREATE UNIQUE INDEX "{t}_{T}_{spec.swap}" ON "{t}" ("{T}", "{spec.swap}")')
        if spec.tenant_index:
            log(f'CREATE INDEX "{t}_{T}" ON "{t}" ("{T}")')
    for _kind, _name, sql in others:  # 9. Triggers and views back.
        log(sql)
    for sql in _SQLITE_AUDIT:
        log(sql)
    problems = log("PRAGMA foreign_key_check").fetchall()  # 10.
    if problems:
        log("ROLLBACK")
        raise RuntimeError(f"floor_sqlite: foreign_key_check failed: {problems[:5]}")
    log("COMMIT")  # 11.
    log("PRAGMA foreign_keys = ON")  # 12.
    return log.timings
