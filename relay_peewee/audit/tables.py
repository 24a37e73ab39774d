"""Each model's table: its tenant column, keys, uniques, references and
row-level-security policy.
"""

from __future__ import annotations

import re
from dataclasses import replace

from peewee import CompositeKey, Database, Field, ForeignKeyField, Model
from playhouse.migrate import make_index_name

from ..database import is_postgres
from ..database.catalog import (
    ForeignKey,
    Index,
    PostgresCatalog,
    SqliteCatalog,
    columns,
    foreign_keys,
    indexes,
    primary_key,
)
from ..database.quoting import quote, quote_list
from ..fields import TenantForeignKeyField
from ..migrator.backends import POLICY, POLICY_PREDICATE
from ..models import MODELS, Tenant
from ..tenancy import TENANT_COLUMN, TENANT_FIELD, TenantModel
from .citus import registry_enforces
from .findings import MIGRATE, Finding


def check_model(db: Database, model: type[Model], tables: set[str]) -> list[Finding]:
    table = model._meta.table_name
    ours = model in MODELS
    if table not in tables:
        fix = MIGRATE if ours else f"create it ({model.__name__}.create_table())"
        return [Finding("error", table, "table-missing", f"no such table; fix: {fix}")]
    keys = indexes(db, table)
    per_tenant, global_ = declared_uniques(model)
    out = []
    if issubclass(model, TenantModel):
        out += _tenant_column(db, table, keys, MIGRATE if ours else "add it in your migration")
        out += _tenant_primary_key(db, model, table, keys)
        for cols in per_tenant:
            if not any(_enforces(ix, cols) for ix in keys):
                msg = f"nothing enforces the per-tenant unique ({', '.join(cols)}); fix: "
                msg += _create_index(db, table, cols, unique=True)
                out.append(Finding("error", table, "tenant-unique", msg))
    for cols in global_:
        if not any(_enforces(ix, cols) for ix in keys) and not registry_enforces(db, table, cols):
            msg = f"the model declares ({', '.join(cols)}) unique across all tenants, but "
            msg += f"nothing enforces it; fix: {_create_index(db, table, cols, unique=True)}"
            out.append(Finding("error", table, "global-unique-missing", msg))
    if issubclass(model, TenantModel):
        out += _cross_tenant_uniques(db, table, keys, per_tenant, global_)
        out += _tenant_references(db, model, table, MIGRATE if ours else "add it in your migration")
        if is_postgres(db):
            # Required of Relay's nine tables; for an application's own
            # TenantModel, database-level isolation is recommended, not owed.
            rls = check_row_level_security(db, table, MIGRATE if ours else "see migration 0008")
            out += rls if ours else [replace(f, severity="warning") for f in rls]
    return out


def _tenant_references(db: Database, model: type[Model], table: str, fix: str) -> list[Finding]:
    """Each TenantForeignKeyField must be (tenant_id, col) -> parent (tenant_id, id)."""
    out = []
    live = foreign_keys(db, table)
    present = {(fk.columns, fk.ref_table, fk.ref_columns) for fk in live}
    for fk in live:
        if not fk.validated and TENANT_COLUMN in fk.columns and fk.columns != (TENANT_COLUMN,):
            msg = (
                f"foreign key {fk.name} is NOT VALID: rows older than it may point into "
                f"another tenant; fix: ALTER TABLE {quote(table)} VALIDATE CONSTRAINT "
                f"{quote(str(fk.name))}"
            )
            out.append(Finding("error", table, "tenant-reference-not-valid", msg))
    for field in model._meta.sorted_fields:
        if not isinstance(field, TenantForeignKeyField):
            out += _plain_tenant_reference(model, field, table, live)
            continue
        parent = field.rel_model._meta.table_name
        want = (
            (TENANT_COLUMN, field.column_name),
            parent,
            (TENANT_COLUMN, field.rel_field.column_name),
        )
        if want not in present:
            msg = (
                f"{field.column_name} can reference another tenant's {parent} row: no foreign "
                f"key ({TENANT_COLUMN}, {field.column_name}) -> {parent} ({TENANT_COLUMN}, "
                f"{field.rel_field.column_name}); fix: {fix}"
            )
            out.append(Finding("error", table, "tenant-reference", msg))
    return out


