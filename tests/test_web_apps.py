"""Ordinary peewee web apps behind the tenant middleware (issue 19).

peewee's documented Flask pattern (``before_request: db.connect()``,
``teardown_request: db.close()``), ``playhouse.flask_utils.FlaskDB`` and a
Starlette app, through their own test clients, on every backend (on
``postgres_rls`` as the application role): the middleware owns the
request's connection and the app's own connect/close are harmless.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import flask
import pytest
from peewee import Database, OperationalError, PostgresqlDatabase, SqliteDatabase, TextField
from playhouse.flask_utils import FlaskDB
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import relay_peewee
from relay_peewee import TenantModel, current_tenant
from relay_peewee.database import admin_database, database_proxy, is_postgres, set_admin_database
from relay_peewee.errors import RelayError
from relay_peewee.models import Skill, User
from relay_peewee.tenancy.context import tenant_context
from relay_peewee.testing import SAMPLE_SLUGS, TenantPair
from relay_peewee.web import asgi, bind_session, by_host, check_session, wsgi

ROOT = "relay.example"


def _idle(db: Database) -> bool:
    """No transaction left open, by peewee or on the server, and no connection held."""
    return not db.in_transaction() and db.is_closed()


def _views(app: flask.Flask, db: Database) -> None:
    @app.get("/skills")
    def skills() -> Any:
        return {
            "tenant": current_tenant(),
            "owners": sorted({s.tenant_id for s in Skill.select()}),
            "slugs": sorted(s.slug for s in Skill.select()),
        }

    @app.post("/skills/<slug>")
    def create(slug: str) -> Any:
        with db.atomic():  # the app's own transaction, on the database it was told to use
            skill = Skill.create(name=slug, slug=slug, description="d", category="c", content="x")
        return {"id": skill.id, "tenant": skill.tenant_id}


def hooks_app(db: Database) -> flask.Flask:
    """peewee's "Flask" recipe, word for word."""
    app = flask.Flask(__name__)

    @app.before_request
    def _db_connect() -> None:
        db.connect()

    @app.teardown_request
    def _db_close(exc: BaseException | None) -> None:
        if not db.is_closed():
            db.close()

    _views(app, db)
    return app


def flaskdb_app(db: Database) -> flask.Flask:
    app = flask.Flask(__name__)
    FlaskDB(app, db)
    _views(app, db)
    return app


@pytest.mark.parametrize("build", [hooks_app, flaskdb_app], ids=["hooks", "FlaskDB"])
def test_peewees_flask_patterns_work_behind_the_middleware(
    build: Any, two_tenants: TenantPair, relay_db: Database
) -> None:
    a, b = two_tenants.a, two_tenants.b
    app = build(relay_db)
    app.wsgi_app = wsgi.TenantMiddleware(app.wsgi_app, by_host(ROOT))
    client = app.test_client()
    for n, tenant in enumerate((a, b, a)):
        host = {"Host": f"{tenant.slug}.{ROOT}"}
        response = client.get("/skills", headers=host, buffered=True)
        assert response.status_code == 200, response.get_data(as_text=True)
        data = response.get_json()
        assert data["tenant"] == tenant.id and data["owners"] == [tenant.id]
        assert set(SAMPLE_SLUGS) <= set(data["slugs"])
        created = client.post(f"/skills/new-{tenant.slug}-{n}", headers=host, buffered=True)
        assert created.status_code == 200, created.get_data(as_text=True)
        assert created.get_json()["tenant"] == tenant.id
        assert current_tenant() is None and _idle(relay_db)
    with tenant_context(b):
        assert Skill.get(Skill.slug == f"new-{b.slug}-1").tenant_id == b.id
        assert Skill.get_or_none(Skill.slug == f"new-{a.slug}-0") is None
    # Outside a request the app's own connect/close are peewee's as ever.
    relay_db.close()
    assert relay_db.connect() is True
    with pytest.raises(OperationalError, match="already opened"):
        relay_db.connect()
    assert relay_db.close() is True


def test_a_starlette_app_that_opens_and_closes_the_database_itself(
    two_tenants: TenantPair, relay_db: Database
) -> None:
    a, b = two_tenants.a, two_tenants.b
    made = itertools.count()

    async def skills(request: Request) -> JSONResponse:
        opened = relay_db.connect()  # an app written for plain peewee
        try:
            with relay_db.atomic():
                owners = sorted({s.tenant_id for s in Skill.select()})
                Skill.create(
                    name="n",
                    slug=f"n-{next(made)}",
                    description="d",
                    category="c",
                    content="x",
                )
            return JSONResponse({"tenant": current_tenant(), "owners": owners, "opened": opened})
        finally:
            relay_db.close()

    app = Starlette(
        routes=[Route("/skills", skills)],
        middleware=[Middleware(asgi.TenantMiddleware, resolve=by_host(ROOT))],
    )
    with TestClient(app) as client:
        for tenant in (a, b, a):
            response = client.get("/skills", headers={"Host": f"{tenant.slug}.{ROOT}"})
            assert response.status_code == 200, response.text
            assert response.json() == {"tenant": tenant.id, "owners": [tenant.id], "opened": False}
    # The app ran on the test client's own thread, which kept no connection.
    assert current_tenant() is None and _others_connected(relay_db) == []


