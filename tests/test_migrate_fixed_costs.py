"""What `migrate` sends besides the migrations themselves, on PostgreSQL.

Issue 23: a migrate of a big legacy database must stay within 1.2x of the
hand-written floor, which sends nothing but its DDL. Every catalog read or
history check the engine adds before, between or after the migrations is a
round trip (and on a busy server, a planned and executed catalog query) the
floor does not pay; these tests count them, so one that creeps back in fails
here rather than in a benchmark on a quiet machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from helpers import Legacy
from peewee import Database

from relay_peewee.migrator import classify_schema
from relay_peewee.operations.commands import migrate


@contextmanager
def sent(db: Database) -> Iterator[list[str]]:
    """Every statement ``db`` sends inside the block, whitespace-normalised."""
    statements: list[str] = []
    inner = db.execute_sql

    def recording(sql: str, params: object = None, *args: object, **kwargs: object) -> object:
        statements.append(" ".join(str(sql).split()))
        return inner(sql, params, *args, **kwargs)

    db.execute_sql = recording  # type: ignore[method-assign]
    try:
        yield statements
    finally:
        del db.execute_sql  # back to the class's method


def test_recognising_a_legacy_database_reads_the_catalog_twice(pg_legacy: Legacy) -> None:
    # The tables, then the columns of all nine in one query: not two
    # information_schema queries per table (db.get_columns and its primary key).
    with sent(pg_legacy.db) as statements:
        assert classify_schema(pg_legacy.db) == "legacy"
    assert len(statements) == 2, statements
    assert not any("information_schema" in s for s in statements)


def test_migrate_asks_information_schema_nothing(pg_legacy: Legacy) -> None:
    # Its views are planned and run per query (two per db.get_columns call):
    # the catalog classes read pg_catalog instead, in fewer queries.
    db = pg_legacy.db
    with sent(db) as statements:
        migrate(db)
    assert statements and not [s for s in statements if "information_schema" in s]


def test_online_migrate_asks_information_schema_nothing(pg_legacy: Legacy) -> None:
    # --online checks each table's tenant_id before adding it and its
    # default before dropping it (resumable from the catalog).
    db = pg_legacy.db
    with sent(db) as statements:
        migrate(db, to="0005_audit_logs", online=True)
    assert statements and not [s for s in statements if "information_schema" in s]
