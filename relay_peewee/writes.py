"""Writes through a TenantModel: inside the tenant in context, and pointing into it.

* INSERT: every row gets the tenant in context when it names none; a row
  naming another tenant is refused. ``REPLACE`` is refused (it deletes whatever
  row holds a conflicting key, whichever tenant owns it) and an upsert's
  ``DO UPDATE`` only ever updates a row of this tenant.
* UPDATE / DELETE: WHERE gets ``tenant_id = ?``; setting ``tenant`` to another
  tenant is refused.
* Foreign keys to other TenantModels must name rows of this tenant. Checking
  an id costs a query, so one ``SELECT id ... WHERE id IN (...)`` per target
  model and statement checks them all at once (10,000 inserted rows cost one
  small query, not 10,000), and no query at all is spent on a value that is
  already known to be good: a related instance read from or written to this
  tenant, or - on ``save()`` - a value unchanged since the row was loaded.

A refused write raises ``CrossTenantWrite`` before any SQL is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, cast

from peewee import (
    Context,
    Database,
    Field,
    ForeignKeyField,
    Insert,
    Model,
    Node,
    chunked,
)

from .audited_model import AuditedDelete, AuditedInsert, AuditedUpdate
from .errors import CrossTenantWrite
from .scoping import (
    TENANT_FIELD,
    ScopedSelect,
    TenantMetadata,
    _and,
    _render_copy,
    is_tenant_model,
    scope_tenant,
)

__all__ = [
    "ANY_VALUE",
    "References",
    "ScopedDelete",
    "ScopedInsert",
    "ScopedUpdate",
    "check_tenant_value",
    "check_update_data",
    "is_trusted_instance",
    "prepare_insert",
    "tenant_refs",
    "trusting",
    "verify_references",
]

# Foreign key -> the values a statement writes to it that still need checking.
References = dict[ForeignKeyField, set[Any]]

# In a `trusting` map: every value of this field was checked by the caller
# (bulk_update writes them as CASE expressions the query cannot inspect).
ANY_VALUE: Any = object()

_VERIFY_CHUNK = 500

_trusted: ContextVar[Mapping[Field, Any] | None] = ContextVar(
    "relay_peewee_trusted_refs", default=None
)
_tenant_refs: dict[type[Model], tuple[ForeignKeyField, ...]] = {}


class trusting:
    """Values the next statements need not check: ``{field: set | ANY_VALUE}``."""

    def __init__(self, values: Mapping[Field, Any]) -> None:
        self.values = values
        self._token: Token[Mapping[Field, Any] | None] | None = None

    def __enter__(self) -> None:
        self._token = _trusted.set(self.values or None)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._token is not None
        _trusted.reset(self._token)


def tenant_refs(model: type[Model]) -> tuple[ForeignKeyField, ...]:
    """The foreign keys of ``model`` that point at other TenantModels."""
    refs = _tenant_refs.get(model)
    if refs is None:
        refs = tuple(fk for fk in model._meta.refs if is_tenant_model(fk.rel_model))
        _tenant_refs[model] = refs
    return refs


def is_trusted_instance(instance: Any, tenant_id: str, fk: ForeignKeyField) -> bool:
    """Whether ``instance`` is a row of this tenant, as read from or saved to it.

    Its tenant and the key ``fk`` refers to must be unchanged since then (not
    dirty): an instance built by hand with an id from a request is checked.
    """
    if not isinstance(instance, fk.rel_model) or not isinstance(instance._meta, TenantMetadata):
        return False
    if instance.__data__.get(TENANT_FIELD) != tenant_id:
        return False
    dirty = instance._dirty
    return TENANT_FIELD not in dirty and fk.rel_field.name not in dirty


def check_tenant_value(model: type[Model], value: Any, tenant_id: str) -> None:
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


def _collect(
    refs: References,
    fk: ForeignKeyField,
    value: Any,
    tenant_id: str,
    trusted: Mapping[Field, Any] | None,
) -> None:
    if value is None:
        return
    known = trusted.get(fk) if trusted is not None else None
    if isinstance(value, Model):
        if is_trusted_instance(value, tenant_id, fk):
            return
        value = getattr(value, fk.rel_field.name)
        if value is None:
            return
    elif isinstance(value, Node):
        # A subquery of a TenantModel is scoped itself; anything else
        # (a CASE, a column) could name any row.
        if isinstance(value, ScopedSelect) or known is ANY_VALUE:
            return
        raise CrossTenantWrite(
            f"{fk.model.__name__}.{fk.name} is set to an SQL expression that cannot be "
            "checked against the tenant; pass the id or the row"
        )
    if known is ANY_VALUE or (known is not None and value in known):
        return
    refs.setdefault(fk, set()).add(value)


def verify_references(refs: References, tenant_id: str, database: Database) -> None:
    """``CrossTenantWrite`` unless every value names a row of this tenant.

    An id that exists in no tenant is refused too: telling the two apart would
    tell the caller which ids another tenant uses.
    """
    for fk, values in refs.items():
        target = fk.rel_field
        wanted = list(values)
        found: set[Any] = set()
        for chunk in chunked(wanted, _VERIFY_CHUNK):
            # A ScopedSelect: "exists" means "exists in this tenant".
            query = fk.rel_model.select(target).where(target.in_(chunk)).tuples()
            found.update(target.db_value(row[0]) for row in query.execute(database))
        missing = [v for v in wanted if target.db_value(v) not in found]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise CrossTenantWrite(
                f"{fk.model.__name__}.{fk.name} points at {fk.rel_model.__name__} "
                f"{missing[0]!r}{more}, which is not a row of tenant {tenant_id!r}"
            )


def _lookup(row: Mapping[Any, Any], field: Field) -> tuple[bool, Any]:
    # Rows may be keyed by field, field name or column name, as peewee allows.
    for key in (field, field.name, field.column_name):
        if key in row:
            return True, row[key]
    return False, None


def _field_of(model: type[Model], key: Any) -> Field | None:
    if isinstance(key, Field):
        return key
    if isinstance(key, str):
        return model._meta.combined.get(key)
    return None


def check_update_data(model: type[Model], data: Mapping[Any, Any], tenant_id: str) -> References:
    """Refuse a tenant change; return the references an UPDATE's SET writes."""
    refs: References = {}
    trusted = _trusted.get()
    tenant_field = model._meta.fields[TENANT_FIELD]
    fks = tenant_refs(model)
    for key, value in data.items():
        field = _field_of(model, key)
        if field is None:
            continue
        if field is tenant_field:
            if not (trusted is not None and trusted.get(field) is ANY_VALUE):
                check_tenant_value(model, value, tenant_id)
        elif isinstance(field, ForeignKeyField) and any(field is fk for fk in fks):
            # `any(is)`, not `in`: Field.__eq__ builds SQL instead of comparing.
            _collect(refs, field, value, tenant_id, trusted)
    return refs


