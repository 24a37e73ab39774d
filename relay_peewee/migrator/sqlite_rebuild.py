"""Rebuilding SQLite tables without losing rows, triggers or views.

SQLite changes constraints only by copying a table into a new definition.
This follows sqlite.org's procedure (lang_altertable.html, section 7),
which peewee's ``SqliteMigrator`` does not: it recreates indexes but not
triggers, fails on any view that reads the table, and rebuilds under
whatever ``foreign_keys`` setting the open transaction already has - with
``ON DELETE CASCADE`` children, ``DROP TABLE`` then deletes their rows.

The caller (the migration engine) turns ``foreign_keys`` off *before* the
transaction opens and runs ``PRAGMA foreign_key_check`` before commit;
``rebuild_tables`` refuses to run when foreign keys are still enforced.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping

from peewee import Database, SqliteDatabase

from ..errors import MigrationError
from .sqlite_ddl import TableDDL, parse_create_table, quote

__all__ = ["check_foreign_keys", "rebuild_tables"]

Transform = Callable[[TableDDL], None]


def _master(db: Database, kind: str) -> list[tuple[str, str, str]]:
    return db.execute_sql(
        "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = ? AND sql IS NOT NULL"
        " ORDER BY rowid",
        (kind,),
    ).fetchall()


def _mentions(sql: str, tables: Collection[str]) -> bool:
    return any(re.search(rf"\b{re.escape(t)}\b", sql, re.IGNORECASE) for t in tables)


def _copyable_columns(db: Database, table: str) -> list[str]:
    # table_xinfo's `hidden` is 2 or 3 for generated columns, which cannot be
    # inserted into: the new table computes them again.
    rows = db.execute_sql(f"PRAGMA table_xinfo({quote(table)})").fetchall()
    return [r[1] for r in rows if r[6] == 0]


def rebuild_tables(
    db: SqliteDatabase,
    transforms: Mapping[str, Transform],
    drop_indexes: Collection[str] = (),
) -> None:
    """Rebuild each table in ``transforms`` with its edited ``CREATE TABLE``.

    Each table is copied exactly once. Indexes of the rebuilt tables are
    recreated except those named in ``drop_indexes``; every view and every
    trigger that mentions a rebuilt table is dropped first and recreated
    last, so SQLite never re-parses one against a half-renamed schema.
    """
    if db.pragma("foreign_keys"):
        raise MigrationError(
            "internal: a SQLite table rebuild needs PRAGMA foreign_keys=OFF, set before the "
            "transaction opens (otherwise DROP TABLE cascades into child tables)"
        )
    tables = set(transforms)
    dropped = {name.lower() for name in drop_indexes}
    views = _master(db, "view")
    triggers = [t for t in _master(db, "trigger") if t[1] in tables or _mentions(t[2], tables)]
    table_indexes = [
        ix for ix in _master(db, "index") if ix[1] in tables and ix[0].lower() not in dropped
    ]

    for name, _tbl, _sql in reversed(views):
        db.execute_sql(f"DROP VIEW {quote(name)}")
    for name, _tbl, _sql in triggers:
        db.execute_sql(f"DROP TRIGGER {quote(name)}")

    for table, transform in transforms.items():
        row = db.execute_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        if row is None:
            raise MigrationError(f"cannot rebuild {table}: no such table")
        ddl = parse_create_table(row[0])
        transform(ddl)
        temp = f"_relay_new_{table}"
        db.execute_sql(ddl.render(temp))
        old_cols = set(_copyable_columns(db, table))
        cols = ", ".join(quote(c) for c in _copyable_columns(db, temp) if c in old_cols)
        db.execute_sql(f"INSERT INTO {quote(temp)} ({cols}) SELECT {cols} FROM {quote(table)}")
        db.execute_sql(f"DROP TABLE {quote(table)}")
        # Rename the *new* table: renaming the old one first would make
        # every foreign key, view and trigger that names it follow it.
        db.execute_sql(f"ALTER TABLE {quote(temp)} RENAME TO {quote(table)}")

    for _name, _tbl, sql in table_indexes + triggers + views:
        db.execute_sql(sql)


def check_foreign_keys(db: Database) -> None:
    """Raise, naming the rows, if any foreign key points at a missing row."""
    rows = db.execute_sql("PRAGMA foreign_key_check").fetchall()
    if rows:
        shown = ", ".join(f"{t} rowid {rid} -> {parent}" for t, rid, parent, _fk in rows[:5])
        more = f" (and {len(rows) - 5} more)" if len(rows) > 5 else ""
        raise MigrationError(f"foreign key check failed: {shown}{more}; nothing was changed")
