"""Two populated tenants: the rows ``two_tenants`` holds, the same shape in each."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

from peewee import Model

from ..models import (
    ApiKey,
    Rating,
    SiteSettings,
    Skill,
    SkillEmbedding,
    SkillReview,
    SkillVersion,
    Tenant,
    UsageEvent,
    User,
)
from ..tenancy.context import tenant_context, tenant_id_of
from .assertions import bound_database

SAMPLE_SLUGS = ("alpha", "beta", "gamma")


@dataclass(frozen=True)
class SampleRows:
    """What ``populate_tenant`` wrote for one tenant."""

    users: list[User]
    skills: list[Skill]
    versions: list[SkillVersion]
    ratings: list[Rating]
    usage_events: list[UsageEvent]
    embeddings: list[SkillEmbedding]
    reviews: list[SkillReview]
    api_keys: list[ApiKey]
    settings: SiteSettings


@dataclass(frozen=True)
class TenantPair:
    """Two populated tenants; ``rows[tenant.id]`` is what each holds."""

    a: Tenant
    b: Tenant
    rows: Mapping[str, SampleRows]

    def other(self, tenant: Tenant | str) -> Tenant:
        return self.b if tenant_id_of(tenant) == self.a.id else self.a

    def rows_of(self, tenant: Tenant | str) -> SampleRows:
        if not self.rows:
            raise LookupError(
                "two_tenants holds no sample rows with relay_schema = false (they live in "
                "Relay's tables): create your own rows in the test"
            )
        return self.rows[tenant_id_of(tenant)]


def _copy_row(row: Any, memo: dict[int, Any]) -> Any:
    """A new instance with a copy of the row's values, and of the related rows
    it holds (``skill.author``), each copied once per pair (``memo``)."""
    if id(row) in memo:
        return memo[id(row)]
    new = type(row)(__no_default__=True)
    memo[id(row)] = new
    new.__data__ = {
        k: copy.deepcopy(v) if isinstance(v, (list, dict)) else v  # the rest is immutable
        for k, v in row.__data__.items()
    }
    new.__rel__ = {k: _copy_row(v, memo) for k, v in row.__rel__.items()}
    return new


def _copy_sample(sample: SampleRows, memo: dict[int, Any]) -> SampleRows:
    copied: dict[str, Any] = {}
    for f in fields(sample):
        value = getattr(sample, f.name)
        copied[f.name] = (
            _copy_row(value, memo)
            if isinstance(value, Model)
            else [_copy_row(r, memo) for r in value]
        )
    return SampleRows(**copied)


class _CopiedOnRead(Mapping[str, SampleRows]):
    """The template's sample rows, each tenant's copied when a test first reads
    them: most tests never do, and copying ~50 rows costs a millisecond.

    (``copy.deepcopy`` of the pair cost 15 ms a test: it copies far more than
    the rows.)"""

    def __init__(self, template: Mapping[str, SampleRows], memo: dict[int, Any]) -> None:
        self._template = template
        self._memo = memo
        self._copies: dict[str, SampleRows] = {}

    def __getitem__(self, tenant_id: str) -> SampleRows:
        if tenant_id not in self._copies:
            self._copies[tenant_id] = _copy_sample(self._template[tenant_id], self._memo)
        return self._copies[tenant_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._template)

    def __len__(self) -> int:
        return len(self._template)


def copy_pair(pair: TenantPair) -> TenantPair:
    """The test's own objects: one test changing ``a.name`` must not change
    the next test's pair. Related rows point at the copies, as they did."""
    memo: dict[int, Any] = {}
    a, b = _copy_row(pair.a, memo), _copy_row(pair.b, memo)
    return TenantPair(a, b, _CopiedOnRead(pair.rows, memo))


def populate_tenant(tenant: Tenant) -> SampleRows:
    """Sample data for one tenant; two tenants given it share every slug."""
    tag = tenant.slug
    # One transaction: ~30 rows, not ~30 commits (each an fsync on SQLite).
    with bound_database(None).atomic(), tenant_context(tenant):
        users = [User.create(email=f"{who}@{tag}.example", name=who) for who in ("ann", "bob")]
        skills = [
            Skill.create(
                name=f"{slug} of {tag}",
                slug=slug,
                description=f"{slug} skill",
                category="writing" if i % 2 else "coding",
                tags=[slug],
                content=f"# {slug} for {tag}",
                author=users[i % 2],
            )
            for i, slug in enumerate(SAMPLE_SLUGS)
        ]
        versions: list[SkillVersion] = []
        ratings: list[Rating] = []
        usage: list[UsageEvent] = []
        embeddings: list[SkillEmbedding] = []
        reviews: list[SkillReview] = []
        for skill in skills:
            versions.append(
                SkillVersion.create(
                    skill=skill,
                    version=1,
                    content_url=f"s3://{tag}/{skill.slug}",
                    content_hash=f"{tag}-{skill.slug}",
                    content_type="text/markdown",
                    name=skill.name,
                    description=skill.description,
                    created_by=users[0],
                )
            )
            ratings.extend(
                Rating.create(skill=skill, user=u, rating=4 + i) for i, u in enumerate(users)
            )
            usage.append(UsageEvent.create(tool_name="cli", skill=skill, user=users[0]))
            embeddings.append(
                SkillEmbedding.create(
                    skill=skill,
                    embedding=[0.5, 0.25],
                    model_name="m",
                    dimensions=2,
                    input_hash=f"{tag}-{skill.slug}",
                )
            )
            reviews.append(
                SkillReview.create(
                    skill=skill,
                    categories={"ok": True},
                    summary="fine",
                    reviewed_content_hash=f"{tag}-{skill.slug}",
                    model_name="m",
                    requested_by=users[1],
                )
            )
        keys = [
            ApiKey.create(user=u, key_hash=f"hash-{tag}-{u.name}", key_prefix=f"rk_{tag}")
            for u in users
        ]
        settings = SiteSettings.for_tenant()
    return SampleRows(users, skills, versions, ratings, usage, embeddings, reviews, keys, settings)
