"""The model every relay_peewee table derives from."""

from __future__ import annotations

from peewee import Model

from ..database import database_proxy
from .async_methods import AsyncModelMethods

__all__ = ["BaseModel"]


class BaseModel(AsyncModelMethods, Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False
