"""What a table's tenancy is, as data: the specs migration scripts hand the engine.

``TenantTable`` and ``TenantReference`` describe the end state of one
table and one reference; ``TenancyPlan`` groups them for one operation.
``tenancy_plan`` reads them off an application's ``TenantModel`` classes:
its ``Meta.tenant_unique`` (each becomes a per-tenant unique that replaces
the global one on the same columns, if the table has one), a composite
primary key that starts with ``tenant_id``, and its ``TenantForeignKeyField``
references to other tenant tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from peewee import CompositeKey, Model
from playhouse.migrations import sort_models  # peewee's dependency order, re-exported

from ..errors import MigrationError
from ..fields import TenantForeignKeyField
from .sqlite_ddl import quote

__all__ = [
    "DEFAULT_TENANT_ID",
    "TENANT_COLUMN",
    "TenancyPlan",
    "TenantReference",
    "TenantTable",
    "tenancy_plan",
]

TENANT_COLUMN = "tenant_id"
# The tenant migration 0002 creates; existing rows of a table being made
# tenant-scoped are filed under it (frozen: scripts must not follow a model).
DEFAULT_TENANT_ID = "default-tenant-000-0000-000000000000"


@dataclass(frozen=True)
class TenantTable:
    """How one table is tenant-scoped: the end state of the tenancy migrations."""

    table: str
    # Each (global columns, per-tenant columns) pair swaps a global unique
    # for a composite one, e.g. (("slug",), ("tenant_id", "slug")). An empty
    # global side adds the per-tenant unique without replacing anything.
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


@dataclass(frozen=True)
class TenantReference:
    """A foreign key that must stay inside one tenant: child.column -> parent.id."""

    table: str
    column: str
    parent: str

    @property
    def constraint_name(self) -> str:
        return f"{self.table}_{self.column}_tenant_fkey"

    @property
    def columns(self) -> tuple[str, str]:
        return (TENANT_COLUMN, self.column)

    @property
    def set_null_trigger(self) -> str:
        """SQLite's stand-in for ON DELETE SET NULL (see ``references_sql``)."""
        return f"{self.table}_{self.column}_set_null"

    def set_null_trigger_sql(self) -> str:
        child, col = quote(self.table), quote(self.column)
        return (
            f"CREATE TRIGGER {quote(self.set_null_trigger)} BEFORE DELETE ON {quote(self.parent)} "
            f"BEGIN UPDATE {child} SET {col} = NULL WHERE {quote(TENANT_COLUMN)} = "
            f'OLD.{quote(TENANT_COLUMN)} AND {col} = OLD."id"; END'
        )

    def references_sql(self, on_delete: str) -> str:
        # SET NULL on the composite key would null tenant_id too (NOT NULL:
        # the parent's delete fails). PostgreSQL >= 15 can null one column;
        # SQLite cannot, so its migrator passes NO ACTION plus a trigger.
        if on_delete == "SET NULL":
            on_delete = f"SET NULL ({quote(self.column)})"
        action = "" if on_delete == "NO ACTION" else f" ON DELETE {on_delete}"
        return (
            f"FOREIGN KEY ({quote(TENANT_COLUMN)}, {quote(self.column)}) REFERENCES "
            f'{quote(self.parent)} ({quote(TENANT_COLUMN)}, "id"){action}'
        )


@dataclass(frozen=True)
class TenancyPlan:
    """Tables to make tenant-scoped together, and their tenant-consistent references."""

    tables: tuple[TenantTable, ...]
    references: tuple[TenantReference, ...] = ()

    @property
    def table_names(self) -> list[str]:
        return [t.table for t in self.tables]


def tenancy_plan(models: Iterable[type[Model]]) -> TenancyPlan:
    """The plan that makes the tables of ``models`` what those TenantModels declare."""
    chosen = list(models)
    if not chosen:
        raise MigrationError("tenantize: name at least one TenantModel")
    tables, references = [], []
    for model in sort_models(chosen):  # parents before the tables referencing them
        tables.append(_table(model))
        references += _references(model)
    return TenancyPlan(tuple(tables), tuple(references))


def _table(model: type[Model]) -> TenantTable:
    meta = model._meta
    if TENANT_COLUMN not in {f.column_name for f in meta.sorted_fields}:
        raise MigrationError(f"{model.__name__} is not a TenantModel: it has no {TENANT_COLUMN}")
    pk = meta.primary_key
    primary: tuple[str, ...] = ()
    old_primary: tuple[str, ...] = ()
    if isinstance(pk, CompositeKey):
        primary = tuple(meta.fields[name].column_name for name in pk.field_names)
        if primary[0] != TENANT_COLUMN:
            primary = ()
        old_primary = primary[1:]
    pk_columns = {(pk.column_name,)} if pk and not isinstance(pk, CompositeKey) else set()
    swaps = []
    for names in getattr(meta, "tenant_unique", ()) or ():
        cols = tuple(meta.fields[n].column_name if n in meta.fields else n for n in names)
        # A per-tenant unique over the primary key replaces nothing: the key stays.
        old = () if cols in pk_columns else cols
        swaps.append((old, (TENANT_COLUMN, *cols)))
    return TenantTable(
        meta.table_name, unique_swaps=tuple(swaps), primary_key=primary, old_primary_key=old_primary
    )


def _references(model: type[Model]) -> list[TenantReference]:
    out = []
    for fk in model._meta.sorted_fields:
        if not isinstance(fk, TenantForeignKeyField):
            continue
        if fk.rel_field.column_name != "id":
            raise MigrationError(
                f"{model.__name__}.{fk.name}: a tenant-consistent reference must point at "
                f"the parent's id, not {fk.rel_field.column_name}"
            )
        parent = fk.rel_model
        declared = {tuple(cols) for cols in getattr(parent._meta, "tenant_unique", ()) or ()}
        if ("id",) not in declared:
            # Its (tenant_id, id) would be a unique the parent's model does not know.
            raise MigrationError(
                f"{model.__name__}.{fk.name} references {parent.__name__}, which must declare "
                f'tenant_unique = [("id",), ...] for the key (tenant_id, id) it points at'
            )
        out.append(
            TenantReference(model._meta.table_name, fk.column_name, fk.rel_model._meta.table_name)
        )
    return out
