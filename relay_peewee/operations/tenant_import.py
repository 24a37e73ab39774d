"""Importing a tenant file into a database of either backend, atomically.

One transaction, on the admin path (``bypass_scope``, as ``users move``):
the file's header is checked against the database (format, version, the
migrations it was exported at, every table and column), the tenant's id,
slug and domain must be free, then the rows are loaded table by table in the
file's (dependency) order, and only when the trailer's counts and digest
agree with what was read does it commit. Anything else - a taken email or
API key, a row of another tenant, a truncated file - rolls it all back and
raises one ``RelayError`` line.

PostgreSQL: the server decodes the rows (``INSERT ... SELECT`` over
``jsonb_array_elements`` of a batch of lines, so Python never parses them);
a reference to a row later in the file (``skills.published_version_id``, a
fork) is filled in by an ``UPDATE`` once every table is loaded, from a spool
file of those rows. Sequences are moved past the imported ids. The audit
events keep their times through ``relay.import_audit_times``, which migration
0013's trigger honours for a role that bypasses row-level security only.

SQLite: Python decodes each line and ``executemany`` loads it; foreign keys
are checked at COMMIT (``defer_foreign_keys``). The trigger that refuses an
audit event of another time is dropped and created again inside the
transaction, where no other connection can write.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, BinaryIO, TextIO

from peewee import Database, DatabaseProxy, DataError, IntegrityError

from ..database import is_postgres, unwrap
from ..database.catalog import foreign_keys, primary_key
from ..database.quoting import quote
from ..errors import MigrationError, RelayError
from ..events import write_event
from ..migrator import MigrationRunner
from ..models import AuditLog
from ..models.tenant import tenants_changed
from ..tenancy.rls import bypass_scope
from .tenant_data import (
    AUDIT_LOGS,
    BOOLEAN,
    BYTES,
    FLOAT,
    FORMAT,
    FORMAT_VERSION,
    JSON,
    REAL_LIST,
    TENANTS,
    TEXT_LIST,
    TIMESTAMP,
    ColumnSpec,
    TableSpec,
    TenantFileError,
)

__all__ = ["IMPORT_ACTION", "IMPORT_AUDIT_TIMES", "ImportSummary", "import_tenant"]

IMPORT_ACTION = "tenant.import"
# The session setting migration 0013's trigger reads (PostgreSQL).
IMPORT_AUDIT_TIMES = "relay.import_audit_times"
_BATCH_ROWS = 2000
_BATCH_BYTES = 4 << 20
# Global identities, for the refusal's wording: (table, column) -> what it is.
_IDENTITIES = {
    ("users", "email"): "a user's email",
    ("api_keys", "key_hash"): "an API key",
    ("tenants", "slug"): "the tenant's slug",
}


@dataclass(frozen=True)
class ImportSummary:
    tenant_id: str
    slug: str
    source_backend: str  # the backend the file was exported from
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows imported


def import_tenant(
    db: Database | DatabaseProxy,
    source: TextIO | BinaryIO | str | Path,
    *,
    progress: Callable[[str], None] | None = None,
) -> ImportSummary:
    """Import the tenant in ``source`` (a file path or an open file); all or nothing."""
    database = unwrap(db)
    with _opened(source) as lines:
        header = _header(next(lines, b""))
        tables = _tables(header)
        tenant = header["tenant"]
        tenant_id, slug = str(tenant["id"]), str(tenant["slug"])
        _require_schema(database, header)
        try:
            with database.atomic(), bypass_scope(database):
                _check_tenant_free(database, tenant_id, slug, tenant)
                loader: _Loader = (
                    _PostgresLoader(database, tenant_id)
                    if is_postgres(database)
                    else _SqliteLoader(database, tenant_id)
                )
                with loader:
                    rows = _load(loader, tables, lines, progress)
                    loader.finish()
                _record(
                    database,
                    {
                        "action": IMPORT_ACTION,
                        "tenant_id": None,  # a system event: the tenant's own log stays as exported
                        "resource_type": "tenant",
                        "resource_id": tenant_id,
                        "metadata": {"slug": slug, "rows": rows, "from": header["backend"]},
                    },
                )
        except (IntegrityError, sqlite3.IntegrityError) as exc:
            raise RelayError(_conflict(slug, getattr(exc, "table", None), exc)) from None
        except DataError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "bad value"
            raise TenantFileError(
                f"cannot import tenant {slug!r}: a row holds a value the database refuses "
                f"({first}); nothing was changed"
            ) from None
    tenants_changed()
    return ImportSummary(tenant_id, slug, str(header["backend"]), rows)


def _record(db: Database, row: dict[str, Any]) -> None:
    # Bound for the write: the models' proxy may name another database.
    with db.bind_ctx([AuditLog]):
        write_event(db, row, strict=True)


# --- the file ---------------------------------------------------------------


@contextmanager
def _opened(source: TextIO | BinaryIO | str | Path) -> Iterator[Iterator[bytes]]:
    if isinstance(source, (str, Path)):
        try:
            stream: IO[Any] = open(source, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise RelayError(f"cannot read {source}: {exc.strerror}") from None
        with stream:
            yield iter(stream)
        return
    yield _as_bytes(source)


def _as_bytes(stream: TextIO | BinaryIO) -> Iterator[bytes]:
    for line in stream:
        yield line.encode() if isinstance(line, str) else line


def _header(line: bytes) -> dict[str, Any]:
    if not line.strip():
        raise TenantFileError("the file is empty: not a relay-peewee tenant file")
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise TenantFileError(f"not a {FORMAT} file: its first line is not the header")
    version = header.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise TenantFileError(
            f"the file is {FORMAT} version {version!r}; this relay_peewee reads version "
            f"{FORMAT_VERSION}: upgrade relay_peewee"
        )
    migrations = header.get("migrations", [])
    if not isinstance(migrations, list) or not all(isinstance(m, str) for m in migrations):
        raise TenantFileError("the file's header lists its migrations malformed")
    tenant = header.get("tenant")
    if not isinstance(tenant, dict) or not tenant.get("id") or not tenant.get("slug"):
        raise TenantFileError("the file's header names no tenant (id and slug)")
    return header


def _tables(header: dict[str, Any]) -> dict[str, TableSpec]:
    try:
        specs = [
            TableSpec(
                str(t["name"]),
                tuple(ColumnSpec(str(c["name"]), str(c["type"])) for c in t["columns"]),
            )
            for t in header["tables"]
        ]
    except (KeyError, TypeError):
        raise TenantFileError("the file's header lists its tables malformed") from None
    if not specs or specs[0].name != TENANTS:
        raise TenantFileError(f"the file's first table must be {TENANTS}")
    return {s.name: s for s in specs}


def _require_schema(db: Database, header: dict[str, Any]) -> None:
    """The database is migrated to (at least) the schema the file was exported at."""
    if TENANTS not in db.get_tables():
        raise MigrationError("this database has no tenants table yet: run `relay-peewee migrate`")
    applied = {s.name for s in MigrationRunner(db).statuses() if s.applied is not None}
    missing = [m for m in header.get("migrations", []) if m not in applied]
    if missing:
        raise MigrationError(
            f"the file was exported at a schema this database is not migrated to: it lacks "
            f"{', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}; run `relay-peewee "
            "migrate` (with the application's --migrations) first; nothing was changed"
        )


def _check_tenant_free(db: Database, tenant_id: str, slug: str, tenant: dict[str, Any]) -> None:
    p = "%s" if is_postgres(db) else "?"
    domain = tenant.get("domain")
    if domain:
        other = db.execute_sql(
            f"SELECT slug FROM {TENANTS} WHERE lower(domain) = lower({p})", (domain,)
        ).fetchone()
        if other is not None:
            raise RelayError(
                f"cannot import tenant {slug!r}: tenant {other[0]!r} already has the domain "
                f"{domain!r}; nothing was changed"
            )
    taken = db.execute_sql(
        f"SELECT id, slug FROM {TENANTS} WHERE id = {p} OR slug = {p}", (tenant_id, slug)
    ).fetchone()
    if taken is not None:
        what = f"id {tenant_id}" if str(taken[0]) == tenant_id else f"slug {slug!r}"
        raise RelayError(
            f"cannot import tenant {slug!r}: a tenant with {what} exists in this database "
            f"(slug {taken[1]!r}); nothing was changed"
        )


def _conflict(slug: str, table: str | None, exc: BaseException) -> str:
    """One line naming what the database refused: a taken identity, a bad reference."""
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else "integrity error"
    detail = next((x.strip() for x in lines if x.strip().startswith("DETAIL")), "")
    shown = f"{first}; {detail.removeprefix('DETAIL:').strip()}" if detail else first
    column = ""
    if "Key (" in detail:  # PostgreSQL: Key (email)=(ada@example.com) already exists.
        column = detail.split("Key (", 1)[1].split(")", 1)[0]
    elif "UNIQUE constraint failed: " in first:  # SQLite: UNIQUE constraint failed: users.email
        table, _dot, column = first.split("failed: ", 1)[1].partition(".")
    unique = "duplicate key" in first or "UNIQUE constraint" in first or "REPLACE" in first
    if not unique:
        where = f" of {table}" if table else ""
        return (
            f"cannot import tenant {slug!r}: the database refused a row{where} ({shown}); "
            "nothing was changed"
        )
    label = _IDENTITIES.get((table or "", column))
    if label is None:
        label = f"a row id of {table}" if table else "a row id"
    return (
        f"cannot import tenant {slug!r}: {label} in the file is taken in this database "
        f"({shown}); nothing was changed"
    )


# --- loading ----------------------------------------------------------------


class _Loader:
    """One backend's way of putting rows in: a table at a time, in batches."""

    def __init__(self, db: Database, tenant_id: str) -> None:
        self.db = db
        self.tenant_id = tenant_id
        self.stack = ExitStack()

    def __enter__(self) -> _Loader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stack.close()

    def table(self, spec: TableSpec, later: list[str]) -> None:
        raise NotImplementedError

    def add(self, line: bytes) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """After the last row: what could not be loaded in order, sequences, triggers."""


