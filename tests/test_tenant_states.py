"""Deactivating and activating a tenant, and every path that must then refuse it.

On every plugin backend (``postgres_rls``: the application role, the
operations through its admin path). A deactivation "elsewhere" is an
``UPDATE`` through the owner's own connection, which this process's caches
do not hear of: what bounds the time it is still let in is then
``activity.SECONDS``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import flask
import pytest
from peewee import Database
from schema import scalar, sql
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from relay_peewee import current_tenant, tenant_bound, tenant_context, unscoped
from relay_peewee.errors import RelayError, TenantInactive
from relay_peewee.models import DEFAULT_TENANT_SLUG, ApiKey, Skill, Tenant
from relay_peewee.operations import activate_tenant, deactivate_tenant
from relay_peewee.operations.lookups import find_api_key, hash_api_key
from relay_peewee.tenancy import activity
from relay_peewee.testing import TenantPair
from relay_peewee.web import asgi, by_host, by_trusted_header, wsgi

ROOT = "relay.example"
KEY = "rk_live_key_of_a"


def _events(owner: Database, tenant_id: str) -> list[str]:
    rows = owner.execute_sql(
        sql(owner, "SELECT action FROM audit_logs WHERE tenant_id = ? ORDER BY created_at"),
        (tenant_id,),
    ).fetchall()
    return [r[0] for r in rows if r[0] in ("tenant.deactivate", "tenant.activate")]


def _refused(tenant: Any) -> None:
    with pytest.raises(TenantInactive, match="is inactive"), tenant_context(tenant):
        raise AssertionError("the block must not run")


def test_a_deactivated_tenant_is_refused_and_activated_again(
    owner: Database, relay_db: Database, two_tenants: TenantPair
) -> None:
    a, b = two_tenants.a, two_tenants.b
    with tenant_context(a):  # remembered active: the deactivation must still win
        assert Skill.select().count() == 3
        job = tenant_bound(current_tenant)  # background work queued before
    state = deactivate_tenant(relay_db, a.slug, actor_id="ops")
    assert (state.tenant_id, state.active, state.changed) == (a.id, False, True)
    assert not scalar(owner, sql(owner, "SELECT is_active FROM tenants WHERE id = ?"), (a.id,))
    _refused(a.id)
    _refused(Tenant.get_by_id(a.id))  # the row as read now says inactive: no query needed
    with pytest.raises(TenantInactive):
        job()  # refused where it runs
    with tenant_context(b):  # the other tenant is untouched
        assert {s.tenant_id for s in Skill.select()} == {b.id}
    # The admin path still reaches it (erase and export need that), by id
    # and by a row that says inactive.
    with unscoped("test: read an inactive tenant"), tenant_context(a):
        assert {s.tenant_id for s in Skill.select()} == {a.id}
    with unscoped("test: read an inactive tenant"), tenant_context(Tenant.get_by_id(a.id)):
        assert Skill.select().count() == 3

    assert deactivate_tenant(relay_db, a.slug).changed is False  # a rerun writes nothing
    assert activate_tenant(relay_db, a.slug).changed is True
    with tenant_context(a):
        assert Skill.select().count() == 3
    assert job() == a.id
    assert _events(owner, a.id) == ["tenant.deactivate", "tenant.activate"]
    actor, metadata = owner.execute_sql(
        sql(owner, "SELECT actor_id, metadata FROM audit_logs WHERE action = ?"),
        ("tenant.deactivate",),
    ).fetchone()
    assert actor == "ops"
    assert (metadata if isinstance(metadata, dict) else json.loads(metadata)) == {"slug": a.slug}


def test_raw_sql_through_the_application_role_cannot_enter_an_inactive_tenant(
    relay_db: Database, two_tenants: TenantPair
) -> None:
    a = two_tenants.a
    deactivate_tenant(relay_db, a.slug)
    with pytest.raises(TenantInactive), tenant_context(a.id):
        relay_db.execute_sql("SELECT count(*) FROM skills").fetchone()
    # Nothing of the refused context stayed on the connection.
    assert not relay_db.in_transaction()
    with tenant_context(two_tenants.b):
        assert relay_db.execute_sql("SELECT count(*) FROM skills").fetchone()[0] >= 3


def test_refusals_change_nothing(
    owner: Database, relay_db: Database, two_tenants: TenantPair
) -> None:
    with pytest.raises(RelayError, match="default tenant cannot be deactivated"):
        deactivate_tenant(relay_db, DEFAULT_TENANT_SLUG)
    with pytest.raises(RelayError, match="no tenant with slug 'nope'"):
        deactivate_tenant(relay_db, "nope")
    with pytest.raises(RelayError, match="contains NUL"):
        activate_tenant(relay_db, "a\x00")
    inactive = sql(owner, "SELECT count(*) FROM tenants WHERE is_active = ?")
    assert scalar(owner, inactive, (False,)) == 0
    assert _events(owner, two_tenants.a.id) == []


def test_another_processes_deactivation_is_refused_within_the_bound(
    owner: Database, relay_db: Database, two_tenants: TenantPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = two_tenants.a
    monkeypatch.setattr(activity, "SECONDS", 0.3)
    activity.forget()
    with tenant_context(a):
        pass  # remembered active for 0.3 s
    with owner.atomic():  # elsewhere: no tenants_changed() in this process
        owner.execute_sql(
            sql(owner, "UPDATE tenants SET is_active = ? WHERE id = ?"), (False, a.id)
        )
    with tenant_context(a):
        pass  # inside the documented bound: still let in
    time.sleep(0.35)
    _refused(a.id)


def _flask(resolve: Any) -> flask.Flask:
    app = flask.Flask(__name__)

    @app.get("/")
    def index() -> Any:
        return {"tenant": current_tenant(), "skills": Skill.select().count()}

    app.wsgi_app = wsgi.TenantMiddleware(app.wsgi_app, resolve)  # type: ignore[method-assign]
    return app


def test_web_requests_of_an_inactive_tenant_are_refused(
    owner: Database, relay_db: Database, two_tenants: TenantPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = two_tenants.a, two_tenants.b
    with tenant_context(a):
        ApiKey.create(
            user=two_tenants.rows_of(a).users[0], key_hash=hash_api_key(KEY), key_prefix="rk_"
        )
    host = by_host(ROOT, cache_seconds=60)  # a long cache: the context must refuse on its own
    client = _flask(host).test_client()
    header = _flask(by_trusted_header()).test_client()
    assert (
        client.get("/", base_url=f"http://{a.slug}.{ROOT}", buffered=True).get_json()["tenant"]
        == a.id
    )
    assert header.get("/", headers={"X-Relay-Tenant-Id": a.id}, buffered=True).status_code == 200
    assert find_api_key(relay_db, KEY) is not None

    monkeypatch.setattr(activity, "SECONDS", 0.0)  # expired at once
    activity.forget()
    with owner.atomic():  # elsewhere: this process's host cache still says a
        owner.execute_sql(
            sql(owner, "UPDATE tenants SET is_active = ? WHERE id = ?"), (False, a.id)
        )
    refused = client.get("/", base_url=f"http://{a.slug}.{ROOT}", buffered=True)
    assert (refused.status_code, refused.text) == (404, "this tenant is inactive\n")
    assert header.get("/", headers={"X-Relay-Tenant-Id": a.id}, buffered=True).status_code == 404
    assert find_api_key(relay_db, KEY) is None
    assert (
        client.get("/", base_url=f"http://{b.slug}.{ROOT}", buffered=True).get_json()["tenant"]
        == b.id
    )

    async def index(request: Request) -> JSONResponse:
        return JSONResponse({"tenant": current_tenant()})

    app = Starlette(routes=[Route("/", index)])
    with TestClient(asgi.TenantMiddleware(app, host), base_url=f"http://{a.slug}.{ROOT}") as api:
        answer = api.get("/")
        assert (answer.status_code, answer.text) == (404, "this tenant is inactive\n")
    assert not relay_db.in_transaction()


def test_async_with_refuses_an_inactive_tenant(relay_db: Database, two_tenants: TenantPair) -> None:
    deactivate_tenant(relay_db, two_tenants.a.slug)

    async def enter() -> None:
        async with tenant_context(two_tenants.a.id):
            raise AssertionError("the block must not run")

    with pytest.raises(TenantInactive):
        asyncio.run(enter())
    assert current_tenant() is None
