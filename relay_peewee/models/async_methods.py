"""peewee's asyncio model API (``await Skill.aget(...)``) on every relay_peewee model.

The same methods as ``playhouse.pwasyncio.AsyncModelMixin``, and done the same
way: the sync method runs through the database's ``run()``, pwasyncio's
greenlet bridge, in the calling task's context (so the tenant in context
scopes it). Written out here rather than inheriting the mixin because
importing pwasyncio needs ``greenlet`` (the ``async`` extra), and the models
must import without it; on a sync database these methods say so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..database import unwrap
from ..errors import ConfigurationError

__all__ = ["AsyncModelMethods"]


async def _run(model: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    db: Any = unwrap(model._meta.database)
    if not hasattr(db, "aexecute_sql"):
        raise ConfigurationError(
            f"{model.__name__}'s async methods need an asyncio database: "
            "relay_peewee.connect(AsyncPostgresqlDatabase(...)) from playhouse.pwasyncio"
        )
    return await db.run(fn, *args, **kwargs)


class AsyncModelMethods:
    """``acreate``, ``aget``, ``asave``... as ``playhouse.pwasyncio.AsyncModel`` has them."""

    @classmethod
    async def acreate(cls, **query: Any) -> Any:
        return await _run(cls, cls.create, **query)  # type: ignore[attr-defined]

    @classmethod
    async def aget(cls, *query: Any, **filters: Any) -> Any:
        return await _run(cls, cls.get, *query, **filters)  # type: ignore[attr-defined]

    @classmethod
    async def aget_or_none(cls, *query: Any, **filters: Any) -> Any:
        return await _run(cls, cls.get_or_none, *query, **filters)  # type: ignore[attr-defined]

    @classmethod
    async def aget_by_id(cls, pk: Any) -> Any:
        return await _run(cls, cls.get_by_id, pk)  # type: ignore[attr-defined]

    @classmethod
    async def aget_or_create(cls, **kwargs: Any) -> Any:
        return await _run(cls, cls.get_or_create, **kwargs)  # type: ignore[attr-defined]

    @classmethod
    async def aset_by_id(cls, key: Any, value: Any) -> Any:
        return await _run(cls, cls.set_by_id, key, value)  # type: ignore[attr-defined]

    @classmethod
    async def adelete_by_id(cls, pk: Any) -> Any:
        return await _run(cls, cls.delete_by_id, pk)  # type: ignore[attr-defined]

    @classmethod
    async def abulk_create(cls, model_list: Any, batch_size: int | None = None) -> Any:
        return await _run(cls, cls.bulk_create, model_list, batch_size)  # type: ignore[attr-defined]

    @classmethod
    async def abulk_update(cls, model_list: Any, fields: Any, batch_size: int | None = None) -> Any:
        return await _run(cls, cls.bulk_update, model_list, fields, batch_size)  # type: ignore[attr-defined]

    async def asave(self, force_insert: bool = False, only: Any = None) -> Any:
        return await _run(type(self), self.save, force_insert, only)  # type: ignore[attr-defined]

    async def adelete_instance(self, recursive: bool = False, delete_nullable: bool = False) -> Any:
        return await _run(type(self), self.delete_instance, recursive, delete_nullable)  # type: ignore[attr-defined]

    async def afetch(self, field: Any) -> Any:
        """A foreign key's row, fetched (``await skill.afetch(Skill.author)``)."""
        name = field if isinstance(field, str) else field.name
        cached = self.__rel__.get(name)  # type: ignore[attr-defined]
        if cached is not None:
            return cached
        return await _run(type(self), getattr, self, name)