def _load(
    loader: _Loader,
    tables: dict[str, TableSpec],
    lines: Iterator[bytes],
    progress: Callable[[str], None] | None,
) -> dict[str, int]:
    digest = hashlib.sha256()
    counts: dict[str, int] = {}
    order = list(tables)
    current: str | None = None
    trailer: dict[str, Any] | None = None
    for line in lines:
        if trailer is not None:
            if line.strip():
                raise TenantFileError("the file goes on after its trailer: altered")
            continue
        if line[:1] != b"[":
            try:
                trailer = json.loads(line)
            except ValueError:
                trailer = None
            if not isinstance(trailer, dict) or trailer.get("trailer") is not True:
                raise TenantFileError("a line of the file is neither a row nor the trailer")
            continue
        if not line.endswith(b"\n"):
            line += b"\n"  # the last row of a file cut short; the trailer check refuses it
        digest.update(line)
        name = _row_table(line)
        if name != current:
            if name not in tables:
                raise TenantFileError(f"the file holds rows of {name!r}, a table its header omits")
            if name in counts:
                raise TenantFileError(f"the rows of {name} are not together in the file")
            if current is not None:
                loader.flush()
                if progress is not None:
                    progress(f"{current}: {counts[current]} rows")
            current = name
            counts[name] = 0
            loader.table(tables[name], order[order.index(name) :])
        loader.add(line)
        counts[name] += 1
    if current is not None:
        loader.flush()
        if progress is not None:
            progress(f"{current}: {counts[current]} rows")
    if trailer is None:
        raise TenantFileError("the file ends before its trailer: truncated; nothing was changed")
    expected = {t: n for t, n in (trailer.get("rows") or {}).items() if n}
    if expected != counts or trailer.get("sha256") != digest.hexdigest():
        raise TenantFileError(
            "the file's rows do not match its trailer (counts or sha256): truncated or "
            "altered; nothing was changed"
        )
    if counts.get(TENANTS) != 1:
        raise TenantFileError(f"the file must hold exactly one row of {TENANTS}")
    return {t: counts.get(t, 0) for t in tables}


