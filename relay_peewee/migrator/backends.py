"""The schema operations relay_peewee's migrations use, one subclass per backend.

Each class extends peewee's own migrator for its backend, so scripts keep
all of ``playhouse.migrate`` (``add_index``, ``drop_constraint``, ...) and
gain the few tenancy operations below. Backend differences live here and
nowhere else: a migration script says *what* a table's tenancy is, these
classes decide *how* (ALTER TABLE on PostgreSQL, one table rebuild on SQLite).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, cast

from peewee import SQL, Database, Model, SqliteDatabase, TextField
from playhouse.migrate import PostgresqlMigrator, SqliteMigrator, make_index_name

from ..database import catalog, is_postgres
from ..database.quoting import quote_list
from ..errors import MigrationError
from ..tenancy.rls import TENANT_SETTING
from .specs import (
    DEFAULT_TENANT_ID,
    TENANT_COLUMN,
    TenancyPlan,
    TenantReference,
    TenantTable,
    tenancy_plan,
)
from .sqlite_ddl import TableDDL, quote, unquote
from .sqlite_rebuild import check_foreign_keys, rebuild_tables

# TenantTable and TenantReference are imported from here by released
# migration scripts (0004, 0006): they stay importable from this module.
__all__ = ["Progress", "TenantReference", "TenantTable", "migrator_for"]

Progress = Callable[[str], None]


PARENT_KEY = (TENANT_COLUMN, "id")


def _plan(targets: Sequence[type[Model] | TenancyPlan]) -> TenancyPlan:
    plans = [t for t in targets if isinstance(t, TenancyPlan)]
    models = [t for t in targets if not isinstance(t, TenancyPlan)]
    if models:
        plans.append(tenancy_plan(models))
    if not plans:
        raise MigrationError("tenantize: name at least one TenantModel")
    return TenancyPlan(
        tuple(t for p in plans for t in p.tables), tuple(r for p in plans for r in p.references)
    )


# Row-level security (PostgreSQL): a row is visible and writable only while
# the session's transaction has set this tenant (tenant_context does, with
# set_config(..., true), so it ends with the transaction).
POLICY = "tenant_isolation"
POLICY_PREDICATE = f"{TENANT_COLUMN} = current_setting('{TENANT_SETTING}', true)"


def policy_sql(table: str) -> list[str]:
    # The policy exists before RLS is enabled: enabled without one, every
    # query on the table would see zero rows.
    t = quote(table)
    return [
        f"CREATE POLICY {POLICY} ON {t} USING ({POLICY_PREDICATE}) WITH CHECK ({POLICY_PREDICATE})",
        f"ALTER TABLE {t} ENABLE ROW LEVEL SECURITY",
        # FORCE: the table owner is bound too (superusers and BYPASSRLS
        # roles still are not: that is the audited way around it).
        f"ALTER TABLE {t} FORCE ROW LEVEL SECURITY",
    ]


def unpolicy_sql(table: str) -> list[str]:
    t = quote(table)
    return [
        f"ALTER TABLE {t} NO FORCE ROW LEVEL SECURITY",
        f"ALTER TABLE {t} DISABLE ROW LEVEL SECURITY",
        f"DROP POLICY IF EXISTS {POLICY} ON {t}",
    ]


class _TenancyOperations:
    """Operations shared by both backends; needs ``database`` and ``migrate``."""

    def run_context(self) -> AbstractContextManager[None]:
        """Wraps a whole migrate or rollback run (SQLite overrides it)."""
        return nullcontext()

    database: Database
    progress: Progress | None = None
    migrate: Callable[..., None]
    add_index: Callable[..., Any]
    drop_index: Callable[..., Any]
    alter_add_column: Callable[..., Any]
    # Each backend's way of doing the tenancy steps:
    enforce_tenant_keys: Callable[..., None]
    relax_tenant_keys: Callable[..., None]
    enforce_tenant_references: Callable[..., None]
    relax_tenant_references: Callable[..., None]
    enable_row_level_security: Callable[..., None]
    disable_row_level_security: Callable[..., None]
    secure_views: Callable[..., None]
    drop_tenant_column: Callable[..., None]

    def step(self, label: str) -> None:
        if self.progress is not None:
            self.progress(label)

    # -- an application's tables -------------------------------------------
    def tenantize(self, *targets: type[Model] | TenancyPlan) -> None:
        """Make existing tables tenant-scoped, as their TenantModels declare.

        Every step Relay's own tables went through (0003, 0004, 0006, 0008),
        on the backend's path (one transaction, ``--online`` steps, one SQLite
        rebuild per table): ``tenant_id`` added with existing rows filed
        under the default tenant, its foreign key and index, per-tenant
        uniques in place of the global ones, tenant-consistent references,
        no default left on ``tenant_id``, and the RLS policy on PostgreSQL.
        """
        plan = _plan(targets)
        for spec in plan.tables:
            self.step(f"{spec.table}: add tenant_id (default tenant)")
            self.add_tenant_column(spec.table, DEFAULT_TENANT_ID)
        self.enforce_tenant_keys(plan.tables)
        if plan.references:
            self.refuse_cross_tenant_references(plan.references)
            self.enforce_tenant_references(plan.references, ())
        self.enable_row_level_security(plan.table_names)
        self.secure_views(plan.table_names)

    def untenantize(self, *targets: type[Model] | TenancyPlan) -> None:
        """The reverse of ``tenantize``; refused while other tenants hold rows there.

        Each per-tenant unique becomes global again (on its columns without
        ``tenant_id``), and references become one-column keys again.
        """
        plan = _plan(targets)
        self.refuse_unless_single_tenant(plan.table_names, DEFAULT_TENANT_ID)
        self.disable_row_level_security(plan.table_names)
        if plan.references:
            self.relax_tenant_references(plan.references, (), parents=plan.table_names)
        self.relax_tenant_keys(plan.tables, DEFAULT_TENANT_ID)
        for spec in reversed(plan.tables):
            self.step(f"{spec.table}: drop tenant_id")
            self.drop_tenant_column(spec.table)

    def has_parent_key(self, table: str) -> bool:
        """Whether (tenant_id, id) is already unique on ``table``, under any name."""
        return bool(catalog.unique_on(self.database, table, PARENT_KEY)) or (
            catalog.primary_key(self.database, table) == PARENT_KEY
        )

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
                f"SELECT count(*) FROM {quote(table)} WHERE {quote(TENANT_COLUMN)} <> {param}",
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

    def refuse_if_rows(self, tables: Sequence[str]) -> None:
        """Stop a rollback whose ``down`` would drop tables that hold rows.

        A drafted baseline creates tables with ``safe=True``, so adopting an
        app's existing, populated tables runs it as a no-op; its ``down``
        would then drop the app's data, not tables the migration made.
        """
        holders = []
        for table in tables:
            if not self.database.table_exists(table):
                continue
            row = self.database.execute_sql(
                f"SELECT count(*) FROM (SELECT 1 FROM {quote(table)} LIMIT 1000001) AS t"
            ).fetchone()
            if row[0]:
                shown = "over 1000000" if row[0] > 1_000_000 else str(row[0])
                holders.append(f"{table} ({shown} rows)")
        if holders:
            raise MigrationError(
                "refusing to drop tables that hold rows: "
                + ", ".join(holders)
                + "; back them up and empty them first"
            )

    def refuse_cross_tenant_references(self, refs: Sequence[TenantReference]) -> None:
        """Stop, naming the rows, if any row already points into another tenant."""
        tenants = self.database.execute_sql("SELECT count(*) FROM tenants").fetchone()[0]
        if tenants <= 1:
            return  # with one tenant (the usual legacy case) nothing can cross
        problems = []
        for ref in refs:
            child, parent, col = quote(ref.table), quote(ref.parent), quote(ref.column)
            rows = self.database.execute_sql(
                f"SELECT c.id FROM {child} c JOIN {parent} p ON p.id = c.{col}"
                f" WHERE p.{TENANT_COLUMN} <> c.{TENANT_COLUMN} ORDER BY c.id"
            ).fetchall()
            if rows:
                ids = ", ".join(str(r[0]) for r in rows[:3]) + (", ..." if len(rows) > 3 else "")
                problems.append(f"{ref.table}.{ref.column} ({len(rows)} rows: {ids})")
        if problems:
            raise MigrationError(
                "rows reference another tenant's row, so tenant-consistent keys cannot be "
                "added: " + "; ".join(problems) + "; move or delete them, then migrate again"
            )

    def old_reference(self, ref: TenantReference) -> catalog.ForeignKey | None:
        """The one-column foreign key a TenantReference replaces, if present."""
        return self._reference(ref, (ref.column,))

    def composite_reference(self, ref: TenantReference) -> catalog.ForeignKey | None:
        """The (tenant_id, column) foreign key, if present."""
        return self._reference(ref, ref.columns)

    def _reference(
        self, ref: TenantReference, columns: tuple[str, ...]
    ) -> catalog.ForeignKey | None:
        for fk in catalog.foreign_keys(self.database, ref.table):
            if fk.columns == columns and fk.ref_table == ref.parent:
                return fk
        return None

    def _drop_parent_keys(
        self, refs: Sequence[TenantReference], parents: Sequence[str] | None
    ) -> None:
        # ``parents``: whose keys to drop; None for all. Undoing an
        # application's references must not drop users (tenant_id, id).
        for parent in sorted({r.parent for r in refs}):
            if parents is not None and parent not in parents:
                continue
            name = make_index_name(parent, PARENT_KEY)
            if any(ix.name == name for ix in catalog.indexes(self.database, parent)):
                self.migrate(self.drop_index(parent, name))

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
                if not old:
                    continue
                ops.append(
                    self.add_constraint(
                        t, spec.legacy_unique_name(old), SQL(f"UNIQUE ({quote_list(old)})")
                    )
                )
            ops += [self.drop_index(t, name) for name in self._drop_tenant_indexes(spec)]
            if spec.primary_key:
                ops += self._replace_primary_key(t, spec.old_primary_key)
            ops.append(self.drop_constraint(t, f"{t}_tenant_id_fkey"))
            ops.append(self.add_column_default(t, TENANT_COLUMN, f"'{tenant_id}'"))
            self.migrate(*ops)

    def enforce_tenant_references(
        self, refs: Sequence[TenantReference], redundant_indexes: Sequence[tuple[str, str]]
    ) -> None:
        for parent in sorted({r.parent for r in refs}):
            if self.has_parent_key(parent):
                continue
            self.step(f"{parent}: unique (tenant_id, id) for tenant-consistent references")
            self.migrate(self.add_index(parent, PARENT_KEY, unique=True))
        for ref in refs:
            self.step(f"{ref.table}.{ref.column}: foreign key within the tenant")
            old = self.old_reference(ref)
            on_delete = old.on_delete if old else "NO ACTION"
            # The new key is in place before the old one goes.
            ops = [
                self.add_constraint(
                    ref.table, ref.constraint_name, SQL(ref.references_sql(on_delete))
                )
            ]
            if old is not None and old.name:
                ops.append(self.drop_constraint(ref.table, old.name))
            self.migrate(*ops)
        for table, name in redundant_indexes:
            if any(ix.name == name for ix in catalog.indexes(self.database, table)):
                self.migrate(self.drop_index(table, name))

    def relax_tenant_references(
        self,
        refs: Sequence[TenantReference],
        redundant_indexes: Sequence[tuple[str, str]],
        parents: Sequence[str] | None = None,
    ) -> None:
        for table, _name in redundant_indexes:
            self.migrate(self.add_index(table, (TENANT_COLUMN,)))
        for ref in refs:
            new = self.composite_reference(ref)
            on_delete = new.on_delete if new else "NO ACTION"
            self.migrate(
                self.add_constraint(
                    ref.table,
                    f"{ref.table}_{ref.column}_fkey",
                    SQL(_single_reference_sql(ref, on_delete)),
                ),
                self.drop_constraint(ref.table, ref.constraint_name),
            )
        self._drop_parent_keys(refs, parents)

    def enable_row_level_security(self, tables: Sequence[str]) -> None:
        for table in tables:
            if catalog.has_policy(self.database, table, POLICY):
                continue
            self.step(f"{table}: row-level security policy {POLICY}")
            self.migrate(*[self.sql(s) for s in policy_sql(table)])

    def disable_row_level_security(self, tables: Sequence[str]) -> None:
        for table in tables:
            self.migrate(*[self.sql(s) for s in unpolicy_sql(table)])

    def owner_views(self, tables: Sequence[str]) -> list[str]:
        """Views over ``tables`` that read them with their owner's rights (bypassing RLS)."""
        readers = catalog.postgres_catalog(self.database).views_reading(tuple(tables))
        return [
            f"{quote(v.schema)}.{quote(v.name)}"
            for v in readers
            if v.kind == "view" and not v.hardened
        ]

    def secure_views(self, tables: Sequence[str]) -> None:
        # As 0009 does for Relay's views: a view read with its owner's
        # rights would show every tenant's rows past the policies.
        for view in self.owner_views(tables):
            self.step(f"{view}: security_invoker, so row-level security binds its reader")
            self.migrate(self.sql(f"ALTER VIEW {view} SET (security_invoker = true)"))

    def run_context(self) -> AbstractContextManager[None]:
        require_rls_bypass(self.database)
        return nullcontext()

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
            self.add_constraint(table, f"{table}_pkey", SQL(f"PRIMARY KEY ({quote_list(columns)})"))
        )
        return ops


