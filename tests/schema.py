"""Reading a database's schema back, for "nothing changed" and "same structure" checks."""

from __future__ import annotations

from typing import Any

from legacy import LEGACY_TABLES
from peewee import Database

from relay_peewee.database import catalog, is_postgres

# The nine tables that get tenant_id: the legacy tables, by definition.
TENANT_TABLES = LEGACY_TABLES

_PG_FINGERPRINT = [
    """SELECT table_name, column_name, data_type, is_nullable, column_default,
              generation_expression
         FROM information_schema.columns WHERE table_schema = current_schema()
        ORDER BY 1, 2""",
    """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), convalidated
         FROM pg_constraint WHERE connamespace = current_schema()::regnamespace
        ORDER BY 1, 2""",
    """SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = current_schema() ORDER BY 1, 2""",
    """SELECT viewname, definition FROM pg_views WHERE schemaname = current_schema()
        ORDER BY 1""",
    """SELECT event_object_table, trigger_name, action_statement
         FROM information_schema.triggers ORDER BY 1, 2""",
]


def fingerprint(db: Database) -> list[Any]:
    """Everything about the schema a migration could change, in a comparable form."""
    if is_postgres(db):
        return [db.execute_sql(q).fetchall() for q in _PG_FINGERPRINT]
    return db.execute_sql(
        "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
    ).fetchall()


def tenancy_structure(db: Database) -> dict[str, dict[str, Any]]:
    """The tenancy-relevant shape of each data table, independent of legacy extras."""
    out: dict[str, dict[str, Any]] = {}
    for table in TENANT_TABLES:
        column = next(c for c in db.get_columns(table) if c.name == "tenant_id")
        fks = [
            (fk.ref_table, *fk.ref_columns)
            for fk in catalog.foreign_keys(db, table)
            if fk.columns == ("tenant_id",)
        ]
        ixs = catalog.indexes(db, table)
        out[table] = {
            "nullable": column.null,
            "default": column.default,
            "fk": fks,
            "tenant_keys": sorted(
                (ix.columns, ix.unique) for ix in ixs if ix.columns and ix.columns[0] == "tenant_id"
            ),
            "uniques": sorted(ix.columns for ix in ixs if ix.unique),
            "primary_key": catalog.primary_key(db, table),
            "tenant_references": sorted(
                (fk.columns, fk.ref_table, fk.ref_columns, fk.on_delete)
                for fk in catalog.foreign_keys(db, table)
                if len(fk.columns) > 1
            ),
        }
    return out


def scalar(db: Database, sql: str, params: tuple[Any, ...] = ()) -> Any:
    return db.execute_sql(sql, params).fetchone()[0]


def sql(db: Database, text: str) -> str:
    """Write queries with '?' and run them on either backend."""
    return text.replace("?", db.param)
