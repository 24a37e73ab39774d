"""The schema operations relay_peewee's migrations use, one subclass per backend.

Each class extends peewee's own migrator for its backend, so scripts keep
all of ``playhouse.migrate`` (``add_index``, ``drop_constraint``, ...) and
gain the few tenancy operations below. Backend differences live here and
nowhere else: a migration script says *what* a table's tenancy is, these
classes decide *how* (ALTER TABLE on PostgreSQL, one table rebuild on SQLite).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

from peewee import SQL, Database, SqliteDatabase, TextField
from playhouse.migrate import PostgresqlMigrator, SqliteMigrator, make_index_name

from ..db import is_postgres
from ..errors import MigrationError
from . import catalog
from .sqlite_ddl import TableDDL, quote
from .sqlite_rebuild import check_foreign_keys, rebuild_tables

__all__ = ["Progress", "TenantTable", "migrator_for"]

Progress = Callable[[str], None]
TENANT_COLUMN = "tenant_id"


@dataclass(frozen=True)
class TenantTable:
    """How one table is tenant-scoped: the end state of the tenancy migrations."""

    table: str
    # Each (global columns, per-tenant columns) pair swaps a global unique
    # for a composite one, e.g. (("slug",), ("tenant_id", "slug")).
    unique_swaps: Sequence[tuple[tuple[str, ...], tuple[str, ...]]] = ()
    # A new primary key, e.g. ("tenant_id", "id"), replacing `old_primary_key`.
    primary_key: tuple[str, ...] = ()
    old_primary_key: tuple[str, ...] = ()
    # Legacy names to restore on rollback, by global columns.
    legacy_unique_names: dict[tuple[str, ...], str] = field(default_factory=dict)

    @property
    def needs_tenant_index(self) -> bool:
        # A composite key that starts with tenant_id already serves as its index.
        leading = [new for _old, new in self.unique_swaps] + [self.primary_key]
        return not any(cols and cols[0] == TENANT_COLUMN for cols in leading)

    def legacy_unique_name(self, columns: tuple[str, ...]) -> str:
        return self.legacy_unique_names.get(columns) or f"{self.table}_{'_'.join(columns)}_unique"


class _TenancyOperations:
    """Operations shared by both backends; needs ``database`` and ``migrate``."""

    database: Database
    progress: Progress | None = None
    migrate: Callable[..., None]
    add_index: Callable[..., Any]
    alter_add_column: Callable[..., Any]

    def step(self, label: str) -> None:
        if self.progress is not None:
            self.progress(label)

    def add_tenant_column(self, table: str, tenant_id: str) -> None:
        # A constant default is stored once in the catalog, so this adds the
        # column to a populated table without rewriting a single row.
        column = TextField(constraints=[SQL(f"DEFAULT '{tenant_id}'")])
        self.migrate(self.alter_add_column(table, TENANT_COLUMN, column, allow_not_null=True))

    def refuse_unless_single_tenant(self, tables: Sequence[str], tenant_id: str) -> None:
        """Stop a rollback that would merge or lose other tenants' rows."""
        holders = []
        for table in tables:
            columns = catalog.table_columns(self.database, table)
            if TENANT_COLUMN not in columns:
                continue
            param = self.database.param
            row = self.database.execute_sql(
                f"SELECT count(*) FROM {quote(table)} WHERE {TENANT_COLUMN} <> {param}",
                (tenant_id,),
            ).fetchone()
            if row[0]:
                holders.append(f"{table} ({row[0]} rows)")
        if holders:
            raise MigrationError(
                "refusing to undo tenancy: tenants other than the default hold data in "
                + ", ".join(holders)
                + "; move or delete those rows first"
            )

    def _tenant_indexes(self, spec: TenantTable) -> list[Any]:
        ops = [
            self.add_index(spec.table, new, unique=True, name=make_index_name(spec.table, new))
            for _old, new in spec.unique_swaps
        ]
        if spec.needs_tenant_index:
            ops.append(
                self.add_index(
                    spec.table, (TENANT_COLUMN,), name=make_index_name(spec.table, (TENANT_COLUMN,))
                )
            )
        return ops

    def _drop_tenant_indexes(self, spec: TenantTable) -> list[str]:
        names = [make_index_name(spec.table, new) for _old, new in spec.unique_swaps]
        if spec.needs_tenant_index:
            names.append(make_index_name(spec.table, (TENANT_COLUMN,)))
        present = {ix.name for ix in catalog.indexes(self.database, spec.table)}
        return [n for n in names if n in present]