def _row_table(line: bytes) -> str:
    # ["name", ...: the table's name comes first (a table name needs no escape).
    end = line.find(b'"', 2)
    if line[1:2] != b'"' or end < 0:
        raise TenantFileError("a row line does not start with its table's name")
    return line[2:end].decode()


def _owner_index(spec: TableSpec) -> int:
    owner = "id" if spec.name == TENANTS else "tenant_id"
    names = spec.column_names
    if owner not in names:
        raise TenantFileError(f"the file's {spec.name} has no {owner} column")
    return names.index(owner)


def _target_columns(db: Database, spec: TableSpec) -> dict[str, str]:
    """The target table's columns and types; every column of the file must be there."""
    if is_postgres(db):
        rows = db.execute_sql(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
            (quote(spec.name),),
        ).fetchall()
    else:
        rows = db.execute_sql(
            "SELECT name, type FROM pragma_table_info(?)", (spec.name,)
        ).fetchall()
    present = {str(n): str(t) for n, t in rows}
    if not present:
        raise RelayError(
            f"the file holds rows of {spec.name}, a table this database does not have: "
            "migrate it with the application's --migrations first; nothing was changed"
        )
    absent = [c for c in spec.column_names if c not in present]
    if absent:
        raise RelayError(
            f"the file's {spec.name}.{absent[0]} is not a column of this database's "
            f"{spec.name}: migrate it first; nothing was changed"
        )
    return present