def _plain_tenant_reference(
    model: type[Model], field: Field, table: str, live: list[ForeignKey]
) -> list[Finding]:
    """A plain ForeignKeyField between TenantModels whose key ignores the tenant."""
    if not isinstance(field, ForeignKeyField) or field.name == TENANT_FIELD:
        return []
    if not issubclass(field.rel_model, TenantModel):
        return []
    parent = field.rel_model._meta.table_name
    if not any(fk.columns == (field.column_name,) and fk.ref_table == parent for fk in live):
        return []  # no key at all (usage_events.skill_id): nothing to make consistent
    msg = (
        f"{field.column_name} -> {parent} ({field.rel_field.column_name}) can reference "
        f"another tenant's row; fix: declare {model.__name__}.{field.name} a "
        "TenantForeignKeyField and migrate (migrator.tenantize makes the key)"
    )
    return [Finding("error", table, "tenant-reference", msg)]


def check_row_level_security(db: Database, table: str, fix: str) -> list[Finding]:
    catalog = PostgresCatalog(db)
    enabled, forced = catalog.row_security(table)
    policies = catalog.policies(table)
    if not any(p.name == POLICY for p in policies):
        msg = f"no row-level security policy {POLICY}; fix: {fix}"
        return [Finding("error", table, "rls-policy", msg)]
    out = []
    if not (enabled and forced):
        state = "forced" if enabled else "enabled"
        msg = f"row-level security is not {state}, so the policy binds nobody (or not the owner)"
        msg += (
            f"; fix: ALTER TABLE {quote(table)} ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY"
        )
        out.append(Finding("error", table, "rls-forced", msg))
    expected = _expression(POLICY_PREDICATE)
    for policy in policies:
        if policy.name == POLICY:
            if (
                policy.command != "ALL"
                or policy.roles != ("public",)
                or not policy.permissive
                or _expression(policy.using) != expected
                or _expression(policy.with_check) != expected
            ):
                msg = (
                    f"policy {POLICY} is not the one the migration wrote (FOR {policy.command} "
                    f"TO {', '.join(policy.roles)} USING {policy.using} WITH CHECK "
                    f"{policy.with_check}); fix: DROP POLICY {POLICY} ON {quote(table)}; "
                    "CREATE POLICY "
                    f"{POLICY} ON {quote(table)} USING ({POLICY_PREDICATE}) WITH CHECK "
                    f"({POLICY_PREDICATE})"
                )
                out.append(Finding("error", table, "rls-policy-changed", msg))
        elif policy.permissive:
            # Permissive policies are OR-ed: any one of them lets a row through.
            msg = (
                f"permissive policy {policy.name} (USING {policy.using}) is OR-ed with "
                f"{POLICY} and widens what a tenant sees or writes; fix: DROP POLICY "
                f"{quote(policy.name)} ON {quote(table)}, or recreate it AS RESTRICTIVE"
            )
            out.append(Finding("error", table, "rls-extra-policy", msg))
    return out


def _expression(sql: str | None) -> str:
    """A policy expression without what PostgreSQL's deparser adds (casts, parentheses)."""
    return re.sub(r"::[a-z ]+|[\s()]", "", sql or "")


def check_foreign_key_rows(catalog: SqliteCatalog) -> list[Finding]:
    """Rows a client with foreign_keys off wrote: they may point into another tenant."""
    found: dict[tuple[str, str], list[int]] = {}
    for table, rowid, parent in catalog.foreign_key_violations():
        found.setdefault((table, parent), []).append(rowid)
    out = []
    for (table, parent), rowids in sorted(found.items()):
        shown = ", ".join(map(str, rowids[:5])) + (", ..." if len(rowids) > 5 else "")
        msg = (
            f"{len(rowids)} row(s) break the foreign key to {parent} (rowid {shown}), written "
            f"while foreign_keys was off: they may point at another tenant's row or at none; "
            f"fix: correct or delete them (PRAGMA foreign_key_check('{table}') lists them)"
        )
        out.append(Finding("error", table, "foreign-key-violation", msg))
    return out


