"""ratings: a user's score for a skill."""

from __future__ import annotations

from peewee import DateTimeField, IntegerField, TextField

from ..fields import TenantForeignKeyField
from ..tenancy.model import TenantModel
from ._columns import new_id, utcnow
from .skill import Skill
from .user import User

__all__ = ["Rating"]


class Rating(TenantModel):
    id = TextField(primary_key=True, default=new_id)
    skill = TenantForeignKeyField(Skill, backref="ratings", on_delete="CASCADE", index=False)
    user = TenantForeignKeyField(User, backref="ratings", on_delete="CASCADE", index=False)
    rating = IntegerField()
    comment = TextField(null=True)
    hours_saved_estimate = IntegerField(null=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "ratings"
        # 0014: an index under each tenant-consistent key (deleting a parent probes it).
        indexes = (
            (("tenant", "skill"), False),
            (("tenant", "user"), False),
        )
