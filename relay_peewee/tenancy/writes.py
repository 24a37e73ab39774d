"""Writes through a TenantModel: inside the tenant in context, and pointing into it.

* INSERT: a row that names no tenant gets the one in context; a row naming
  another tenant is refused. ``REPLACE`` is refused (it deletes whatever row holds a
  conflicting key, whichever tenant owns it); an upsert's ``DO UPDATE`` only
  ever updates a row of this tenant.
* UPDATE / DELETE: WHERE gets ``tenant_id = ?``; setting ``tenant`` to
  another tenant is refused.
* Foreign keys into other TenantModels are checked by ``references``.

``save()`` checks its instance itself (it knows which values changed and which
related rows it holds); the one statement built from exactly the values it
checked is stamped ``_saved_for`` (``checked_save``) and pays for no second
look at the row.

A refused write raises ``CrossTenantWrite`` before any SQL is sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any, cast

from peewee import (
    Column,
    Context,
    Database,
    DatabaseProxy,
    Field,
    FieldAlias,
    ForeignKeyField,
    Insert,
    IntegrityError,
    Model,
    ModelDelete,
    ModelInsert,
    ModelUpdate,
    Node,
    SqliteDatabase,
)

from ..database.deferred_begin import deferred_transaction
from ..errors import CrossTenantWrite
from ..models.audited import AuditedDelete, AuditedInsert, AuditedUpdate, WriteQueries
from ..scope import _scope, in_force
from .references import (
    ANY_VALUE,
    References,
    collect,
    database_checked,
    refused_by_database,
    tenant_refs,
    trusted_values,
)
from .references import verify_references as verify_references
from .scoping import TENANT_COLUMN, TENANT_FIELD, _and, _render_copy, scope_tenant

__all__ = [
    "AuditedScopedDelete",
    "AuditedScopedInsert",
    "AuditedScopedUpdate",
    "ScopedDelete",
    "ScopedInsert",
    "ScopedUpdate",
    "check_tenant_value",
    "check_update_data",
    "prepare_insert",
    "scoped_write_queries",
]

# peewee's query classes, typed as Any: its stubs do not declare _execute.
_ModelInsert: Any = ModelInsert
_ModelUpdate: Any = ModelUpdate
_ModelDelete: Any = ModelDelete


def check_tenant_value(model: type[Model], value: Any, tenant_id: str) -> None:
    """Refuse ``value`` as the tenant of a row written in ``tenant_id``'s context."""
    if isinstance(value, Node):
        raise CrossTenantWrite(
            f"{model.__name__}.tenant is set to an SQL expression; only a tenant id can be checked"
        )
    given = cast(Any, value)._pk if isinstance(value, Model) else value
    if given != tenant_id:
        raise CrossTenantWrite(
            f"refused to write a {model.__name__} row of tenant {given!r} "
            f"in the context of tenant {tenant_id!r}"
        )


def _field_of(model: type[Model], key: Any) -> Field | None:
    """The field a row or SET key names: by name, Field, aliased Field or Column."""
    if isinstance(key, str):
        return model._meta.combined.get(key)
    if isinstance(key, FieldAlias):
        key = key.field
    if isinstance(key, Field):
        # Another model's field renders as its bare column name here.
        return key if key.model is model else model._meta.columns.get(key.column_name)
    if isinstance(key, Column) and isinstance(key.name, str):
        return model._meta.columns.get(key.name)
    # Any other expression as a column could be the tenant or a reference.
    raise CrossTenantWrite(
        f"cannot tell which {model.__name__} column {key!r} writes; name it by field"
    )


def check_update_data(model: type[Model], data: Mapping[Any, Any], tenant_id: str) -> References:
    """Refuse a tenant change; return the references an UPDATE's SET writes."""
    refs: References = {}
    trusted = trusted_values(tenant_id, model)
    tenant_field = model._meta.fields[TENANT_FIELD]
    fks = tenant_refs(model)
    for key, value in data.items():
        field = _field_of(model, key)
        if field is None:
            continue
        if field is tenant_field:
            if not (trusted is not None and trusted.get(TENANT_FIELD) is ANY_VALUE):
                check_tenant_value(model, value, tenant_id)
            continue
        for fk in fks:  # `is`, not `in`: Field.__eq__ builds SQL instead of comparing
            if field is fk:
                collect(refs, fk, value, tenant_id, trusted)
    return refs


