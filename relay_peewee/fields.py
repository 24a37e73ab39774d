"""Field types that store natively on PostgreSQL and as JSON text on SQLite.

Relay's PostgreSQL schema uses jsonb, text[] and real[]; SQLite has none of
them. One field class per kind keeps the models backend-neutral: the column
type is chosen when DDL is generated and values are converted on the way in
and out according to the database the model is bound to.
"""

from __future__ import annotations

import json
from typing import Any

from peewee import SQL, EnclosedNodeList, Field, ForeignKeyField, NodeList

from .database import is_postgres

__all__ = ["FloatListField", "JSONField", "TenantForeignKeyField", "TextListField"]


class _PortableField(Field):
    pg_type = "TEXT"

    def _on_postgres(self) -> bool:
        return is_postgres(self.model._meta.database)

    def ddl_datatype(self, ctx: Any) -> Any:
        from peewee import SQL

        return SQL(self.pg_type if self._on_postgres() else "TEXT")

    def db_value(self, value: Any) -> Any:
        if value is None:
            return None
        if self._on_postgres():
            return self._pg_value(value)
        return json.dumps(value)

    def _pg_value(self, value: Any) -> Any:
        return value

    def python_value(self, value: Any) -> Any:
        # psycopg2 already decodes jsonb and arrays; SQLite hands back text.
        if isinstance(value, str) and not self._on_postgres():
            return json.loads(value)
        return value


class JSONField(_PortableField):
    """jsonb on PostgreSQL, JSON text on SQLite."""

    field_type = "JSON"
    pg_type = "JSONB"

    def _pg_value(self, value: Any) -> Any:
        return json.dumps(value)


class TextListField(_PortableField):
    """text[] on PostgreSQL, a JSON list on SQLite."""

    field_type = "TEXT_LIST"
    pg_type = "TEXT[]"

    def _pg_value(self, value: Any) -> Any:
        return list(value)


class FloatListField(_PortableField):
    """real[] on PostgreSQL, a JSON list of numbers on SQLite."""

    field_type = "FLOAT_LIST"
    pg_type = "REAL[]"

    def _pg_value(self, value: Any) -> Any:
        return [float(v) for v in value]


class TenantForeignKeyField(ForeignKeyField):
    """A foreign key between two TenantModels that cannot cross tenants.

    Its constraint is ``(tenant_id, column) -> parent (tenant_id, id)``
    instead of ``column -> parent (id)``: the database itself refuses a
    rating of tenant A on a skill of tenant B. The parent must declare
    ``tenant_unique = [("id",), ...]`` so that key is unique. Migration
    0006 gives existing databases the same constraints.
    """

    def _on_postgres(self) -> bool:
        return is_postgres(self.model._meta.database)

    def foreign_key_constraint(self, explicit_name: bool = False) -> NodeList:
        tenant = self.model._meta.fields["tenant"]
        parent_tenant = self.rel_model._meta.fields["tenant"]
        parts = [
            SQL("FOREIGN KEY"),
            EnclosedNodeList((tenant, self)),
            SQL("REFERENCES"),
            self.rel_model,
            EnclosedNodeList((parent_tenant, self.rel_field)),
        ]
        if self.on_delete and self.on_delete.upper() == "SET NULL":
            # On the composite key SET NULL would null tenant_id too, which
            # is NOT NULL; PostgreSQL >= 15 can null this column alone.
            # SQLite cannot: the key stays NO ACTION (the parent's delete is
            # refused) unless a trigger nulls the column first, as the
            # migrations' tenantize and makemigration add.
            if self._on_postgres():
                parts += [SQL("ON DELETE SET NULL"), EnclosedNodeList((self,))]
        elif self.on_delete:
            parts.append(SQL(f"ON DELETE {self.on_delete}"))
        if self.on_update:
            parts.append(SQL(f"ON UPDATE {self.on_update}"))
        return NodeList(parts)
