"""The test factories and ``inside_tenant``: rows land in the current tenant."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from peewee import Model

from relay_peewee import tenant_context
from relay_peewee.errors import CrossTenantWrite, TenantRequired
from relay_peewee.models import TENANT_MODELS, Tenant
from relay_peewee.tenancy import current_tenant
from relay_peewee.testing import TenantPair, assert_only_tenant, assert_tenant_untouched, factories

FACTORIES: list[Callable[..., Model]] = [
    factories.user,
    factories.skill,
    factories.skill_version,
    factories.rating,
    factories.usage_event,
    factories.skill_embedding,
    factories.skill_review,
    factories.api_key,
    factories.site_settings,
]


def test_there_is_a_factory_per_tenant_table() -> None:
    made = {f.__name__ for f in FACTORIES}
    assert len(made) == len(TENANT_MODELS) == 9
    assert set(factories.__all__) == made


def test_inside_tenant_is_current_for_the_whole_test(
    inside_tenant: Tenant, two_tenants: TenantPair
) -> None:
    assert inside_tenant.id == two_tenants.a.id
    assert current_tenant() == two_tenants.a.id


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.__name__)
def test_factories_write_only_the_current_tenant(
    factory: Callable[..., Model], inside_tenant: Tenant, two_tenants: TenantPair
) -> None:
    with assert_tenant_untouched(two_tenants.b):
        row = factory()
    related = [v for v in row.__rel__.values() if isinstance(v, Model)]
    assert_only_tenant([row, *related], inside_tenant)


def test_a_related_row_of_another_tenant_is_refused(
    inside_tenant: Tenant, two_tenants: TenantPair
) -> None:
    with tenant_context(two_tenants.b):
        foreign_author = factories.user()
    with assert_tenant_untouched(two_tenants.b), pytest.raises(CrossTenantWrite):
        factories.skill(author=foreign_author)


def test_overrides_are_passed_to_create(inside_tenant: Tenant) -> None:
    skill = factories.skill(slug="chosen", category="writing")
    assert (skill.slug, skill.category) == ("chosen", "writing")
    settings = factories.site_settings(embedding_dimensions=3)
    assert factories.site_settings().embedding_dimensions == 3
    assert settings.tenant_id == inside_tenant.id


def test_factories_refuse_to_run_outside_a_tenant(relay_db: Any) -> None:
    with pytest.raises(TenantRequired):
        factories.skill()