# What a row key holds: the tenant (-1), the i-th foreign key of tenant_refs
# (i), or nothing to check (absent). By name and, for Field keys, by id():
# a Field hashes by building a string, and this runs once per row and key.
_TENANT = -1
_TENANT_KEYS = frozenset({TENANT_FIELD, TENANT_COLUMN})
_Roles = tuple[tuple[ForeignKeyField, ...], dict[Any, int], dict[int, int]]
_roles: dict[type[Model], _Roles] = {}
# Values that need no closer look than "which ids": most references.
_PLAIN = frozenset({str, int, uuid.UUID})


def _row_roles(
    model: type[Model], fks: tuple[ForeignKeyField, ...]
) -> tuple[dict[Any, int], dict[int, int]]:
    roles = _roles.get(model)
    if roles is None or roles[0] is not fks:  # new, or the references changed
        by_name: dict[Any, int] = {TENANT_FIELD: _TENANT, TENANT_COLUMN: _TENANT}
        by_field = {id(model._meta.fields[TENANT_FIELD]): _TENANT}
        for i, fk in enumerate(fks):
            by_name[fk.name] = by_name[fk.column_name] = i
            by_field[id(fk)] = i
        roles = _roles[model] = (fks, by_name, by_field)
    return roles[1], roles[2]


def _role_of(
    model: type[Model], key: Any, by_name: dict[Any, int], by_field: dict[int, int]
) -> int | None:
    if key.__class__ is str:
        return by_name.get(key)
    role = by_field.get(id(key))
    if role is not None:
        return role
    if isinstance(key, Field) and not isinstance(key, FieldAlias) and key.model is model:
        return None  # one of this model's other columns
    field = _field_of(model, key)  # a Column, an alias, another model's field
    return by_field.get(id(field)) if field is not None else None


def _scan_rows(
    query: Any, rows: list[Any], tenant_id: str, refs: References
) -> tuple[list[Any], list[Any] | None]:
    """The rows with the tenant in each, and their columns; collects references.

    A row naming another tenant is refused. A row naming none gets a copy
    with the tenant added - cheaper than leaving it to a column default, which
    peewee finds only after a KeyError per row.
    """
    model = query.model
    fks = tenant_refs(model)
    tenant_field = model._meta.fields[TENANT_FIELD]
    trusted = trusted_values(tenant_id, model)
    by_name, by_field = _row_roles(model, fks)
    found: list[set[Any]] = [set() for _ in fks]
    columns = query._columns
    if not columns and rows and not isinstance(rows[0], Mapping):
        columns = query.get_default_columns()
    at: list[tuple[int, int]] = []  # (position in a tuple row, role)
    for i, column in enumerate(columns or ()):
        role = _role_of(model, column, by_name, by_field)
        if role is not None:
            at.append((i, role))
    tenant_at = next((i for i, role in at if role == _TENANT), None)
    if columns and tenant_at is None:
        columns = [*columns, tenant_field]

    out: list[Any] = []
    for row in rows:
        named, owner = False, None
        is_mapping = type(row) is dict or isinstance(row, Mapping)  # skip the ABC check
        pairs = (
            [(_role_of(model, k, by_name, by_field), v) for k, v in row.items()]
            if is_mapping
            else [(role, row[i]) for i, role in at]
        )
        for role, value in pairs:
            if role is None:
                continue
            if role == _TENANT:
                named, owner = True, value
            elif value is not None:
                if trusted is None and value.__class__ in _PLAIN:
                    found[role].add(value)
                else:
                    collect(refs, fks[role], value, tenant_id, trusted)
        if owner is not None:
            check_tenant_value(model, owner, tenant_id)
        elif is_mapping:
            if named:  # named as None: drop that key, or the column would appear twice
                row = {k: v for k, v in row.items() if k not in _TENANT_KEYS}
            row = {**row, tenant_field: tenant_id}
        elif tenant_at is None:
            row = (*row, tenant_id)
        else:
            row = [*row[:tenant_at], tenant_id, *row[tenant_at + 1 :]]
        out.append(row)
    for fk, values in zip(fks, found, strict=True):
        if values:
            refs.setdefault(fk, set()).update(values)
    return out, columns


