"""`relay-peewee users move` and `move_user`: Relay's sign-in move, made safe.

The Python API runs on every plugin backend (on ``postgres_rls`` as the
application role, through its admin path); the CLI on SQLite and
PostgreSQL as the owner.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest
from click.testing import CliRunner
from peewee import Database
from schema import scalar

import relay_peewee
from relay_peewee import tenant_context
from relay_peewee.cli import cli
from relay_peewee.database import ADMIN_URL_ENV, is_postgres, open_database
from relay_peewee.errors import RelayError
from relay_peewee.models import ApiKey, Rating, Skill, UsageEvent, User
from relay_peewee.operations.commands import create_tenant, migrate, move_user
from relay_peewee.operations.lookups import find_api_key, hash_api_key
from relay_peewee.testing import TenantPair
from relay_peewee.testing.backends import create_test_roles, drop_test_roles

DEFAULT_TENANT = "default-tenant-000-0000-000000000000"


def _as_role(url: str, role: str) -> str:
    """``url`` logging in as ``role`` (the test server trusts local roles)."""
    parsed = urlparse(url)
    return urlunparse(parsed._replace(netloc=f"{role}@{parsed.hostname}:{parsed.port}"))


def _newcomer(tenant_id: str, email: str = "new@example.com") -> User:
    """A first-time user: an api key and a skill-less usage event, nothing else."""
    with tenant_context(tenant_id):
        user = User.create(email=email, name="New")
        ApiKey.create(user=user, key_hash=hash_api_key("rlk_newcomer"), key_prefix="rlk_newc")
        UsageEvent.create(tool_name="login", user=user)
    return user


def _fk_violations(db: Database) -> list[object]:
    if is_postgres(db):
        return []  # PostgreSQL enforces every key on each statement; nothing can dangle
    return list(db.execute_sql("PRAGMA foreign_key_check").fetchall())


def _moves(db: Database) -> list[tuple[str, str]]:
    rows = db.execute_sql(
        "SELECT tenant_id, metadata FROM audit_logs WHERE action = 'user.move' ORDER BY tenant_id"
    ).fetchall()
    return [(t, m if isinstance(m, str) else json.dumps(m)) for t, m in rows]


def test_move_takes_api_keys_and_skillless_usage_along(
    owner: Database, relay_db: Database, two_tenants: TenantPair
) -> None:
    a, b = two_tenants.a, two_tenants.b
    user = _newcomer(a.id)
    move = move_user(relay_db, "new@example.com", b.slug)
    assert (move.user_id, move.from_tenant, move.to_tenant) == (user.id, a.id, b.id)
    assert move.moved == {"api_keys": 1, "usage_events": 1}

    for table, column in (("users", "id"), ("api_keys", "user_id"), ("usage_events", "user_id")):
        assert (
            scalar(owner, f"SELECT DISTINCT tenant_id FROM {table} WHERE {column} = '{user.id}'")
            == b.id
        )
    assert _fk_violations(owner) == []
    with tenant_context(b):
        assert User.get(User.email == "new@example.com").id == user.id
        assert ApiKey.select().join(User).where(User.id == user.id).count() == 1
    with tenant_context(a):
        assert User.get_or_none(User.email == "new@example.com") is None
    match = find_api_key(relay_db, "rlk_newcomer")
    assert match is not None and match.tenant_id == b.id

    moves = _moves(owner)
    assert sorted(t for t, _ in moves) == sorted([a.id, b.id])
    assert all(f'"to_tenant": "{b.id}"' in m and '"api_keys": 1' in m for _, m in moves)


def test_move_refuses_rows_that_belong_to_the_old_tenants_skills(
    owner: Database, relay_db: Database, two_tenants: TenantPair
) -> None:
    a, b = two_tenants.a, two_tenants.b
    user = _newcomer(a.id, "rater@example.com")
    with tenant_context(a):
        skill = Skill.select().first()
        Rating.create(skill=skill, user=user, rating=5)
        UsageEvent.create(tool_name="get_skill", user=user, skill=skill)
    with pytest.raises(RelayError) as refused:
        move_user(relay_db, "rater@example.com", b.slug)
    message = str(refused.value)
    assert "\n" not in message
    assert "1 rating(s)" in message and "1 usage event(s) naming a skill" in message
    assert "tenant-a" in message
    # nothing changed: the user, their key and events stay; no audit row
    assert scalar(owner, f"SELECT tenant_id FROM users WHERE id = '{user.id}'") == a.id
    assert scalar(owner, f"SELECT count(*) FROM api_keys WHERE tenant_id = '{b.id}'") == len(
        two_tenants.rows_of(b).api_keys
    )
    assert _moves(owner) == []


def test_move_refuses_authored_skills(relay_db: Database, two_tenants: TenantPair) -> None:
    a = two_tenants.a
    author = two_tenants.rows_of(a).skills[0].author
    if author is None:
        with tenant_context(a):
            author = _newcomer(a.id, "author@example.com")
            skill = two_tenants.rows_of(a).skills[0]
            Skill.update(author=author).where(Skill.id == skill.id).execute()
    with tenant_context(a):
        email = User.get_by_id(author.id).email
    with pytest.raises(RelayError, match=r"authored skill\(s\)"):
        move_user(relay_db, email, two_tenants.b.slug)


@pytest.mark.parametrize(
    ("email", "slug", "error"),
    [
        ("nobody@example.com", "tenant-b", "no user with email 'nobody@example.com'"),
        ("new@example.com", "nowhere", "no tenant with slug 'nowhere'"),
        ("new@example.com", "tenant-a", "new@example.com is already in tenant 'tenant-a'"),
        ("new@example.com", "off", "tenant 'off' is inactive"),
    ],
)
def test_move_errors(
    owner: Database, relay_db: Database, two_tenants: TenantPair, email: str, slug: str, error: str
) -> None:
    _newcomer(two_tenants.a.id)
    p = "%s" if is_postgres(owner) else "?"
    owner.execute_sql(
        f"INSERT INTO tenants (id, name, slug, is_active) VALUES ('t-off', 'Off', 'off', {p})",
        (False,),
    )
    with pytest.raises(RelayError) as refused:
        move_user(relay_db, email, slug)
    assert str(refused.value).startswith(error)
    assert _moves(owner) == []


@pytest.mark.parametrize(
    ("email", "slug", "error"),
    [
        ("a\x00b@x", "tenant-b", "invalid email 'a\\x00b@x': it contains NUL"),
        ("new@example.com", "ten\x00ant", "invalid tenant slug 'ten\\x00ant': it contains NUL"),
    ],
)
def test_move_refuses_nul_as_a_relay_error(
    owner: Database, relay_db: Database, two_tenants: TenantPair, email: str, slug: str, error: str
) -> None:
    # PostgreSQL's drivers raised a plain ValueError for a NUL: not a
    # RelayError, so the CLI and an app's handler took it for a bug.
    _newcomer(two_tenants.a.id)
    with pytest.raises(RelayError) as refused:
        move_user(relay_db, email, slug)
    assert str(refused.value) == error
    assert _moves(owner) == []


# --- the CLI --------------------------------------------------------------------------


@pytest.fixture
def cli_db(db_url: str) -> Iterator[str]:
    db = relay_peewee.connect(db_url)
    migrate(db)
    create_tenant(db, "acme", "Acme")
    _newcomer("default-tenant-000-0000-000000000000")
    db.close()
    yield db_url


def test_cli_users_move(cli_db: str) -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli, ["users", "move", "--database", cli_db, "--email", "new@example.com", "--to", "acme"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("moved new@example.com to acme (")
    assert "moved along: 1 api_keys, 1 usage_events" in result.output
    again = runner.invoke(
        cli, ["users", "move", "--database", cli_db, "--email", "new@example.com", "--to", "acme"]
    )
    assert again.exit_code == 1
    assert again.output.strip() == "Error: new@example.com is already in tenant 'acme'"
    db = open_database(cli_db)
    try:
        assert scalar(db, "SELECT count(*) FROM audit_logs WHERE action = 'user.move'") == 2
    finally:
        db.close()


def test_cli_users_move_refuses_a_database_without_tenants(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    open_database(f"sqlite:///{path}").close()
    result = CliRunner().invoke(
        cli, ["users", "move", "--database", f"sqlite:///{path}", "--email", "x@y", "--to", "a"]
    )
    assert result.exit_code == 1
    assert "run `relay-peewee migrate`" in result.output


@pytest.mark.postgres_only
def test_cli_users_move_as_the_app_role_takes_the_admin_database(pg_url: str) -> None:
    # As the application role under forced RLS the move needs the admin
    # connection: from --admin-database or $RELAY_ADMIN_DATABASE_URL, as
    # connect() reads it; without either, the error names the CLI's options.
    db = relay_peewee.connect(pg_url)
    migrate(db)
    create_tenant(db, "acme", "Acme")
    _newcomer(DEFAULT_TENANT)
    roles = create_test_roles(db)
    db.close()
    app_url, admin_url = _as_role(pg_url, roles[0]), _as_role(pg_url, roles[1])
    move = ["users", "move", "--database", app_url, "--email", "new@example.com"]
    try:
        refused = CliRunner(env={ADMIN_URL_ENV: None}).invoke(cli, [*move, "--to", "acme"])
        assert refused.exit_code == 1, refused.output
        assert refused.stdout == ""
        (line,) = refused.stderr.splitlines()
        assert line.startswith("Error: users move must see every tenant, and this role cannot: ")
        assert f"pass --admin-database URL (or set ${ADMIN_URL_ENV})" in line
        assert "relay_peewee.connect(" not in line

        by_env = CliRunner(env={ADMIN_URL_ENV: admin_url}).invoke(cli, [*move, "--to", "acme"])
        assert by_env.exit_code == 0, by_env.output
        assert by_env.stdout.startswith("moved new@example.com to acme (")

        by_option = CliRunner(env={ADMIN_URL_ENV: None}).invoke(
            cli, [*move, "--to", "default", "--admin-database", admin_url]
        )
        assert by_option.exit_code == 0, by_option.output
        assert by_option.stdout.startswith("moved new@example.com to default (")

        bad = CliRunner().invoke(cli, [*move, "--to", "acme", "--admin-database", "foo://x"])
        assert bad.exit_code == 1
        assert bad.stderr.startswith("Error: unsupported database URL 'foo://x'")
    finally:
        drop_test_roles(pg_url, roles)
    owner = open_database(pg_url)
    try:
        assert scalar(owner, "SELECT count(*) FROM audit_logs WHERE action = 'user.move'") == 4
    finally:
        owner.close()
