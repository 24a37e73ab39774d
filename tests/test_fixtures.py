"""The plugin's fixtures, as an application's suite meets them (``pytester``):
each test a database of its own, copied from a template built once."""

from __future__ import annotations

import pytest

APP_TESTS = """
import pytest
from peewee import Database

import relay_peewee.testing as plugin
from relay_peewee.models import Skill, Tenant
from relay_peewee import tenant_context
from relay_peewee.tenancy.rls import bypass_scope

BUILT = []
_real = plugin.build_schema


def counting_build_schema(db: Database, config=None) -> None:
    BUILT.append(type(db).__name__)
    _real(db, config)


plugin.build_schema = counting_build_schema


def test_1_commits_and_changes_its_objects(two_tenants):
    # Creating a tenant is an admin write (the application role only reads tenants).
    with bypass_scope():
        Tenant.create(slug="leaked", name="committed, outside any transaction")
    with tenant_context(two_tenants.a):
        Skill.delete().execute()
    two_tenants.a.name = "changed"


def test_2_sees_none_of_it(two_tenants):
    assert not Tenant.select().where(Tenant.slug == "leaked").exists()
    with tenant_context(two_tenants.a):
        assert Skill.select().count() == 3
    assert two_tenants.a.name == "Tenant A"
    # Related rows come with the copies, as with rows just written: no query
    # (outside a tenant context one would raise TenantRequired).
    skill = two_tenants.rows_of(two_tenants.a).skills[0]
    assert skill.author.email.endswith("@tenant-a.example")


@pytest.mark.parametrize("n", range(5))
def test_3_plain_relay_db(relay_db, n):
    assert [t.slug for t in Tenant.select()] == ["default"]


@pytest.mark.relay_fresh_db
def test_4_fresh(relay_db):
    assert [t.slug for t in Tenant.select()] == ["default"]


def test_6_relay_db_url_is_relay_dbs_own_database(relay_db, relay_db_url):
    from relay_peewee.db import open_database

    with bypass_scope():
        Tenant.create(slug="seen-by-the-owner", name="x")
    owner = open_database(relay_db_url)
    try:
        assert owner.execute_sql(
            "SELECT count(*) FROM tenants WHERE slug = 'seen-by-the-owner'"
        ).fetchone() == (1,)
    finally:
        owner.close()


def test_5_two_templates_and_one_fresh_database_were_built(relay_backend):
    assert len(BUILT) == 3, BUILT
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "postgres_rls"])
def test_tests_are_independent_and_templates_built_once(
    pytester: pytest.Pytester, backend: str, request: pytest.FixtureRequest
) -> None:
    if backend != "sqlite":
        request.applymarker(pytest.mark.postgres_only)
    pytester.makepyfile(test_app=APP_TESTS)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--relay-backends", backend)
    result.assert_outcomes(passed=10)


def test_the_options_name_their_real_defaults(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess("--help")
    text = " ".join(result.stdout.str().split())
    assert "(default: sqlite,postgres,postgres_rls)" in text
    assert "(default: psycopg2 if installed, else psycopg3)" in text