def _scope_conflict(model: type[Model], conflict: Any, tenant_id: str, refs: References) -> Any:
    action = (conflict._action or "").upper()
    if action == "REPLACE":
        raise CrossTenantWrite(
            f"REPLACE into {model.__name__} would delete a conflicting row of any tenant; "
            "use on_conflict(conflict_target=..., update=...) instead"
        )
    if conflict._update or conflict._preserve:
        for fk, values in check_update_data(model, conflict._update or {}, tenant_id).items():
            refs.setdefault(fk, set()).update(values)
        # A conflict with another tenant's row (a globally unique email, say)
        # then updates nothing instead of that row.
        return conflict.where(model._meta.fields[TENANT_FIELD] == tenant_id)
    return conflict


def prepare_insert(query: Any, tenant_id: str) -> tuple[Any, References]:
    """A copy of the INSERT that fills in the tenant; the references to check."""
    model = query.model
    refs: References = {}
    prepared = query.clone()
    if query._on_conflict is not None:
        prepared._on_conflict = _scope_conflict(model, query._on_conflict, tenant_id, refs)
    kind = query._query_type
    if kind == Insert.SIMPLE:
        rows, _columns = _scan_rows(query, [query._insert or {}], tenant_id, refs)
        prepared._insert = rows[0]
    elif kind == Insert.MULTI:
        prepared._insert, prepared._columns = _scan_rows(
            query, list(query._insert), tenant_id, refs
        )
    else:
        raise CrossTenantWrite(
            f"{model.__name__}.insert_from() copies rows the ORM cannot check; "
            "use insert_many(), or run it inside `with unscoped(reason):`"
        )
    return prepared, refs


class ScopedUpdate(_ModelUpdate):
    """``TenantModel.update()``: only this tenant's rows, never to another tenant."""

    _saved_for: str | None = None  # save()'s own statement, checked there for this tenant

    def __sql__(self, ctx: Context) -> Any:
        tenant_id = scope_tenant(self.model)
        if tenant_id is None:
            return super().__sql__(ctx)
        if self._saved_for != tenant_id:
            check_update_data(self.model, self._update, tenant_id)
        rendered = _render_copy(self)
        rendered._where = _and(self._where, [self.model._meta.fields[TENANT_FIELD] == tenant_id])
        return super(ScopedUpdate, rendered).__sql__(ctx)

    def _execute(self, database: Database) -> Any:
        if type(database) is DatabaseProxy:  # as ScopedInsert does
            database = database.obj or database
        tenant_id = scope_tenant(self.model)
        if tenant_id is not None and self._saved_for != tenant_id:
            refs = check_update_data(self.model, self._update, tenant_id)
            verify_references(refs, tenant_id, database)
        return super()._execute(database)


class ScopedDelete(_ModelDelete):
    """``TenantModel.delete()``: only this tenant's rows."""

    def __sql__(self, ctx: Context) -> Any:
        tenant_id = scope_tenant(self.model)
        if tenant_id is None:
            return super().__sql__(ctx)
        rendered = _render_copy(self)
        rendered._where = _and(self._where, [self.model._meta.fields[TENANT_FIELD] == tenant_id])
        return super(ScopedDelete, rendered).__sql__(ctx)