def _later_references(db: Database, spec: TableSpec, later: list[str]) -> list[str]:
    """Columns referencing this table or one loaded after it: filled in at the end."""
    out: list[str] = []
    for key in foreign_keys(db, spec.name):
        if key.ref_table in later:
            out += [c for c in key.columns if c != "tenant_id" and c not in out]
    return out


class _PostgresLoader(_Loader):
    def __init__(self, db: Database, tenant_id: str) -> None:
        super().__init__(db, tenant_id)
        db.execute_sql("SET LOCAL TimeZone = 'UTC'")
        self.batch: list[bytes] = []
        self.size = 0
        self.spec: TableSpec | None = None
        self.insert = ""
        self.deferred: list[tuple[TableSpec, dict[str, str], list[str], IO[bytes]]] = []
        self.spool: IO[bytes] | None = None
        self.loaded: list[tuple[TableSpec, dict[str, str]]] = []

    def table(self, spec: TableSpec, later: list[str]) -> None:
        types = _target_columns(self.db, spec)
        owner = _owner_index(spec)
        later_columns = _later_references(self.db, spec, later)
        values = [
            "NULL" if c.name in later_columns else _pg_expr(c, i + 1, types[c.name])
            for i, c in enumerate(spec.columns)
        ]
        columns = ", ".join(quote(c) for c in spec.column_names)
        self.insert = (
            f"INSERT INTO {quote(spec.name)} ({columns}) SELECT {', '.join(values)}"
            " FROM jsonb_array_elements(%s::jsonb) AS e"
            f" WHERE jsonb_array_length(e) = {len(spec.columns) + 1} AND e->>{owner + 1} = %s"
        )
        self.spec = spec
        self.spool = None
        if later_columns:
            # Closed (and so removed) with the loader.
            self.spool = self.stack.enter_context(tempfile.TemporaryFile())  # noqa: SIM115
            self.deferred.append((spec, types, later_columns, self.spool))
        self.loaded.append((spec, types))
        if spec.name == AUDIT_LOGS:
            # Their own times, not the clock's (migration 0013's trigger).
            self.db.execute_sql("SELECT set_config(%s, 'on', true)", (IMPORT_AUDIT_TIMES,))

    def add(self, line: bytes) -> None:
        self.batch.append(line)
        self.size += len(line)
        if self.spool is not None:
            self.spool.write(line)
        if len(self.batch) >= _BATCH_ROWS or self.size >= _BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.batch or self.spec is None:
            return
        payload = b"[" + b",".join(self.batch) + b"]"
        try:
            cursor = self.db.execute_sql(self.insert, (payload.decode(), self.tenant_id))
        except IntegrityError as exc:
            exc.table = self.spec.name  # type: ignore[attr-defined]
            raise
        if cursor.rowcount != len(self.batch):
            raise TenantFileError(
                f"{len(self.batch) - cursor.rowcount} row(s) of {self.spec.name} belong to "
                "another tenant or do not match the header's columns; nothing was changed"
            )
        self.batch, self.size = [], 0

    def finish(self) -> None:
        self.db.execute_sql("SELECT set_config(%s, 'off', true)", (IMPORT_AUDIT_TIMES,))
        for spec, types, columns, spool in self.deferred:
            self._fill_in(spec, types, columns, spool)
        for spec, types in self.loaded:
            self._move_sequences(spec, types)

    def _fill_in(
        self, spec: TableSpec, types: dict[str, str], columns: list[str], spool: IO[bytes]
    ) -> None:
        names = spec.column_names
        keys = primary_key(self.db, spec.name)
        sets = ", ".join(
            f"{quote(c)} = {_pg_expr(spec.columns[names.index(c)], names.index(c) + 1, types[c])}"
            for c in columns
        )
        match = " AND ".join(
            f"x.{quote(k)} = {_pg_expr(spec.columns[names.index(k)], names.index(k) + 1, types[k])}"
            for k in keys
        )
        some = " OR ".join(f"e->>{names.index(c) + 1} IS NOT NULL" for c in columns)
        update = (
            f"UPDATE {quote(spec.name)} AS x SET {sets} FROM jsonb_array_elements(%s::jsonb) AS e"
            f" WHERE {match} AND ({some})"
        )
        spool.seek(0)
        batch: list[bytes] = []
        for line in spool:
            batch.append(line)
            if len(batch) >= _BATCH_ROWS:
                self.db.execute_sql(update, ((b"[" + b",".join(batch) + b"]").decode(),))
                batch = []
        if batch:
            self.db.execute_sql(update, ((b"[" + b",".join(batch) + b"]").decode(),))

    def _move_sequences(self, spec: TableSpec, types: dict[str, str]) -> None:
        for column in spec.columns:
            if types[column.name] not in ("integer", "bigint", "smallint"):
                continue
            (sequence,) = self.db.execute_sql(
                "SELECT pg_get_serial_sequence(%s, %s)", (quote(spec.name), column.name)
            ).fetchone()
            if sequence is None:
                continue
            # Past the largest id now in the table, never back.
            self.db.execute_sql(
                f"SELECT setval(%s, m) FROM (SELECT max({quote(column.name)}) AS m"
                f" FROM {quote(spec.name)}) AS t"
                f" WHERE m IS NOT NULL AND m > (SELECT last_value FROM {sequence})",
                (sequence,),
            )


