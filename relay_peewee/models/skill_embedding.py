"""skill_embeddings: one vector per skill, for semantic search."""

from __future__ import annotations

from peewee import DateTimeField, IntegerField, TextField

from ..fields import FloatListField, TenantForeignKeyField
from ..tenancy.model import TenantModel
from ._columns import new_id, utcnow
from .skill import Skill

__all__ = ["SkillEmbedding"]


class SkillEmbedding(TenantModel):
    id = TextField(primary_key=True, default=new_id)
    skill = TenantForeignKeyField(Skill, backref="embeddings", on_delete="CASCADE", index=False)
    embedding = FloatListField()
    model_name = TextField()
    dimensions = IntegerField()
    input_hash = TextField()
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "skill_embeddings"
        tenant_unique = [("skill",)]
