"""skills: the marketplace's items. A slug is unique within its tenant."""

from __future__ import annotations

from peewee import DateTimeField, DeferredForeignKey, IntegerField, TextField

from ..fields import TenantForeignKeyField, TextListField
from ..tenancy.model import TenantModel
from ._columns import new_id, utcnow
from .user import User

__all__ = ["Skill"]


class Skill(TenantModel):
    id = TextField(primary_key=True, default=new_id)
    name = TextField()
    slug = TextField()
    description = TextField()
    category = TextField()
    tags = TextListField(default=list, null=True)
    # References for the ORM: checked to stay in the tenant like any foreign
    # key (``Skill.create(forked_from_id=...)`` of another tenant is refused).
    # Deferred, so create_table() adds no constraint: Relay's schema has none
    # (a version or a fork may be deleted, the id stays as history).
    # ``skill.published_version_id`` etc. still read and write the plain id.
    published_version = DeferredForeignKey(
        "SkillVersion", null=True, backref="+", column_name="published_version_id"
    )
    draft_version = DeferredForeignKey(
        "SkillVersion", null=True, backref="+", column_name="draft_version_id"
    )
    total_uses = IntegerField(default=0)
    average_rating = IntegerField(null=True)
    content = TextField()
    hours_saved = IntegerField(default=1, null=True)
    forked_from = DeferredForeignKey("Skill", null=True, backref="+", column_name="forked_from_id")
    author = TenantForeignKeyField(
        User, null=True, backref="skills", column_name="author_id", index=False
    )
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    # On PostgreSQL the table also has a generated `search_vector` tsvector
    # column with a GIN index. It is not a field: SQLite has no such column,
    # and the database computes it, so the ORM never writes it.

    class Meta:
        table_name = "skills"
        # 0014: an index under each tenant-consistent key (deleting a parent probes it).
        indexes = (
            (("tenant", "author"), False),
            (("tenant", "forked_from"), False),
            (("tenant", "published_version"), False),
            (("tenant", "draft_version"), False),
        )
        # ("id",): the key (tenant_id, id) that tenant-consistent references use.
        tenant_unique = [("slug",), ("id",)]
