"""skill_reviews: the automated review of a skill's content."""

from __future__ import annotations

from peewee import BooleanField, DateTimeField, TextField

from ..fields import JSONField, TenantForeignKeyField
from ..tenancy.model import TenantModel
from ._columns import new_id, utcnow
from .skill import Skill
from .user import User

__all__ = ["SkillReview"]


class SkillReview(TenantModel):
    id = TextField(primary_key=True, default=new_id)
    skill = TenantForeignKeyField(Skill, backref="reviews", on_delete="CASCADE", index=False)
    requested_by = TenantForeignKeyField(
        User, backref="skill_reviews", column_name="requested_by", index=False
    )
    categories = JSONField()
    summary = TextField()
    reviewed_content_hash = TextField()
    model_name = TextField()
    is_visible = BooleanField(default=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "skill_reviews"
        # 0014: an index under each tenant-consistent key (deleting a parent probes it).
        indexes = ((("tenant", "requested_by"), False),)
        tenant_unique = [("skill",)]
