"""usage_events: one row each time a tool uses a skill."""

from __future__ import annotations

import uuid

from peewee import DateTimeField, ForeignKeyField, TextField, UUIDField

from ..fields import JSONField, TenantForeignKeyField
from ..tenancy.model import TenantModel
from ._columns import utcnow
from .skill import Skill
from .user import User

__all__ = ["UsageEvent"]


class UsageEvent(TenantModel):
    id = UUIDField(primary_key=True, default=uuid.uuid4)
    tool_name = TextField()
    # A relation for the ORM only: Relay's schema has no foreign key here, so
    # usage history outlives a deleted skill.
    skill = ForeignKeyField(Skill, null=True, backref="usage_events", index=False)
    user = TenantForeignKeyField(User, null=True, backref="usage_events", index=False)
    metadata = JSONField(null=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "usage_events"
        # 0014: an index under each tenant-consistent key (deleting a parent probes it).
        indexes = ((("tenant", "user"), False),)
