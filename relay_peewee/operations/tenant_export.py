"""Exporting one tenant's rows to a tenant file (format: ``tenant_data``).

The database writes the row lines itself: each table is one ``SELECT`` of
``json_build_array(...)`` (PostgreSQL, streamed by ``COPY ... TO STDOUT``)
or ``json_array(...)`` (SQLite) over the tenant's rows, with every value
already in the format's encoding. Python only passes the bytes on, hashing
and counting them, so memory stays flat and the cost stays close to reading
the rows raw (benchmarks/lifecycle_bench.py).

It runs as the admin path (``bypass_scope``, as ``users move`` does), in one
snapshot: REPEATABLE READ on PostgreSQL, one read transaction on SQLite. It
writes nothing to the database.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import sqlite3
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TextIO

from peewee import Database, DatabaseProxy, Model, OperationalError, SqliteDatabase

from ..database import is_postgres, mogrify, postgres_driver, unwrap
from ..database.citus import is_citus
from ..database.quoting import quote
from ..errors import MigrationError, RelayError
from ..migrator import MigrationRunner
from ..tenancy.rls import bypass_scope
from .export_processes import sqlite_processes
from .export_snapshot import SqliteSnapshot, postgres_connections, sqlite_in_memory
from .parallel_export import Connections, export_in_parallel
from .tenant_data import (
    BOOLEAN,
    BYTES,
    DECIMAL,
    FLOAT,
    JSON,
    REAL_LIST,
    TENANTS,
    TEXT_LIST,
    TIMESTAMP,
    UUID,
    TableSpec,
    database_tables,
    header_line,
    trailer_line,
)

__all__ = ["DEFAULT_JOBS", "ExportSummary", "export_tenant", "tenant_fingerprints"]

# COPY's CSV mode with a quote and a delimiter no JSON text holds raw (JSON
# escapes every control character): each line leaves the server as written,
# where the text mode would double every backslash.
_COPY_OPTIONS = "(FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x01')"
_FETCH = 2000  # SQLite rows per fetchmany
# export_tenant's connections by default, per backend. SQLite's 2 (processes)
# measured on benchmarks/lifecycle_bench.py's tenant (1.7M rows): 5.6 s serial,
# 2.9-3.0 s; a worker process takes ~23 ms to pin its snapshot and a tenant
# exported sooner does not wait for it (~3 ms more for an empty tenant, even at
# 1k skills, 270 ms against 460 at 10k skills), so no row-count threshold.
DEFAULT_JOBS = {"postgresql": 2, "sqlite": 2}
Write = Callable[[bytes], object]  # what it returns is ignored


@dataclass(frozen=True)
class ExportSummary:
    tenant_id: str
    slug: str
    backend: str  # "postgresql" or "sqlite"
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows written
    sha256: str = ""  # the trailer's digest of the row lines


class _Sink:
    """Where row bytes go: hashed and counted on the way to ``out``."""

    def __init__(self, out: TextIO | BinaryIO | None) -> None:
        self.out = out
        self.text = isinstance(out, io.TextIOBase)
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.hash = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.hash.update(data)
        self._emit(data)

    def plain(self, line: str) -> None:
        """A header or trailer line: written, not hashed."""
        self._emit(line.encode())

    def _emit(self, data: bytes) -> None:
        if self.out is None:
            return
        if self.text:
            # A chunk of COPY output may end inside a multi-byte character.
            self.out.write(self.decoder.decode(data))  # type: ignore[call-overload]
        else:
            self.out.write(data)  # type: ignore[arg-type]


def export_tenant(
    db: Database | DatabaseProxy,
    slug: str,
    out: TextIO | BinaryIO,
    *,
    models: Sequence[type[Model]] = (),
    progress: Callable[[str], None] | None = None,
    jobs: int | None = None,
) -> ExportSummary:
    """Write every row of tenant ``slug`` to ``out``: header, rows, trailer.

    ``models``: the application's TenantModels, exported after Relay's
    tables. ``out`` may be a text or a binary stream.

    ``jobs``: how many connections read tables at once, all in one snapshot
    (``parallel_export``); tables not yet due in the file wait in spool
    files in the temporary folder (at most about the file's size). The file
    is the same whatever ``jobs`` is. 1, an in-memory SQLite database, Citus
    and a call inside an open transaction of the caller's read serially.
    By default (None) ``DEFAULT_JOBS``. On SQLite the workers are processes
    (``export_processes``; threads do not pay there: sqlite3 takes the GIL
    back at every row).
    """
    database = unwrap(db)
    if jobs is None:
        jobs = DEFAULT_JOBS["postgresql" if is_postgres(database) else "sqlite"]
    if jobs < 1:
        raise RelayError(f"jobs must be at least 1, not {jobs}")
    tables = database_tables(database, models)
    sink = _Sink(out)
    rows: dict[str, int] = {}
    with _snapshot(database, jobs) as connections:
        tenant_id, tenant = _tenant(database, slug)
        backend = "postgresql" if is_postgres(database) else "sqlite"
        sink.plain(header_line(backend, _migrations(database), tenant, tables))

        def written(index: int, count: int) -> None:
            name = tables[index].name
            rows[name] = count
            if progress is not None:
                progress(f"{name}: {count} rows")

        if connections is None:
            for index, spec in enumerate(tables):
                written(index, _table_lines(database, spec, tenant_id, sink.write))
        else:
            export_in_parallel(
                database, connections, tables, tenant_id, jobs, _table_lines, sink.write, written
            )
    digest = sink.hash.hexdigest()
    sink.plain(trailer_line(rows, digest))
    return ExportSummary(tenant_id, slug, backend, rows, digest)


def tenant_fingerprints(
    db: Database | DatabaseProxy, slug: str, *, models: Sequence[type[Model]] = ()
) -> dict[str, str]:
    """One digest per table of the tenant's rows, the same on both backends.

    Each row is read as export writes it, decoded and written again as
    canonical JSON (sorted keys, no spaces), and hashed; a table's digest is
    the sum of its rows' hashes (so the order rows come in does not matter)
    with the row count. Equal digests: equal rows, whatever the backend.
    """
    database = unwrap(db)
    tables = database_tables(database, models)
    out: dict[str, str] = {}
    with _snapshot(database):
        tenant_id, _tenant_row = _tenant(database, slug)
        for spec in tables:
            digest = _RowDigest(spec)
            _table_lines(database, spec, tenant_id, digest.write)
            out[spec.name] = digest.hexdigest(spec.name)
    return out


class _RowDigest:
    """Rows from chunks of lines, each hashed as canonical JSON; their sum."""

    def __init__(self, spec: TableSpec) -> None:
        self.pending = b""
        self.total = 0
        self.count = 0
        # A real is a float whichever way it was written (PostgreSQL writes 3.0 as 3).
        self.reals = [i + 1 for i, c in enumerate(spec.columns) if c.type in (FLOAT, REAL_LIST)]

    def write(self, data: bytes) -> None:
        *lines, self.pending = (self.pending + bytes(data)).split(b"\n")
        for line in lines:
            row = json.loads(line)
            for i in self.reals:
                row[i] = _as_float(row[i])
            canonical = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            self.total += int.from_bytes(hashlib.sha256(canonical.encode()).digest(), "big")
            self.count += 1

    def hexdigest(self, table: str) -> str:
        total = self.total % (1 << 256)
        return hashlib.sha256(f"{table}:{self.count}:{total:064x}".encode()).hexdigest()


def _as_float(value: Any) -> Any:
    if isinstance(value, list):
        return [_as_float(v) for v in value]
    return float(value) if isinstance(value, (int, float)) else value


@contextmanager
def _snapshot(db: Database, jobs: int = 1) -> Iterator[Connections | None]:
    """One consistent read of every table, seeing every tenant.

    Gives how more connections can read in the same snapshot for ``jobs`` >
    1, or None: serially. Not inside a transaction the caller holds open on
    this connection (other connections would not see its writes), nor on a
    database with a connection per asyncio task.
    """
    if "tenants" not in db.get_tables():
        raise MigrationError("this database has no tenants table yet: run `relay-peewee migrate`")
    caller = db.in_transaction()
    parallel = jobs > 1 and not hasattr(db, "aexecute_sql")
    if not is_postgres(db):
        lock = None
        if parallel and not caller and isinstance(db, SqliteDatabase) and not sqlite_in_memory(db):
            lock = SqliteSnapshot(db)
            if not lock.acquire():
                lock = None
        try:
            with db.atomic():
                if lock is None:
                    yield None
                    return
                # The first read starts this connection's snapshot, under the lock.
                db.execute_sql("SELECT count(*) FROM sqlite_master").fetchone()
                # Processes, not threads: see export_processes.
                assert isinstance(db, SqliteDatabase)
                yield sqlite_processes(db, lock.release, _sqlite_task, _sqlite_refuse)
        finally:
            if lock is not None:
                lock.release()
        return
    # Citus: an exported snapshot is the coordinator's alone, not its workers'.
    parallel = parallel and not is_citus(db)
    with db.atomic(isolation_level="REPEATABLE READ"):
        own = db.connection()
        # Exported here, not inside bypass_scope's savepoint (PostgreSQL
        # refuses it in a subtransaction); not in a transaction of the
        # caller's, whose writes other connections would not see.
        snapshot = _export_snapshot(db) if parallel and not caller else None
        with bypass_scope(db):
            on_admin = db.connection() is not own
            if on_admin:
                # bypass_scope moved to the admin connection: a transaction of
                # its own, which nothing has read in yet.
                db.execute_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                snapshot = _export_snapshot(db) if parallel else None
            # The format's timestamps are UTC and its reals the shortest exact text.
            db.execute_sql("SET LOCAL TimeZone = 'UTC'")
            db.execute_sql("SET LOCAL extra_float_digits = 1")
            yield None if snapshot is None else postgres_connections(db, snapshot, on_admin)


def _export_snapshot(db: Database) -> str:
    return str(db.execute_sql("SELECT pg_export_snapshot()").fetchone()[0])


def _tenant(db: Database, slug: str) -> tuple[str, dict[str, Any]]:
    if "\x00" in slug:
        raise RelayError(f"invalid tenant slug {slug!r}: it contains NUL")
    p = "%s" if is_postgres(db) else "?"
    row = db.execute_sql(
        f"SELECT id, slug, name FROM {TENANTS} WHERE slug = {p}", (slug,)
    ).fetchone()
    if row is None:
        raise RelayError(f"no tenant with slug {slug!r}")
    return str(row[0]), {"id": str(row[0]), "slug": row[1], "name": row[2]}


def _migrations(db: Database) -> list[str]:
    """The source's applied migrations, Relay's and the application's, in order."""
    return [s.name for s in MigrationRunner(db).statuses() if s.applied is not None]


def _owner_column(spec: TableSpec) -> str:
    return "id" if spec.name == TENANTS else "tenant_id"


def _table_lines(db: Database, spec: TableSpec, tenant_id: str, write: Write) -> int:
    """Hand the table's row lines, newline-terminated, to ``write`` in chunks; their count."""
    if is_postgres(db):
        return _postgres_lines(db, spec, tenant_id, write)
    return _sqlite_lines(db, spec, tenant_id, write)


def _pg_types(db: Database, table: str) -> dict[str, str]:
    rows = db.execute_sql(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
        (quote(table),),
    ).fetchall()
    return {str(name): str(kind) for name, kind in rows}


def _missing(spec: TableSpec, present: Collection[str]) -> None:
    if not present:
        raise RelayError(f"table {spec.name} does not exist: run `relay-peewee migrate`")
    absent = [c for c in spec.column_names if c not in present]
    if absent:
        raise RelayError(
            f"{spec.name} has no column {absent[0]} that its model declares: "
            "migrate the database (or check --models)"
        )


def _pg_value(column: str, kind: str, pg_type: str) -> str:
    """The expression giving ``column`` in the format's encoding (PostgreSQL)."""
    c = quote(column)
    if kind == TIMESTAMP and pg_type.startswith("timestamp") and "with time zone" not in pg_type:
        return f"({c} AT TIME ZONE 'UTC')"  # naive columns hold UTC
    if kind in (JSON, TEXT_LIST, REAL_LIST) and pg_type in ("json", "text"):
        return f"{c}::jsonb"  # jsonb's text has no raw newline
    if kind == BYTES:
        return f"encode({c}, 'hex')"
    if kind == DECIMAL:
        return f"{c}::text"  # exact digits, not a JSON number
    return c


class _Chunks(io.RawIOBase):
    """``write`` as the raw file under an ``io.BufferedWriter``: rows as the drivers
    hand them over (one call per row) reach it in big chunks, gathered in C.

    The buffered writer is also psycopg2's file for copy_expert: not a text
    file, so it gets bytes.
    """

    SIZE = 1 << 18

    def __init__(self, write: Write) -> None:
        self.sink = write

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.sink(bytes(data))  # a view of the buffer, valid only during the call
        return len(data)


def _postgres_lines(db: Database, spec: TableSpec, tenant_id: str, write: Write) -> int:
    types = _pg_types(db, spec.name)
    _missing(spec, types)
    values = [_pg_value(c.name, c.type, types[c.name]) for c in spec.columns]
    if len(values) >= 100:  # a function takes at most 100 arguments
        raise RelayError(f"{spec.name} has {len(values)} columns; export handles up to 99")
    select = mogrify(
        db,
        f"SELECT json_build_array(%s, {', '.join(values)}) FROM {quote(spec.name)}"
        f" WHERE {_owner_column(spec)} = %s",
        (spec.name, tenant_id),
    )
    copy = f"COPY ({select}) TO STDOUT {_COPY_OPTIONS}"
    cursor = db.cursor()
    buffer = io.BufferedWriter(_Chunks(write), _Chunks.SIZE)
    if postgres_driver(db) == "psycopg3":
        with cursor.copy(copy) as stream:
            for data in stream:
                buffer.write(data)
    else:
        cursor.copy_expert(copy, buffer)
    buffer.flush()
    # Each row is one line (JSON escapes every newline): COPY's own count.
    return int(cursor.rowcount)


# peewee's text for a datetime on SQLite: YYYY-MM-DD HH:MM:SS, a fraction
# after it or not. Checked by its separators and length only: a GLOB on every
# digit doubles the cost of a timestamp column, and a value shaped like one
# but not one is refused by the import that reads it.
_TS_SHAPE = (
    "(substr({c}, 11, 1) = ' ' AND (length({c}) = 19"
    " OR (length({c}) > 20 AND substr({c}, 20, 1) = '.')))"
)


def _sqlite_value(column: str, kind: str) -> str:
    """The expression giving ``column`` in the format's encoding (SQLite)."""
    c = quote(column)
    if kind == TIMESTAMP:
        # peewee's text (YYYY-MM-DD HH:MM:SS[.ffffff], naive UTC) as ISO 8601
        # with an offset and no trailing zeros, as PostgreSQL writes it.
        # Anything else hits json()'s error; _bad_timestamp names it.
        shape = _TS_SHAPE.format(c=c)
        whole = f"substr({c}, 1, 10) || 'T' || substr({c}, 12) || '+00:00'"
        iso = (
            f"substr({c}, 1, 10) || 'T' || substr({c}, 12, 8)"
            f" || rtrim(rtrim(substr({c}, 20), '0'), '.') || '+00:00'"
        )
        return (
            f"CASE WHEN {c} IS NULL THEN NULL WHEN NOT {shape} THEN json('!')"
            f" WHEN length({c}) = 19 THEN {whole} ELSE {iso} END"
        )
    if kind == BOOLEAN:
        return f"CASE WHEN {c} IS NULL THEN NULL WHEN {c} THEN json('true') ELSE json('false') END"
    if kind in (JSON, TEXT_LIST, REAL_LIST):
        return f"json({c})"
    if kind == FLOAT:
        # 17 digits read back as the same double; json() keeps it a number.
        return f"CASE WHEN {c} IS NULL THEN NULL ELSE json(printf('%!.17g', {c})) END"
    if kind == BYTES:
        return f"CASE WHEN {c} IS NULL THEN NULL ELSE lower(hex({c})) END"
    if kind == DECIMAL:
        return f"CAST({c} AS TEXT)"
    if kind == UUID:
        # peewee stores a UUID as 32 hex digits on SQLite; the format has dashes.
        dashed = " || '-' || ".join(
            f"substr({c}, {start}, {n})"
            for start, n in ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))
        )
        return f"lower(CASE WHEN length({c}) = 32 THEN {dashed} ELSE {c} END)"
    return c


