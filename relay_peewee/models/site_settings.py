"""site_settings: each tenant's settings row, id 'default'."""

from __future__ import annotations

from peewee import BooleanField, CompositeKey, DateTimeField, IntegerField, TextField

from ..scope import require_tenant
from ..tenancy.model import TenantModel
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
        audit_events = "site_settings"  # site_settings.create / .update / .delete

    @classmethod
    def for_tenant(cls) -> SiteSettings:
        """The current tenant's settings, created from the defaults on first use."""
        # The tenant is named explicitly, not left to scoping, so that inside
        # unscoped() this still returns the caller's row and not any tenant's.
        settings, _created = cls.get_or_create(tenant=require_tenant(), id="default")
        return settings