class ScopedInsert(_ModelInsert):
    """``TenantModel.insert()`` and friends: rows of this tenant, pointing into it."""

    _ready_for: str | None = None  # prepared and checked for this tenant: render as it is
    _saved_for: str | None = None  # save()'s own statement, checked there for this tenant
    # Of save()'s own statement: references (raw ids) left to the database's keys.
    _by_database: tuple[ForeignKeyField, ...] = ()

    def __sql__(self, ctx: Context) -> Any:
        tenant_id = scope_tenant(self.model)
        if (
            tenant_id is None
            or self._ready_for == tenant_id
            # save()'s own; an upsert clause added since would still need scoping
            or (self._saved_for == tenant_id and self._on_conflict is None)
        ):
            return super().__sql__(ctx)
        prepared, _refs = prepare_insert(self, tenant_id)
        return super(ScopedInsert, prepared).__sql__(ctx)

    def _execute(self, database: Database) -> Any:
        if type(database) is DatabaseProxy:
            # Resolved once here rather than by the proxy on each of the
            # three lookups peewee makes per INSERT: ~2% of a one-row create.
            database = database.obj or database
        saved_for = self._saved_for
        if saved_for is not None and self._on_conflict is None:  # as in __sql__
            # scope_tenant(), inlined on the path of every create.
            scope = _scope.get()
            if scope is not None and scope.closed:
                scope = in_force()
            if scope is not None and not scope.unscoped and scope.tenant_id == saved_for:
                self._ready_for = saved_for  # __sql__: render as it is
                if self._by_database:
                    return self._execute_guarded(database, saved_for)
                return super()._execute(database)
        tenant_id = scope_tenant(self.model)
        if tenant_id is None:
            return super()._execute(database)
        prepared, refs = prepare_insert(self, tenant_id)
        rows = prepared._insert
        many = isinstance(rows, list) and len(rows) > 1
        by_database = database_checked(refs, database)
        # One row: the database's composite keys refuse another tenant's id
        # at no extra cost where the row's own statement can be guarded for
        # free (see _guard). Otherwise the ids are looked up first.
        # (Rows keyed by fields only: peewee cannot always render other keys,
        # and the lookup must then refuse them first.)
        guard = (
            _guard(database)
            if by_database
            and not many
            and type(rows) is dict
            and all([isinstance(k, Field) for k in rows])
            else None
        )
        if not many and guard is None:
            by_database = {}
        verify_references(
            {fk: v for fk, v in refs.items() if fk not in by_database}, tenant_id, database
        )
        prepared._ready_for = tenant_id
        if not by_database:
            return super(ScopedInsert, prepared)._execute(database)
        try:
            # A savepoint: the database may refuse a row, and that must not
            # abort the caller's transaction (PostgreSQL would).
            with database.atomic() if guard is None else guard:
                return super(ScopedInsert, prepared)._execute(database)
        except IntegrityError as exc:
            if isinstance(database, SqliteDatabase):
                # Its errors name no constraint, and its transaction is
                # intact: look the ids up now, to name the one refused (a
                # violation of another key, the tenant's own, is re-raised).
                verify_references({fk: refs[fk] for fk in by_database}, tenant_id, database)
            else:
                refused_by_database(exc, by_database, tenant_id)
            raise

    def _execute_guarded(self, database: Database, tenant_id: str) -> Any:
        """save()'s INSERT whose raw ids the database's composite keys check."""
        refs: References = {fk: {self._insert[fk]} for fk in self._by_database}
        guard = _guard(database)
        if guard is None:  # the context's transaction is gone: look them up
            verify_references(refs, tenant_id, database)
            guard = nullcontext()
        try:
            with guard:
                return super()._execute(database)
        except IntegrityError as exc:
            if isinstance(database, SqliteDatabase):  # as in _execute: name the refused one
                verify_references(refs, tenant_id, database)
            else:
                refused_by_database(exc, database_checked(refs, database), tenant_id)
            raise


# A TenantModel that records audit events: the audit layer below the scoping
# one, so that it records what was written after the checks passed. A model
# that records none gets the Scoped* classes alone (scoped_write_queries):
# decided once per class, when it is built, rather than asked per write.


class AuditedScopedInsert(ScopedInsert, AuditedInsert):
    """``ScopedInsert`` of a model with ``Meta.audit_events``."""


class AuditedScopedUpdate(ScopedUpdate, AuditedUpdate):
    """``ScopedUpdate`` of a model with ``Meta.audit_events``."""


class AuditedScopedDelete(ScopedDelete, AuditedDelete):
    """``ScopedDelete`` of a model with ``Meta.audit_events``."""


def scoped_write_queries(records_events: bool) -> WriteQueries:
    """A TenantModel's (insert, update, delete) query classes."""
    if records_events:
        return AuditedScopedInsert, AuditedScopedUpdate, AuditedScopedDelete
    return ScopedInsert, ScopedUpdate, ScopedDelete


def _guard(database: Database) -> AbstractContextManager[Any] | None:
    """A savepoint for one statement that costs no round trip, if there is one.

    SQLite: none is needed, a refused statement leaves the transaction as it
    was. PostgreSQL inside a tenant context's own transaction: one sent with
    the statement (``DeferredTransaction.guarded``). Elsewhere on PostgreSQL a
    savepoint is two round trips, more than the lookup it would save: None.
    """
    if isinstance(database, SqliteDatabase):
        return nullcontext()
    transaction = deferred_transaction(database)
    return transaction.guarded() if transaction is not None else None