def _sqlite_select(spec: TableSpec) -> str:
    """The table's row lines (parameters: the table's name, the tenant id)."""
    values = [_sqlite_value(c.name, c.type) for c in spec.columns]
    return (
        f"SELECT json_array(?, {', '.join(values)}) FROM {quote(spec.name)}"
        f" WHERE {_owner_column(spec)} = ?"
    )


def _sqlite_lines(db: Database, spec: TableSpec, tenant_id: str, write: Write) -> int:
    info = db.execute_sql("SELECT name FROM pragma_table_info(?)", (spec.name,)).fetchall()
    _missing(spec, {r[0] for r in info})
    sql = _sqlite_select(spec)
    count = 0
    try:
        cursor = db.execute_sql(sql, (spec.name, tenant_id))
        while batch := cursor.fetchmany(_FETCH):
            write(("\n".join([r[0] for r in batch]) + "\n").encode())
            count += len(batch)
    # sqlite3's own error too: a row stepped by fetchmany() fails outside
    # peewee's execute_sql, unwrapped (whether it does depends on row order).
    except (OperationalError, sqlite3.OperationalError) as exc:
        if "malformed JSON" not in str(exc):
            raise
        raise RelayError(_bad_value(db, spec, tenant_id)) from None
    return count


def _bad_value_probes(spec: TableSpec) -> list[tuple[int, str]]:
    """(column index, a query for a value of it export cannot encode; parameter: the
    tenant id), in column order."""
    owner = _owner_column(spec)
    probes = []
    for i, column in enumerate(spec.columns):
        c = quote(column.name)
        if column.type == TIMESTAMP:
            test = f"{c} IS NOT NULL AND NOT {_TS_SHAPE.format(c=c)}"
        elif column.type in (JSON, TEXT_LIST, REAL_LIST):
            test = f"{c} IS NOT NULL AND NOT json_valid({c})"
        else:
            continue
        table = quote(spec.name)
        probes.append((i, f"SELECT {c} FROM {table} WHERE {owner} = ? AND {test} LIMIT 1"))
    return probes


