"""Tenant middleware through real Flask and Starlette apps and their own test clients.

Each test runs on every backend (on ``postgres_rls`` as the application role,
so a request that were not inside its tenant's context would read nothing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import flask
import pytest
from peewee import Database
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from relay_peewee import current_tenant
from relay_peewee.database import is_postgres
from relay_peewee.models import ApiKey, Skill, Tenant
from relay_peewee.operations.lookups import hash_api_key
from relay_peewee.tenancy.context import tenant_context
from relay_peewee.tenancy.rls import bypass_scope
from relay_peewee.testing import SAMPLE_SLUGS, TenantPair
from relay_peewee.web import (
    RequestInfo,
    ResolvedTenant,
    TenantNotResolved,
    asgi,
    by_api_key,
    by_host,
    by_trusted_header,
    first_of,
    wsgi,
)

ROOT = "relay.example"
KEY_A = "rk_live_secret_of_tenant_a"


@pytest.fixture
def tenants(two_tenants: TenantPair, relay_db: Database) -> TenantPair:
    """Two tenants; a has an API key (KEY_A) and its own domain, a third is inactive."""
    a = two_tenants.a
    with bypass_scope(relay_db):  # tenants are an admin's to change
        Tenant.update(domain="skills.acme.test").where(Tenant.id == a.id).execute()
        Tenant.create(slug="gone", name="Gone", is_active=False)
    with tenant_context(a):
        ApiKey.create(
            user=two_tenants.rows_of(a).users[0], key_hash=hash_api_key(KEY_A), key_prefix="rk_"
        )
    return two_tenants


def _idle(db: Database) -> bool:
    if not is_postgres(db):
        return True
    return not db.in_transaction() and db.connection().info.transaction_status == 0


# --- Flask (WSGI) ------------------------------------------------------------


class Calls:
    def __init__(self) -> None:
        self.n = 0


def flask_app(resolve: Any, calls: Calls) -> flask.Flask:
    app = flask.Flask(__name__)

    @app.before_request
    def count() -> None:
        calls.n += 1

    @app.get("/skills")
    def skills() -> Any:
        return {
            "tenant": current_tenant(),
            "resolved": flask.request.environ["relay.tenant"].tenant_id,
            "owners": sorted({s.tenant_id for s in Skill.select()}),
            "slugs": sorted(s.slug for s in Skill.select()),
        }

    @app.post("/fail")
    def fail() -> Any:
        Skill.create(name="n", slug="never", description="d", category="c", content="x")
        raise RuntimeError("boom")

    @app.get("/stream")
    def stream() -> Any:
        def rows() -> Iterator[str]:
            for skill in Skill.select().order_by(Skill.slug):
                yield f"{skill.tenant_id} {skill.slug}\n"

        return flask.Response(rows(), mimetype="text/plain")

    return app


def test_flask_resolves_the_host_and_runs_the_request_in_its_tenant(
    tenants: TenantPair, relay_db: Database
) -> None:
    a, b = tenants.a, tenants.b
    calls = Calls()
    app = flask_app(by_host(ROOT), calls)
    app.wsgi_app = wsgi.TenantMiddleware(app.wsgi_app, by_host(ROOT))  # type: ignore[method-assign]
    # buffered: the test client reads and closes the body, as a server does.
    client = app.test_client()
    for host, tenant in (
        (f"{a.slug}.{ROOT}", a),
        (f"{b.slug}.{ROOT}", b),
        ("skills.acme.test", a),
        (f"{b.slug}.localhost:5000", b),
    ):
        data = client.get("/skills", headers={"Host": host}, buffered=True).get_json()
        assert data["tenant"] == data["resolved"] == tenant.id
        assert data["owners"] == [tenant.id]
        assert data["slugs"] == sorted(SAMPLE_SLUGS)
        assert current_tenant() is None and _idle(relay_db)
    assert calls.n == 4
    for host in (f"nobody.{ROOT}", f"gone.{ROOT}", ROOT, "elsewhere.test"):
        response = client.get("/skills", headers={"Host": host}, buffered=True)
        assert response.status_code == 404, host
    assert calls.n == 4  # refused before the application ran


def test_flask_api_keys_and_their_refusals(tenants: TenantPair, relay_db: Database) -> None:
    calls = Calls()
    app = flask_app(None, calls)
    app.wsgi_app = wsgi.TenantMiddleware(app.wsgi_app, by_api_key())  # type: ignore[method-assign]
    client = app.test_client()
    data = client.get(
        "/skills", headers={"Authorization": f"Bearer {KEY_A}"}, buffered=True
    ).get_json()
    assert data["owners"] == [tenants.a.id]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY_A}"}):
        response = client.get("/skills", headers=headers, buffered=True)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert calls.n == 1

    # A configured header instead, and the key tried before the host.
    app.wsgi_app = wsgi.TenantMiddleware(  # type: ignore[method-assign]
        flask_app(None, calls).wsgi_app, first_of(by_api_key("X-Api-Key"), by_host(ROOT))
    )
    client = app.test_client()
    host = {"Host": f"{tenants.b.slug}.{ROOT}"}
    assert client.get("/skills", headers={**host, "X-Api-Key": KEY_A}, buffered=True).get_json()[
        "owners"
    ] == [tenants.a.id]
    assert client.get("/skills", headers=host, buffered=True).get_json()["owners"] == [tenants.b.id]
    assert (
        client.get("/skills", headers={**host, "X-Api-Key": "bad"}, buffered=True).status_code
        == 401
    )


def test_flask_trusted_header_and_the_apps_own_resolver(
    tenants: TenantPair, relay_db: Database
) -> None:
    a, b = tenants.a, tenants.b
    app = flask_app(None, Calls())
    inner = app.wsgi_app
    app.wsgi_app = wsgi.TenantMiddleware(inner, by_trusted_header())  # type: ignore[method-assign]
    client = app.test_client()
    headers = {"X-Relay-Tenant-Id": b.id}
    assert client.get("/skills", headers=headers, buffered=True).get_json()["owners"] == [b.id]
    assert (
        client.get("/skills", headers={"X-Relay-Tenant-Id": "nope"}, buffered=True).status_code
        == 404
    )
    assert client.get("/skills", buffered=True).status_code == 404

    def by_path(request: RequestInfo) -> ResolvedTenant:
        if not request.path.startswith("/skills"):
            raise TenantNotResolved(404, "where?")
        return ResolvedTenant(a.id)

    app.wsgi_app = wsgi.TenantMiddleware(inner, by_path)  # type: ignore[method-assign]
    assert app.test_client().get("/skills", buffered=True).get_json()["owners"] == [a.id]


def test_flask_leaves_the_context_when_the_app_raises_and_when_it_streams(
    tenants: TenantPair, relay_db: Database
) -> None:
    a = tenants.a
    app = flask_app(None, Calls())
    app.wsgi_app = wsgi.TenantMiddleware(app.wsgi_app, by_host(ROOT))  # type: ignore[method-assign]
    app.config["PROPAGATE_EXCEPTIONS"] = True
    client = app.test_client()
    host = {"Host": f"{a.slug}.{ROOT}"}
    with pytest.raises(RuntimeError, match="boom"):
        client.post("/fail", headers=host, buffered=True)
    assert current_tenant() is None and _idle(relay_db)
    with tenant_context(a):
        never = Skill.get_or_none(Skill.slug == "never")
    assert never is None if is_postgres(relay_db) else never is not None

    # A streamed body is produced inside the context, after the view returned.
    response = client.get("/stream", headers=host, buffered=True)
    lines = response.get_data(as_text=True).splitlines()
    assert {line.split()[1] for line in lines} - {"never"} == set(SAMPLE_SLUGS)
    assert {line.split()[0] for line in lines} == {a.id}
    assert current_tenant() is None and _idle(relay_db)

    # The client goes away after the first chunk: the server closes the body.
    body = app.wsgi_app({**_environ(host["Host"]), "PATH_INFO": "/stream"}, lambda *a: None)
    first = next(iter(body))
    assert first.decode().split()[0] == a.id
    assert current_tenant() == a.id  # still streaming
    body.close()  # type: ignore[attr-defined]
    assert current_tenant() is None and _idle(relay_db)


def _environ(host: str) -> dict[str, Any]:
    from werkzeug.test import EnvironBuilder

    return dict(EnvironBuilder(headers={"Host": host}).get_environ())


# --- Starlette (ASGI) -------------------------------------------------------


def starlette_app(resolve: Any) -> Starlette:
    async def skills(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "tenant": current_tenant(),
                "resolved": request.state.relay_tenant.tenant_id,
                "owners": sorted({s.tenant_id for s in Skill.select()}),
            }
        )

    async def fail(request: Request) -> PlainTextResponse:
        Skill.create(name="n", slug="never", description="d", category="c", content="x")
        raise RuntimeError("boom")

    async def stream(request: Request) -> StreamingResponse:
        async def rows() -> Any:
            for skill in list(Skill.select().order_by(Skill.slug)):
                await asyncio.sleep(0)
                yield f"{skill.tenant_id} {skill.slug}\n"

        return StreamingResponse(rows(), media_type="text/plain")

    routes = [
        Route("/skills", skills),
        Route("/fail", fail, methods=["POST"]),
        Route("/stream", stream),
    ]
    return Starlette(routes=routes, middleware=[Middleware(asgi.TenantMiddleware, resolve=resolve)])


def test_starlette_resolves_and_scopes_every_request(
    tenants: TenantPair, relay_db: Database
) -> None:
    a, b = tenants.a, tenants.b
    resolve = first_of(by_api_key(), by_host(ROOT))
    with TestClient(starlette_app(resolve), base_url=f"http://{a.slug}.{ROOT}") as client:
        data = client.get("/skills").json()
        assert data["tenant"] == data["resolved"] == a.id and data["owners"] == [a.id]
        data = client.get("/skills", headers={"Host": f"{b.slug}.{ROOT}"}).json()
        assert data["owners"] == [b.id]
        headers = {"Host": f"{b.slug}.{ROOT}", "Authorization": f"Bearer {KEY_A}"}
        assert client.get("/skills", headers=headers).json()["owners"] == [a.id]
        assert client.get("/skills", headers={"Host": f"gone.{ROOT}"}).status_code == 404
        refused = client.get("/skills", headers={"Authorization": "Bearer nope"})
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"

        lines = client.get("/stream").text.splitlines()
        assert {line.split()[0] for line in lines} == {a.id}
        assert sorted(line.split()[1] for line in lines) == sorted(SAMPLE_SLUGS)

        with pytest.raises(RuntimeError, match="boom"):
            client.post("/fail")
    assert current_tenant() is None and _idle(relay_db)
    with tenant_context(a):
        never = Skill.get_or_none(Skill.slug == "never")
    assert never is None if is_postgres(relay_db) else never is not None


def test_asgi_context_is_left_when_the_client_disconnects_mid_stream(
    tenants: TenantPair, relay_db: Database
) -> None:
    a = tenants.a
    app = starlette_app(by_host(ROOT))
    seen: dict[str, Any] = {}

    async def main() -> None:
        sent: list[dict[str, Any]] = []
        messages = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.sleep(0.05)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and message.get("body"):
                seen["during"] = current_tenant()
                raise OSError("client went away")  # the server's write fails

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/stream",
            "raw_path": b"/stream",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", f"{a.slug}.{ROOT}".encode())],
            "server": ("testserver", 80),
            "client": ("127.0.0.1", 1234),
        }
        with pytest.raises(OSError, match="client went away"):
            await app(scope, receive, send)
        seen["after"] = current_tenant()

    asyncio.run(main())
    assert seen == {"during": a.id, "after": None}
    assert _idle(relay_db)


def test_non_http_scopes_pass_through_untouched() -> None:
    received: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        received.append(scope["type"])
        assert current_tenant() is None

    def refuse(request: RequestInfo) -> ResolvedTenant:
        raise AssertionError("a lifespan scope has no tenant to resolve")

    middleware = asgi.TenantMiddleware(inner, refuse)
    asyncio.run(middleware({"type": "lifespan"}, None, None))  # type: ignore[arg-type]
    asyncio.run(middleware({"type": "websocket"}, None, None))  # type: ignore[arg-type]
    assert received == ["lifespan", "websocket"]


def test_starlette_on_an_asyncio_database(tenants: TenantPair, relay_db: Database) -> None:
    """The pattern the README gives for ASGI: pwasyncio, a connection per request task."""
    from contextlib import asynccontextmanager

    from playhouse.pwasyncio import AsyncPostgresqlDatabase, AsyncSqliteDatabase

    import relay_peewee

    a, b = tenants.a, tenants.b
    if is_postgres(relay_db):
        db: Any = AsyncPostgresqlDatabase(relay_db.database, **relay_db.connect_params)
    else:
        db = AsyncSqliteDatabase(relay_db.database, pragmas={"foreign_keys": 1})
    relay_db.close()

    async def skills(request: Request) -> JSONResponse:
        rows = await db.list(Skill.select())
        first = await Skill.aget(Skill.slug == SAMPLE_SLUGS[0])
        return JSONResponse(
            {"owners": sorted({s.tenant_id for s in rows}), "first": first.tenant_id}
        )

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        yield
        await db.close_pool()

    resolve = first_of(by_api_key(), by_host(ROOT))
    app = Starlette(
        routes=[Route("/skills", skills)],
        middleware=[Middleware(asgi.TenantMiddleware, resolve=resolve)],
        lifespan=lifespan,
    )
    relay_peewee.connect(db)
    try:
        with TestClient(app, base_url=f"http://{a.slug}.{ROOT}") as client:
            assert client.get("/skills").json() == {"owners": [a.id], "first": a.id}
            headers = {"Host": f"{b.slug}.{ROOT}"}
            assert client.get("/skills", headers=headers).json() == {
                "owners": [b.id],
                "first": b.id,
            }
            headers["Authorization"] = f"Bearer {KEY_A}"  # the key wins over the host
            assert client.get("/skills", headers=headers).json()["owners"] == [a.id]
            assert client.get("/skills", headers={"Host": f"gone.{ROOT}"}).status_code == 404
    finally:
        relay_peewee.connect(relay_db)
