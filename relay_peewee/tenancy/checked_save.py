"""save()'s own statement: checked as peewee builds it, from what save() holds.

``TenantModel.save`` hands the row to peewee, whose ``Model.save`` builds one
INSERT or UPDATE through ``TenantModel.insert``/``update``. While it runs,
a mark names the instance (``mark``). The statement built from it is checked
right there (``take``) against what only the instance knows, so that the
common path costs no query and no second look at the row:

* a reference held by a related row that was read from or saved to this
  tenant (``Rating.create(skill=skill)``) is that row's own id;
* on an UPDATE, a reference the row did not change (the very object it
  had when save() began) is left out of the statement: what is not
  written needs no proof, however the instance came by it.

The check runs on the statement's own values, after anything that ran
inside ``save()`` (a ``playhouse.signals`` pre_save handler, a mixin's
``save``, an overridden ``insert``, peewee filling in the id of a related
row saved meanwhile). A statement it cannot vouch for - another tenant, a
reference it cannot prove, a key that is not a plain field name - is left to
the full check every statement gets (``writes``), which looks ids up and
refuses with ``CrossTenantWrite``.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Any

from peewee import ForeignKeyField, Model

from .references import guarded_checks, tenant_refs
from .scoping import TENANT_FIELD

__all__ = ["SaveMark", "mark", "take", "unmark"]

_ABSENT: Any = object()  # a field the statement has no value for

# (model, tenant id, the instance, {reference name: object it had} or None)
SaveMark = tuple[type[Model], str, Any, dict[str, Any] | None]
# (name, target model, target key field name) of each reference to a TenantModel
_Plan = tuple[tuple[str, type[Model], str], ...]

_mark: ContextVar[SaveMark | None] = ContextVar("relay_peewee_save_mark", default=None)
# Model -> (how many references it had, its plan); see references.tenant_refs.
_plans: dict[type[Model], tuple[int, _Plan]] = {}


def _plan(model: type[Model]) -> tuple[int, _Plan]:
    """The references as plain tuples: looked up once, not through three attributes."""
    plan = tuple((fk.name, fk.rel_model, fk.rel_field.name) for fk in tenant_refs(model))
    cached = _plans[model] = (len(model._meta.refs), plan)
    return cached


def mark(instance: Any, tenant_id: str, updating: bool) -> Token[SaveMark | None]:
    """Name ``instance`` as the row the next statements of its model write.

    ``updating``: peewee will UPDATE it; the references it has not changed
    are kept as the objects they are now, so that the UPDATE can leave them
    out instead of writing them back.
    """
    model = type(instance)
    kept = None
    if updating:
        data, dirty = instance.__data__, instance._dirty
        kept = {fk.name: data.get(fk.name) for fk in tenant_refs(model) if fk.name not in dirty}
    return _mark.set((model, tenant_id, instance, kept))


# Restores what was there before mark(): the ContextVar's own method, no frame.
unmark = _mark.reset


Taken = tuple[str, tuple[ForeignKeyField, ...]]


def take(model: type[Model], data: Any, values: dict[str, Any], inserting: bool) -> Taken | None:
    """The tenant the marked save() writes ``values`` in, if they need no further check.

    ``data``/``values`` are the arguments of ``insert()``/``update()`` before
    the query is built; peewee's ``save()`` passes keyword arguments only,
    named by field. An UPDATE's unchanged references are taken out of
    ``values``: not written, they need no proof. With the tenant come the
    references of an INSERT left to the database's own keys: raw ids where
    the statement can be guarded for free (``references.guarded_checks``).
    """
    saved = _mark.get()
    if saved is None or saved[0] is not model or data is not None:
        return None
    if not values.keys() <= model._meta.fields.keys():
        return None  # a column name or another alias of a field
    _model, tenant_id, instance, kept = saved
    tenant_key = TENANT_FIELD  # a local: read four times per reference
    owner = values.get(tenant_key, _ABSENT)
    if owner is _ABSENT:
        if inserting:
            return None  # the full check fills the tenant in
    elif owner != tenant_id:
        return None
    related_rows = instance.__rel__
    unchanged: list[str] = []
    by_database: list[ForeignKeyField] = []
    guarded: dict[str, ForeignKeyField] | None = None
    cached = _plans.get(model)
    if cached is None or cached[0] != len(model._meta.refs):  # new, or references changed
        cached = _plan(model)
    for name, target, key in cached[1]:
        value = values.get(name)
        if value is None:
            continue  # not written, or NULL
        if kept is not None and kept.get(name, _ABSENT) is value:
            unchanged.append(name)
            continue
        # is_trusted_instance(related, tenant_id, fk), holding this very id;
        # inlined: this runs for every reference of every save().
        related = related_rows.get(name)
        if related is None and inserting:
            # A raw id: the database's composite key may check it.
            if guarded is None:
                guarded = guarded_checks(model)
            fk = guarded.get(name)
            if fk is None:
                return None
            by_database.append(fk)
            continue
        if related is None or type(related) is not target:
            return None
        held, held_dirty = related.__data__, related._dirty  # type: ignore[attr-defined]
        if held.get(tenant_key) != tenant_id or held.get(key) != value:
            return None
        if tenant_key in held_dirty or key in held_dirty:
            return None
    if unchanged:
        if len(unchanged) == len(values):
            return None  # nothing else to write: the full check looks them up
        for name in unchanged:
            del values[name]
    # The mark stays: a second statement built inside save() passes only
    # if its own tenant and references pass these same checks.
    return tenant_id, tuple(by_database)
