"""The tenant file: its format, its tables in dependency order, its value types.

``tenant_export`` writes it and ``tenant_import`` reads it; both take the
format from here, so the two cannot drift. docs/lifecycle.md is the
reference for other tools. In short, JSON Lines, UTF-8:

* line 1, the header: ``{"format": "relay-peewee-tenant", "version": 1,
  "backend": ..., "migrations": [...], "tenant": {"id", "slug"},
  "tables": [{"name": ..., "columns": [{"name": ..., "type": ...}]}]}``;
* one line per row: a JSON array, the table's name first, then the values
  in the header's column order;
* the last line, the trailer: ``{"trailer": true, "rows": {table: count},
  "sha256": ...}``, the digest of every row line's bytes, newline included.

A file without its trailer, or whose rows disagree with it, is refused.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from peewee import (
    BigIntegerField,
    BlobField,
    BooleanField,
    Database,
    DateField,
    DateTimeField,
    DecimalField,
    Field,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    TimeField,
    UUIDField,
)

from ..errors import RelayError
from ..fields import FloatListField, JSONField, TextListField
from ..migrator import recorded_base_set
from ..models import TENANT_MODELS, AuditLog, Tenant

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ColumnSpec",
    "TableSpec",
    "TenantFileError",
    "column_type",
    "database_tables",
    "header_line",
    "tenant_tables",
    "trailer_line",
]

FORMAT = "relay-peewee-tenant"
FORMAT_VERSION = 1
TENANTS = Tenant._meta.table_name
AUDIT_LOGS = AuditLog._meta.table_name

# The value types of the format (docs/lifecycle.md, "Values").
TEXT, INTEGER, FLOAT, DECIMAL, BOOLEAN = "text", "integer", "float", "decimal", "boolean"
TIMESTAMP, DATE, TIME, JSON, TEXT_LIST, REAL_LIST, BYTES, UUID = (
    "timestamp",
    "date",
    "time",
    "json",
    "text[]",
    "real[]",
    "bytes",
    "uuid",
)


class TenantFileError(RelayError):
    """A tenant file that cannot be read: not the format, truncated, altered."""


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: str


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[ColumnSpec, ...]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "columns": [{"name": c.name, "type": c.type} for c in self.columns],
        }


def column_type(field: Field) -> str:
    """The format's type for a peewee field (a foreign key: its target's)."""
    if isinstance(field, ForeignKeyField):
        return column_type(field.rel_field)
    # Checked in this order: some of peewee's classes derive from others.
    for kind, name in (
        (JSONField, JSON),
        (UUIDField, UUID),
        (TextListField, TEXT_LIST),
        (FloatListField, REAL_LIST),
        (BooleanField, BOOLEAN),
        (DateTimeField, TIMESTAMP),
        (DateField, DATE),
        (TimeField, TIME),
        (DecimalField, DECIMAL),
        (FloatField, FLOAT),
        (BigIntegerField, INTEGER),
        (IntegerField, INTEGER),
        (BlobField, BYTES),
    ):
        if isinstance(field, kind):
            return name
    # playhouse's own JSON fields (postgres_ext, sqlite_ext) by their field_type.
    if str(getattr(field, "field_type", "")).upper() in ("JSON", "JSONB"):
        return JSON
    return TEXT


def _spec(model: type[Model]) -> TableSpec:
    columns = tuple(ColumnSpec(f.column_name, column_type(f)) for f in model._meta.sorted_fields)
    return TableSpec(model._meta.table_name, columns)


def tenant_tables(
    models: Sequence[type[Model]] = (), *, relay_schema: bool = True
) -> list[TableSpec]:
    """Every table a tenant's rows live in, parents first.

    ``tenants`` (the tenant's own row), Relay's nine tables (not on a
    database of the tenancy core alone, ``relay_schema=False``), the
    application's TenantModels (``models``, in peewee's dependency order; other
    models are left out), then ``audit_logs`` (the tenant's events, which
    reference nothing).
    """
    relay: list[type[Model]] = [Tenant, *(TENANT_MODELS if relay_schema else ())]
    app = [m for m in models if "tenant" in m._meta.fields and m not in relay]
    names = [m._meta.table_name for m in app]
    every: list[type[Model]] = [*relay, *app, AuditLog]
    taken = {m._meta.table_name for m in every if m not in app}
    clash = [n for n in names if n in taken]
    if clash:
        raise RelayError(f"the application's model table {clash[0]!r} is one of Relay's own")
    return [_spec(m) for m in every]


def database_tables(db: Database, models: Sequence[type[Model]] = ()) -> list[TableSpec]:
    """``tenant_tables`` for the base set ``db``'s history records (Relay's
    unless it records the tenancy core alone)."""
    return tenant_tables(models, relay_schema=recorded_base_set(db) is not False)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def header_line(
    backend: str,
    migrations: Sequence[str],
    tenant: dict[str, Any],
    tables: Sequence[TableSpec],
) -> str:
    """The first line of a tenant file, newline included."""
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "backend": backend,
        "migrations": list(migrations),
        "tenant": tenant,
        "tables": [t.as_json() for t in tables],
    }
    return _dumps(header) + "\n"


def trailer_line(rows: dict[str, int], sha256: str) -> str:
    """The last line of a tenant file, newline included."""
    return _dumps({"trailer": True, "rows": rows, "sha256": sha256}) + "\n"
