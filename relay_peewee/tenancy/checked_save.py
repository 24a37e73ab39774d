"""save()'s own statement: checked as peewee builds it, from what save() holds.

``TenantModel.save`` hands the row to peewee, whose ``Model.save`` builds one
INSERT or UPDATE through ``TenantModel.insert``/``update``. While it runs,
a mark names the instance (``mark``). The statement built from it is checked
right there (``take``) against what only the instance knows, so that the
common path costs no query and no second look at the row:

* a reference held by a related row that was read from or saved to this
  tenant (``Rating.create(skill=skill)``) is that row's own id;
* on an UPDATE of a row of this tenant, a reference the row did not change
  is the one it was read with (the very object, ``is``).

The check runs on the statement's own values, after anything that ran
inside ``save()`` (a ``playhouse.signals`` pre_save handler, a mixin's
``save``, an overridden ``insert``, peewee filling in the id of a related
row saved meanwhile). A statement it cannot vouch for - another tenant, a
reference it cannot prove, a key that is not a plain field name - is left to
the full check every statement gets (``writes``), which looks ids up and
refuses with ``CrossTenantWrite``.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar, Token
from typing import Any

from peewee import Model

from .references import tenant_refs
from .scoping import TENANT_FIELD

__all__ = ["SaveMark", "mark", "take", "unmark"]

_ABSENT: Any = object()  # a field the statement has no value for

# (model, tenant id, the instance, {reference name: object kept} or None)
SaveMark = tuple[type[Model], str, Any, dict[str, Any] | None]

_mark: ContextVar[SaveMark | None] = ContextVar("relay_peewee_save_mark", default=None)
# Model -> (name, target model, target key field name) of each reference to a
# TenantModel: looked up once, not through three attributes per save().
_plans: dict[type[Model], tuple[tuple[str, type[Model], str], ...]] = {}


def _plan(model: type[Model]) -> tuple[tuple[str, type[Model], str], ...]:
    plan = _plans[model] = tuple(
        (fk.name, fk.rel_model, fk.rel_field.name) for fk in tenant_refs(model)
    )
    return plan


def mark(instance: Any, tenant_id: str, stored: bool) -> Token[SaveMark | None]:
    """Name ``instance`` as the row the next statement of its model writes.

    ``stored``: it is a row of this tenant as read or saved (an UPDATE, its
    tenant unchanged); the references it has not changed are kept as they
    are now, and need no check while they stay the same objects.
    """
    model = type(instance)
    kept = None
    if stored:
        data, dirty = instance.__data__, instance._dirty
        kept = {fk.name: data.get(fk.name) for fk in tenant_refs(model) if fk.name not in dirty}
    return _mark.set((model, tenant_id, instance, kept))


# Restores what was there before mark(): the ContextVar's own method, no frame.
unmark = _mark.reset


def take(model: type[Model], data: Any, values: Mapping[str, Any], inserting: bool) -> str | None:
    """The tenant the marked save() writes ``values`` in, if they need no further check.

    ``data``/``values`` are the arguments of ``insert()``/``update()``; peewee's
    ``save()`` passes keyword arguments only, named by field.
    """
    saved = _mark.get()
    if saved is None or saved[0] is not model or data is not None:
        return None
    if not values.keys() <= model._meta.fields.keys():
        return None  # a column name or another alias of a field
    tenant_id, instance, kept = saved[1], saved[2], saved[3]
    owner = values.get(TENANT_FIELD, _ABSENT)
    if owner is _ABSENT:
        if inserting:
            return None  # the full check fills the tenant in
    elif owner != tenant_id:
        return None
    plan = _plans.get(model)
    if plan is None:
        plan = _plan(model)
    related_rows = instance.__rel__
    for name, target, key in plan:
        value = values.get(name)
        if value is None:
            continue  # not written, or NULL
        if kept is not None and kept.get(name, _ABSENT) is value:
            continue
        # is_trusted_instance(related, tenant_id, fk), holding this very id;
        # inlined: this runs for every reference of every save().
        related = related_rows.get(name)
        if related is None or not isinstance(related, target):
            return None
        held = related.__data__
        if held.get(TENANT_FIELD) != tenant_id or held.get(key) != value:
            return None
        held_dirty = related._dirty  # type: ignore[attr-defined]  # peewee's own
        if TENANT_FIELD in held_dirty or key in held_dirty:
            return None
    # The mark stays: a second statement built inside save() passes only
    # if its own tenant and references pass these same checks.
    return tenant_id
