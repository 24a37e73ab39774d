"""Issue 10: the attacks that reached another tenant in a migrated database, each refused.

A legacy Relay database with what real applications keep (a view, a
materialized view, SECURITY DEFINER functions) is migrated, the roles are
applied, and tenant B gets data; the attacks then run as tenant A through
the application role, with raw SQL and through the ORM. Each test names the
attack of the issue's "What was seen" list it replays.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any, NamedTuple

import psycopg2
import pytest
from helpers import PG_HOST, PG_PORT, PG_USER, Legacy
from peewee import Database, IntegrityError, Value

import relay_peewee
from relay_peewee import tenant_context, unscoped
from relay_peewee.audit import Finding, audit_schema
from relay_peewee.database import open_database
from relay_peewee.errors import CrossTenantWrite, RelayError
from relay_peewee.models import DEFAULT_TENANT_ID, AuditLog, Skill, Tenant, UsageEvent
from relay_peewee.operations.commands import migrate
from relay_peewee.operations.roles import create_roles
from relay_peewee.tenancy.rls import bypass_scope
from relay_peewee.testing import TenantPair

B = "tenant-b-0000-0000-0000-000000000000"


def _checks(findings: list[Finding], severity: str = "error") -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in findings:
        if f.severity == severity:
            out.setdefault(f.check, set()).add(f.table)
    return out


# --- PostgreSQL: a migrated legacy database, attacked through the app role ---


class Attacked(NamedTuple):
    owner: Database
    dbname: str
    app: str
    admin: str
    a_skill: str
    b_skill: str

    def url(self, role: str, scheme: str = "postgresql") -> str:
        return f"{scheme}://{role}@{PG_HOST}:{PG_PORT}/{self.dbname}"

    def connect_as_app(self) -> Any:
        conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=self.app, dbname=self.dbname)
        return conn

    def audit(self) -> list[Finding]:
        return audit_schema(self.owner, app_role=self.app, admin_role=self.admin)


LEGACY_OBJECTS = [
    "CREATE MATERIALIZED VIEW skill_matview AS SELECT s.id, s.slug FROM skills s",
    """CREATE FUNCTION read_skills() RETURNS SETOF text LANGUAGE sql SECURITY DEFINER
       AS 'SELECT id FROM skills'""",
    """CREATE FUNCTION bump_uses(skill text) RETURNS void LANGUAGE sql SECURITY DEFINER
       AS 'UPDATE skills SET total_uses = total_uses + 1 WHERE id = skill'""",
]


@pytest.fixture
def attacked(pg_legacy: Legacy) -> Iterator[Attacked]:
    owner = pg_legacy.db
    for statement in LEGACY_OBJECTS:
        owner.execute_sql(statement)
    migrate(owner)
    owner.execute_sql(
        "INSERT INTO tenants (id, name, slug, is_active, plan, created_at, updated_at)"
        " VALUES (%s, 'B', 'b', true, 'freemium', now(), now())",
        (B,),
    )
    owner.execute_sql(
        "INSERT INTO skills (id, name, slug, description, category, content, tenant_id)"
        " VALUES ('b-skill', 'secret', 'secret', 'd', 'c', 'x', %s)",
        (B,),
    )
    owner.execute_sql("REFRESH MATERIALIZED VIEW skill_matview")
    suffix = secrets.token_hex(4)
    app, admin = f"relay_app_{suffix}", f"relay_admin_{suffix}"
    create_roles(owner, app, admin)
    # What a legacy deploy grants: the app may read the reporting objects.
    owner.execute_sql(f"GRANT SELECT ON skill_stats, skill_matview TO {app}")
    a_skill = owner.execute_sql(
        "SELECT id FROM skills WHERE tenant_id = %s ORDER BY id LIMIT 1", (DEFAULT_TENANT_ID,)
    ).fetchone()[0]
    try:
        yield Attacked(owner, str(owner.database), app, admin, a_skill, "b-skill")
    finally:
        owner.connect(reuse_if_open=True)
        owner.execute_sql(f"DROP OWNED BY {app}, {admin}")
        owner.execute_sql(f"DROP ROLE IF EXISTS {app}")
        owner.execute_sql(f"DROP ROLE IF EXISTS {admin}")


def _as_tenant_a(conn: Any) -> Any:
    cur = conn.cursor()
    cur.execute("SELECT set_config('app.current_tenant_id', %s, true)", (DEFAULT_TENANT_ID,))
    return cur


@pytest.mark.postgres_only
def test_attack_1_a_view_over_skills_shows_only_the_callers_tenant(attacked: Attacked) -> None:
    conn = attacked.connect_as_app()
    try:
        cur = _as_tenant_a(conn)
        cur.execute("SELECT id FROM skill_stats")
        ids = {r[0] for r in cur.fetchall()}
        assert ids and attacked.b_skill not in ids
    finally:
        conn.close()


@pytest.mark.postgres_only
def test_attack_1_matviews_and_security_definers_are_audit_errors_with_fixes(
    attacked: Attacked,
) -> None:
    found = [f for f in attacked.audit() if f.severity == "error"]
    by_check = _checks(found)
    assert by_check.get("privileged-matview") == {"public.skill_matview"}
    assert by_check.get("security-definer") == {
        "public.read_skills()",
        "public.bump_uses(skill text)",
    }
    # Each one names its fix; applying them leaves nothing to report.
    for f in found:
        fix = f.message.split("fix: ", 1)[1]
        statement = fix.split(" (or ")[0].split(", or ")[0]
        attacked.owner.execute_sql(statement)
    assert _checks(attacked.audit()) == {}
    conn = attacked.connect_as_app()
    try:
        cur = _as_tenant_a(conn)
        cur.execute("SELECT read_skills()")  # SECURITY INVOKER now: the caller's rows
        ids = {r[0] for r in cur.fetchall()}
        assert attacked.a_skill in ids and attacked.b_skill not in ids
        with pytest.raises(psycopg2.Error, match="permission denied"):
            cur.execute("SELECT id FROM skill_matview")
    finally:
        conn.close()


@pytest.mark.postgres_only
def test_attack_1_objects_added_after_the_migration_are_reported(attacked: Attacked) -> None:
    owner = attacked.owner
    owner.execute_sql("CREATE VIEW later_view AS SELECT id, tenant_id FROM skills")
    owner.execute_sql("CREATE VIEW view_on_view AS SELECT id FROM skill_stats")
    owner.execute_sql(f"GRANT SELECT ON later_view, view_on_view TO {attacked.app}")
    owner.execute_sql("CREATE TABLE inbox (skill_id text)")
    owner.execute_sql(
        "CREATE RULE inbox_bump AS ON INSERT TO inbox DO ALSO "
        "UPDATE skills SET total_uses = total_uses + 1 WHERE id = NEW.skill_id"
    )
    by_check = _checks(attacked.audit())
    assert by_check["privileged-view"] == {"public.later_view", "public.view_on_view"}
    assert by_check["privileged-rule"] == {"public.inbox"}


@pytest.mark.postgres_only
def test_project_security_definers_in_the_registry_are_not_reported(attacked: Attacked) -> None:
    from relay_peewee.migrator.known_objects import KNOWN_FUNCTIONS, KnownFunction

    owner = attacked.owner
    body = "SELECT count(*) FROM skills WHERE id = skill"
    owner.execute_sql(
        "CREATE FUNCTION relay_test_lookup(skill text) RETURNS bigint LANGUAGE sql "
        f"SECURITY DEFINER SET search_path = pg_catalog, public AS '{body}'"
    )
    owner.execute_sql("REVOKE EXECUTE ON FUNCTION relay_test_lookup(text) FROM PUBLIC")
    owner.execute_sql(f"GRANT EXECUTE ON FUNCTION relay_test_lookup(text) TO {attacked.app}")
    name = "public.relay_test_lookup(skill text)"
    assert name in _checks(attacked.audit())["security-definer"]
    KNOWN_FUNCTIONS["relay_test_lookup"] = KnownFunction("relay_test_lookup", "skill text", body)
    try:
        assert name not in _checks(attacked.audit()).get("security-definer", set())
        # A hand edit of a registered function is reported again.
        owner.execute_sql(
            "CREATE OR REPLACE FUNCTION relay_test_lookup(skill text) RETURNS bigint "
            "LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public "
            "AS 'SELECT count(*) FROM skills'"
        )
        assert name in _checks(attacked.audit())["security-definer"]
    finally:
        del KNOWN_FUNCTIONS["relay_test_lookup"]


@pytest.mark.postgres_only
def test_0011s_trigger_function_passes_the_audit_until_it_is_changed(attacked: Attacked) -> None:
    # 0011's SECURITY DEFINER trigger function (it must see every tenant's
    # skills) is registered, pinned and not PUBLIC's: nothing to report...
    # Granted to the application role, so the audit looks at it at all.
    name, fn = "public.relay_usage_events_skill_tenant()", "relay_usage_events_skill_tenant()"
    owner = attacked.owner
    owner.execute_sql(f"GRANT EXECUTE ON FUNCTION {fn} TO {attacked.app}")
    assert name not in _checks(attacked.audit()).get("security-definer", set())
    # ...but executable by PUBLIC, or edited by hand, it is reported.
    owner.execute_sql(f"GRANT EXECUTE ON FUNCTION {fn} TO PUBLIC")
    assert name in _checks(attacked.audit())["security-definer"]
    owner.execute_sql(f"REVOKE EXECUTE ON FUNCTION {fn} FROM PUBLIC")
    assert name not in _checks(attacked.audit()).get("security-definer", set())
    owner.execute_sql(
        f"CREATE OR REPLACE FUNCTION {fn} RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER"
        " SET search_path = pg_catalog, public AS $$ BEGIN RETURN NEW; END $$"
    )
    assert name in _checks(attacked.audit())["security-definer"]


@pytest.mark.postgres_only
def test_attack_4_audit_logs_are_per_tenant_and_timestamped_by_the_database(
    attacked: Attacked,
) -> None:
    owner = attacked.owner
    owner.execute_sql(
        "INSERT INTO audit_logs (id, tenant_id, action, metadata, created_at) VALUES"
        " (gen_random_uuid(), %s, 'tenant.unscoped', '{\"reason\": \"b secret\"}', now()),"
        " (gen_random_uuid(), NULL, 'system.event', NULL, now())",
        (B,),
    )
    conn = attacked.connect_as_app()
    try:
        cur = _as_tenant_a(conn)
        cur.execute(
            "SELECT count(*) FROM audit_logs WHERE tenant_id IS DISTINCT FROM %s",
            (DEFAULT_TENANT_ID,),
        )
        assert cur.fetchone()[0] == 0  # neither B's events nor system events
        with pytest.raises(psycopg2.Error, match="row-level security"):
            cur.execute(
                "INSERT INTO audit_logs (id, tenant_id, action, created_at)"
                " VALUES (gen_random_uuid(), %s, 'forged', now())",
                (B,),
            )
        conn.rollback()
        cur = _as_tenant_a(conn)
        cur.execute(
            "INSERT INTO audit_logs (id, tenant_id, action, created_at) VALUES"
            " (gen_random_uuid(), %s, 'backdated', '2020-01-01') RETURNING created_at",
            (DEFAULT_TENANT_ID,),
        )
        assert cur.fetchone()[0].year >= 2026
        conn.commit()
    finally:
        conn.close()


@pytest.mark.postgres_only
def test_attack_5_the_app_role_cannot_write_tenants(attacked: Attacked) -> None:
    conn = attacked.connect_as_app()
    try:
        cur = _as_tenant_a(conn)
        cur.execute("SELECT count(*) FROM tenants")  # reading stays allowed
        assert cur.fetchone()[0] == 2
        for sql in (
            f"UPDATE tenants SET name = 'pwned' WHERE id = '{B}'",
            "INSERT INTO tenants (id, name, slug, is_active, plan, created_at, updated_at)"
            " VALUES ('evil', 'E', 'evil', true, 'freemium', now(), now())",
            f"DELETE FROM tenants WHERE id = '{B}'",
        ):
            with pytest.raises(psycopg2.Error, match="permission denied for table tenants"):
                cur.execute(sql)
            conn.rollback()
            cur = _as_tenant_a(conn)
    finally:
        conn.close()


@pytest.mark.postgres_only
# psycopg3+pool is peewee's pooled psycopg 3 database; it too must reset.
@pytest.mark.parametrize("scheme", ["postgresql+pool", "psycopg3+pool"])
def test_attack_6_a_pooled_connection_forgets_session_state(
    attacked: Attacked, scheme: str
) -> None:
    owner = attacked.owner
    side = f"relay_side_{secrets.token_hex(3)}"
    owner.execute_sql(f"CREATE ROLE {side} NOLOGIN")
    owner.execute_sql(f"GRANT {side} TO {attacked.app}")
    db = open_database(attacked.url(attacked.app, scheme) + "?max_connections=1")
    try:
        db.execute_sql("SELECT set_config('app.current_tenant_id', %s, false)", (B,))
        db.execute_sql(f"SET ROLE {side}")
        first = db.connection()
        db.close()  # checked in
        db.connect()
        assert db.connection() is first  # the same connection, reset
        assert db.execute_sql("SELECT current_user").fetchone()[0] == attacked.app
        assert db.execute_sql("SELECT id FROM skills").fetchall() == []
        setting = "SELECT current_setting('app.current_tenant_id', true)"
        assert db.execute_sql(setting).fetchone()[0] in (None, "")
    finally:
        db.close_all()  # type: ignore[attr-defined]
        owner.execute_sql(f"DROP ROLE {side}")


@pytest.mark.postgres_only
def test_attack_8_the_audit_reports_a_privileged_app_role(attacked: Attacked) -> None:
    owner, app, admin = attacked.owner, attacked.app, attacked.admin
    assert not {"app-role-superuser", "app-role-bypassrls"} & set(_checks(attacked.audit()))
    owner.execute_sql(f"ALTER ROLE {app} BYPASSRLS")
    assert "app-role-bypassrls" in _checks(attacked.audit())
    owner.execute_sql(f"ALTER ROLE {app} NOBYPASSRLS SUPERUSER")
    assert "app-role-superuser" in _checks(attacked.audit())
    owner.execute_sql(f"ALTER ROLE {app} NOSUPERUSER")
    owner.execute_sql(f"ALTER TABLE ratings OWNER TO {app}")
    assert "app-role-owner" in _checks(attacked.audit())
    owner.execute_sql(f"ALTER TABLE ratings OWNER TO {PG_USER}")
    other = f"relay_other_{secrets.token_hex(3)}"
    owner.execute_sql(f"CREATE ROLE {other} NOLOGIN BYPASSRLS")
    try:
        owner.execute_sql(f"GRANT {other} TO {app}")
        assert "app-role-member" in _checks(attacked.audit())
    finally:
        owner.execute_sql(f"DROP ROLE {other}")
    create_roles(owner, app, admin, allow_set_role=True)  # the documented opt-in
    assert "app-role-set-role" in _checks(attacked.audit(), "warning")
    assert "app-role-member" not in _checks(attacked.audit())
    owner.execute_sql(f"GRANT INSERT ON tenants TO {app}")
    assert _checks(attacked.audit())["app-role-tenants"] == {"tenants"}


@pytest.mark.postgres_only
def test_attack_8_the_audit_reports_weakened_policies_and_unchecked_keys(
    attacked: Attacked,
) -> None:
    owner = attacked.owner
    owner.execute_sql("CREATE POLICY open_door ON skills USING (true)")
    owner.execute_sql("DROP POLICY tenant_isolation ON ratings")
    owner.execute_sql(
        "CREATE POLICY tenant_isolation ON ratings USING (tenant_id IS NOT NULL) "
        "WITH CHECK (tenant_id = current_setting('app.current_tenant_id', true))"
    )
    owner.execute_sql("ALTER TABLE api_keys DROP CONSTRAINT api_keys_user_id_tenant_fkey")
    owner.execute_sql(
        "ALTER TABLE api_keys ADD CONSTRAINT api_keys_user_id_tenant_fkey FOREIGN KEY "
        "(tenant_id, user_id) REFERENCES users (tenant_id, id) NOT VALID"
    )
    by_check = _checks(attacked.audit())
    assert by_check["rls-extra-policy"] == {"skills"}
    assert by_check["rls-policy-changed"] == {"ratings"}
    assert by_check["tenant-reference-not-valid"] == {"api_keys"}


@pytest.mark.postgres_only
def test_unscoped_needs_its_admin_connection_in_the_recommended_setup(
    attacked: Attacked,
) -> None:
    db = relay_peewee.connect(attacked.url(attacked.app))
    try:
        with (
            tenant_context(DEFAULT_TENANT_ID),
            pytest.raises(RelayError, match="admin_url"),
            unscoped("no admin connection configured"),
        ):
            pytest.fail("left the tenant without a way to")
    finally:
        db.close()
    db = relay_peewee.connect(attacked.url(attacked.app), admin_url=attacked.url(attacked.admin))
    try:
        with tenant_context(DEFAULT_TENANT_ID):
            with unscoped("support ticket 7"):
                assert Skill.select().where(Skill.id == attacked.b_skill).count() == 1
            # Back on the application's own connection, bound again.
            assert (
                db.execute_sql("SELECT count(*) FROM skills WHERE id = 'b-skill'").fetchone()[0]
                == 0
            )
            assert db.execute_sql("SELECT current_user").fetchone()[0] == attacked.app
    finally:
        db.close()


# --- both backends, through the ORM (and the app role on postgres_rls) -------


def _b_skill(pair: TenantPair) -> str:
    return str(pair.rows_of(pair.b).skills[0].id)


def test_attack_2_unscoped_leaves_its_trace_whatever_the_caller_does(
    two_tenants: TenantPair, relay_db: Database
) -> None:
    a = two_tenants.a
    with pytest.raises(RuntimeError), tenant_context(a), relay_db.atomic():
        with unscoped("ticket 42: look at everything"):
            assert Skill.select().count() == 6
        raise RuntimeError("the request fails after the read")
    with bypass_scope():
        reasons = [
            e.metadata["reason"]
            for e in AuditLog.select().where(AuditLog.action == "tenant.unscoped")
        ]
    assert reasons == ["ticket 42: look at everything"]


def test_attack_4_the_orm_shows_and_writes_only_the_tenants_events(
    two_tenants: TenantPair,
) -> None:
    a, b = two_tenants.a, two_tenants.b
    with tenant_context(b), unscoped("b's secret reason"):
        pass
    with tenant_context(a):
        query = AuditLog.select()
        assert {e.tenant_id for e in query} <= {a.id}
        with pytest.raises(CrossTenantWrite):
            AuditLog.insert(tenant_id=b.id, action="forged").execute()
        with pytest.raises(CrossTenantWrite):
            AuditLog.insert(action="no tenant").execute()
    with tenant_context(b):
        # The same query, rendered again for b (clone(): peewee caches results).
        assert "tenant.unscoped" in {e.action for e in query.clone()}


def test_attack_5_the_orm_refuses_tenant_writes_inside_a_tenant_context(
    two_tenants: TenantPair,
) -> None:
    a, b = two_tenants.a, two_tenants.b
    with tenant_context(a):
        assert Tenant.get_by_id(b.id).name == "Tenant B"  # reading is fine
        with pytest.raises(CrossTenantWrite):
            Tenant.update(name="pwned").where(Tenant.id == b.id).execute()
        with pytest.raises(CrossTenantWrite):
            Tenant.create(slug="evil", name="Evil")
        other = Tenant.get_by_id(b.id)
        other.is_active = False
        with pytest.raises(CrossTenantWrite):
            other.save()
        with pytest.raises(CrossTenantWrite):
            other.delete_instance()
    with bypass_scope():
        assert Tenant.get_by_id(b.id).is_active


def test_attack_7_a_subquery_cannot_smuggle_another_tenants_id(two_tenants: TenantPair) -> None:
    a = two_tenants.a
    b_skill = _b_skill(two_tenants)
    with tenant_context(a):
        with pytest.raises(CrossTenantWrite):
            UsageEvent.create(tool_name="x", skill=Skill.select(Value(b_skill)).limit(1))
        own = Skill.select(Skill.id).where(Skill.slug == "alpha")
        event = UsageEvent.create(tool_name="x", skill=own)
        assert UsageEvent.get_by_id(event.id).skill.slug == "alpha"


@pytest.mark.parametrize("column", ["forked_from_id", "published_version_id", "draft_version_id"])
def test_attack_7_every_reference_column_is_checked(two_tenants: TenantPair, column: str) -> None:
    a, b = two_tenants.a, two_tenants.b
    theirs = two_tenants.rows_of(b)
    ours = two_tenants.rows_of(a)
    foreign = theirs.skills[0].id if column == "forked_from_id" else theirs.versions[0].id
    own = ours.skills[1].id if column == "forked_from_id" else ours.versions[0].id
    new = {"name": "n", "slug": "fork", "description": "d", "category": "c", "content": "x"}
    with tenant_context(a):
        with pytest.raises(CrossTenantWrite):
            Skill.create(**new, **{column: foreign})
        skill = Skill.create(**new, **{column: own})
        assert getattr(Skill.get_by_id(skill.id), column) == own
        with pytest.raises(CrossTenantWrite):
            Skill.update(**{column: foreign}).where(Skill.id == skill.id).execute()
        assert getattr(Skill.get_by_id(skill.id), column) == own


# --- SQLite ------------------------------------------------------------------


@pytest.fixture
def sqlite_db(tmp_path: Any) -> Iterator[Database]:
    db = relay_peewee.connect(f"sqlite:///{tmp_path / 'relay.db'}")
    migrate(db)
    try:
        yield db
    finally:
        db.close()


@pytest.mark.sqlite_only
def test_attack_3_sqlite_replace_cannot_rewrite_an_event(sqlite_db: Database) -> None:
    with tenant_context(DEFAULT_TENANT_ID), unscoped("the original reason"):
        pass
    (event,) = list(AuditLog.select())
    key = AuditLog.id.db_value(event.id)
    for verb in ("REPLACE", "INSERT OR REPLACE"):
        with pytest.raises(IntegrityError, match="append-only"):
            sqlite_db.execute_sql(
                f"{verb} INTO audit_logs (id, action, created_at) "
                "VALUES (?, 'forged', CURRENT_TIMESTAMP)",
                (key,),
            )
    with pytest.raises(CrossTenantWrite):
        AuditLog.replace(id=event.id, action="forged").execute()
    with pytest.raises(IntegrityError, match="append-only"):
        AuditLog.insert(id=event.id, action="forged").on_conflict_replace().execute()
    with pytest.raises(IntegrityError, match="current time"):
        sqlite_db.execute_sql(
            "INSERT INTO audit_logs (id, action, created_at) VALUES ('x', 'old', '2020-01-01')"
        )
    (again,) = list(AuditLog.select())
    assert (again.action, again.metadata) == ("tenant.unscoped", event.metadata)


@pytest.mark.sqlite_only
def test_sqlite_unscoped_inside_a_write_transaction_is_refused(sqlite_db: Database) -> None:
    with tenant_context(DEFAULT_TENANT_ID), sqlite_db.atomic():
        Skill.create(name="n", slug="s", description="d", category="c", content="x")
        with (
            pytest.raises(RelayError, match="enter unscoped\\(\\) before the transaction"),
            unscoped("cannot commit its row first"),
        ):
            pytest.fail("entered without a committed trace")


@pytest.mark.sqlite_only
def test_attack_8_sqlite_rows_written_with_foreign_keys_off_are_reported(
    sqlite_db: Database,
) -> None:
    assert _checks(audit_schema(sqlite_db)) == {}
    sqlite_db.execute_sql(
        "INSERT INTO tenants (id, name, slug, is_active, plan, created_at, updated_at)"
        " VALUES (?, 'B', 'b', 1, 'f', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        (B,),
    )
    with tenant_context(B):
        Skill.create(name="n", slug="s", description="d", category="c", content="x", id="b-s")
    # Another tool: SQLite's default is foreign_keys off.
    other = open_database(f"sqlite:///{sqlite_db.database}")
    other.pragma("foreign_keys", 0)
    other.execute_sql(
        "INSERT INTO skill_versions (id, skill_id, version, content_url, content_hash,"
        " content_type, name, description, created_at, tenant_id) VALUES ('v', 'b-s', 1, 'u',"
        " 'h', 't', 'n', 'd', CURRENT_TIMESTAMP, ?)",
        (DEFAULT_TENANT_ID,),
    )
    other.close()
    assert _checks(audit_schema(sqlite_db))["foreign-key-violation"] == {"skill_versions"}
