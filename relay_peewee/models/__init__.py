"""Every relay_peewee model, one module per table."""

from .tenant import DEFAULT_TENANT_ID, DEFAULT_TENANT_SLUG, Tenant  # noqa: I001  (Tenant first)
from .audit_log import AuditLog
from .user import User
from .skill import Skill
from .skill_version import SkillVersion
from .rating import Rating
from .usage_event import UsageEvent
from .skill_embedding import SkillEmbedding
from .skill_review import SkillReview
from .api_key import ApiKey
from .site_settings import SiteSettings

__all__ = [
    "DEFAULT_TENANT_ID",
    "DEFAULT_TENANT_SLUG",
    "MODELS",
    "TENANT_MODELS",
    "ApiKey",
    "AuditLog",
    "Rating",
    "SiteSettings",
    "Skill",
    "SkillEmbedding",
    "SkillReview",
    "SkillVersion",
    "Tenant",
    "UsageEvent",
    "User",
]

# The nine data tables, parents before children.
TENANT_MODELS = (
    User,
    Skill,
    SkillVersion,
    Rating,
    UsageEvent,
    SkillEmbedding,
    SkillReview,
    ApiKey,
    SiteSettings,
)
MODELS = (Tenant, *TENANT_MODELS, AuditLog)
