"""Lookups before the tenant is known: API keys and request hosts.

They run on every backend of the plugin; on ``postgres_rls`` as the
application role under forced row-level security, from no tenant context
and from another tenant's, with no ``unscoped`` and no audit row per call.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from peewee import Database

from relay_peewee import tenant_context
from relay_peewee.database import is_postgres, open_database
from relay_peewee.models import ApiKey, User
from relay_peewee.operations.lookups import (
    ApiKeyMatch,
    TenantMatch,
    api_key_lookup_statement,
    find_api_key,
    find_tenant_by_host,
    hash_api_key,
    host_candidates,
    tenant_host_lookup_statement,
)
from relay_peewee.testing import TenantPair


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _audit_rows(db: Database) -> int:
    return int(db.execute_sql("SELECT count(*) FROM audit_logs").fetchone()[0])


def test_hash_is_relays_sha256_hex() -> None:
    raw = "rlk_" + "ab" * 32
    assert hash_api_key(raw) == hashlib.sha256(raw.encode()).hexdigest()
    assert len(hash_api_key("")) == 64


def _key(tenant_id: str, raw: str, **fields: object) -> ApiKey:
    with tenant_context(tenant_id):
        user = User.select().order_by(User.email).first()
        return ApiKey.create(user=user, key_hash=hash_api_key(raw), key_prefix=raw[:12], **fields)


def test_api_key_resolves_across_tenants(relay_db: Database, two_tenants: TenantPair) -> None:
    a, b = two_tenants.a, two_tenants.b
    key_a = _key(a.id, "rlk_key_of_a")
    key_b = _key(b.id, "rlk_key_of_b")
    revoked = _key(a.id, "rlk_revoked", revoked_at=_utcnow() - timedelta(days=1))
    expired = _key(b.id, "rlk_expired", expires_at=_utcnow() - timedelta(minutes=1))
    future = _key(b.id, "rlk_future", expires_at=_utcnow() + timedelta(days=30))
    before = _audit_rows(relay_db) if not is_postgres(relay_db) else None

    # no tenant context at all
    match = find_api_key(relay_db, "rlk_key_of_a")
    assert match == ApiKeyMatch(a.id, key_a.user_id, match.key_id if match else "")
    assert match is not None and uuid.UUID(match.key_id) == key_a.id
    # from inside the other tenant's context
    with tenant_context(a):
        match_b = find_api_key(relay_db, "rlk_key_of_b")
    assert match_b is not None and (match_b.tenant_id, match_b.user_id) == (b.id, key_b.user_id)
    assert uuid.UUID(match_b.key_id) == key_b.id
    assert find_api_key(relay_db, "rlk_future") is not None

    assert find_api_key(relay_db, "rlk_revoked") is None
    assert find_api_key(relay_db, "rlk_expired") is None
    assert find_api_key(relay_db, "rlk_nobody") is None
    assert find_api_key(relay_db, "") is None

    # last_used_at is stamped on accepted keys only, as Relay does it
    with tenant_context(a):
        assert ApiKey.get_by_id(key_a.id).last_used_at is not None
        assert ApiKey.get_by_id(revoked.id).last_used_at is None
    with tenant_context(b):
        assert ApiKey.get_by_id(expired.id).last_used_at is None
        assert ApiKey.get_by_id(future.id).last_used_at is not None
    if before is not None:
        assert _audit_rows(relay_db) == before


def test_api_key_statement_is_what_find_runs(relay_db: Database, two_tenants: TenantPair) -> None:
    key = _key(two_tenants.a.id, "rlk_statement")
    sql, params = api_key_lookup_statement(relay_db, "rlk_statement")
    with relay_db.atomic():
        rows = relay_db.execute_sql(sql, params).fetchall()
    assert len(rows) == 1 and rows[0][0] == two_tenants.a.id
    assert uuid.UUID(str(rows[0][2])) == key.id


def test_lookups_write_no_audit_row(
    owner: Database, relay_db: Database, two_tenants: TenantPair
) -> None:
    _key(two_tenants.a.id, "rlk_quiet")
    before = _audit_rows(owner)
    for _ in range(3):
        assert find_api_key(relay_db, "rlk_quiet") is not None
        assert find_tenant_by_host(relay_db, "tenant-a.localhost") is not None
    assert _audit_rows(owner) == before


@pytest.mark.parametrize(
    ("host", "root", "expected"),
    [
        ("acme.localhost:3000", None, ("acme", None)),
        ("ACME.localhost", "example.com", ("acme", None)),
        ("localhost:3000", None, (None, None)),
        ("www.localhost", None, (None, None)),
        ("acme.example.com", "example.com", ("acme", None)),
        ("example.com", "example.com", (None, None)),
        ("www.example.com:443", "example.com", (None, None)),
        ("skills.acme.test", "example.com", (None, "skills.acme.test")),
        ("skills.acme.test.", None, (None, "skills.acme.test")),
        ("acme.example.com", None, (None, "acme.example.com")),
        ("[::1]:3000", None, (None, None)),
        ("", None, (None, None)),
    ],
)
def test_host_candidates_read_the_host_like_relays_middleware(
    host: str, root: str | None, expected: tuple[str | None, str | None]
) -> None:
    assert host_candidates(host, root) == expected


def test_tenant_by_host(owner: Database, relay_db: Database, two_tenants: TenantPair) -> None:
    a, b = two_tenants.a, two_tenants.b
    owner.execute_sql(
        "UPDATE tenants SET domain = 'Skills.Acme.Test' WHERE id = "
        + ("%s" if is_postgres(owner) else "?"),
        (a.id,),
    )
    # An inactive tenant, and a domain two tenants both claim.
    p = "%s" if is_postgres(owner) else "?"
    owner.execute_sql(
        "INSERT INTO tenants (id, name, slug, domain, is_active, plan, created_at, updated_at)"
        f" VALUES ({p}, 'Off', 'off', 'off.test', {p}, 'freemium', {p}, {p})",
        ("t-off", False, _utcnow(), _utcnow()),
    )
    for tid, slug in (("t-d1", "dup-1"), ("t-d2", "dup-2")):
        owner.execute_sql(
            "INSERT INTO tenants (id, name, slug, domain, is_active, plan, created_at, updated_at)"
            f" VALUES ({p}, 'D', {p}, 'shared.test', {p}, 'freemium', {p}, {p})",
            (tid, slug, True, _utcnow(), _utcnow()),
        )

    expect_a = TenantMatch(a.id, "tenant-a")
    assert find_tenant_by_host(relay_db, "tenant-a.localhost:3000") == expect_a
    assert find_tenant_by_host(relay_db, "tenant-a.relay.dev", "relay.dev") == expect_a
    assert find_tenant_by_host(relay_db, "skills.acme.test") == expect_a  # by domain, any case
    with tenant_context(b):  # another tenant's context does not matter
        assert find_tenant_by_host(relay_db, "tenant-a.localhost") == expect_a
    assert find_tenant_by_host(relay_db, "tenant-b.localhost") == TenantMatch(b.id, "tenant-b")

    assert find_tenant_by_host(relay_db, "relay.dev", "relay.dev") is None  # the apex
    assert find_tenant_by_host(relay_db, "off.localhost") is None  # inactive, by slug
    assert find_tenant_by_host(relay_db, "off.test") is None  # inactive, by domain
    assert find_tenant_by_host(relay_db, "shared.test") is None  # ambiguous domain
    assert find_tenant_by_host(relay_db, "nobody.localhost") is None
    # a slug host never falls back to a domain match
    assert find_tenant_by_host(relay_db, "skills.relay.dev", "relay.dev") is None

    sql, params = tenant_host_lookup_statement(relay_db, "tenant-a.localhost")
    assert relay_db.execute_sql(sql, params).fetchall() == [(a.id, "tenant-a")]


@pytest.mark.postgres_only
def test_audit_checks_the_lookup_functions(pg_url: str) -> None:
    from relay_peewee.audit import audit_schema
    from relay_peewee.operations.commands import migrate

    db = open_database(pg_url)
    try:
        migrate(db)

        def findings() -> list[str]:
            return [f.message for f in audit_schema(db) if f.check == "lookup-function"]

        assert findings() == []
        db.execute_sql("GRANT EXECUTE ON FUNCTION relay_find_tenant(text, text) TO PUBLIC")
        assert findings() == [
            "lookup function relay_find_tenant(text, text) is executable by PUBLIC;"
            " fix: REVOKE ALL ON FUNCTION relay_find_tenant(text, text) FROM PUBLIC"
        ]
        db.execute_sql("REVOKE ALL ON FUNCTION relay_find_tenant(text, text) FROM PUBLIC")
        db.execute_sql("ALTER FUNCTION relay_find_api_key(text) RESET search_path")
        db.execute_sql(
            "CREATE OR REPLACE FUNCTION relay_find_tenant(p_slug text, p_domain text)"
            " RETURNS TABLE (tenant_id text, slug text) LANGUAGE sql STABLE SECURITY DEFINER"
            " SET search_path = pg_catalog, public, pg_temp SET TimeZone = 'UTC'"
            " AS $$ SELECT id, slug FROM tenants $$"
        )
        found = findings()
        assert len(found) == 2
        assert "relay_find_api_key(text) has settings" in found[0]
        assert "relay_find_tenant(text, text) has a body other than" in found[1]
        # relay_find_api_key is 0012's since; relay_find_tenant still 0010's.
        assert "relay-peewee rollback --to 12" in found[0]
        assert "relay-peewee rollback --to 10" in found[1]
        db.execute_sql("DROP FUNCTION relay_find_api_key(text)")
        assert "relay_find_api_key(text) is missing" in findings()[0]
    finally:
        db.close()


@pytest.mark.postgres_only
def test_the_audit_reports_0010s_api_key_lookup_once_0012_is_applied(pg_url: str) -> None:
    """Hole 4 brought back by hand (0010's body, which ignores is_active) is
    an audit error; rolling 0012 back makes 0010's body the expected one."""
    import importlib

    from relay_peewee.audit import audit_schema
    from relay_peewee.operations.commands import migrate, rollback

    old = importlib.import_module("relay_peewee.migrations.0010_relay_app_compat")
    db = open_database(pg_url)
    try:
        migrate(db)

        def findings() -> list[str]:
            return [f.message for f in audit_schema(db) if f.check == "lookup-function"]

        assert rollback(db, "12") == [
            "0014_foreign_key_indexes",
            "0013_audit_log_imports",
            "0012_api_keys_of_active_tenants",
        ]
        assert findings() == []  # 0010's body, expected as long as 0012 is not applied
        assert migrate(db).applied == [
            "0012_api_keys_of_active_tenants",
            "0013_audit_log_imports",
            "0014_foreign_key_indexes",
        ]
        assert findings() == []
        for statement in old.function_sql("public"):
            db.execute_sql(statement)
        [message] = findings()
        assert "relay_find_api_key(text) has a body other than the one migration 0012" in message
    finally:
        db.close()


@pytest.mark.sqlite_only
def test_sqlite_expiry_reads_any_iso_spelling(tmp_path: object) -> None:
    from relay_peewee.operations.commands import migrate

    db = open_database(f"sqlite:///{tmp_path}/keys.db")
    try:
        migrate(db)
        tenant = "default-tenant-000-0000-000000000000"
        db.execute_sql("INSERT INTO users (id, email, tenant_id) VALUES ('u', 'u@x', ?)", (tenant,))
        for raw, expires in (
            ("rlk_t_past", "2000-01-01T00:00:00+00:00"),
            ("rlk_t_future", "2999-01-01T00:00:00Z"),
            ("rlk_garbage", "next tuesday"),
        ):
            db.execute_sql(
                "INSERT INTO api_keys (id, user_id, key_hash, key_prefix, expires_at, tenant_id)"
                " VALUES (?, 'u', ?, 'p', ?, ?)",
                (raw, hash_api_key(raw), expires, tenant),
            )
        assert find_api_key(db, "rlk_t_past") is None
        assert find_api_key(db, "rlk_t_future") == ApiKeyMatch(tenant, "u", "rlk_t_future")
        assert find_api_key(db, "rlk_garbage") is None  # unreadable: refused, not accepted
    finally:
        db.close()


def test_a_deactivated_tenants_api_key_stops_working_as_its_host_does(
    relay_db: Database, two_tenants: TenantPair, owner: Database
) -> None:
    """Issue 19, hole 4: the host of a deactivated tenant resolves to nothing,
    and so must its keys - through ``find_api_key`` and, on PostgreSQL, the
    SECURITY DEFINER function called by raw SQL (as the application role on
    postgres_rls). Reactivated, the key works again."""
    b = two_tenants.b
    _key(b.id, "rlk_of_deactivated")
    assert find_api_key(relay_db, "rlk_of_deactivated") is not None
    param = "%s" if is_postgres(owner) else "?"
    owner.execute_sql(f"UPDATE tenants SET is_active = {param} WHERE id = {param}", (False, b.id))
    assert find_tenant_by_host(relay_db, f"{b.slug}.localhost") is None
    assert find_api_key(relay_db, "rlk_of_deactivated") is None
    if is_postgres(relay_db):
        raw = relay_db.execute_sql(
            "SELECT tenant_id FROM relay_find_api_key(%s)", (hash_api_key("rlk_of_deactivated"),)
        ).fetchall()
        assert raw == []
    owner.execute_sql(f"UPDATE tenants SET is_active = {param} WHERE id = {param}", (True, b.id))
    match = find_api_key(relay_db, "rlk_of_deactivated")
    assert match is not None and match.tenant_id == b.id