class RelayPostgresqlMigrator(_TenancyOperations, PostgresqlMigrator):
    def enforce_tenant_keys(self, specs: Sequence[TenantTable]) -> None:
        for spec in specs:
            self.step(f"{spec.table}: tenant foreign key, keys and indexes")
            t = spec.table
            ops: list[Any] = [
                self.add_foreign_key_constraint(
                    t, TENANT_COLUMN, "tenants", "id", constraint_name=f"{t}_tenant_id_fkey"
                )
            ]
            # Build the composite unique first: while the old global unique
            # holds, the new one cannot fail on existing rows.
            ops += self._tenant_indexes(spec)
            for old, _new in spec.unique_swaps:
                ops += [self._drop_key(t, ix) for ix in catalog.unique_on(self.database, t, old)]
            if spec.primary_key:
                ops += self._replace_primary_key(t, spec.primary_key)
            # No default may stay behind: an application row that omits the
            # tenant must be refused, not silently filed under the default one.
            ops.append(self.drop_column_default(t, TENANT_COLUMN))
            self.migrate(*ops)

    def relax_tenant_keys(self, specs: Sequence[TenantTable], tenant_id: str) -> None:
        for spec in specs:
            self.step(f"{spec.table}: restore global keys")
            t = spec.table
            ops: list[Any] = []
            for old, _new in spec.unique_swaps:
                ops.append(
                    self.add_constraint(
                        t, spec.legacy_unique_name(old), SQL(f"UNIQUE ({', '.join(old)})")
                    )
                )
            ops += [self.drop_index(t, name) for name in self._drop_tenant_indexes(spec)]
            if spec.primary_key:
                ops += self._replace_primary_key(t, spec.old_primary_key)
            ops.append(self.drop_constraint(t, f"{t}_tenant_id_fkey"))
            ops.append(self.add_column_default(t, TENANT_COLUMN, f"'{tenant_id}'"))
            self.migrate(*ops)

    def drop_tenant_column(self, table: str) -> None:
        # cascade=False: peewee's default CASCADE would silently drop views.
        self.migrate(self.drop_column(table, TENANT_COLUMN, cascade=False))

    def _drop_key(self, table: str, ix: catalog.Index) -> Any:
        if ix.origin == "index":
            return self.drop_index(table, ix.name)
        return self.drop_constraint(table, ix.name)

    def _replace_primary_key(self, table: str, columns: tuple[str, ...]) -> list[Any]:
        current = [ix for ix in catalog.indexes(self.database, table) if ix.origin == "primary"]
        ops = [self.drop_constraint(table, ix.name) for ix in current]
        ops.append(
            self.add_constraint(table, f"{table}_pkey", SQL(f"PRIMARY KEY ({', '.join(columns)})"))
        )
        return ops


class RelaySqliteMigrator(_TenancyOperations, SqliteMigrator):
    @contextmanager
    def migration_context(self, atomic: bool = True) -> Iterator[None]:
        # PRAGMA foreign_keys is ignored inside a transaction, so it is turned
        # off before BEGIN (unless a caller already did, e.g. `--sql`) and
        # checked with foreign_key_check before COMMIT.
        db = cast(SqliteDatabase, self.database)
        was_on = bool(db.pragma("foreign_keys")) and not db.in_transaction()
        if was_on:
            db.pragma("foreign_keys", 0)
        try:
            with db.atomic():
                yield
                check_foreign_keys(db)
        finally:
            if was_on:
                db.pragma("foreign_keys", 1)

    def enforce_tenant_keys(self, specs: Sequence[TenantTable]) -> None:
        self.step("rebuilding " + ", ".join(s.table for s in specs) + " with tenant keys")
        drop: list[str] = []
        for spec in specs:
            for old, _new in spec.unique_swaps:
                drop += [
                    ix.name
                    for ix in catalog.unique_on(self.database, spec.table, old)
                    if ix.origin == "index"
                ]
        rebuild_tables(
            cast(SqliteDatabase, self.database), {s.table: _enforce(s) for s in specs}, drop
        )
        self.step("creating per-tenant unique and tenant indexes")
        self.migrate(*[op for spec in specs for op in self._tenant_indexes(spec)])

    def relax_tenant_keys(self, specs: Sequence[TenantTable], tenant_id: str) -> None:
        self.step("rebuilding " + ", ".join(s.table for s in specs) + " with global keys")
        drop = [name for spec in specs for name in self._drop_tenant_indexes(spec)]
        rebuild_tables(
            cast(SqliteDatabase, self.database),
            {s.table: _relax(s, tenant_id) for s in specs},
            drop,
        )

    def drop_tenant_column(self, table: str) -> None:
        self.migrate(self.drop_column(table, TENANT_COLUMN))


def _enforce(spec: TenantTable) -> Callable[[TableDDL], None]:
    def transform(ddl: TableDDL) -> None:
        ddl.replace_column(
            TENANT_COLUMN, f'{quote(TENANT_COLUMN)} TEXT NOT NULL REFERENCES "tenants" ("id")'
        )
        for old, _new in spec.unique_swaps:
            ddl.drop_unique(old)
        if spec.primary_key:
            ddl.set_primary_key(spec.primary_key)

    return transform


def _relax(spec: TenantTable, tenant_id: str) -> Callable[[TableDDL], None]:
    def transform(ddl: TableDDL) -> None:
        ddl.replace_column(
            TENANT_COLUMN, f"{quote(TENANT_COLUMN)} TEXT NOT NULL DEFAULT '{tenant_id}'"
        )
        for old, _new in spec.unique_swaps:
            cols = ", ".join(quote(c) for c in old)
            ddl.add(f"CONSTRAINT {quote(spec.legacy_unique_name(old))} UNIQUE ({cols})")
        if spec.primary_key:
            ddl.set_primary_key(spec.old_primary_key)

    return transform


def migrator_for(db: Database) -> RelayPostgresqlMigrator | RelaySqliteMigrator:
    if is_postgres(db):
        return RelayPostgresqlMigrator(db)
    if isinstance(db, SqliteDatabase):
        return RelaySqliteMigrator(db)
    raise MigrationError(f"unsupported database {type(db).__name__}: use SQLite or PostgreSQL")
