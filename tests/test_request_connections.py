"""Issue 19, hole 2: no connection state passes from one request to the next.

Attacked the way the issue found it: through the application role (row-level
security in force), with raw SQL inside tenant A's request, then tenant B's
request on the same thread (and, with a pool, the same pooled connection).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import flask
import peewee
import pytest
from peewee import Database

import relay_peewee
from relay_peewee.database import admin_database, postgres_driver, set_admin_database
from relay_peewee.models import Skill
from relay_peewee.testing import TenantPair
from relay_peewee.web import by_host, wsgi

ROOT = "relay.example"
SETTING = "app.current_tenant_id"


@pytest.fixture
def app_role(relay_backend: str, relay_db: Database) -> Database:
    if relay_backend != "postgres_rls":
        pytest.skip("attacked through the application role")
    return relay_db


@pytest.fixture
def pool(app_role: Database) -> Iterator[Database]:
    """``postgresql+pool://`` of 3 connections, as the application role, bound to the models."""
    params = app_role.connect_params
    scheme = "psycopg3+pool" if postgres_driver(app_role) == "psycopg3" else "postgresql+pool"
    url = f"{scheme}://{params['user']}@{params['host']}:{params['port']}/{app_role.database}"
    app_role.close()
    db = relay_peewee.connect(f"{url}?max_connections=3")
    set_admin_database(db, admin_database(app_role))
    try:
        yield db
    finally:
        db.close_all()  # type: ignore[attr-defined]
        relay_peewee.connect(app_role)


def attack_app(db: Database) -> flask.Flask:
    """An app whose views run what an attacker's raw SQL would."""
    app = flask.Flask(__name__)

    @app.post("/sql")
    def run() -> Any:
        db.cursor().execute(flask.request.get_data(as_text=True))  # raw: nothing in front
        return {"ok": True}

    @app.get("/raw")
    def raw() -> Any:
        # A raw cursor: no context BEGIN or setting goes out with it.
        cursor = db.cursor()
        cursor.execute("SELECT DISTINCT tenant_id FROM skills")
        return {"owners": sorted(r[0] for r in cursor.fetchall())}

    @app.get("/orm")
    def orm() -> Any:
        return {"owners": sorted({s.tenant_id for s in Skill.select()})}

    app.wsgi_app = wsgi.TenantMiddleware(app.wsgi_app, by_host(ROOT))  # type: ignore[method-assign]
    return app


def _host(tenant: Any) -> dict[str, str]:
    return {"Host": f"{tenant.slug}.{ROOT}"}


def test_a_session_setting_does_not_reach_the_next_request_on_the_pool(
    pool: Database, two_tenants: TenantPair
) -> None:
    a, b = two_tenants.a, two_tenants.b
    client = attack_app(pool).test_client()
    sql = f"SELECT set_config('{SETTING}', '{a.id}', false)"  # session-level: outlives BEGIN
    assert client.post("/sql", data=sql, headers=_host(a), buffered=True).status_code == 200
    # B's raw cursor: on psycopg2 nothing is set for it (the context's
    # setting rides on its first execute_sql); on psycopg 3 B's own.
    seen = client.get("/raw", headers=_host(b), buffered=True).get_json()["owners"]
    assert a.id not in seen and set(seen) <= {b.id}
    assert client.get("/orm", headers=_host(b), buffered=True).get_json()["owners"] == [b.id]


@pytest.mark.parametrize("kind", ["plain", "pool"])
def test_an_open_server_transaction_does_not_carry_into_the_next_request(
    kind: str, app_role: Database, two_tenants: TenantPair, request: pytest.FixtureRequest
) -> None:
    db = request.getfixturevalue("pool") if kind == "pool" else app_role
    a, b = two_tenants.a, two_tenants.b
    client = attack_app(db).test_client()
    # Leaves a transaction open on the server that peewee knows nothing of.
    assert (
        client.post("/sql", data="SELECT 1; BEGIN", headers=_host(a), buffered=True).status_code
        == 200
    )
    assert client.get("/orm", headers=_host(b), buffered=True).get_json()["owners"] == [b.id]
    seen = client.get("/raw", headers=_host(a), buffered=True).get_json()["owners"]
    assert b.id not in seen and set(seen) <= {a.id}
    # Outside any context, on the test's own thread: nothing, and no transaction.
    assert db.execute_sql("SELECT tenant_id FROM skills").fetchall() == []
    assert db.connection().info.transaction_status == 0
    db.close()


