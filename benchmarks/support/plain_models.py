"""The hand-written side: plain peewee models on relay_peewee's tables.

No scoping, no checks, no events: what an application writes when it puts
the tenant in every query by hand.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

import peewee
from peewee import Database, ForeignKeyField


def plain_model(model: Any, db: Database, related: dict[Any, Any]) -> Any:
    """A plain ``peewee.Model`` for ``model``'s table: no scoping, no checks, no events."""
    attrs: dict[str, Any] = {}
    for field in model._meta.sorted_fields:
        if isinstance(field, ForeignKeyField):
            target: Any = related.get(field.rel_model, field.rel_model)
            attrs[field.name] = ForeignKeyField(
                target,
                field=target._meta.fields[field.rel_field.name],
                column_name=field.column_name,
                null=field.null,
                backref="+",
            )
        else:
            attrs[field.name] = deepcopy(field)
    meta = type("Meta", (), {"database": db, "table_name": model._meta.table_name})
    attrs["Meta"] = meta
    return type(f"Plain{model.__name__}", (peewee.Model,), attrs)


def reflected_model(db: Database, table: str) -> Any:
    """A model reflected from ``table`` (``playhouse.reflection``): its columns, no tenancy."""
    from playhouse.reflection import generate_models

    return generate_models(db, table_names=[table])[table]
