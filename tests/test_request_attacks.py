"""Issue 19: the holes an attack pass on the request path found, each refused.

Each test replays one numbered hole of the issue, as tenant A through the
application role (``postgres_rls``) where the hole is PostgreSQL's, with raw
SQL as well as the ORM, and fails on the code before its fix.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from peewee import Database, ProgrammingError

import relay_peewee
from relay_peewee import tenant_context
from relay_peewee.audit import audit_schema
from relay_peewee.database import is_postgres
from relay_peewee.errors import CrossTenantWrite
from relay_peewee.models import Rating, User
from relay_peewee.operations.roles import create_roles
from relay_peewee.testing import TenantPair, bound_by_row_level_security

SHADOW = "CREATE TEMP TABLE users (LIKE public.users INCLUDING DEFAULTS)"


def _as_app_role(relay_db: Database, scheme: str) -> Iterator[Database]:
    """``relay_db``'s database and role through the URL scheme ``scheme``."""
    if scheme == "direct":
        yield relay_db
        return
    params = relay_db.connect_params
    url = f"{scheme}://{params['user']}@{params['host']}:{params['port']}/{relay_db.database}"
    db = relay_peewee.connect(url + "?max_connections=1")
    try:
        yield db
    finally:
        db.close_all()  # type: ignore[attr-defined]
        relay_peewee.connect(relay_db)


@pytest.fixture(params=["direct", "postgresql+pool"])
def app_db(relay_db: Database, request: pytest.FixtureRequest) -> Iterator[Database]:
    """The application role's database, on one connection: the test's own
    (``direct``) or a pool of one (``postgresql+pool://``)."""
    if not bound_by_row_level_security(relay_db):
        pytest.skip("the attack is the application role's (postgres_rls)")
    yield from _as_app_role(relay_db, request.param)


def test_hole_1_a_temp_table_cannot_shadow_a_table_for_the_next_tenant(
    app_db: Database, two_tenants: TenantPair, owner: Database
) -> None:
    """A's raw SQL makes a temp table named like the ORM's (pg_temp is searched
    first); B's next ``User.create`` on the same connection must still land in
    ``public.users``, where A cannot read it. The application role may not
    create temporary tables at all (``roles`` revokes TEMP from PUBLIC)."""
    a, b = two_tenants.a, two_tenants.b
    with pytest.raises(ProgrammingError, match="permission denied"), tenant_context(a):
        app_db.execute_sql(SHADOW)
    app_db.close()  # a pool checks the connection in; the direct one reconnects
    app_db.connect()
    with tenant_context(b):
        User.create(email="b-shadow@example.com")
    kept = owner.execute_sql(
        "SELECT tenant_id FROM public.users WHERE email = 'b-shadow@example.com'"
    ).fetchall()
    assert kept == [(b.id,)]
    with tenant_context(a):
        seen = app_db.execute_sql("SELECT email FROM users").fetchall()
    assert ("b-shadow@example.com",) not in seen


def test_hole_1_the_shadow_does_not_reach_b_even_on_one_connection(
    relay_db: Database, two_tenants: TenantPair, owner: Database
) -> None:
    """The same attack without closing in between: the thread's connection
    as a WSGI worker keeps it from request to request."""
    if not bound_by_row_level_security(relay_db):
        pytest.skip("the attack is the application role's (postgres_rls)")
    a, b = two_tenants.a, two_tenants.b
    try:
        with tenant_context(a):
            relay_db.execute_sql(SHADOW)
    except ProgrammingError:
        pass  # refused: what the fixed roles do
    with tenant_context(b):
        User.create(email="b-same@example.com")
    assert owner.execute_sql(
        "SELECT tenant_id FROM public.users WHERE email = 'b-same@example.com'"
    ).fetchall() == [(b.id,)]


def test_hole_1_the_audit_reports_an_app_role_that_may_create_temp_tables(
    relay_db: Database, owner: Database
) -> None:
    if not bound_by_row_level_security(relay_db):
        pytest.skip("the application role exists on postgres_rls")
    app, admin = relay_db.connect_params["user"], relay_db.relay_admin_role  # type: ignore[attr-defined]
    relay_db.close()

    def temp_findings() -> list[str]:
        found = audit_schema(owner, app_role=app, admin_role=admin)
        return [f.message for f in found if f.check == "app-role-temp"]

    assert temp_findings() == []
    owner.execute_sql(f'GRANT TEMPORARY ON DATABASE "{owner.database}" TO PUBLIC')
    [message] = temp_findings()
    assert "REVOKE TEMPORARY ON DATABASE" in message
    create_roles(owner, app, admin)  # the fix the message names
    assert temp_findings() == []


def test_hole_5_sqlite_raw_pragma_off_does_not_switch_the_reference_check_off(
    relay_db: Database, two_tenants: TenantPair
) -> None:
    """A connection opened with ``foreign_keys=1`` that raw SQL turned off:
    the ORM's reference check must not leave the reference to keys that no
    longer fire. Tenant A's rating of B's skill is refused."""
    if is_postgres(relay_db):
        pytest.skip("SQLite's pragma; PostgreSQL's keys cannot be switched off by the app")
    a, b = two_tenants.a, two_tenants.b
    b_skill = two_tenants.rows_of(b).skills[0]
    a_user = two_tenants.rows_of(a).users[0]
    relay_db.execute_sql("PRAGMA foreign_keys = OFF")
    try:
        with pytest.raises(CrossTenantWrite), tenant_context(a):
            Rating.create(skill=b_skill.id, user=a_user.id, rating=1)
        with tenant_context(a):
            assert Rating.select().where(Rating.skill == b_skill.id).count() == 0
    finally:
        relay_db.execute_sql("PRAGMA foreign_keys = ON")
