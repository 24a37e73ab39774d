"""TenantModel: the base class that makes a model belong to one tenant.

A subclass gets, without writing them:

* ``tenant`` - a NOT NULL foreign key to ``tenants.id`` in column ``tenant_id``,
  with a backref on ``Tenant`` named by ``Meta.tenant_backref`` (default: the
  table name, so ``tenant.skills``);
* an index on ``tenant_id`` - unless a declared per-tenant unique already
  starts with it, because that index serves the same lookups;
* one composite unique index ``(tenant_id, *columns)`` for each entry of
  ``Meta.tenant_unique``.

and every query through it is limited to the tenant in context
(``tenant_context``): reads see only that tenant's rows, writes fill the tenant
in and refuse to cross into another one, and with no tenant in context any
query raises ``TenantRequired``. ``scoping`` and ``writes`` hold the query
classes that do it; this module only wires them into the model.

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
from typing import Any, cast

from peewee import ForeignKeyField, Model, classmethod_only

from ..database.citus import known_citus
from ..models.audited import AuditedModel, AuditedModelBase, WriteQueries
from ..models.tenant import Tenant
from . import checked_save
from .references import (
    ANY_VALUE,
    References,
    collect,
    related_values,
    tenant_refs,
    trusting,
    verify_references,
)
from .scoping import (
    TENANT_COLUMN,
    TENANT_FIELD,
    ScopedRaw,
    ScopedSelect,
    TenantMetadata,
    TenantModelAlias,
    scope_tenant,
)
from .writes import (
    ScopedInsert,
    ScopedUpdate,
    check_tenant_value,
    scoped_write_queries,
)

__all__ = ["TENANT_COLUMN", "TENANT_FIELD", "TenantModel", "tenant_indexes"]

# peewee's Model._normalize_data (keyword arguments -> {Field: value}), which
# its stubs do not declare, as a plain function.
_normalize_data: Any = vars(Model)["_normalize_data"].__func__


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


class TenantModelBase(AuditedModelBase):
    """Adds the tenant key and its indexes while peewee builds the class."""

    def __new__(mcs, name: str, bases: tuple[type, ...], attrs: dict[str, Any], **kw: Any) -> Any:
        meta = attrs.get("Meta")
        abstract = getattr(meta, "abstract", False) or name == "TenantModel"
        if abstract:
            return super().__new__(mcs, name, bases, attrs, **kw)
        if TENANT_FIELD not in attrs:
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


class TenantModel(AuditedModel, metaclass=TenantModelBase):
    """Base class for every table whose rows belong to exactly one tenant."""

    class Meta:
        # Declared per-tenant uniques, e.g. [("slug",)] -> UNIQUE (tenant_id, slug).
        tenant_unique: Sequence[Sequence[str]] = ()
        # A TenantTable as `_meta.table`; also how scoping recognises a TenantModel.
        model_metadata_class = TenantMetadata

    # Every way peewee builds a query on the model returns a scoped class:
    # the one AuditedModelBase picked for this class (with the audit layer
    # below it where Meta.audit_events asks for one).

    @classmethod
    def _write_queries(cls, records_events: bool) -> WriteQueries:
        return scoped_write_queries(records_events)

    @classmethod
    def select(cls, *fields: Any) -> ScopedSelect:
        return ScopedSelect(cls, fields or cls._meta.sorted_fields, is_default=not fields)

    @classmethod
    def insert(cls, data: Any = None, /, **insert: Any) -> ScopedInsert:
        taken = checked_save.take(cls, data, insert, True) if insert else None
        query = cls._insert_query(cls, _normalize_data(cls, data, insert))
        if taken is not None:
            query._saved_for, query._by_database = taken
        return query

    @classmethod
    def insert_many(cls, rows: Any, fields: Any = None) -> ScopedInsert:
        return cls._insert_query(cls, insert=rows, columns=fields)

    @classmethod
    def insert_from(cls, query: Any, fields: Any) -> ScopedInsert:
        columns = [getattr(cls, f) if isinstance(f, str) else f for f in fields]
        return cls._insert_query(cls, insert=query, columns=columns)

    @classmethod
    def update(cls, data: Any = None, /, **update: Any) -> ScopedUpdate:
        # Citus refuses SET tenant_id (the distribution column) unless it can
        # see the value is the row's own, which it cannot with server-side
        # parameters (psycopg 3); save() writes it unchanged: leave it out.
        if (
            data is None
            and TENANT_FIELD in update
            and len(update) > 1
            and _on_citus(cls)
            and update[TENANT_FIELD] == scope_tenant(cls)
        ):
            update = {k: v for k, v in update.items() if k != TENANT_FIELD}
        # Before the query is built: take() may leave unchanged references out.
        taken = checked_save.take(cls, data, update, False) if update else None
        query = cls._update_query(cls, _normalize_data(cls, data, update))
        if taken is not None:
            query._saved_for = taken[0]
        return query

    # classmethod_only, as peewee's: `instance.delete()` is an error, not a table wipe.
    delete: Any = classmethod_only(lambda cls: cls._delete_query(cls))

    @classmethod
    def raw(cls, sql: str, *params: Any) -> ScopedRaw:
        return ScopedRaw(cls, sql, params)

    @classmethod
    def alias(cls, alias: str | None = None) -> TenantModelAlias:
        return TenantModelAlias(cls, alias)

    # Instance writes: the tenant is filled in or checked up front; the
    # references when peewee builds the statement (checked_save).

    def save(self, force_insert: bool = False, only: Any = None) -> Any:
        model = type(self)
        tenant_id = scope_tenant(model)
        if tenant_id is None:
            return super().save(force_insert=force_insert, only=only)
        _claim(self, tenant_id)
        row: Any = self  # peewee's private attributes, which its stubs do not declare
        # peewee's own test for INSERT or UPDATE.
        updating = not force_insert and self._meta.primary_key is not False and row._pk is not None
        # The statement peewee builds is checked as it is built (checked_save).
        token = checked_save.mark(self, tenant_id, updating)
        try:
            rows = super().save(force_insert, only)
        finally:
            checked_save.unmark(token)
        if updating and type(rows) is int and rows == 0:
            # The UPDATE matched no row of this tenant (the row is gone, or is
            # another tenant's), yet peewee counts the values as saved: keep
            # the instance from passing for a stored row of this tenant.
            row._dirty.add(TENANT_FIELD)
        return rows

    def delete_instance(self, recursive: bool = False, delete_nullable: bool = False) -> Any:
        tenant_id = scope_tenant(type(self))
        owner = self.__data__.get(TENANT_FIELD)
        if tenant_id is not None and owner is not None:
            check_tenant_value(type(self), owner, tenant_id)
        rows = super().delete_instance(recursive=recursive, delete_nullable=delete_nullable)
        # Gone: no longer a row of this tenant to trust as a related row (its
        # id may even come back, as another tenant's).
        cast(Any, self)._dirty.add(TENANT_FIELD)
        return rows

    @classmethod
    def bulk_create(cls, model_list: Any, batch_size: int | None = None) -> Any:
        tenant_id = scope_tenant(cls)
        if tenant_id is None:
            return super().bulk_create(model_list, batch_size=batch_size)
        instances = list(model_list)
        for instance in instances:
            _claim(instance, tenant_id)
        with trusting(related_values(instances, tenant_id), tenant_id, cls):
            return super().bulk_create(instances, batch_size=batch_size)

    @classmethod
    def bulk_update(cls, model_list: Any, fields: Any, batch_size: int | None = None) -> Any:
        tenant_id = scope_tenant(cls)
        if tenant_id is None:
            return super().bulk_update(model_list, fields, batch_size=batch_size)
        instances = list(model_list)
        names = {f if isinstance(f, str) else f.name for f in fields}
        for instance in instances:
            _claim(instance, tenant_id)
        # The values reach SQL as CASE expressions the query cannot inspect:
        # check them here, then mark the fields as checked.
        refs: References = {}
        for fk in tenant_refs(cls):
            if fk.name in names:
                for instance in instances:
                    collect(refs, fk, instance.__data__.get(fk.name), tenant_id, None)
        verify_references(refs, tenant_id, cls._meta.database)
        with trusting(dict.fromkeys(names, ANY_VALUE), tenant_id, cls):
            return super().bulk_update(instances, fields, batch_size=batch_size)


def _claim(instance: Any, tenant_id: str) -> None:
    """Give a new row the tenant in context; refuse a row of another tenant."""
    data = instance.__data__
    owner = data.get(TENANT_FIELD)
    if owner is None:
        # What the tenant field's accessor would do for an id, minus its checks.
        data[TENANT_FIELD] = tenant_id
        instance._dirty.add(TENANT_FIELD)
    elif owner != tenant_id:
        check_tenant_value(type(instance), owner, tenant_id)


def _on_citus(model: type[Model]) -> bool:
    db = model._meta.database
    db = getattr(db, "obj", db)
    return db is not None and bool(known_citus(db))