def test_a_thread_per_request_server_does_not_run_the_pool_dry(
    pool: Database, two_tenants: TenantPair
) -> None:
    a, b = two_tenants.a, two_tenants.b
    client = attack_app(pool).test_client()
    statuses: list[int] = []

    def one_request(tenant: Any) -> None:
        response = client.get("/orm", headers=_host(tenant), buffered=True)
        statuses.append(response.status_code)
        assert response.get_json()["owners"] == [tenant.id]

    for tenant in (a, b) * 3:  # a new thread per request, as such servers do
        thread = threading.Thread(target=one_request, args=(tenant,))
        thread.start()
        thread.join()
    assert statuses == [200] * 6


def _bare_pool(cls: Any, app_role: Database) -> Any:
    """A one-connection pool of class ``cls`` built the way an app builds one
    (not from a URL), as the application role; ``app_role`` closed."""
    params = app_role.connect_params
    bare = cls(
        app_role.database,
        max_connections=1,
        user=params["user"],
        host=params["host"],
        port=params["port"],
    )
    app_role.close()
    return bare


def test_a_bare_pool_the_app_built_forgets_session_state_once_connected(
    app_role: Database, two_tenants: TenantPair
) -> None:
    """A ``PooledPostgresqlDatabase`` built by the app (not from a URL) and
    handed to ``connect(db)`` resets sessions on check-in as
    ``postgresql+pool://`` does."""
    from playhouse.pool import PooledPostgresqlDatabase
    from playhouse.postgres_ext import PooledPsycopg3Database

    # Each driver's own pool class: psycopg 3's is reset the same way.
    pool = PooledPostgresqlDatabase
    if postgres_driver(app_role) == "psycopg3":
        pool = PooledPsycopg3Database
    bare = _bare_pool(pool, app_role)
    db = relay_peewee.connect(bare)
    try:
        assert db is bare
        db.cursor().execute(f"SELECT set_config('{SETTING}', %s, false)", (two_tenants.a.id,))
        first = db.connection()
        db.close()  # checked in
        assert db.connection() is first  # the same connection, reset
        cursor = db.cursor()
        cursor.execute("SELECT current_setting(%s, true), count(*) FROM skills", (SETTING,))
        assert cursor.fetchone() in ((None, 0), ("", 0))
    finally:
        db.close_all()  # type: ignore[attr-defined]
        relay_peewee.connect(app_role)


