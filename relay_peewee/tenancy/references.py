"""Foreign keys between TenantModels must point at rows of the same tenant.

Checking an id costs a query, so the check is batched and skipped where the
answer is already known:

* one ``SELECT COUNT(*) FROM <target> WHERE id IN (...) AND tenant_id = ?``
  per target model and statement checks every id it writes (10,000 inserted
  ratings cost a couple of small queries, not 10,000); only when the count
  falls short are the ids read back, to name the missing one;
* no query is spent on a related instance read from or written to this
  tenant (``Rating.create(skill=skill)`` with ``skill`` loaded), nor - on
  ``save()`` - on a value unchanged since the row was loaded (``checked_save``).

An id that exists in no tenant is refused like one of another tenant:
telling the two apart would tell the caller which ids another tenant uses.

A multi-row insert skips the query for references the database checks
itself - a ``TenantForeignKeyField`` whose composite key (migration 0006)
is in the live schema - and runs in a savepoint instead, so a refused row
turns into ``CrossTenantWrite`` and leaves the caller's transaction usable
(``database_checked``, ``refused_by_database``).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, cast
from weakref import WeakKeyDictionary

from peewee import (
    SQL,
    Context,
    Database,
    DatabaseProxy,
    Field,
    ForeignKeyField,
    Model,
    Node,
    SqliteDatabase,
    fn,
)

from ..database import sqlstate
from ..database.deferred_begin import deferred_transaction
from ..errors import CrossTenantWrite
from ..fields import TenantForeignKeyField
from .scoping import TENANT_COLUMN, TENANT_FIELD, ScopedSelect, is_tenant_model

__all__ = [
    "ANY_VALUE",
    "References",
    "collect",
    "database_checked",
    "forget_database_checks",
    "guarded_checks",
    "is_trusted_instance",
    "refused_by_database",
    "related_values",
    "tenant_refs",
    "trusted_values",
    "trusting",
    "verify_references",
]

# Foreign key -> the values a statement writes to it that still need checking.
References = dict[ForeignKeyField, set[Any]]

# In a `trusting` map: every value of this field was checked by the caller
# (bulk_update writes them as CASE expressions the query cannot inspect).
ANY_VALUE: Any = object()

_VERIFY_CHUNK = 1000
FOREIGN_KEY_VIOLATION = "23503"  # PostgreSQL's SQLSTATE

# (tenant id, model, {field name: values or ANY_VALUE}): what the statements
# on that model in a `trusting` block need not check - while that tenant is
# the one in context.
_Trusted = tuple[str, type[Model], Mapping[str, Any]]
_trusted: ContextVar[_Trusted | None] = ContextVar("relay_peewee_trusted_refs", default=None)
_tenant_refs: dict[type[Model], tuple[int, tuple[ForeignKeyField, ...]]] = {}


def trusted_values(tenant_id: str, model: type[Model]) -> Mapping[str, Any] | None:
    """The values a ``trusting`` block declared checked for ``model`` in ``tenant_id``."""
    trusted = _trusted.get()
    if trusted is None or trusted[0] != tenant_id or trusted[1] is not model:
        # Code inside the block that entered another tenant's context, or
        # writes another model (whose "skill" may point elsewhere), gets no
        # trust: the values were checked for this model in the first tenant.
        return None
    return trusted[2]


class trusting:
    """Declare values checked for ``model`` in ``tenant_id``, for the statements in the block.

    ``values`` maps a foreign-key name to the set of values checked, or to
    ``ANY_VALUE``.
    """

    def __init__(self, values: Mapping[str, Any], tenant_id: str, model: type[Model]) -> None:
        self.trusted = (tenant_id, model, values) if values else None
        self._token: Token[_Trusted | None] | None = None

    def __enter__(self) -> None:
        self._token = _trusted.set(self.trusted)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._token is not None
        _trusted.reset(self._token)


def tenant_refs(model: type[Model]) -> tuple[ForeignKeyField, ...]:
    """The foreign keys of ``model`` that point at other TenantModels.

    Cached, and the same tuple object while valid (other caches key on it);
    recomputed when the model's references change, as when a
    ``DeferredForeignKey`` resolves after the model was first written.
    """
    refs = model._meta.refs
    cached = _tenant_refs.get(model)
    if cached is None or cached[0] != len(refs):
        cached = (len(refs), tuple(fk for fk in refs if is_tenant_model(fk.rel_model)))
        _tenant_refs[model] = cached
    return cached[1]


def is_trusted_instance(instance: Any, tenant_id: str, fk: ForeignKeyField) -> bool:
    """Whether ``instance`` is a row of this tenant, as read from or saved to it.

    Its tenant and the key ``fk`` refers to must be unchanged since then (not
    dirty): an instance built by hand with an id from a request is checked.
    Its class must be the target itself: a subclass is another table, whose
    ids say nothing about the target's.
    """
    if type(instance) is not fk.rel_model:  # a TenantModel: fk is one of tenant_refs
        return False
    if instance.__data__.get(TENANT_FIELD) != tenant_id:
        return False
    dirty = instance._dirty
    return TENANT_FIELD not in dirty and fk.rel_field.name not in dirty


def collect(
    refs: References,
    fk: ForeignKeyField,
    value: Any,
    tenant_id: str,
    trusted: Mapping[str, Any] | None,
) -> None:
    """Add ``value`` to ``refs`` unless it needs no query; refuse what cannot be checked."""
    if value is None:
        return
    known = trusted.get(fk.name) if trusted is not None else None
    if isinstance(value, Model):
        if is_trusted_instance(value, tenant_id, fk):
            return
        value = getattr(value, fk.rel_field.name)
        if value is None:
            return
    elif isinstance(value, Node):
        # A subquery that selects the target's own key from the target is
        # scoped itself: it can only yield ids of this tenant's rows.
        # Anything else - a CASE, a column, or a scoped subquery selecting a
        # constant (``Skill.select(Value(other_id))``) - could name any row.
        if known is ANY_VALUE or _selects_own_key(value, fk):
            return
        raise CrossTenantWrite(
            f"{fk.model.__name__}.{fk.name} is set to an SQL expression that cannot be "
            "checked against the tenant; pass the id or the row"
        )
    if known is ANY_VALUE or (known is not None and value in known):
        return
    values = refs.get(fk)
    if values is None:
        refs[fk] = {value}
    else:
        values.add(value)


def _selects_own_key(value: Any, fk: ForeignKeyField) -> bool:
    if not isinstance(value, ScopedSelect):
        return False
    query: Any = value
    returning: Any = query._returning or ()
    return (
        query.model is fk.rel_model
        and len(returning) == 1
        and returning[0] is fk.rel_field
        and len(query._from_list) == 1
        and query._from_list[0] is fk.rel_model
    )


def related_values(instances: list[Any], tenant_id: str) -> dict[str, set[Any]]:
    """Per foreign-key name, the values held by trusted related instances."""
    trusted: dict[str, set[Any]] = {}
    for instance in instances:
        data, rel = instance.__data__, instance.__rel__
        for fk in tenant_refs(type(instance)):
            related = rel.get(fk.name)
            value = data.get(fk.name)
            if (
                related is not None
                and value is not None
                and is_trusted_instance(related, tenant_id, fk)
                and getattr(related, fk.rel_field.name) == value
            ):
                trusted.setdefault(fk.name, set()).add(value)
    return trusted


class _InList(Node):
    """``column IN (?, ?, ...)`` with the values as they are.

    Rendering a thousand ``Value`` nodes costs as much as the query they are
    for; these are database values already, so they join the parameters
    directly (``Context._values``, peewee's parameter list).
    """

    def __init__(self, field: Field, values: list[Any]) -> None:
        self.field = field
        self.values = values

    def __sql__(self, ctx: Context) -> Any:
        ctx.sql(self.field).literal(" IN (")
        ctx.literal(", ".join([ctx.state.param or "?"] * len(self.values)))
        cast(Any, ctx)._values.extend(self.values)
        return ctx.literal(")")


# database -> model -> {reference the database checks: its constraint's name}.
# Decided once per model and database, from the live catalog; migrate and
# rollback forget it (forget_database_checks), as they may add or drop keys.
_checked: WeakKeyDictionary[Database, dict[type[Model], dict[ForeignKeyField, str | None]]]
_checked = WeakKeyDictionary()


def forget_database_checks(database: Database | None = None) -> None:
    """Ask the catalog again which references the database checks (after a migration)."""
    if database is None:
        _checked.clear()
    else:
        _checked.pop(database, None)


def _checked_by_database(
    model: type[Model], database: Database
) -> dict[ForeignKeyField, str | None]:
    per_model = _checked.get(database)
    if per_model is None:
        per_model = _checked[database] = {}
    known = per_model.get(model)
    if known is not None:
        return known
    candidates = [fk for fk in tenant_refs(model) if isinstance(fk, TenantForeignKeyField)]
    known = {}
    if candidates:
        # Imported on a model's first write to a database, not with the
        # package: its dataclasses are ~5 ms of `import relay_peewee`.
        from ..database import catalog

        keys = {
            (key.columns, key.ref_table): key.name
            for key in catalog.foreign_keys(database, model._meta.table_name)
        }
        for fk in candidates:
            key = ((TENANT_COLUMN, fk.column_name), fk.rel_model._meta.table_name)
            if key in keys:
                known[fk] = keys[key]
    per_model[model] = known
    return known


def database_checked(refs: References, database: Database) -> dict[ForeignKeyField, str | None]:
    """The references among ``refs`` the database's own keys refuse across tenants.

    Each with its constraint's name (PostgreSQL; None on SQLite, whose errors
    name none). A TenantForeignKeyField whose composite key (migration 0006)
    is in the live schema.
    """
    if not refs:
        return {}
    if isinstance(database, SqliteDatabase) and not _enforces_foreign_keys(database):
        return {}  # a connection of the application's own that left them off
    model = next(iter(refs)).model
    known = _checked_by_database(model, database)
    return {fk: known[fk] for fk in refs if fk in known}


def _enforces_foreign_keys(database: SqliteDatabase) -> bool:
    # Asked of the connection every time, not read from the configured
    # pragmas: raw SQL can turn the pragma off on a connection opened with it
    # on (issue 19), and a check left to keys that no longer fire lets another
    # tenant's id in. On sqlite3's own connection: ~1 us, no query log.
    row = database.connection().execute("PRAGMA foreign_keys").fetchone()
    return bool(row and row[0])


def guarded_checks(model: type[Model]) -> dict[str, ForeignKeyField]:
    """By name, the references of ``model`` a one-row INSERT may leave to the database.

    Those its composite keys check, where the statement can be guarded at
    no cost: SQLite enforcing foreign keys (a refused row leaves the
    transaction as it was), or PostgreSQL inside a tenant context's own
    transaction (``DeferredTransaction.guarded``).
    """
    database: Any = model._meta.database
    if type(database) is DatabaseProxy:
        database = database.obj
    if isinstance(database, SqliteDatabase):
        if not _enforces_foreign_keys(database):
            return {}
    elif database is None or deferred_transaction(database) is None:
        return {}
    return {fk.name: fk for fk in _checked_by_database(model, database)}


def refused_by_database(
    exc: BaseException, refs: Mapping[ForeignKeyField, Any], tenant_id: str
) -> bool:
    """Whether ``exc`` is a foreign-key violation (of those ``refs``); then raise.

    On PostgreSQL the violated constraint's name says which reference it was;
    another key's violation (the tenant's own, say) is not ours to explain.
    """
    cause = exc.__context__
    pgcode = sqlstate(exc)
    text = str(exc)
    if pgcode is not None and pgcode != FOREIGN_KEY_VIOLATION:
        return False
    if pgcode is None and "FOREIGN KEY constraint failed" not in text:
        return False
    if pgcode is not None:
        constraint = getattr(getattr(cause, "diag", None), "constraint_name", None)
        named = [fk for fk, name in refs.items() if name is not None and name == constraint]
        if constraint is not None and any(name is not None for name in refs.values()):
            if not named:
                return False
            refs = dict.fromkeys(named)
    names = ", ".join(sorted(f"{fk.model.__name__}.{fk.name}" for fk in refs))
    raise CrossTenantWrite(
        f"{names}: a row points at one that is not a row of tenant {tenant_id!r} "
        "(refused by the database; nothing was written)"
    ) from None


def verify_references(refs: References, tenant_id: str, database: Database) -> None:
    """``CrossTenantWrite`` unless every value names a row of this tenant."""
    for fk, values in refs.items():
        target = fk.rel_field
        wanted = {target.db_value(v): v for v in values}
        keys = list(wanted)
        for start in range(0, len(keys), _VERIFY_CHUNK):
            chunk = keys[start : start + _VERIFY_CHUNK]
            # A ScopedSelect: counts only this tenant's rows. A foreign key
            # targets a unique column, so all found <=> count == len(chunk).
            query = fk.rel_model.select(fn.COUNT(SQL("*"))).where(_InList(target, chunk))
            if query.scalar(database) != len(chunk):
                _refuse_missing(fk, chunk, wanted, tenant_id, database)


def _refuse_missing(
    fk: ForeignKeyField, chunk: list[Any], wanted: dict[Any, Any], tenant_id: str, db: Database
) -> None:
    target = fk.rel_field
    query = fk.rel_model.select(target).where(_InList(target, chunk)).tuples()
    found = {target.db_value(row[0]) for row in query.execute(db)}
    missing = [wanted[key] for key in chunk if key not in found]
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    raise CrossTenantWrite(
        f"{fk.model.__name__}.{fk.name} points at {fk.rel_model.__name__} "
        f"{missing[0]!r}{more}, which is not a row of tenant {tenant_id!r}"
    )
