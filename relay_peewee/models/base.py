"""The model every relay_peewee table derives from."""

from __future__ import annotations

from peewee import Model

from ..db import database_proxy

__all__ = ["BaseModel"]


class BaseModel(Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False