def _last_statement(owner: Database, pid: int) -> str:
    row = owner.execute_sql("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return str(row[0]) if row else ""


def test_the_reset_costs_a_request_no_round_trip_of_its_own(
    pool: Database, owner: Database, two_tenants: TenantPair
) -> None:
    """Check-in sends nothing; on psycopg2 the reset goes out in front of the
    next checkout's first read, in its query string (in place of the pool's
    ``SELECT 1`` probe); psycopg 3 sends ``DISCARD ALL`` at checkout."""
    client = attack_app(pool).test_client()
    host = _host(two_tenants.a)
    assert client.get("/orm", headers=host, buffered=True).status_code == 200  # host cached
    pool.close_idle()  # type: ignore[attr-defined]
    pool.connect()  # a new connection, the pool's only one
    pid = pool.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
    pool.close()
    assert _last_statement(owner, pid) == "SELECT pg_backend_pid()"  # check-in sent nothing
    response = client.get("/orm", headers=host, buffered=True)
    assert response.get_json()["owners"] == [two_tenants.a.id]
    last = _last_statement(owner, pid)
    if postgres_driver(pool) == "psycopg2":
        # The request's one read carried the reset: one round trip in all.
        assert last.startswith("CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL;")
        assert 'FROM "skills"' in last
        pool.connect()  # handed out again: nothing is sent yet
        assert _last_statement(owner, pid) == last
        assert pool.connection().info.backend_pid == pid  # raw access: reset first
    else:
        pool.connect()  # psycopg 3: the reset goes out as it is handed out
    assert pool.connection().info.backend_pid == pid
    assert _last_statement(owner, pid) == "DISCARD ALL"
    pool.close()


def test_a_connection_that_died_in_the_pool_is_not_handed_out(
    pool: Database, owner: Database, two_tenants: TenantPair
) -> None:
    pool.connect()
    pid = pool.connection().info.backend_pid
    pool.close()
    owner.execute_sql("SELECT pg_terminate_backend(%s)", (pid,))
    # Gone, as a connection the server closed while it sat idle is by the
    # time it is handed out (pg_terminate_backend only signals it).
    gone = "SELECT count(*) FROM pg_stat_activity WHERE pid = %s"
    for _ in range(200):
        if owner.execute_sql(gone, (pid,)).fetchone()[0] == 0:
            break
        threading.Event().wait(0.01)
    client = attack_app(pool).test_client()
    response = client.get("/orm", headers=_host(two_tenants.b), buffered=True)
    assert response.status_code == 200
    assert response.get_json()["owners"] == [two_tenants.b.id]
    pool.connect()
    assert pool.connection().info.backend_pid != pid
    pool.close()


def test_an_advisory_lock_a_request_kept_is_let_go_at_the_next_checkout(
    pool: Database, owner: Database, two_tenants: TenantPair
) -> None:
    client = attack_app(pool).test_client()
    key = 7_004_019
    sql = f"SELECT pg_advisory_lock({key})"  # session-level: outlives the request
    assert client.post("/sql", data=sql, headers=_host(two_tenants.a), buffered=True).status_code
    held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s"
    assert owner.execute_sql(held, (key,)).fetchone()[0] == 1  # idle in the pool, still held
    # The pool hands out its oldest idle connection: the one holding the lock.
    assert client.get("/orm", headers=_host(two_tenants.b), buffered=True).status_code == 200
    assert owner.execute_sql(held, (key,)).fetchone()[0] == 0


def test_a_failed_first_read_leaves_the_reset_still_to_do(
    pool: Database, two_tenants: TenantPair
) -> None:
    """The reset rides on the first read; when that read fails it is rolled
    back with it, and goes out again with the next statement."""
    a = two_tenants.a
    pool.close_idle()  # type: ignore[attr-defined]
    pool.connect()  # a new connection, the pool's only one
    first = pool.connection()
    pool.cursor().execute(f"SELECT set_config('{SETTING}', %s, false)", (a.id,))
    pool.close()
    pool.connect()
    assert pool._state.conn is first  # type: ignore[attr-defined]  (connection() would reset)
    with pytest.raises(peewee.DataError):
        pool.execute_sql("SELECT 1 / 0")
    cursor = pool.cursor()  # raw: nothing in front of it
    cursor.execute("SELECT current_setting(%s, true), count(*) FROM skills", (SETTING,))
    assert cursor.fetchone() in ((None, 0), ("", 0))
    pool.close()


def test_a_pool_that_sets_up_its_connections_keeps_its_setup(
    app_role: Database, two_tenants: TenantPair
) -> None:
    """peewee's ``_initialize_connection`` hook runs after every checkout; the
    reset must not undo it (such a pool resets before handing out). An app
    subclassing the resetting pool to set up its connections, here."""
    from playhouse.pool import PooledPostgresqlDatabase
    from playhouse.postgres_ext import PooledPsycopg3Database

    from relay_peewee.database.pool import resetting_class

    base: Any = resetting_class(PooledPostgresqlDatabase)
    if postgres_driver(app_role) == "psycopg3":
        base = resetting_class(PooledPsycopg3Database)

    class Named(base):  # type: ignore[misc, valid-type]
        def _initialize_connection(self, conn: Any) -> None:
            with conn.cursor() as cursor:
                cursor.execute("SET application_name = 'relay-named'")

    bare = _bare_pool(Named, app_role)
    db = relay_peewee.connect(bare)
    try:
        db.execute_sql("SET application_name = 'changed'")
        first = db.connection()
        db.close()
        db.connect()
        assert db.connection() is first
        name = db.execute_sql("SELECT current_setting('application_name')").fetchone()[0]
        assert name == "relay-named"
    finally:
        db.close_all()  # type: ignore[attr-defined]
        relay_peewee.connect(app_role)


@pytest.mark.parametrize("first", ["execute_sql", "raw cursor", "orm in a context"])
def test_a_connection_opened_by_autoconnect_is_reset_too(
    pool: Database, two_tenants: TenantPair, first: str
) -> None:
    """No ``db.connect()`` first (a worker, a script): peewee opens the
    connection for the statement itself, and the reset still goes first."""
    a, b = two_tenants.a, two_tenants.b
    pool.close_idle()  # type: ignore[attr-defined]
    pool.connect()
    pool.cursor().execute(f"SELECT set_config('{SETTING}', %s, false)", (a.id,))
    pool.close()  # checked in, the pool's only connection
    if first == "execute_sql":
        owners = {r[0] for r in pool.execute_sql("SELECT DISTINCT tenant_id FROM skills")}
    elif first == "raw cursor":
        cursor = pool.cursor()
        cursor.execute("SELECT DISTINCT tenant_id FROM skills")
        owners = {r[0] for r in cursor.fetchall()}
    else:
        with relay_peewee.tenant_context(b):
            owners = {s.tenant_id for s in Skill.select()}
    pool.close()
    assert a.id not in owners


def test_autocommit_turned_off_by_raw_code_is_back_on_for_the_next_checkout(
    pool: Database, two_tenants: TenantPair
) -> None:
    a, b = two_tenants.a, two_tenants.b
    pool.close_idle()  # type: ignore[attr-defined]
    pool.connect()
    pool.connection().autocommit = False  # raw code on the driver's connection
    pool.close()
    pool.connect()
    with relay_peewee.tenant_context(b):
        assert {s.tenant_id for s in Skill.select()} == {b.id}
    conn = pool._state.conn  # type: ignore[attr-defined]
    assert conn.autocommit and conn.info.transaction_status == 0  # nothing left open
    # Outside the context: no tenant, so nothing visible under RLS.
    assert pool.execute_sql("SELECT tenant_id FROM skills").fetchall() == []
    assert a.id  # (a only exists to give the table two tenants)
    pool.close()


def test_a_server_side_cursor_as_the_first_statement(
    app_role: Database, two_tenants: TenantPair
) -> None:
    """A named cursor's DECLARE takes one statement: the reset goes before it."""
    params = app_role.connect_params
    scheme = "psycopg3+pool" if postgres_driver(app_role) == "psycopg3" else "postgresqlext+pool"
    url = f"{scheme}://{params['user']}@{params['host']}:{params['port']}/{app_role.database}"
    app_role.close()
    db = relay_peewee.connect(f"{url}?max_connections=1")
    try:
        db.connect()
        db.cursor().execute(f"SELECT set_config('{SETTING}', %s, false)", (two_tenants.a.id,))
        db.close()
        db.connect()
        cursor = db.execute_sql("SELECT current_setting(%s, true)", (SETTING,), named_cursor=True)
        assert cursor.fetchone()[0] in (None, "")
        cursor.close()
        db.close()
    finally:
        db.close_all()  # type: ignore[attr-defined]
        relay_peewee.connect(app_role)