class RelaySqliteMigrator(_TenancyOperations, SqliteMigrator):
    """SQLite: constraint changes are table rebuilds, merged per run.

    Inside ``run_context`` (the engine wraps every migrate and rollback in
    it) all pending migrations share one transaction, and the rebuilds they
    ask for are queued and done together: 0004 and 0006 both change the
    keys of ``ratings``, yet it is copied once. A migration whose own
    statements need the rebuilt tables (say, a DROP COLUMN) first makes the
    queue run; one that does not says so with ``MERGES_REBUILDS = True``.

    The indexes those migrations add to the queued tables wait in the queue
    too, and are built once, after the copy: an index built before the
    rebuild would be built again when the rebuild recreates it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deferring = False
        self._queued: dict[str, list[Callable[[TableDDL], None]]] = {}
        self._queued_drops: list[str] = []
        self._queued_indexes: dict[str, QueuedIndex] = {}  # by name

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
                if not self.deferring:
                    self.flush()
                    check_foreign_keys(db)
        finally:
            if was_on:
                db.pragma("foreign_keys", 1)

    @contextmanager
    def run_context(self) -> Iterator[None]:
        """One transaction and one foreign_key_check for a whole run."""
        with self.migration_context():
            self.deferring = True
            try:
                yield
            except BaseException:
                self._queued, self._queued_drops, self._queued_indexes = {}, [], {}
                raise
            finally:
                self.deferring = False
        # (migration_context flushed the queue and checked before COMMIT)

    def rebuild(
        self,
        transforms: dict[str, Callable[[TableDDL], None]],
        drop_indexes: Sequence[str] = (),
        then_indexes: Sequence[QueuedIndex] = (),
    ) -> None:
        """Queue table rebuilds, and the indexes to build once they are done."""
        for table, transform in transforms.items():
            self._queued.setdefault(table, []).append(transform)
        self._queued_drops += drop_indexes
        for index in then_indexes:
            self._queued_indexes.setdefault(index.name, index)
        if not self.deferring:
            self.flush()

    def _update_column(self, table: str, column_to_update: str, fn: Any) -> list[Any]:
        """peewee's one-column table rebuild (add_not_null, defaults, types), done safely.

        Every ``SqliteMigrator`` operation that has to copy a table ends up
        here. peewee's own copy drops the table under its triggers (the SET
        NULL stand-ins tenantize creates name it, so the rename fails with
        "error in trigger ...: no such table") and loses them; the copy is
        ``rebuild_tables``' instead, which keeps triggers, views and keys.
        """
        columns = {c.lower() for c in catalog.table_columns(self.database, table)}
        if column_to_update.lower() not in columns:
            raise MigrationError(f'column "{column_to_update}" does not exist on "{table}"')

        def transform(ddl: TableDDL) -> None:
            item = ddl.column(column_to_update)
            if item is None:
                raise MigrationError(f"cannot rebuild {table}: no column {column_to_update}")
            changed = fn(unquote(item[0]), " ".join(item))
            if not changed:  # the column goes (SQLite < 3.35 has no DROP COLUMN)
                ddl.items.remove(item)
                ddl.drop_foreign_key([column_to_update])
                return
            renamed = unquote(changed.split()[0])
            if renamed.lower() != column_to_update.lower():
                raise MigrationError(
                    f"{table}.{column_to_update}: renaming a column needs SQLite >= 3.25"
                )
            ddl.replace_column(column_to_update, changed)

        self.rebuild({table: transform})
        self.flush()  # the operations after this one expect the new table
        return []

    def has_parent_key(self, table: str) -> bool:
        queued = any(
            ix.table == table and ix.unique and ix.columns == PARENT_KEY
            for ix in self._queued_indexes.values()
        )
        return queued or super().has_parent_key(table)

    def _drop_redundant(self, redundant_indexes: Sequence[tuple[str, str]]) -> None:
        for table, name in redundant_indexes:
            if self._queued_indexes.pop(name, None) is not None:
                continue  # never built
            if any(ix.name == name for ix in catalog.indexes(self.database, table)):
                self.migrate(self.drop_index(table, name))

    def flush(self) -> None:
        """Rebuild every queued table once, applying its transforms in order."""
        if not self._queued and not self._queued_indexes:
            return
        queued, drops, then = self._queued, self._queued_drops, self._queued_indexes
        self._queued, self._queued_drops, self._queued_indexes = {}, [], {}
        if not queued:
            self._build(then.values())
            return
        self.step("rebuilding " + ", ".join(queued) + " (one copy each)")

        def composed(transforms: list[Callable[[TableDDL], None]]) -> Callable[[TableDDL], None]:
            def transform(ddl: TableDDL) -> None:
                for each in transforms:
                    each(ddl)

            return transform

        rebuild_tables(
            cast(SqliteDatabase, self.database),
            {table: composed(fs) for table, fs in queued.items()},
            drops,
        )
        self._build(then.values())

    def _build(self, queued: Iterable[QueuedIndex]) -> None:
        indexes = list(queued)
        ops = [
            self.add_index(ix.table, ix.columns, unique=ix.unique, name=ix.name) for ix in indexes
        ]
        if ops:
            self.step("creating " + ", ".join(ix.name for ix in indexes))
            self.migrate(*ops)

    def enforce_tenant_keys(self, specs: Sequence[TenantTable]) -> None:
        self.step("tenant keys for " + ", ".join(s.table for s in specs))
        drop: list[str] = []
        for spec in specs:
            for old, _new in spec.unique_swaps:
                drop += [
                    ix.name
                    for ix in catalog.unique_on(self.database, spec.table, old)
                    if ix.origin == "index"
                ]
        indexes = [ix for spec in specs for ix in _tenant_index_specs(spec)]
        self.rebuild({s.table: _enforce(s) for s in specs}, drop, then_indexes=indexes)

    def relax_tenant_keys(self, specs: Sequence[TenantTable], tenant_id: str) -> None:
        self.step("global keys for " + ", ".join(s.table for s in specs))
        drop = [name for spec in specs for name in self._drop_tenant_indexes(spec)]
        self.rebuild({s.table: _relax(s, tenant_id) for s in specs}, drop)

    def drop_tenant_column(self, table: str) -> None:
        self.flush()  # the rebuild that removed tenant_id's key comes first
        self.migrate(self.drop_column(table, TENANT_COLUMN))

    def enable_row_level_security(self, tables: Sequence[str]) -> None:
        self.step("SQLite has no row-level security: isolation rests on the ORM and the keys")

    def disable_row_level_security(self, tables: Sequence[str]) -> None:
        return None

    def secure_views(self, tables: Sequence[str]) -> None:
        return None  # SQLite views have no owner's rights to read with

    def enforce_tenant_references(
        self, refs: Sequence[TenantReference], redundant_indexes: Sequence[tuple[str, str]]
    ) -> None:
        # SQLite needs a unique index on the parent key before any foreign
        # key can use it; the rebuild below then recreates it with the table.
        # The parents' unique (tenant_id, id), which the new keys point at,
        # is built with the queued indexes: before foreign_key_check needs it.
        parent_keys = [
            QueuedIndex(parent, PARENT_KEY, True, make_index_name(parent, PARENT_KEY))
            for parent in sorted({r.parent for r in refs})
            if not self.has_parent_key(parent)
        ]
        actions = {ref: (self.old_reference(ref) or _NO_ACTION).on_delete for ref in refs}
        tables = list(dict.fromkeys(r.table for r in refs))
        self.step("tenant-consistent foreign keys for " + ", ".join(tables))
        # SQLite cannot null one column of a composite key on delete: a
        # trigger on the parent does it first, and the key itself is NO ACTION.
        set_null = [ref for ref in refs if actions[ref] == "SET NULL"]
        for ref in set_null:
            actions[ref] = "NO ACTION"

        def transform_for(table: str) -> Callable[[TableDDL], None]:
            def transform(ddl: TableDDL) -> None:
                for ref in (r for r in refs if r.table == table):
                    ddl.drop_foreign_key([ref.column])
                    ddl.add(ref.references_sql(actions[ref]))

            return transform

        self.rebuild({t: transform_for(t) for t in tables}, then_indexes=parent_keys)
        self.migrate(*[self.sql(ref.set_null_trigger_sql()) for ref in set_null])
        self._drop_redundant(redundant_indexes)

    def relax_tenant_references(
        self,
        refs: Sequence[TenantReference],
        redundant_indexes: Sequence[tuple[str, str]],
        parents: Sequence[str] | None = None,
    ) -> None:
        actions = {ref: (self.composite_reference(ref) or _NO_ACTION).on_delete for ref in refs}
        triggers = {
            r[0]
            for r in self.database.execute_sql(
                "SELECT name FROM sqlite_master WHERE type = 'trigger'"
            ).fetchall()
        }
        for ref in refs:
            if ref.set_null_trigger in triggers:
                actions[ref] = "SET NULL"
                self.migrate(self.sql(f"DROP TRIGGER {quote(ref.set_null_trigger)}"))
        tables = list(dict.fromkeys(r.table for r in refs))

        def transform_for(table: str) -> Callable[[TableDDL], None]:
            def transform(ddl: TableDDL) -> None:
                for ref in (r for r in refs if r.table == table):
                    ddl.drop_foreign_key(ref.columns)
                    ddl.add(_single_reference_sql(ref, actions[ref]))

            return transform

        self.rebuild({t: transform_for(t) for t in tables})
        self._drop_parent_keys(refs, parents)
        for table, _name in redundant_indexes:
            self.migrate(self.add_index(table, (TENANT_COLUMN,)))


_NO_ACTION = catalog.ForeignKey(None, (), "", ())


def require_rls_bypass(db: Database) -> None:
    """Migrations must see every tenant's rows once RLS is forced.

    Under forced row-level security a role without BYPASSRLS sees none of
    the rows (no tenant is set), so a backfill would change nothing and a
    safety check (other tenants' data?) would wrongly pass.
    """
    if not catalog.forced_rls_tables(db):
        return
    row = db.execute_sql(
        "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    if row and row[0]:
        return
    raise MigrationError(
        "row-level security is forced on Relay's tables and this role cannot bypass it: "
        "run migrations as the table owner with BYPASSRLS, a superuser, or SET ROLE "
        "relay_admin (see `relay-peewee roles`)"
    )


@dataclass(frozen=True)
class QueuedIndex:
    table: str
    columns: tuple[str, ...]
    unique: bool
    name: str


def _tenant_index_specs(spec: TenantTable) -> list[QueuedIndex]:
    """The per-tenant uniques and tenant index of ``spec`` (as ``_tenant_indexes``)."""
    out = [
        QueuedIndex(spec.table, new, True, make_index_name(spec.table, new))
        for _o, new in spec.unique_swaps
    ]
    if spec.needs_tenant_index:
        cols = (TENANT_COLUMN,)
        out.append(QueuedIndex(spec.table, cols, False, make_index_name(spec.table, cols)))
    return out


def _single_reference_sql(ref: TenantReference, on_delete: str) -> str:
    """The one-column foreign key a TenantReference replaced (for rollback)."""
    action = "" if on_delete == "NO ACTION" else f" ON DELETE {on_delete}"
    return f'FOREIGN KEY ({quote(ref.column)}) REFERENCES {quote(ref.parent)} ("id"){action}'


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
            if not old:
                continue
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