def _prepare_mapping(
    model: type[Model],
    row: Mapping[Any, Any],
    tenant_id: str,
    refs: References,
    trusted: Mapping[Field, Any] | None,
) -> dict[Any, Any]:
    out = dict(row)
    tenant_field = model._meta.fields[TENANT_FIELD]
    present, value = _lookup(out, tenant_field)
    if not present or value is None:
        out[tenant_field] = tenant_id
    else:
        check_tenant_value(model, value, tenant_id)
    for fk in tenant_refs(model):
        present, value = _lookup(out, fk)
        if present:
            _collect(refs, fk, value, tenant_id, trusted)
    return out


def _prepare_rows(
    query: Any, tenant_id: str, refs: References, trusted: Mapping[Field, Any] | None
) -> tuple[list[Any], list[Any] | None]:
    """The rows of a multi-row insert with the tenant in each, and its columns."""
    model = query.model
    rows = list(query._insert)
    columns = query._columns
    if not columns and rows and not isinstance(rows[0], Mapping):
        columns = query.get_default_columns()
    if not columns:
        return [_prepare_mapping(model, r, tenant_id, refs, trusted) for r in rows], None

    columns = [getattr(model, c) if isinstance(c, str) else c for c in columns]
    tenant_field = model._meta.fields[TENANT_FIELD]
    positions = {id(c): i for i, c in enumerate(columns)}
    tenant_at = positions.get(id(tenant_field))
    if tenant_at is None:
        columns.append(tenant_field)
    fk_at = [(fk, positions[id(fk)]) for fk in tenant_refs(model) if id(fk) in positions]

    out: list[Any] = []
    for row in rows:
        if isinstance(row, Mapping):
            out.append(_prepare_mapping(model, row, tenant_id, refs, trusted))
            continue
        if tenant_at is None:
            row = (*row, tenant_id)
        elif row[tenant_at] is None:
            row = list(row)
            row[tenant_at] = tenant_id
        else:
            check_tenant_value(model, row[tenant_at], tenant_id)
        for fk, i in fk_at:
            _collect(refs, fk, row[i], tenant_id, trusted)
        out.append(row)
    return out, columns