def _tenant_column(db: Database, table: str, keys: list[Index], add_fix: str) -> list[Finding]:
    column = next((c for c in columns(db, table) if c.name == TENANT_COLUMN), None)
    if column is None:
        return [Finding("error", table, "tenant-column", f"no {TENANT_COLUMN}; fix: {add_fix}")]
    pg, alter = is_postgres(db), f"ALTER TABLE {quote(table)} ALTER COLUMN {TENANT_COLUMN}"
    out = []
    if not column.not_null:
        fix = f"{alter} SET NOT NULL" if pg else _rebuild(table, f"with {TENANT_COLUMN} NOT NULL")
        msg = f"{TENANT_COLUMN} accepts NULL; fix: {fix}"
        out.append(Finding("error", table, "tenant-not-null", msg))
    # PostgreSQL spells an explicit DEFAULT NULL as 'NULL::text': no default at all.
    if column.default is not None and not str(column.default).upper().startswith("NULL"):
        fix = f"{alter} DROP DEFAULT" if pg else _rebuild(table, "without that default")
        msg = f"{TENANT_COLUMN} defaults to {column.default}, so a row that names no tenant "
        msg += f"is filed under that one; fix: {fix}"
        out.append(Finding("error", table, "tenant-default", msg))
    out += _tenant_foreign_key(db, table)
    leading = [ix for ix in keys if ix.columns[:1] == (TENANT_COLUMN,) and not ix.partial]
    if not any(ix.valid for ix in leading):
        create = _create_index(db, table, (TENANT_COLUMN,))
        if leading:  # only INVALID ones: what a failed CREATE INDEX CONCURRENTLY leaves
            names = ", ".join(ix.name for ix in leading)
            drops = ", ".join(quote(ix.name) for ix in leading)
            msg = f"index {names} is INVALID; fix: DROP INDEX {drops}, then {create}"
        else:
            msg = f"no index starts with {TENANT_COLUMN}; fix: {create}"
        out.append(Finding("error", table, "tenant-index", msg))
    return out


def _tenant_foreign_key(db: Database, table: str) -> list[Finding]:
    target = (Tenant._meta.table_name, (Tenant.id.column_name,))
    fks = [
        fk
        for fk in foreign_keys(db, table)
        if fk.columns == (TENANT_COLUMN,) and (fk.ref_table, fk.ref_columns) == target
    ]
    references = f"REFERENCES {quote(target[0])} ({quote(target[1][0])})"
    if not fks:
        name = quote(f"{table}_{TENANT_COLUMN}_fkey")
        fix = (
            f"ALTER TABLE {quote(table)} ADD CONSTRAINT {name} FOREIGN KEY ({TENANT_COLUMN}) "
            f"{references} NOT VALID, then VALIDATE CONSTRAINT {name}"
            if is_postgres(db)
            else _rebuild(table, f"with {TENANT_COLUMN} {references}")
        )
        msg = f"{TENANT_COLUMN} has no foreign key {references}; fix: {fix}"
        return [Finding("error", table, "tenant-fk", msg)]
    if not any(fk.validated for fk in fks):
        name = str(fks[0].name)
        msg = f"foreign key {name} is NOT VALID: rows older than it were never checked; "
        msg += f"fix: ALTER TABLE {quote(table)} VALIDATE CONSTRAINT {quote(name)}"
        return [Finding("error", table, "tenant-fk-not-valid", msg)]
    return []


def _tenant_primary_key(
    db: Database, model: type[Model], table: str, keys: list[Index]
) -> list[Finding]:
    pk = model._meta.primary_key
    if not isinstance(pk, CompositeKey):
        return []
    expected = tuple(_column(model, name) for name in pk.field_names)
    actual = primary_key(db, table)
    if expected[0] != TENANT_COLUMN or actual == expected:
        return []
    cols = ", ".join(expected)
    if is_postgres(db):
        drop = "".join(
            f"DROP CONSTRAINT {quote(ix.name)}, " for ix in keys if ix.origin == "primary"
        )
        fix = f"ALTER TABLE {quote(table)} {drop}ADD PRIMARY KEY ({quote_list(expected)})"
    else:
        fix = _rebuild(table, f"with PRIMARY KEY ({cols})")
    msg = f"primary key is ({', '.join(actual)}), the model declares ({cols}); fix: {fix}"
    return [Finding("error", table, "tenant-primary-key", msg)]


