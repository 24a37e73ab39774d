"""tweepee keeps tenants apart, on every backend of the plugin.

``relay_db`` holds the tenancy core (``relay_schema = false`` in
pyproject.toml: no Relay table) and this application's migrations; on
``postgres_rls`` the test connects as an application role that row-level
security binds. ``two_tenants`` is the two tenants; the rows are the test's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from peewee import Database, IntegrityError
from tweepee.app import ROOT_DOMAIN, create_app
from tweepee.models import Message, Relationship, User

from relay_peewee import CrossTenantWrite, tenant_context
from relay_peewee.models import Tenant
from relay_peewee.testing import (
    TenantPair,
    assert_only_tenant,
    assert_tenant_untouched,
    bound_by_row_level_security,
)

WHEN = datetime(2024, 1, 1)


def chirps(tenant: Tenant) -> User:
    """The same usernames in each tenant: a username is unique per tenant."""
    with tenant_context(tenant):
        ann = User.create(username="ann", password="x", email="ann@x", join_date=WHEN)
        bob = User.create(username="bob", password="x", email="bob@x", join_date=WHEN)
        Relationship.create(from_user=ann, to_user=bob)
        Message.create(user=bob, content=f"hello from {tenant.slug}", pub_date=WHEN)
    return ann


def test_relay_tables_are_not_there(relay_db: Database) -> None:
    tables = set(relay_db.get_tables())
    assert {"tenants", "audit_logs", "user", "relationship", "message"} <= tables
    assert not tables & {"users", "skills", "api_keys", "site_settings"}


def test_each_tenant_sees_only_its_own_rows(two_tenants: TenantPair) -> None:
    a, b = two_tenants.a, two_tenants.b
    chirps(a)
    chirps(b)
    for tenant in (a, b):
        with tenant_context(tenant):
            users = list(User.select().order_by(User.username))
            assert [u.username for u in users] == ["ann", "bob"]
            assert_only_tenant(users, tenant)
            assert_only_tenant(list(Message.select(Message, User).join(User)), tenant)
            assert [m.content for m in Message.select()] == [f"hello from {tenant.slug}"]


def test_no_reference_into_another_tenant_through_the_orm(two_tenants: TenantPair) -> None:
    a, b = two_tenants.a, two_tenants.b
    theirs = chirps(b)
    with assert_tenant_untouched(b):
        with tenant_context(a), pytest.raises(CrossTenantWrite):
            Message.create(user=theirs.id, content="x", pub_date=WHEN)
        with tenant_context(a):
            mine = User.create(username="cy", password="x", email="cy@x", join_date=WHEN)
            with pytest.raises(CrossTenantWrite):
                Relationship.create(from_user=mine, to_user=theirs.id)
            # Scoped: another tenant's row is not there to change.
            assert User.update(username="stolen").where(User.id == theirs.id).execute() == 0


def test_no_reference_into_another_tenant_through_raw_sql(
    relay_db: Database, two_tenants: TenantPair
) -> None:
    a, b = two_tenants.a, two_tenants.b
    theirs = chirps(b)
    p = relay_db.param
    with pytest.raises(IntegrityError), tenant_context(a), relay_db.atomic():
        relay_db.execute_sql(
            "INSERT INTO message (tenant_id, user_id, content, pub_date)"
            f" VALUES ({p}, {p}, 'x', {p})",
            (a.id, theirs.id, WHEN),
        )


def test_assert_tenant_untouched_sees_the_applications_tables(two_tenants: TenantPair) -> None:
    a, b = two_tenants.a, two_tenants.b
    chirps(b)
    with (
        pytest.raises(AssertionError, match="message"),
        assert_tenant_untouched(b),
        tenant_context(b),
    ):
        Message.create(user=User.get(User.username == "ann"), content="new", pub_date=WHEN)
    with assert_tenant_untouched(b), tenant_context(a):
        chirps(a)


def test_row_level_security_hides_other_tenants_rows_from_raw_sql(
    relay_db: Database, two_tenants: TenantPair
) -> None:
    if not bound_by_row_level_security(relay_db):
        pytest.skip("row-level security binds only the postgres_rls backend's role")
    a, b = two_tenants.a, two_tenants.b
    chirps(a)
    chirps(b)
    with tenant_context(a), relay_db.atomic():
        for table in ('"user"', "relationship", "message"):
            owners = relay_db.execute_sql(f"SELECT DISTINCT tenant_id FROM {table}").fetchall()
            assert owners == [(a.id,)]
        changed = relay_db.execute_sql(
            "UPDATE message SET content = 'defaced' WHERE tenant_id = %s", (b.id,)
        ).rowcount
        assert changed == 0


def test_the_flask_app_serves_each_tenant_its_own_timeline(
    relay_db: Database, two_tenants: TenantPair
) -> None:
    a, b = two_tenants.a, two_tenants.b
    client = create_app(relay_db).test_client()

    def call(method: str, path: str, tenant: str, **kw: Any) -> Any:
        # Read to its end, as a browser does: the request's tenant context
        # (on PostgreSQL its transaction too) ends with the body.
        host = {"Host": f"{tenant}.{ROOT_DOMAIN}"}
        return client.open(path, method=method, headers=host, buffered=True, **kw)

    for tenant in (a.slug, b.slug):
        for name in ("ann", "bob"):
            new = {"username": name, "password": "x", "email": "e"}
            joined = call("POST", "/users", tenant, json=new)
            assert joined.status_code == 201, joined.get_data(as_text=True)
        assert call("POST", "/users/ann/follow/bob", tenant).status_code == 200
        said = {"content": f"bob of {tenant}"}
        assert call("POST", "/users/bob/messages", tenant, json=said).status_code == 201
    taken = {"username": "ann", "password": "x", "email": "e"}
    assert call("POST", "/users", a.slug, json=taken).status_code == 409  # per tenant
    for tenant in (a.slug, b.slug):
        timeline = call("GET", "/users/ann/timeline", tenant).get_json()
        assert timeline == {"messages": [{"user": "bob", "content": f"bob of {tenant}"}]}
        assert call("GET", "/users", tenant).get_json() == {"users": ["ann", "bob"]}
    assert call("GET", "/users", "nobody").status_code == 404
