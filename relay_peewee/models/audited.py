"""AuditedModel: models that record their own audit events.

A model opts in with one Meta option, the prefix of its actions::

    class User(TenantModel):
        class Meta:
            audit_events = "user"      # user.create, user.update, user.delete

Every INSERT, UPDATE and DELETE statement run through such a model (``create``,
``save``, ``delete_instance``, ``insert_many``, ``update().where()``, ...)
records one event after it succeeded, through ``audit_log.write_event`` (same
transaction, own savepoint, failures logged). A statement that changed no row
records nothing. ``save()`` and ``delete_instance()`` name the row they wrote
(``resource_id``), file the event under that row's tenant and, for an update,
list the fields that changed; other statements record the number of rows
instead. A write inside ``unscoped()`` carries its reason in the metadata.
Rows removed by a database ``ON DELETE CASCADE`` are invisible to the ORM and
record nothing.

Whether a model records events is decided once, when peewee builds the class
(``AuditedModelBase``): one that records none writes through peewee's own
query classes, and its ``save``/``delete_instance`` only pass through. No
write asks again per call, and no layer above has to step past this one to
be fast: every layer in a chain goes through ``super()``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sized
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from peewee import (
    Database,
    ModelBase,
    ModelDelete,
    ModelInsert,
    ModelUpdate,
    classmethod_only,
)

from ..scope import active_scope, current_tenant
from .audit_log import write_event
from .base import BaseModel

__all__ = [
    "AuditedDelete",
    "AuditedInsert",
    "AuditedModel",
    "AuditedModelBase",
    "AuditedUpdate",
    "audit_prefix",
]

# The query classes below build on peewee internals (_execute, _insert, ...)
# that its stubs do not describe; typed as Any so mypy checks our code instead.
_ModelInsert: Any = ModelInsert
_ModelUpdate: Any = ModelUpdate
_ModelDelete: Any = ModelDelete


def audit_prefix(model: Any) -> str | None:
    """The ``Meta.audit_events`` prefix of a model, ``None`` when it records none."""
    return getattr(model._meta, "audit_events", None)


@dataclass(frozen=True, slots=True)
class _InstanceWrite:
    """Set by ``save``/``delete_instance``: which row the next statement writes."""

    model: type[BaseModel]
    resource_id: str | None
    tenant_id: str | None  # the row's own tenant, where it has one
    changed: tuple[str, ...] | None = None


_instance_write: ContextVar[_InstanceWrite | None] = ContextVar(
    "relay_peewee_instance_write", default=None
)


def _resource_id(instance: Any) -> str | None:
    meta = instance._meta
    if meta.primary_key is False:
        return None
    if meta.composite_key:
        # Leave the tenant out of SiteSettings' ("tenant", "id"): the audit row
        # carries the tenant already, and "default" is what a person looks for.
        parts = [
            instance.__data__.get(name) for name in meta.primary_key.field_names if name != "tenant"
        ]
        return ":".join(str(p) for p in parts)
    pk = instance._pk
    return None if pk is None else str(pk)


def _row_tenant(instance: Any) -> str | None:
    owner = instance.__data__.get("tenant")
    return owner if isinstance(owner, str) else None


def _record_statement(
    query: Any,
    database: Database,
    verb: str,
    rows: int | None,
    extra: dict[str, Any],
    resource_id: str | None = None,
) -> None:
    prefix = audit_prefix(query.model)
    tenant_id = current_tenant()
    write = _instance_write.get()
    if write is not None and write.model is query.model:
        resource_id = write.resource_id
        # Inside unscoped() the row need not be the caller's tenant's: file
        # the event under the tenant whose row it is.
        tenant_id = write.tenant_id or tenant_id
        if write.changed is not None and verb == "update":
            extra["fields"] = list(write.changed)
    metadata = dict(extra)
    if rows is not None and resource_id is None:
        metadata["rows"] = rows
    scope = active_scope()
    if scope is not None and scope.unscoped:
        metadata["unscoped"] = scope.reason
    write_event(
        database,
        {
            "action": f"{prefix}.{verb}",
            "tenant_id": tenant_id,
            "resource_type": prefix,
            "resource_id": resource_id,
            "metadata": metadata or None,
        },
        strict=False,
    )


def _affected(result: Any) -> int | None:
    return result if isinstance(result, int) and not isinstance(result, bool) else None


class AuditedInsert(_ModelInsert):
    def _execute(self, database: Database) -> Any:
        result = super()._execute(database)
        if self.model._meta.audit_events:
            if self._query_type == ModelInsert.MULTI:
                rows = len(self._insert) if isinstance(self._insert, Sized) else None
                _record_statement(self, database, "create", rows, {})
            else:
                _record_statement(self, database, "create", 1, {}, self._inserted_id(result))
        return result

    def _inserted_id(self, result: Any) -> str | None:
        """The id of a one-row insert made outside ``save()`` (which names it)."""
        meta = self.model._meta
        if meta.primary_key is False or meta.composite_key:
            return None
        data = self._insert if isinstance(self._insert, Mapping) else {}
        value = data.get(meta.primary_key, data.get(meta.primary_key.name))
        if value is None and (meta.auto_increment or not isinstance(result, int)):
            # PostgreSQL returns the key; SQLite returns a rowid, which is
            # the key only for an integer primary key.
            value = result
        return None if value is None or isinstance(value, bool) else str(value)


class AuditedUpdate(_ModelUpdate):
    def _execute(self, database: Database) -> Any:
        result = super()._execute(database)
        rows = _affected(result)
        if rows != 0 and self.model._meta.audit_events:
            fields = sorted(getattr(k, "name", str(k)) for k in self._update)
            _record_statement(self, database, "update", rows, {"fields": fields})
        return result


class AuditedDelete(_ModelDelete):
    def _execute(self, database: Database) -> Any:
        result = super()._execute(database)
        rows = _affected(result)
        if rows != 0 and self.model._meta.audit_events:
            _record_statement(self, database, "delete", rows, {})
        return result


# (insert, update, delete) query classes of a model.
WriteQueries = tuple[Any, Any, Any]


class AuditedModelBase(ModelBase):
    """Decides, once per class as peewee builds it, which query classes its writes use."""

    def __new__(mcs, name: str, bases: tuple[type, ...], attrs: dict[str, Any], **kw: Any) -> Any:
        cls = super().__new__(mcs, name, bases, attrs, **kw)
        # After peewee's __new__: Meta options, inherited ones too, are on _meta now.
        records = bool(getattr(cls._meta, "audit_events", None))
        cls._records_events = records
        cls._insert_query, cls._update_query, cls._delete_query = cls._write_queries(records)
        return cls


class AuditedModel(BaseModel, metaclass=AuditedModelBase):
    """A model whose writes record audit events when ``Meta.audit_events`` is set."""

    class Meta:
        # The action prefix ("user" -> user.create/update/delete); None: no events.
        audit_events: str | None = None

    # Set per class by AuditedModelBase from Meta.audit_events.
    _records_events: ClassVar[bool] = False
    _insert_query: ClassVar[Any] = ModelInsert
    _update_query: ClassVar[Any] = ModelUpdate
    _delete_query: ClassVar[Any] = ModelDelete

    @classmethod
    def _write_queries(cls, records_events: bool) -> WriteQueries:
        """The (insert, update, delete) query classes of a class that records events or not.

        A subclass that adds a layer of its own (``TenantModel``) returns its
        classes, built on these.
        """
        if records_events:
            return AuditedInsert, AuditedUpdate, AuditedDelete
        return ModelInsert, ModelUpdate, ModelDelete

    @classmethod
    def insert(cls, data: Any = None, /, **insert: Any) -> Any:
        return cls._insert_query(cls, cast(Any, cls)._normalize_data(data, insert))

    @classmethod
    def insert_many(cls, rows: Any, fields: Any = None) -> Any:
        return cls._insert_query(cls, insert=rows, columns=fields)

    @classmethod
    def update(cls, data: Any = None, /, **update: Any) -> Any:
        return cls._update_query(cls, cast(Any, cls)._normalize_data(data, update))

    # classmethod_only, as peewee's: `instance.delete()` is an error, not a table wipe.
    delete: Any = classmethod_only(lambda cls: cls._delete_query(cls))

    def save(self, force_insert: bool = False, only: Any = None) -> Any:
        if not self._records_events:
            return super().save(force_insert, only)
        changed = tuple(self.dirty_field_names) if only is None else None
        write = _InstanceWrite(type(self), _resource_id(self), _row_tenant(self), changed)
        token = _instance_write.set(write)
        try:
            return super().save(force_insert, only)
        finally:
            _instance_write.reset(token)

    def delete_instance(self, recursive: bool = False, delete_nullable: bool = False) -> Any:
        if not self._records_events:
            return super().delete_instance(recursive, delete_nullable)
        write = _InstanceWrite(type(self), _resource_id(self), _row_tenant(self))
        token = _instance_write.set(write)
        try:
            return super().delete_instance(recursive, delete_nullable)
        finally:
            _instance_write.reset(token)