def _cross_tenant_uniques(
    db: Database,
    table: str,
    keys: list[Index],
    per_tenant: list[tuple[str, ...]],
    global_: list[tuple[str, ...]],
) -> list[Finding]:
    """Uniques on a tenant table that span every tenant.

    One replaced by a per-tenant unique (``skills(slug)``) is an error: one
    tenant's value blocks all others (and reveals that it exists). One no
    model declares is a warning. Declared ones (``users.email``) are fine.
    """
    replaced = {frozenset(cols) - {TENANT_COLUMN} for cols in per_tenant}
    declared = {frozenset(cols) for cols in global_}
    out = []
    for ix in keys:
        cols = frozenset(ix.columns)
        if not ix.unique or ix.origin == "primary" or TENANT_COLUMN in cols or cols in declared:
            continue
        spans = f"{ix.name} makes ({', '.join(ix.columns)}) unique across all tenants"
        if cols in replaced:
            msg = f"{spans}; fix: {_drop_key(db, table, ix)}"
            out.append(Finding("error", table, "global-unique-left", msg))
        else:
            msg = f"{spans}, which the model does not declare; fix: declare it unique=True "
            msg += f"if meant, else {_drop_key(db, table, ix)}"
            out.append(Finding("warning", table, "global-unique-undeclared", msg))
    return out


def unmodelled_table(db: Database, table: str) -> Finding:
    has_tenant = any(c.name == TENANT_COLUMN for c in columns(db, table))
    why = f"no model, {'has' if has_tenant else 'no'} {TENANT_COLUMN}"
    msg = f"not audited ({why}); fix: none if all tenants share it, "
    msg += "else pass its TenantModel to audit_schema"
    return Finding("info", table, "unmodelled-table", msg)


def declared_uniques(
    model: type[Model],
) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """(per-tenant, global) uniques the model declares, as column names.

    Per-tenant ones are the ``Meta.indexes`` entries that start with the
    tenant (``TenantModel`` turns ``Meta.tenant_unique`` into those).
    """
    per_tenant: list[tuple[str, ...]] = []
    global_: list[tuple[str, ...]] = []
    for entry in model._meta.indexes or ():
        if isinstance(entry, (tuple, list)) and len(entry) == 2 and entry[1]:
            cols = tuple(_column(model, name) for name in entry[0])
            (per_tenant if cols[0] == TENANT_COLUMN else global_).append(cols)
    global_ += [(f.column_name,) for f in model._meta.sorted_fields if f.unique]
    return per_tenant, global_


def _column(model: type[Model], name: str) -> str:
    field = model._meta.fields.get(name)
    return field.column_name if field is not None else name


def _enforces(ix: Index, cols: tuple[str, ...]) -> bool:
    # Column order does not change what a unique forbids; a partial one
    # forbids less, and an invalid (half-built) one cannot be relied on.
    return ix.unique and ix.valid and not ix.partial and set(ix.columns) == set(cols)


def _create_index(db: Database, table: str, cols: tuple[str, ...], unique: bool = False) -> str:
    # CONCURRENTLY: the fix runs on a live database, where a plain CREATE
    # INDEX would block every write to the table until it finishes.
    how = " CONCURRENTLY" if is_postgres(db) else ""
    kind = "UNIQUE INDEX" if unique else "INDEX"
    name = quote(make_index_name(table, cols))
    return f"CREATE {kind}{how} {name} ON {quote(table)} ({quote_list(cols)})"


def _drop_key(db: Database, table: str, ix: Index) -> str:
    if ix.origin == "index":
        return f"DROP INDEX {quote(ix.name)}"
    if is_postgres(db):
        return f"ALTER TABLE {quote(table)} DROP CONSTRAINT {quote(ix.name)}"
    return _rebuild(table, f"without UNIQUE ({', '.join(ix.columns)})")


def _rebuild(table: str, change: str) -> str:
    return f"rebuild {table} {change} (SQLite cannot alter a column or constraint in place)"
