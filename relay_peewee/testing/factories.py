"""Factories for tests: one row of each of the nine tables, in the current tenant.

acts_as_tenant's test helpers, for peewee: every factory writes into the
tenant of the surrounding ``tenant_context`` (or the ``inside_tenant``
fixture) and refuses to run outside one. Rows a factory needs and was not
given - a skill's author, a rating's skill and user - are made by the other
factories in the same tenant; a related row of another tenant given
explicitly is refused by ``save()`` as any cross-tenant write is::

    def test_rating(inside_tenant):
        rating = factories.rating(rating=3)
        assert rating.skill.author.tenant_id == inside_tenant.id

Keyword arguments override the defaults and are passed to ``create``.
Unique values (e-mails, slugs, key hashes) carry a counter and the tenant.
"""

from __future__ import annotations

import itertools
from typing import Any

from ..models import (
    ApiKey,
    Rating,
    SiteSettings,
    Skill,
    SkillEmbedding,
    SkillReview,
    SkillVersion,
    UsageEvent,
    User,
)
from ..scope import require_tenant

__all__ = [
    "api_key",
    "rating",
    "site_settings",
    "skill",
    "skill_embedding",
    "skill_review",
    "skill_version",
    "usage_event",
    "user",
]

_serial = itertools.count(1)


def _unique() -> str:
    """A token no other factory call returns: the tenant and a counter."""
    return f"{require_tenant()[:8]}-{next(_serial)}"


def user(**fields: Any) -> User:
    tag = _unique()
    return User.create(**{"email": f"user-{tag}@example.test", "name": f"user {tag}", **fields})


def skill(**fields: Any) -> Skill:
    tag = _unique()
    defaults: dict[str, Any] = {
        "name": f"skill {tag}",
        "slug": f"skill-{tag}",
        "description": "a skill",
        "category": "coding",
        "content": f"# skill {tag}",
    }
    if "author" not in fields and "author_id" not in fields:
        defaults["author"] = user()
    return Skill.create(**{**defaults, **fields})


def skill_version(**fields: Any) -> SkillVersion:
    tag = _unique()
    owner = fields.get("skill") or skill()
    defaults: dict[str, Any] = {
        "skill": owner,
        "version": 1,
        "content_url": f"s3://skills/{tag}",
        "content_hash": f"hash-{tag}",
        "content_type": "text/markdown",
        "name": f"version {tag}",
        "description": f"version {tag}",
    }
    if "created_by" not in fields:
        defaults["created_by"] = owner.author
    return SkillVersion.create(**{**defaults, **fields})


def rating(**fields: Any) -> Rating:
    defaults: dict[str, Any] = {"rating": 5}
    if "skill" not in fields:
        defaults["skill"] = skill()
    if "user" not in fields:
        defaults["user"] = user()
    return Rating.create(**{**defaults, **fields})


def usage_event(**fields: Any) -> UsageEvent:
    defaults: dict[str, Any] = {"tool_name": "cli"}
    if "skill" not in fields:
        defaults["skill"] = skill()
    if "user" not in fields:
        defaults["user"] = user()
    return UsageEvent.create(**{**defaults, **fields})


def skill_embedding(**fields: Any) -> SkillEmbedding:
    tag = _unique()
    defaults: dict[str, Any] = {
        "embedding": [0.5, 0.25],
        "model_name": "test-model",
        "dimensions": 2,
        "input_hash": f"input-{tag}",
    }
    if "skill" not in fields:
        defaults["skill"] = skill()
    return SkillEmbedding.create(**{**defaults, **fields})


def skill_review(**fields: Any) -> SkillReview:
    tag = _unique()
    defaults: dict[str, Any] = {
        "categories": {"ok": True},
        "summary": "fine",
        "reviewed_content_hash": f"hash-{tag}",
        "model_name": "test-model",
    }
    if "skill" not in fields:
        defaults["skill"] = skill()
    if "requested_by" not in fields:
        defaults["requested_by"] = user()
    return SkillReview.create(**{**defaults, **fields})


def api_key(**fields: Any) -> ApiKey:
    tag = _unique()
    defaults: dict[str, Any] = {"key_hash": f"key-{tag}", "key_prefix": "rk_test"}
    if "user" not in fields:
        defaults["user"] = user()
    return ApiKey.create(**{**defaults, **fields})


def site_settings(**fields: Any) -> SiteSettings:
    """The tenant's one settings row (made on first use), with ``fields`` saved."""
    settings = SiteSettings.for_tenant()
    if fields:
        for name, value in fields.items():
            setattr(settings, name, value)
        settings.save()
    return settings
