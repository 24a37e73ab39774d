"""Scoping queries to the tenant in context, when their SQL is generated.

Scoping happens in ``__sql__``, not when a query is built, so it sees the
query exactly as it will run - every join, subquery, ``count()`` wrapper and
prefetch step included - and uses the tenant in context *at execution*, not the
one that happened to be active when the query object was created.

* ``ScopedSelect`` rewrites its FROM list: the first source of each FROM item
  gets ``tenant_id = ?`` in WHERE, every joined TenantModel gets it in its ON
  clause (so a LEFT JOIN still keeps its unmatched rows), and subqueries scope
  themselves because they are ``ScopedSelect`` too.
* The write queries (``writes``) add it to the WHERE of UPDATE and DELETE.
* A TenantModel's table rendered as a source by a query that did not scope it
  (``Tenant.select().join(Skill)``, a table-level ``Skill._meta.table.select()``,
  ``UPDATE ... FROM``, a FULL JOIN) becomes a derived table
  ``(SELECT * FROM skills WHERE tenant_id = ?) AS t2``: slower to read than a
  predicate but right for any placement, so no path is left unscoped.

With no tenant in context every one of them raises ``TenantRequired``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import peewee
from peewee import (
    JOIN,
    OP,
    SCOPE_COLUMN,
    SCOPE_SOURCE,
    SCOPE_VALUES,
    Column,
    Context,
    Database,
    Entity,
    Expression,
    Join,
    Node,
    Value,
)

from ..database import database_proxy
from ..errors import RawQueryRefused, RelayError, TenantRequired
from ..scope import Scope, _scope, in_force

__all__ = [
    "TENANT_COLUMN",
    "TENANT_FIELD",
    "ScopedRaw",
    "ScopedSelect",
    "TenantMetadata",
    "TenantModelAlias",
    "TenantTable",
    "is_tenant_model",
    "scope_tenant",
]

TENANT_FIELD = "tenant"
TENANT_COLUMN = "tenant_id"

# Joins whose left side keeps its rows (its predicate may go in WHERE) and
# whose right side is scoped in ON. RIGHT is the mirror image; FULL and the
# rest are left to the derived-table fallback, which is right for any join.
_RIGHT_SIDE_IN_ON = {JOIN.INNER, JOIN.LEFT_OUTER, JOIN.LATERAL, JOIN.LEFT_LATERAL}
_NO_ON_CLAUSE = {JOIN.CROSS, JOIN.NATURAL}
_SCOPED_JOINS = _RIGHT_SIDE_IN_ON | _NO_ON_CLAUSE | {JOIN.RIGHT_OUTER}

# The classes below build on peewee internals (_from_list, _where, _alias,
# _model, ...) that its stubs do not describe; typed as Any so mypy checks
# our code rather than tripping over every private attribute.
Table: Any = peewee.Table
ModelAlias: Any = peewee.ModelAlias
Metadata: Any = peewee.Metadata
_ModelSelect: Any = peewee.ModelSelect
_ModelRaw: Any = peewee.ModelRaw
is_model: Any = getattr(peewee, "is_model")  # noqa: B009  (missing from the stubs)


def is_tenant_model(model: Any) -> bool:
    return is_model(model) and isinstance(model._meta, TenantMetadata)


def scope_tenant(model: Any) -> str | None:
    """The tenant a query on ``model`` is limited to; ``None`` inside ``unscoped``."""
    scope: Scope | None = _scope.get()
    if scope is not None and scope.closed:  # in_force(), its common case inlined
        scope = in_force()
    if scope is None:
        name = getattr(model, "__name__", model)
        raise TenantRequired(
            f"{name} queried with no tenant in context: use `with tenant_context(tenant):`, "
            "or `with unscoped(reason):` for work across tenants"
        )
    return None if scope.unscoped else scope.tenant_id


def _render_copy(query: Any) -> Any:
    # A shallow copy that keeps the original's hash, so an outer query that
    # refers to this one (as `sq.c.id`) still resolves to the same alias.
    copy = object.__new__(type(query))
    copy.__dict__ = query.__dict__.copy()
    return copy


def _and(where: Any, predicates: list[Any]) -> Any:
    # Expression(), not `where & predicate`: a WHERE that is not a column
    # expression (a reference check's node) has no `&`.
    for predicate in predicates:
        where = predicate if where is None else Expression(where, OP.AND, predicate)
    return where


# --- the fallback: a derived table for sources no scoped query claimed -------


def _derived_table(ctx: Context, entity: Entity, tenant_id: str) -> Context:
    return (
        ctx.literal("(SELECT * FROM ")
        .sql(entity)
        .literal(" WHERE ")
        .sql(Entity(TENANT_COLUMN))
        .literal(" = ")
        .sql(Value(tenant_id, converter=False))
        .literal(")")
    )


def _declares_source(ctx: Any) -> bool:
    # A FROM/JOIN item. The SELECT list and ON clauses are SCOPE_SOURCE too,
    # flagged in_projection / in_expr. This runs for every column reference
    # (a column renders its table), so the common "no" costs one comparison.
    state = ctx.state
    return state.scope == SCOPE_SOURCE and not (state.in_projection or state.in_expr)


_table_sql = peewee.Table.__sql__


class TenantTable(Table):
    """A TenantModel's table: scopes itself when a query did not."""

    def clone(self) -> TenantTable:
        # Table.clone() builds a plain Table; an alias must stay scoped.
        return TenantTable(
            self.__name__,
            columns=self._columns,
            primary_key=self._primary_key,
            schema=self._schema,
            alias=self._alias,
            _model=self._model,
            _database=self._database,
        )

    def __sql__(self, ctx: Any) -> Any:
        state = ctx.state
        if state.scope == SCOPE_COLUMN:
            # A column reference - every column of every query renders its
            # table, so nearly every call. What Table.__sql__ writes there
            # (apply_column, then Entity.__sql__: "<alias>") in this one
            # frame rather than four; the same text.
            if self._alias:
                ctx.alias_manager[self] = self._alias
            alias = str(ctx.alias_manager[self])
            if alias:
                quote = state.quote or '""'
                return ctx.literal(f"{quote[0]}{alias.replace(quote[0], quote)}{quote[1]}")
        # _declares_source, its first test inlined: most other calls are not
        # FROM items either.
        if state.scope != SCOPE_SOURCE or not _declares_source(ctx):
            return _table_sql(self, ctx)
        tenant_id = scope_tenant(self._model)
        if tenant_id is None:
            return _table_sql(self, ctx)
        if self._alias:
            ctx.alias_manager[self] = self._alias
        _derived_table(ctx, Entity(*self._path), tenant_id)
        return self.apply_alias(ctx)


