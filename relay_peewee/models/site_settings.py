"""site_settings: each tenant's settings row, id 'default'."""

from __future__ import annotations

from peewee import BooleanField, CompositeKey, DateTimeField, IntegerField, TextField

from ..tenancy import TenantModel
from ._columns import utcnow

__all__ = ["SiteSettings"]


class SiteSettings(TenantModel):
    id = TextField(default="default")
    semantic_similarity_enabled = BooleanField(default=False)
    ollama_url = TextField(default="http://localhost:11434")
    ollama_model = TextField(default="nomic-embed-text")
    embedding_dimensions = IntegerField(default=768)
    last_successful_connection = DateTimeField(null=True)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "site_settings"
        # Every tenant holds its own row with id 'default'.
        primary_key = CompositeKey("tenant", "id")