def _pg_expr(column: ColumnSpec, index: int, pg_type: str) -> str:
    """The file's value ``e->index`` as the target column's type."""
    value, text = f"(e->{index})", f"(e->>{index})"
    kind = column.type
    if kind in (JSON, TEXT_LIST, REAL_LIST) and pg_type.endswith("[]"):
        return (
            f"CASE WHEN jsonb_typeof({value}) = 'array' THEN ARRAY(SELECT x FROM"
            f" jsonb_array_elements_text({value}) WITH ORDINALITY AS a(x, n) ORDER BY n)::{pg_type}"
            " END"
        )
    if kind in (JSON, TEXT_LIST, REAL_LIST):
        # SQL NULL and JSON null are one value in the format.
        return f"NULLIF({value}, 'null'::jsonb)::{pg_type}"
    if kind == TIMESTAMP and pg_type.startswith("timestamp"):
        if "with time zone" in pg_type:
            return f"{text}::timestamptz"
        return f"({text}::timestamptz AT TIME ZONE 'UTC')"
    if kind == BYTES and pg_type == "bytea":
        return f"decode({text}, 'hex')"
    if pg_type == "text":
        return text
    return f"{text}::{pg_type}"


class _SqliteLoader(_Loader):
    def __init__(self, db: Database, tenant_id: str) -> None:
        super().__init__(db, tenant_id)
        # Parents and children check each other at COMMIT (reset there).
        db.execute_sql("PRAGMA defer_foreign_keys = ON")
        self.batch: list[list[Any]] = []
        self.spec: TableSpec | None = None
        self.insert = ""
        self.convert: list[tuple[int, Callable[[Any], Any]]] = []
        self.owner = 0
        self.width = 0
        self.audit_trigger: str | None = None

    def table(self, spec: TableSpec, later: list[str]) -> None:
        _target_columns(self.db, spec)
        self.spec = spec
        self.owner = _owner_index(spec) + 1
        self.width = len(spec.columns) + 1
        columns = ", ".join(quote(c) for c in spec.column_names)
        marks = ", ".join("?" for _ in spec.columns)
        self.insert = f"INSERT INTO {quote(spec.name)} ({columns}) VALUES ({marks})"
        self.convert = [
            (i + 1, fn) for i, c in enumerate(spec.columns) if (fn := _SQLITE.get(c.type))
        ]
        if spec.name == AUDIT_LOGS:
            row = self.db.execute_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?",
                ("audit_logs_created_at",),
            ).fetchone()
            if row is not None:
                # Refuses a time that is not now; inside this transaction no
                # other connection can write, and finish() puts it back.
                self.audit_trigger = str(row[0])
                self.db.execute_sql("DROP TRIGGER audit_logs_created_at")

    def add(self, line: bytes) -> None:
        try:
            row = json.loads(line)
        except ValueError:
            raise TenantFileError(
                f"a row of {self.spec.name if self.spec else '?'} is not valid JSON"
            ) from None
        if len(row) != self.width or row[self.owner] != self.tenant_id:
            raise TenantFileError(
                f"a row of {self.spec.name if self.spec else '?'} belongs to another tenant "
                "or does not match the header's columns; nothing was changed"
            )
        try:
            for i, fn in self.convert:
                if row[i] is not None:
                    row[i] = fn(row[i])
        except (ValueError, TypeError, OverflowError) as exc:
            raise TenantFileError(
                f"a row of {self.spec.name if self.spec else '?'} holds a value its column's "
                f"type cannot take ({exc}); nothing was changed"
            ) from None
        self.batch.append(row[1:])
        if len(self.batch) >= _BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.batch:
            return
        try:
            self.db.cursor().executemany(self.insert, self.batch)
        except IntegrityError as exc:
            exc.table = self.spec.name if self.spec else None  # type: ignore[attr-defined]
            raise
        except Exception as exc:  # sqlite3's own errors, as peewee would map them
            if "constraint" in str(exc).lower() or "refused" in str(exc):
                error = IntegrityError(str(exc))
                error.table = self.spec.name if self.spec else None  # type: ignore[attr-defined]
                raise error from None
            raise
        self.batch = []

    def finish(self) -> None:
        if self.audit_trigger is not None:
            self.db.execute_sql(self.audit_trigger)
            self.audit_trigger = None

    def __exit__(self, *exc: Any) -> None:
        # On an error the transaction rolls back, trigger included.
        super().__exit__(*exc)


def _sqlite_timestamp(value: str) -> str:
    """The format's ISO 8601 as peewee's SQLite text: naive UTC, space, 6 digits."""
    if value.endswith("+00:00") and value[10:11] == "T":
        fraction = value[19:-6]
        return value[:10] + " " + value[11:19] + (fraction.ljust(7, "0") if fraction else "")
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return str(moment)


# The format's value -> what SQLite stores (the fields' own db_value on SQLite).
_SQLITE: dict[str, Callable[[Any], Any]] = {
    TIMESTAMP: _sqlite_timestamp,
    JSON: json.dumps,
    TEXT_LIST: json.dumps,
    REAL_LIST: json.dumps,
    BYTES: bytes.fromhex,
    FLOAT: float,
    BOOLEAN: int,
}
