"""What would stop the schema from being distributed by ``tenant_id`` on Citus."""

from __future__ import annotations

from peewee import Database

from ..database.catalog import (
    ForeignKey,
    columns,
    foreign_keys,
    indexes,
)
from ..tenancy import TENANT_COLUMN
from .findings import Finding


def check_citus(
    db: Database, tables: list[str], declared_global: dict[str, list[tuple[str, ...]]]
) -> list[Finding]:
    """What stops ``create_distributed_table(table, 'tenant_id')`` on Citus.

    Tables with tenant_id would be distributed: Citus enforces a unique or
    a foreign key only within one shard, so each must include tenant_id,
    and it refuses NULL in the distribution column. Tables without it are
    reference tables (copied to every node), which may not point into a
    distributed table.
    """
    # The tables that would be distributed, with their tenant_id column.
    distributed = {t: c for t in tables for c in columns(db, t) if c.name == TENANT_COLUMN}
    out = []
    for table in tables:
        fks = foreign_keys(db, table)
        if table not in distributed:
            targets = sorted({fk.ref_table for fk in fks if fk.ref_table in distributed})
            if targets:
                msg = f"references distributed {', '.join(targets)}, which a reference table "
                msg += f"cannot; fix: add {TENANT_COLUMN} and distribute it too"
                out.append(Finding("warning", table, "citus-foreign-key", msg))
            else:
                msg = f"no {TENANT_COLUMN}: a reference-table candidate; "
                msg += f"fix: SELECT create_reference_table('{table}')"
                out.append(Finding("info", table, "citus-reference-table", msg))
            continue
        if not distributed[table].not_null:
            msg = f"{TENANT_COLUMN} accepts NULL, which Citus refuses in a distribution column; "
            msg += "fix: make it NOT NULL, or keep the table local"
            out.append(Finding("warning", table, "citus-null-tenant", msg))
        declared = {frozenset(cols) for cols in declared_global.get(table, ())}
        for ix in indexes(db, table):
            if not ix.unique or TENANT_COLUMN in ix.columns:
                continue
            cols = ", ".join(ix.columns)
            kind = "primary key" if ix.origin == "primary" else f"unique {ix.name}"
            # A unique that is global on purpose (a login) cannot just gain tenant_id.
            fix = (
                f"keep ({cols}) unique in a reference table that maps it to its tenant"
                if frozenset(ix.columns) in declared
                else f"make it ({TENANT_COLUMN}, {cols})"
            )
            msg = f"{kind} ({cols}) lacks {TENANT_COLUMN}, so Citus cannot enforce it; fix: {fix}"
            out.append(Finding("warning", table, "citus-unique", msg))
        for fk in fks:
            if fk.ref_table in distributed and not _tenant_aligned(fk):
                src, dst = ", ".join(fk.columns), f"{fk.ref_table} ({', '.join(fk.ref_columns)})"
                msg = f"foreign key ({src}) -> {dst} lacks {TENANT_COLUMN}; fix: make it "
                msg += f"({TENANT_COLUMN}, {src}) -> {fk.ref_table} ({TENANT_COLUMN}, "
                msg += f"{', '.join(fk.ref_columns)})"
                out.append(Finding("warning", table, "citus-foreign-key", msg))
    return out


def _tenant_aligned(fk: ForeignKey) -> bool:
    if TENANT_COLUMN not in fk.columns or TENANT_COLUMN not in fk.ref_columns:
        return False
    return fk.columns.index(TENANT_COLUMN) == fk.ref_columns.index(TENANT_COLUMN)