class TenantModelAlias(ModelAlias):
    """``TenantModel.alias()``: selects through ScopedSelect, scopes itself elsewhere."""

    def select(self, *selection: Any) -> ScopedSelect:
        return ScopedSelect(self, selection or self.get_field_aliases())

    def __sql__(self, ctx: Context) -> Any:
        if not _declares_source(ctx):
            return super().__sql__(ctx)
        tenant_id = scope_tenant(self.model)
        if tenant_id is None:
            return super().__sql__(ctx)
        if self.alias:
            ctx.alias_manager[self] = self.alias
        _derived_table(ctx, self.model._meta.entity, tenant_id)
        return ctx.literal(" AS ").sql(Entity(ctx.alias_manager[self]))


class TenantMetadata(Metadata):
    """Model metadata whose ``table`` is a ``TenantTable``; marks a TenantModel."""

    _table: Any

    def __init__(self, model: Any, database: Any = None, **kwargs: Any) -> None:
        _require_relay_database(model, database)
        super().__init__(model, database, **kwargs)

    @property
    def table(self) -> TenantTable:
        if self._table is None:
            self._table = TenantTable(
                self.table_name,
                [field.column_name for field in self.sorted_fields],
                schema=self.schema,
                _model=self.model,
                _database=self.database,
            )
        return self._table

    @table.deleter
    def table(self) -> None:
        self._table = None


def _require_relay_database(model: Any, database: Any) -> None:
    """Refuse a TenantModel declared on any database but ``database_proxy``.

    Row-level security sees a tenant only on the connection its context
    opened, which is ``database_proxy``'s: a model bound to a database the
    app built itself would run outside it (reading nothing, or writing
    outside the app's ``atomic()``) without a word. ``connect(db)`` binds
    the app's own database instead. Checked when the class is declared
    (``Meta.database``); ``bind()``/``bind_ctx()`` stay the caller's explicit
    choice (the CLI's commands bind the models to the database they
    opened). A database that cannot connect (``PostgresqlDatabase(None)``)
    cannot drift.
    """
    if database is None or database is database_proxy or database is database_proxy.obj:
        return
    if getattr(database, "deferred", False):
        return
    raise RelayError(
        f"{model.__name__} is a TenantModel bound to {type(database).__name__} "
        f"{getattr(database, 'database', '')!r}, not relay_peewee.database_proxy: "
        "use the database relay_peewee.connect() returns (or pass yours: connect(db))"
    )


# --- the main path: predicates in WHERE and ON -------------------------------