def _others_connected(db: Database) -> list[Any]:
    """Other sessions on the test's database, after the server has had a moment
    to see a connection closed at the end of the last response go."""
    if not is_postgres(db):
        return []
    others = (
        "SELECT usename, state, query FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    for _ in range(50):
        rows = db.execute_sql(others).fetchall()
        if not rows:
            break
        time.sleep(0.02)
    return rows


def test_the_context_ends_when_the_body_is_exhausted(
    two_tenants: TenantPair, relay_db: Database
) -> None:
    """Flask's test client (unbuffered, its default) closes a response only
    when the test does: the body was read to its end, which ends the context."""
    a, b = two_tenants.a, two_tenants.b
    app = hooks_app(relay_db)
    app.wsgi_app = wsgi.TenantMiddleware(app.wsgi_app, by_host(ROOT))
    client = app.test_client()
    first = client.post(f"/skills/first-{a.slug}", headers={"Host": f"{a.slug}.{ROOT}"})
    assert first.status_code == 200, first.get_data(as_text=True)
    assert first.get_json()["tenant"] == a.id  # the body read to its end
    assert current_tenant() is None and _idle(relay_db)  # first is not closed
    second = client.get("/skills", headers={"Host": f"{b.slug}.{ROOT}"})
    assert second.status_code == 200, second.get_data(as_text=True)
    assert second.get_json()["owners"] == [b.id]
    assert current_tenant() is None and _idle(relay_db)
    first.close()
    second.close()
    with tenant_context(a):  # the first request's write was committed, not left open
        assert Skill.get(Skill.slug == f"first-{a.slug}").tenant_id == a.id
    if is_postgres(relay_db):
        assert relay_db.connection().info.transaction_status == 0


# --- which database object the app uses --------------------------------------


def test_connect_leaves_no_connection_open_in_the_importing_thread(relay_db_url: str) -> None:
    """The app's own ``db.connect()`` at import (peewee's create_tables recipe) works."""
    db = relay_peewee.connect(relay_db_url)
    try:
        assert db.is_closed()
        assert db.connect() is True
        db.execute_sql("SELECT 1")
    finally:
        db.close()


def test_a_tenant_model_on_a_database_the_app_built_itself_is_refused(tmp_path: Path) -> None:
    own = SqliteDatabase(str(tmp_path / "own.db"))
    with pytest.raises(RelayError, match="Post is a TenantModel bound to SqliteDatabase"):

        class Post(TenantModel):
            title = TextField()

            class Meta:
                database = own

    assert Skill._meta.database is database_proxy  # where the contexts are


# --- a login session belongs to its tenant ----------------------------------


def session_app(check: bool) -> flask.Flask:
    app = flask.Flask(__name__)
    app.secret_key = "test"

    if check:

        @app.before_request
        def _tenant_session() -> None:
            check_session(flask.session)

    @app.post("/login/<user_id>")
    def login(user_id: str) -> Any:
        user = User.get_by_id(user_id)  # this tenant's users only
        flask.session["user_id"] = user.id
        bind_session(flask.session)
        return {"user": user.id}

    @app.get("/me")
    def me() -> Any:
        if "user_id" not in flask.session:
            return {"user": None}, 401
        return {"user": User.get_by_id(flask.session["user_id"]).id}

    app.wsgi_app = wsgi.TenantMiddleware(app.wsgi_app, by_host(ROOT))  # type: ignore[method-assign]
    return app


@pytest.mark.parametrize("check", [True, False], ids=["bound", "unbound"])
def test_a_session_cookie_from_another_tenant_is_logged_out(
    check: bool, two_tenants: TenantPair, relay_db: Database
) -> None:
    a, b = two_tenants.a, two_tenants.b
    user = two_tenants.rows_of(a).users[0]
    client = session_app(check).test_client(use_cookies=False)  # the cookie sent by hand
    host_a, host_b = {"Host": f"{a.slug}.{ROOT}"}, {"Host": f"{b.slug}.{ROOT}"}
    login = client.post(f"/login/{user.id}", headers=host_a, buffered=True)
    assert login.status_code == 200, login.get_data(as_text=True)
    cookie = login.headers["Set-Cookie"].split(";")[0]  # "session=..."
    assert client.get("/me", headers={**host_a, "Cookie": cookie}).get_json() == {"user": user.id}
    # The same signed cookie, sent to tenant b's host.
    if not check:  # what an app without the helper gets: a 500
        response = client.get("/me", headers={**host_b, "Cookie": cookie}, buffered=True)
        assert response.status_code == 500, response.get_data(as_text=True)
        return
    elsewhere = client.get("/me", headers={**host_b, "Cookie": cookie})
    assert elsewhere.status_code == 401 and elsewhere.get_json() == {"user": None}
    assert current_tenant() is None and _idle(relay_db)


def test_the_apps_own_database_passed_to_connect_runs_peewees_flask_pattern(
    two_tenants: TenantPair, relay_db: Database
) -> None:
    """``connect(db)``: the app's own peewee database, built at import, is the one."""
    a = two_tenants.a
    if is_postgres(relay_db):
        own: Database = PostgresqlDatabase(relay_db.database, **relay_db.connect_params)
    else:
        own = SqliteDatabase(relay_db.database, pragmas={"foreign_keys": 1})
    relay_db.close()
    set_admin_database(own, admin_database(relay_db))
    assert relay_peewee.connect(own) is own
    try:
        app = hooks_app(own)
        app.wsgi_app = wsgi.TenantMiddleware(app.wsgi_app, by_host(ROOT))  # type: ignore[method-assign]
        client = app.test_client()
        host = {"Host": f"{a.slug}.{ROOT}"}
        created = client.post("/skills/own", headers=host, buffered=True)
        assert created.status_code == 200, created.get_data(as_text=True)
        assert client.get("/skills", headers=host, buffered=True).get_json()["owners"] == [a.id]
        assert _idle(own)
    finally:
        own.close()
        relay_peewee.connect(relay_db)