def _scope_conflict(
    model: type[Model],
    conflict: Any,
    tenant_id: str,
    refs: References,
) -> Any:
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
    """A copy of the INSERT with the tenant in every row; the references to check."""
    model = query.model
    refs: References = {}
    trusted = _trusted.get()
    prepared = query.clone()
    if query._on_conflict is not None:
        prepared._on_conflict = _scope_conflict(model, query._on_conflict, tenant_id, refs)
    kind = query._query_type
    if kind == Insert.SIMPLE:
        prepared._insert = _prepare_mapping(model, query._insert or {}, tenant_id, refs, trusted)
    elif kind == Insert.MULTI:
        prepared._insert, prepared._columns = _prepare_rows(query, tenant_id, refs, trusted)
    else:
        raise CrossTenantWrite(
            f"{model.__name__}.insert_from() copies rows the ORM cannot check; "
            "use insert_many(), or run it inside `with unscoped(reason):`"
        )
    return prepared, refs


def instance_refs(instance: Any, tenant_id: str, *, unchanged_ok: bool) -> dict[Field, set[Any]]:
    """The foreign-key values of ``instance`` that need no query to trust.

    ``unchanged_ok``: a value not changed since the row was loaded or saved
    (not dirty) writes nothing new, so an UPDATE from ``save()`` may keep it.
    """
    trusted: dict[Field, set[Any]] = {}
    data, rel, dirty = instance.__data__, instance.__rel__, instance._dirty
    for fk in tenant_refs(type(instance)):
        value = data.get(fk.name)
        if value is None:
            continue
        related = rel.get(fk.name)
        if (unchanged_ok and fk.name not in dirty) or (
            related is not None
            and is_trusted_instance(related, tenant_id, fk)
            and getattr(related, fk.rel_field.name) == value
        ):
            trusted.setdefault(fk, set()).add(value)
    return trusted


class ScopedUpdate(AuditedUpdate):
    """``TenantModel.update()``: only this tenant's rows, never to another tenant."""

    def __sql__(self, ctx: Context) -> Any:
        tenant_id = scope_tenant(self.model)
        if tenant_id is None:
            return super().__sql__(ctx)
        check_update_data(self.model, self._update, tenant_id)
        rendered = _render_copy(self)
        rendered._where = _and(self._where, [self.model._meta.fields[TENANT_FIELD] == tenant_id])
        return super(ScopedUpdate, rendered).__sql__(ctx)

    def _execute(self, database: Database) -> Any:
        tenant_id = scope_tenant(self.model)
        if tenant_id is not None:
            refs = check_update_data(self.model, self._update, tenant_id)
            verify_references(refs, tenant_id, database)
        return super()._execute(database)


class ScopedDelete(AuditedDelete):
    """``TenantModel.delete()``: only this tenant's rows."""

    def __sql__(self, ctx: Context) -> Any:
        tenant_id = scope_tenant(self.model)
        if tenant_id is None:
            return super().__sql__(ctx)
        rendered = _render_copy(self)
        rendered._where = _and(self._where, [self.model._meta.fields[TENANT_FIELD] == tenant_id])
        return super(ScopedDelete, rendered).__sql__(ctx)


class ScopedInsert(AuditedInsert):
    """``TenantModel.insert()`` and friends: rows of this tenant, pointing into it."""

    _prepared_for: str | None = None

    def __sql__(self, ctx: Context) -> Any:
        tenant_id = scope_tenant(self.model)
        if tenant_id is None or self._prepared_for == tenant_id:
            return super().__sql__(ctx)
        prepared, _refs = prepare_insert(self, tenant_id)
        return super(ScopedInsert, prepared).__sql__(ctx)

    def _execute(self, database: Database) -> Any:
        tenant_id = scope_tenant(self.model)
        if tenant_id is None:
            return super()._execute(database)
        prepared, refs = prepare_insert(self, tenant_id)
        verify_references(refs, tenant_id, database)
        prepared._prepared_for = tenant_id
        return super(ScopedInsert, prepared)._execute(database)
