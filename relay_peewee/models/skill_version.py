"""skill_versions: the published and draft contents of a skill."""

from __future__ import annotations

from peewee import DateTimeField, IntegerField, TextField

from ..fields import JSONField, TenantForeignKeyField
from ..tenancy.model import TenantModel
from ._columns import new_id, utcnow
from .skill import Skill
from .user import User

__all__ = ["SkillVersion"]


class SkillVersion(TenantModel):
    id = TextField(primary_key=True, default=new_id)
    skill = TenantForeignKeyField(Skill, backref="versions", on_delete="CASCADE", index=False)
    version = IntegerField()
    content_url = TextField()
    content_hash = TextField()
    content_type = TextField()
    name = TextField()
    description = TextField()
    metadata = JSONField(null=True)
    created_by = TenantForeignKeyField(
        User, null=True, backref="skill_versions", column_name="created_by", index=False
    )
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "skill_versions"
        # 0014: an index under each tenant-consistent key (deleting a parent probes it).
        indexes = (
            (("tenant", "skill"), False),
            (("tenant", "created_by"), False),
        )
        # The key (tenant_id, id) that skills' version references use (0011);
        # it also serves every lookup by tenant.
        tenant_unique = [("id",)]
