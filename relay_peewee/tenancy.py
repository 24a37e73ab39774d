"""TenantModel: the base class that makes a model belong to one tenant.

A subclass gets, without writing them:

* ``tenant`` - a NOT NULL foreign key to ``tenants.id`` in column ``tenant_id``,
  with a backref on ``Tenant`` named by ``Meta.tenant_backref`` (default: the
  table name, so ``tenant.skills``);
* an index on ``tenant_id`` - unless a declared per-tenant unique already
  starts with it, because that index serves the same lookups;
* one composite unique index ``(tenant_id, *columns)`` for each entry of
  ``Meta.tenant_unique``.

Example::

    class Invoice(TenantModel):
        number = TextField()

        class Meta:
            table_name = "invoices"
            tenant_unique = [("number",)]   # unique per tenant, not globally
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from peewee import ForeignKeyField, ModelBase

from .models.base import BaseModel

__all__ = ["TenantModel", "tenant_indexes"]

TENANT_FIELD = "tenant"
TENANT_COLUMN = "tenant_id"


def tenant_indexes(
    tenant_unique: Iterable[Sequence[str]], *, has_leading_tenant_key: bool = False
) -> list[tuple[tuple[str, ...], bool]]:
    """The ``Meta.indexes`` entries a TenantModel gets for its declared uniques.

    ``has_leading_tenant_key`` is true when the primary key already starts with
    the tenant, which makes the plain ``tenant_id`` index redundant.
    """
    uniques = [((TENANT_FIELD, *cols), True) for cols in tenant_unique]
    if uniques or has_leading_tenant_key:
        return uniques
    return [((TENANT_FIELD,), False)]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class TenantModelBase(ModelBase):
    """Adds the tenant key and its indexes while peewee builds the class."""

    def __new__(mcs, name: str, bases: tuple[type, ...], attrs: dict[str, Any], **kw: Any) -> Any:
        meta = attrs.get("Meta")
        abstract = getattr(meta, "abstract", False) or name == "TenantModel"
        if abstract:
            return super().__new__(mcs, name, bases, attrs, **kw)
        if TENANT_FIELD not in attrs:
            # Imported here, not at module level: the models package imports
            # this module, and Tenant must exist before any subclass does.
            from .models.tenant import Tenant

            backref = (
                getattr(meta, "tenant_backref", None)
                or getattr(meta, "table_name", None)
                or f"{_snake(name)}_set"
            )
            attrs[TENANT_FIELD] = ForeignKeyField(
                Tenant,
                column_name=TENANT_COLUMN,
                backref=backref,
                index=False,  # added below, once we know whether it is redundant
                null=False,
            )
        cls = super().__new__(mcs, name, bases, attrs, **kw)
        declared = [tuple(cols) for cols in getattr(cls._meta, "tenant_unique", ()) or ()]
        pk = cls._meta.primary_key
        leading = bool(getattr(pk, "field_names", None)) and pk.field_names[0] == TENANT_FIELD
        existing = {
            (tuple(cols), bool(unique))
            for cols, unique in (cls._meta.indexes or ())
            if isinstance(cols, (tuple, list))
        }
        extra = [
            ix
            for ix in tenant_indexes(declared, has_leading_tenant_key=leading)
            if ix not in existing
        ]
        cls._meta.indexes = [*list(cls._meta.indexes or ()), *extra]
        return cls


class TenantModel(BaseModel, metaclass=TenantModelBase):
    """Base class for every table whose rows belong to exactly one tenant."""

    class Meta:
        # Declared per-tenant uniques, e.g. [("slug",)] -> UNIQUE (tenant_id, slug).
        tenant_unique: Sequence[Sequence[str]] = ()
