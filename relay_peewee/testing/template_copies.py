"""PostgreSQL copies of a template database, reset between tests instead of dropped.

The pytest plugin (``testing.py``) gives each PostgreSQL test a database
holding exactly what the session's template holds. Creating a copy per test
costs 12-20 ms, and dropping it more: PostgreSQL 15's ``DROP DATABASE``
waits for a checkpoint. So a copy is reused: after its test, ``reset`` proves
that nothing but table rows and sequence values changed, puts those back, and
only otherwise is the copy dropped and a new one made.

The proof rests on MVCC. ``next_xid`` is read once a copy is made or reset,
with no one else connected to it: the test's transactions all get that xid
or a later one, and every transactional
change writes a row version whose ``xmin`` is such an xid, or removes one.
So a table that has as many rows as the template's and none with a younger
``xmin`` holds exactly the template's rows - for the system catalogs too,
which is what rules out schema changes (``CREATE``, ``ALTER``, ``GRANT``,
``TRUNCATE``: a new relfilenode is a ``pg_class`` update). ``age()``
compares xids, wraparound and all. What is not transactional is put back
unconditionally (sequence values) or checked apart (the copy's row in the
shared catalogs, its settings, prepared transactions).

Planner statistics are not compared but wiped: ``pg_statistic`` and
``pg_statistic_ext_data`` rows written since the marker (the test's ANALYZE,
or autovacuum's) hold sampled column values - ``pg_stats.most_common_vals``
would show the next test a value the previous one inserted - so the reset
deletes them; the template's own statistics for those columns go with them
(as after a fresh copy of a template never analyzed). The reset holds every
table in SHARE UPDATE EXCLUSIVE mode, which ANALYZE takes too, so no ANALYZE
that sampled the test's rows can commit after the wipe.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlparse, urlunparse

from ..database import POSTGRES_DRIVERS, sqlstate

__all__ = [
    "Pristine",
    "admin_connection",
    "capture",
    "create_database",
    "drop_database",
    "is_superuser",
    "libpq_url",
    "next_xid",
    "reset",
    "wait_until_alone",
    "with_database",
]

# The id of the last row of ``Pristine.checks``: the marker's own age.
_MARKER = -9
# How long a closed test connection's backend may take to go before the copy
# is given up on: backends exit within a millisecond or two of the client
# closing; one still there after this belongs to a connection the test left open.
LINGER_SECONDS = 0.1
# How long the reset waits for a table autovacuum is working on: past it the
# copy is replaced instead (autovacuum yields only after deadlock_timeout, 1 s).
LOCK_TIMEOUT_MS = 100
# PostgreSQL's lock_not_available, raised when LOCK_TIMEOUT_MS runs out.
_LOCK_NOT_AVAILABLE = "55P03"


def with_database(url: str, name: str) -> str:
    return urlunparse(urlparse(url)._replace(path=f"/{name}"))


def libpq_url(url: str) -> str:
    """The URL as both drivers' ``connect()`` read it (``psycopg3://`` is peewee's)."""
    return urlunparse(urlparse(url)._replace(scheme="postgresql"))


def admin_connection(server: str, unavailable: Callable[[str], NoReturn]) -> Any:
    """An autocommit connection (CREATE/DROP DATABASE refuse transactions)
    through the URL's driver: psycopg 3 for ``psycopg3://``, else whichever
    is installed, psycopg2 first."""
    wanted = ["psycopg3"] if server.startswith("psycopg3") else ["psycopg2", "psycopg3"]
    found = [d for d in wanted if importlib.util.find_spec(POSTGRES_DRIVERS[d])]
    if not found:
        unavailable("no PostgreSQL driver (pip install 'relay_peewee[psycopg3]')")
    module = importlib.import_module(POSTGRES_DRIVERS[found[0]])
    try:
        conn = module.connect(libpq_url(server), connect_timeout=3)
    except module.OperationalError as exc:
        unavailable(f"PostgreSQL unreachable at {server}: {' '.join(str(exc).split())}")
    conn.autocommit = True
    return conn


def create_database(admin: Any, name: str, template: str | None = None) -> None:
    # WAL_LOG (PostgreSQL 15's default) copies a small template in ~15 ms;
    # FILE_COPY would checkpoint the whole cluster first.
    suffix = f' TEMPLATE "{template}"' if template else ""
    _run(admin, f'CREATE DATABASE "{name}"{suffix}')
    if (
        template
        and not _rows(
            admin, f"SELECT has_database_privilege('public', '{_literal(template)}', 'TEMPORARY')"
        )[0][0]
    ):
        # A copy gets the template's contents, not its privileges: without
        # this the application role of postgres_rls could create temporary
        # tables on the copy, as `relay-peewee roles` forbids.
        _run(admin, f'REVOKE TEMPORARY ON DATABASE "{name}" FROM PUBLIC')


def drop_database(admin: Any, name: str) -> None:
    # WITH (FORCE) sleeps 100 ms when it meets a backend that is still
    # exiting: give a just-closed connection its moment first.
    wait_until_alone(admin, name, seconds=LINGER_SECONDS / 2)
    _run(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def is_superuser(conn: Any) -> bool:
    return bool(_rows(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")[0][0])


def next_xid(conn: Any) -> int:
    """The next transaction id to be assigned, as the 32-bit ``xid`` rows carry."""
    value = _rows(conn, "SELECT txid_snapshot_xmax(txid_current_snapshot())")[0][0]
    return int(value) % 2**32


def wait_until_alone(
    conn: Any, database: str | None = None, seconds: float = LINGER_SECONDS
) -> bool:
    """Whether, within ``seconds``, no client but ``conn`` is connected to
    ``database`` (default: the one ``conn`` is connected to)."""
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = "
        + ("%s" if database else "current_database()")
        + " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
    )
    params = (database,) if database else None
    deadline = time.monotonic() + seconds
    while True:
        with conn.cursor() as cur:
            cur.execute(query, params)
            if cur.fetchone()[0] == 0:
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0005)


@dataclass(frozen=True)
class _Table:
    name: str  # schema-qualified and quoted
    columns: str  # quoted, generated columns left out (COPY cannot write them)
    rows: bytes  # COPY text format


@dataclass(frozen=True)
class Pristine:
    """What a copy of one template holds, as ``reset`` checks and restores it."""

    frozen: tuple[str, ...]  # system catalogs (mostly): any change and the copy is dropped
    tables: tuple[_Table, ...]  # the template's own tables: rows are put back
    sequences: tuple[tuple[str, int, bool], ...]  # name, last_value, is_called
    expected: tuple[tuple[int, int], ...]  # (check, row count) of the template

    def checks(self, marker: int) -> str:
        """One query: per table, its row count and the age of its youngest
        row; the copy's entries in the shared catalogs; last, the age of the
        xid ``marker`` (rows that young or younger are the test's)."""
        parts = [
            f"SELECT {i}, count(*), min(age(xmin)) FROM {name}"
            for i, name in enumerate(self.frozen + tuple(t.name for t in self.tables))
        ]
        db = "(SELECT oid FROM pg_database WHERE datname = current_database())"
        # Dropped with the copy, so a copy made from the template has none of
        # these; ALTER DATABASE ... SET, COMMENT ON DATABASE and the like.
        shared = " + ".join(
            f"(SELECT count(*) FROM {where})"
            for where in (
                f"pg_db_role_setting WHERE setdatabase = {db}",
                f"pg_shdescription WHERE objoid = {db}",
                f"pg_shseclabel WHERE objoid = {db}",
                "pg_prepared_xacts WHERE database = current_database()",
                "pg_replication_slots WHERE database = current_database()",
                f"pg_subscription WHERE subdbid = {db}",
            )
        )
        parts += [
            "SELECT -1, count(*), min(age(xmin)) FROM pg_database"
            " WHERE datname = current_database()",
            f"SELECT -2, count(*), min(age(xmin)) FROM pg_shdepend WHERE dbid = {db}",
            f"SELECT -3, {shared}, NULL",
            # Last: age() counts back from this statement's transaction.
            f"SELECT {_MARKER}, 0, age('{marker}'::xid)",
        ]
        return " UNION ALL ".join(parts)


def _changes(rows: list[Any]) -> list[tuple[int, int, bool]]:
    """``checks``' rows as (check, row count, whether a row is the test's)."""
    *tables, (_, _, marker_age) = rows
    return [
        (int(i), int(n), youngest is not None and youngest <= marker_age)
        for i, n, youngest in tables
    ]


def capture(conn: Any) -> Pristine:
    """What the template ``conn`` is connected to holds, once it is built."""
    found = _rows(
        conn,
        """SELECT format('%I.%I', n.nspname, c.relname),
                  n.nspname IN ('pg_catalog', 'information_schema')
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind = 'r' AND NOT c.relisshared
             AND n.nspname <> 'pg_toast' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
             AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%'
             -- planner statistics: autovacuum's ANALYZE rewrites them
             AND c.oid NOT IN ('pg_catalog.pg_statistic'::regclass,
                               'pg_catalog.pg_statistic_ext_data'::regclass)
           ORDER BY 1""",
    )
    frozen = [name for name, system in found if system]
    tables = []
    for name, system in found:
        if system:
            continue
        columns = _rows(
            conn,
            f"""SELECT string_agg(format('%I', attname), ', ' ORDER BY attnum)
                FROM pg_attribute WHERE attrelid = '{_literal(name)}'::regclass
                  AND attnum > 0 AND NOT attisdropped AND attgenerated = ''""",
        )[0][0]
        if columns is None:  # no column COPY could write: any change replaces the copy
            frozen.append(name)
            continue
        tables.append(_Table(name, columns, _copy_out(conn, f"COPY {name} ({columns}) TO STDOUT")))
    sequences = []
    for (name,) in _rows(
        conn,
        """SELECT format('%I.%I', n.nspname, c.relname)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind = 'S' ORDER BY 1""",
    ):
        last_value, is_called = _rows(conn, f"SELECT last_value, is_called FROM {name}")[0]
        sequences.append((name, int(last_value), bool(is_called)))
    pristine = Pristine(tuple(frozen), tuple(tables), tuple(sequences), ())
    checked = _changes(_rows(conn, pristine.checks(next_xid(conn))))
    expected = tuple((i, count) for i, count, _ in checked)
    return Pristine(tuple(frozen), tuple(tables), tuple(sequences), expected)


def reset(conn: Any, pristine: Pristine, marker: int) -> str | None:
    """Put the copy ``conn`` is connected to back to ``pristine``, given that
    its test's transactions all had xids from ``marker`` on; or, when only a
    new copy would do, say why (and change nothing).

    ``conn``: an autocommit connection as a superuser (the restore runs with
    ``session_replication_role = replica``, so no trigger and no foreign key
    check fires: the rows are put back as they were, not as new writes).
    """
    if not wait_until_alone(conn):
        return "a connection to it was still open"
    # One transaction, the tables locked against ANALYZE from the checks to
    # the statistics' wipe (module docstring).
    try:
        _run(
            conn,
            f"BEGIN; SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms';"
            f" LOCK TABLE {', '.join(pristine.frozen + tuple(t.name for t in pristine.tables))}"
            " IN SHARE UPDATE EXCLUSIVE MODE",
        )
    except Exception as exc:
        _run(conn, "ROLLBACK")
        if sqlstate(exc) == _LOCK_NOT_AVAILABLE:
            return "autovacuum was working on it"
        raise
    try:
        found = _restore(conn, pristine, marker)
        if found is not None:
            _run(conn, "ROLLBACK")
            return found
        # nextval() is not transactional: set every sequence, changed or not.
        values = ", ".join(
            f"setval('{_literal(name)}', {value}, {'true' if called else 'false'})"
            for name, value, called in pristine.sequences
        )
        young = f"age(xmin) <= age('{marker}'::xid)"
        _run(
            conn,
            f"DELETE FROM pg_catalog.pg_statistic WHERE {young};"
            f" DELETE FROM pg_catalog.pg_statistic_ext_data WHERE {young};"
            + (f" SELECT {values};" if values else "")
            + " COMMIT",
        )
    except BaseException:
        _run(conn, "ROLLBACK")
        raise
    return None


def _restore(conn: Any, pristine: Pristine, marker: int) -> str | None:
    """Put back the rows of every table the test changed, in the open
    transaction; or say why only a new copy would do."""
    changed: list[_Table] = []
    tables = dict(enumerate(pristine.tables, start=len(pristine.frozen)))
    rows = _changes(_rows(conn, pristine.checks(marker)))
    for (i, count, young), (_, expected) in zip(rows, pristine.expected, strict=True):
        if count == expected and not young:
            continue
        if i not in tables:
            return f"check {i} changed" if i < 0 else f"{pristine.frozen[i]} changed"
        changed.append(tables[i])
    if changed:
        deletes = "; ".join(f"DELETE FROM {table.name}" for table in changed)
        _run(conn, f"SET LOCAL session_replication_role = replica; {deletes}")
        for table in changed:
            if table.rows:
                _copy_in(conn, f"COPY {table.name} ({table.columns}) FROM STDIN", table.rows)
    return None


# --- the two drivers ----------------------------------------------------------


def _run(conn: Any, sql: str) -> None:
    with conn.cursor() as cur:
        cur.execute(sql)


def _rows(conn: Any, sql: str) -> list[Any]:
    with conn.cursor() as cur:
        cur.execute(sql)
        return list(cur.fetchall())


def _literal(name: str) -> str:
    return name.replace("'", "''")


def _copy_out(conn: Any, sql: str) -> bytes:
    with conn.cursor() as cur:
        if hasattr(cur, "copy_expert"):  # psycopg2
            buffer = io.BytesIO()
            cur.copy_expert(sql, buffer)
            return buffer.getvalue()
        with cur.copy(sql) as copy:  # psycopg 3
            return b"".join(bytes(chunk) for chunk in copy)


def _copy_in(conn: Any, sql: str, data: bytes) -> None:
    with conn.cursor() as cur:
        if hasattr(cur, "copy_expert"):  # psycopg2
            cur.copy_expert(sql, io.BytesIO(data))
            return
        with cur.copy(sql) as copy:  # psycopg 3
            copy.write(data)