class _Claimed(Node):
    """A source whose predicate the enclosing query added: render it plainly."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def __sql__(self, ctx: Context) -> Any:
        source = self.source
        if isinstance(source, ModelAlias):
            return ModelAlias.__sql__(source, ctx)
        table = source._meta.table if is_model(source) else source
        return Table.__sql__(table, ctx)


class _TenantEquals(Node):
    """``"t1"."tenant_id" = ?``: the predicate every scoped query carries.

    Rendered directly (column, operator, parameter) rather than as the
    ``Expression`` ``Model.tenant == tenant_id``, which goes through the
    field, its converter and the expression's state on every query: this
    node is on the request path of every read.
    """

    def __init__(self, column: Any, tenant_id: str) -> None:
        self.column = column
        self.tenant_id = tenant_id

    def __sql__(self, ctx: Context) -> Any:
        if ctx.state.scope == SCOPE_VALUES:  # a bare column name there
            ctx.literal("(")
            self.column.__sql__(ctx)
        else:
            # What Column.__sql__ -> Table.apply_column -> Entity would
            # write, "<alias>"."tenant_id", in one step: half the Python
            # calls of the predicate, on every scoped query.
            table = self.column.source
            if table._alias:
                ctx.alias_manager[table] = table._alias
            quote = ctx.state.quote or '""'
            alias = str(ctx.alias_manager[table]).replace(quote[0], quote)
            ctx.literal(f"({quote[0]}{alias}{quote[1]}.{quote[0]}{TENANT_COLUMN}{quote[1]}")
        ctx.literal(" = ")
        ctx.value(self.tenant_id, converter=False)
        return ctx.literal(")")


def _source_predicate(node: Any, tenant_id: str) -> Node | None:
    """``<source>.tenant_id = ?`` when ``node`` is a TenantModel source."""
    if is_model(node):
        meta = node._meta
        if isinstance(meta, TenantMetadata):
            return _TenantEquals(Column(meta.table, TENANT_COLUMN), tenant_id)
    elif isinstance(node, ModelAlias):
        if isinstance(node.model._meta, TenantMetadata):
            return getattr(node, TENANT_FIELD) == tenant_id
    elif isinstance(node, Table) and is_tenant_model(node._model):
        return Column(node, TENANT_COLUMN) == tenant_id
    return None


def _scope_source(node: Any, tenant_id: str) -> tuple[Any, list[Node]]:
    """The node to render and the predicates its enclosing level must apply."""
    if isinstance(node, Join):
        join: Any = node
        join_type = join.join_type
        if join_type not in _SCOPED_JOINS:
            return node, []  # FULL: both sides nullable, the fallback scopes them
        lhs, left = _scope_source(join.lhs, tenant_id)
        rhs, right = _scope_source(join.rhs, tenant_id)
        if join_type in _RIGHT_SIDE_IN_ON:
            in_on, up = right, left
        elif join_type == JOIN.RIGHT_OUTER:
            in_on, up = left, right
        else:  # no ON clause to extend; an inner join, so WHERE is as good
            in_on, up = [], left + right
        on = join._on
        if in_on:
            on = _and(None if on is None or on is True else on, in_on)
        return Join(lhs, rhs, join_type, on, alias=join._alias), up
    predicate = _source_predicate(node, tenant_id)
    if predicate is None:
        return node, []
    return _Claimed(node), [predicate]


def scope_from_list(from_list: Iterable[Any], tenant_id: str) -> tuple[list[Any], list[Any]]:
    sources: list[Any] = []
    predicates: list[Any] = []
    for item in from_list:
        node, preds = _scope_source(item, tenant_id)
        sources.append(node)
        predicates.extend(preds)
    return sources, predicates


class ScopedSelect(_ModelSelect):
    """``TenantModel.select()``: only the rows of the tenant in context."""

    _executed_scope: Scope | None = None
    _cursor_wrapper: Any

    def __sql__(self, ctx: Context) -> Any:
        if ctx.scope == SCOPE_COLUMN:  # a reference to this subquery's alias
            return super().__sql__(ctx)
        tenant_id = scope_tenant(self.model)
        if tenant_id is None:
            return super().__sql__(ctx)
        rendered = _render_copy(self)
        rendered._from_list, predicates = scope_from_list(self._from_list, tenant_id)
        rendered._where = _and(self._where, predicates)
        return super(ScopedSelect, rendered).__sql__(ctx)

    # peewee caches a query's rows on the query object. A query built once
    # (at import time, say) and iterated again under another tenant must not
    # hand out the first tenant's cached rows.
    def _stale(self) -> bool:
        return self._cursor_wrapper is not None and self._executed_scope != in_force()

    def _execute(self, database: Database) -> Any:
        if self._stale():
            self._cursor_wrapper = None
        result = super()._execute(database)
        self._executed_scope = in_force()
        return result

    def _ensure_execution(self) -> None:
        if self._cursor_wrapper is None or self._stale():
            self.execute()

    def __iter__(self) -> Any:
        self._ensure_execution()
        return iter(self._cursor_wrapper)


class ScopedRaw(_ModelRaw):
    """``TenantModel.raw()``: refused unless inside ``unscoped()``."""

    def __sql__(self, ctx: Context) -> Any:
        if scope_tenant(self.model) is not None:
            raise RawQueryRefused(
                f"{self.model.__name__}.raw() cannot be limited to a tenant: build the query "
                "with select(), or run it inside `with unscoped(reason):`"
            )
        return super().__sql__(ctx)