def _bad_value_message(spec: TableSpec, index: int | None, value: str) -> str:
    """The one-line error for column ``index``'s value (its repr ``value``)."""
    if index is None:
        return f"cannot export {spec.name}: a value is not valid JSON"
    column = spec.columns[index]
    what = "a timestamp in peewee's form (YYYY-MM-DD HH:MM:SS[.ffffff], UTC)"
    if column.type != TIMESTAMP:
        what = "valid JSON"
    return (
        f"cannot export {spec.name}.{column.name} = {value}: it is not {what}; "
        "fix the row and export again"
    )


def _bad_value(db: Database, spec: TableSpec, tenant_id: str) -> str:
    """Name the value export cannot encode (SQLite stores anything anywhere)."""
    for index, probe in _bad_value_probes(spec):
        row = db.execute_sql(probe, (tenant_id,)).fetchone()
        if row is not None:
            return _bad_value_message(spec, index, repr(row[0]))
    return _bad_value_message(spec, None, "")


def _sqlite_task(spec: TableSpec, tenant_id: str) -> dict[str, Any]:
    """What a worker process needs to write the table's lines as _sqlite_lines does."""
    probes = _bad_value_probes(spec)
    return {
        "name": spec.name,
        "columns": spec.column_names,
        "sql": _sqlite_select(spec),
        "params": [spec.name, tenant_id],
        "probes": [sql for _i, sql in probes],
        "probe_params": [tenant_id],
    }


def _sqlite_refuse(spec: TableSpec, tenant_id: str, reply: dict[str, Any]) -> None:
    """A worker process's answer other than rows, raised as _sqlite_lines raises it."""
    if "missing" in reply:
        _missing(spec, set(reply["missing"]))
    if "bad" in reply:
        found = reply["bad"]
        if found is None:
            raise RelayError(_bad_value_message(spec, None, ""))
        probe, value = found
        raise RelayError(_bad_value_message(spec, _bad_value_probes(spec)[probe][0], value))
    raise RelayError(f"cannot export {spec.name}: the worker process answered {reply!r}")
