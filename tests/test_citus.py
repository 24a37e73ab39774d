"""relay_peewee on a real Citus cluster: a migrated database distributed by
``relay-peewee distribute``, then attacked the way production would be - as
the application role under forced RLS, through the coordinator, with the ORM
and with raw SQL.

One database for the module (building and distributing it is most of the
cost); each test leaves the rows it found. The cluster is the one of
``shared/citus/cluster.sh`` (``$RELAY_TEST_CITUS_URL``, workers in
``$RELAY_TEST_CITUS_WORKERS``): unreachable, the tests skip - and fail under
CI=true, where ``.ci/run`` starts it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse, urlunparse

import pytest
from peewee import Database, IntegrityError, ProgrammingError, TextField

import relay_peewee
from relay_peewee import tenant_context, unscoped
from relay_peewee.database.citus import SYSTEM_TENANT_ID, known_citus
from relay_peewee.migrator.backends import POLICY_PREDICATE
from relay_peewee.models import AuditLog, Skill, Tenant, User
from relay_peewee.operations import commands
from relay_peewee.operations.distribute import distribute, distribute_plan, distributed_tables
from relay_peewee.operations.lookups import find_api_key, find_tenant_by_host
from relay_peewee.tenancy import TenantModel
from relay_peewee.testing import SAMPLE_SLUGS, TenantPair, populate_tenant
from relay_peewee.testing.backends import (
    connect_as_app_role,
    create_test_roles,
    drop_test_roles,
)

pytestmark = [pytest.mark.citus, pytest.mark.postgres_only]

CITUS_URL = os.environ.get("RELAY_TEST_CITUS_URL", "postgresql://root@127.0.0.1:5440/postgres")
WORKERS = os.environ.get("RELAY_TEST_CITUS_WORKERS", "127.0.0.1:5441,127.0.0.1:5442").split(",")
DRIVER = os.environ.get("RELAY_TEST_DRIVER", "psycopg2")
RAW_KEY = "relay-citus-test-key"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the Citus cluster is required in CI (.ci/run starts it): {reason}")
    pytest.skip(f"no Citus cluster: {reason}")


def _node(url: str, port: int | None = None, dbname: str = "postgres") -> Any:
    import psycopg2

    parsed = urlparse(url)
    conn = psycopg2.connect(
        host=parsed.hostname,
        port=port or parsed.port,
        user=parsed.username,
        dbname=dbname,
        connect_timeout=3,
    )
    conn.autocommit = True
    return conn


def _with(url: str, dbname: str, scheme: str = "postgresql") -> str:
    return urlunparse(urlparse(url)._replace(path=f"/{dbname}", scheme=scheme))


def _ports() -> list[int]:
    return [int(urlparse(CITUS_URL).port or 5432)] + [int(w.rsplit(":", 1)[1]) for w in WORKERS]


@pytest.fixture(scope="module")
def cluster_db() -> Iterator[str]:
    """A new database on the coordinator and both workers, workers registered."""
    yield from _cluster_database()


def _cluster_database() -> Iterator[str]:
    try:
        conns = [_node(CITUS_URL, port) for port in _ports()]
    except Exception as exc:
        _unavailable(str(exc).strip().splitlines()[0])
    name = f"relay_citus_{secrets.token_hex(4)}"
    host = urlparse(CITUS_URL).hostname
    try:
        for conn in conns:
            conn.cursor().execute(f'CREATE DATABASE "{name}"')
            with _node(CITUS_URL, conn.info.port, name) as db:
                db.cursor().execute("CREATE EXTENSION citus")
        with _node(CITUS_URL, None, name) as coord:
            cur = coord.cursor()
            cur.execute("SELECT citus_set_coordinator_host(%s, %s)", (host, _ports()[0]))
            for worker in WORKERS:
                w_host, w_port = worker.rsplit(":", 1)
                cur.execute("SELECT citus_add_node(%s, %s)", (w_host, int(w_port)))
        yield _with(CITUS_URL, name)
    finally:
        for conn in conns:
            conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.close()


@pytest.fixture(scope="module")
def distributed(cluster_db: str) -> Iterator[tuple[str, TenantPair, tuple[str, str]]]:
    """Migrated, populated (two tenants, an API key), distributed, roles made."""
    owner = relay_peewee.connect(cluster_db)
    commands.migrate(owner)
    a = commands.create_tenant(owner, "acme", "Acme")
    b = commands.create_tenant(owner, "globex", "Globex")
    pair = TenantPair(a, b, {a.id: populate_tenant(a), b.id: populate_tenant(b)})
    owner.execute_sql(
        "UPDATE api_keys SET key_hash = encode(sha256(%s::bytea), 'hex') WHERE id = %s",
        (RAW_KEY, str(pair.rows_of(a).api_keys[0].id)),
    )
    plan = distribute(owner)
    assert "users" in plan.distributed and plan.reference == ["tenants"]
    roles = create_test_roles(owner)
    owner.close()
    try:
        yield _with(cluster_db, urlparse(cluster_db).path.lstrip("/"), _scheme()), pair, roles
    finally:
        drop_test_roles(cluster_db, roles)


def _scheme() -> str:
    return "psycopg3" if DRIVER == "psycopg3" else "postgresql"


@pytest.fixture
def app(distributed: tuple[str, TenantPair, tuple[str, str]]) -> Iterator[Database]:
    url, _, roles = distributed
    db = connect_as_app_role(url, roles)
    try:
        yield db
    finally:
        db.close()


@pytest.fixture
def pair(distributed: tuple[str, TenantPair, tuple[str, str]]) -> TenantPair:
    return distributed[1]


def test_distribute_made_the_layout_citus_needs(app: Database, cluster_db: str) -> None:
    owner = relay_peewee.connect(cluster_db)
    try:
        tables = distributed_tables(owner)
        assert tables["tenants"] == "n" and tables["relay_user_emails"] == "n"
        assert {t for t, m in tables.items() if m == "h"} >= {"users", "skills", "audit_logs"}
        # Co-located: one colocation group for every distributed table.
        groups = owner.execute_sql(
            "SELECT count(DISTINCT colocationid) FROM pg_dist_partition WHERE partmethod = 'h'"
        ).fetchone()[0]
        assert groups == 1
        assert distribute_plan(owner).statements == []  # idempotent: nothing left
    finally:
        owner.close()
    assert known_citus(app) is True


def test_the_app_role_sees_exactly_its_tenant_through_the_orm(
    app: Database, pair: TenantPair
) -> None:
    for tenant in (pair.a, pair.b):
        with tenant_context(tenant):
            skills = list(Skill.select())
            users = list(User.select())
            joined = list(Skill.select(Skill, User).join(User))
        assert sorted(s.slug for s in skills) == sorted(SAMPLE_SLUGS)
        assert {s.tenant_id for s in skills} == {tenant.id}
        assert {u.email for u in users} == {u.email for u in pair.rows_of(tenant).users}
        assert {s.tenant_id for s in joined} == {tenant.id}


def test_raw_sql_as_the_app_role_sees_and_writes_only_its_tenant(
    app: Database, pair: TenantPair
) -> None:
    a, b = pair.a, pair.b
    with tenant_context(a):
        # No tenant_id in the WHERE: a multi-shard query, filtered by RLS on every worker.
        rows = app.execute_sql("SELECT DISTINCT tenant_id FROM skills").fetchall()
        other = app.execute_sql("SELECT count(*) FROM skills WHERE tenant_id = %s", (b.id,))
        assert other.fetchone()[0] == 0
    assert rows == [(a.id,)]
    with tenant_context(a):
        # The registry of every tenant's emails: this tenant's alone, to raw SQL too.
        owners = app.execute_sql("SELECT DISTINCT tenant_id FROM relay_user_emails").fetchall()
    assert owners == [(a.id,)]
    with pytest.raises(ProgrammingError, match="row-level security"), tenant_context(a):
        app.execute_sql(
            "INSERT INTO users (id, email, tenant_id) VALUES ('x', 'x@x.example', %s)",
            (b.id,),
        )
    # Outside any context: nothing at all.
    assert app.execute_sql("SELECT count(*) FROM users").fetchone()[0] == 0


def test_a_scoped_query_is_a_single_shard_router_query_with_rls_on_the_worker(
    app: Database, pair: TenantPair
) -> None:
    with tenant_context(pair.a):
        query = Skill.select().where(Skill.slug == SAMPLE_SLUGS[0])
        sql, params = query.sql()
        plan = "\n".join(r[0] for r in app.execute_sql(f"EXPLAIN {sql}", params).fetchall())
    # Citus 13 says "router" only in its debug messages: one task is the router plan.
    assert "Task Count: 1" in plan, plan
    assert "current_setting('app.current_tenant_id'" in plan, plan  # the policy, on the shard


def test_writes_joins_and_global_uniques(app: Database, pair: TenantPair) -> None:
    a, b = pair.a, pair.b
    taken = pair.rows_of(b).users[0].email
    with tenant_context(a):
        user = User.create(email=f"new-{secrets.token_hex(3)}@acme.example")
        user.email = f"renamed-{secrets.token_hex(3)}@acme.example"
        user.save()
        # Another tenant's address: refused by the registry's key, the same
        # error a single PostgreSQL's global unique gives.
        with pytest.raises(IntegrityError):
            User.create(email=taken)
        user.delete_instance()
    with tenant_context(b):
        assert User.select().where(User.email == taken).count() == 1


def test_api_key_lookup_and_system_events(app: Database, pair: TenantPair) -> None:
    match = find_api_key(app, RAW_KEY)
    assert match is not None and match.tenant_id == pair.a.id
    assert find_api_key(app, "no-such-key") is None
    host = find_tenant_by_host(app, f"{pair.b.slug}.localhost")
    assert host is not None and host.tenant_id == pair.b.id
    with unscoped("citus test"):
        events = AuditLog.select().where(AuditLog.action == "tenant.unscoped")
        assert events.count() >= 1
        system = AuditLog.select().where(AuditLog.tenant_id == SYSTEM_TENANT_ID).count()
    assert system >= 1  # the tenant.create events of the fixture, and this unscoped()


def test_async_tenant_context_reaches_the_workers(
    distributed: tuple[str, TenantPair, tuple[str, str]],
) -> None:
    pytest.importorskip("asyncpg")
    from playhouse.pwasyncio import AsyncPostgresqlDatabase

    url, pair, roles = distributed
    parsed = urlparse(url)
    adb = AsyncPostgresqlDatabase(
        parsed.path.lstrip("/"), host=parsed.hostname, port=parsed.port, user=roles[0]
    )
    previous = relay_peewee.database.database_proxy.obj
    relay_peewee.connect(adb)

    async def slugs(tenant: Tenant) -> list[str]:
        async with tenant_context(tenant):
            return sorted(s.slug for s in await Skill.select().aexecute())

    async def run() -> list[list[str]]:
        try:
            return await asyncio.gather(slugs(pair.a), slugs(pair.b))
        finally:
            await adb.close_pool()

    try:
        assert asyncio.run(run()) == [sorted(SAMPLE_SLUGS)] * 2
        assert known_citus(adb) is True
    finally:
        relay_peewee.database.database_proxy.initialize(previous)


def test_a_tenant_moved_to_another_node_keeps_working(
    app: Database, pair: TenantPair, cluster_db: str
) -> None:
    owner = relay_peewee.connect(cluster_db)
    try:
        shard, port = owner.execute_sql(
            "SELECT s.shardid, n.nodeport FROM pg_dist_shard s"
            " JOIN pg_dist_placement p USING (shardid) JOIN pg_dist_node n USING (groupid)"
            " WHERE s.logicalrelid = 'users'::regclass"
            " AND s.shardid = get_shard_id_for_distribution_column('users', %s)",
            (pair.a.id,),
        ).fetchone()
        target = next(int(w.rsplit(":", 1)[1]) for w in WORKERS if int(w.rsplit(":", 1)[1]) != port)
        host = urlparse(CITUS_URL).hostname
        owner.execute_sql(
            "SELECT citus_move_shard_placement(%s, %s, %s, %s, %s, 'block_writes')",
            (shard, host, port, host, target),
        )
    finally:
        owner.close()
    with tenant_context(pair.a):
        assert sorted(s.slug for s in Skill.select()) == sorted(SAMPLE_SLUGS)
        user = User.create(email=f"moved-{secrets.token_hex(3)}@acme.example")
        user.delete_instance()


def test_distribute_refuses_a_plain_postgresql_with_one_line(pg_url: str) -> None:
    from relay_peewee.errors import RelayError

    db = relay_peewee.connect(pg_url)
    try:
        with pytest.raises(RelayError, match="needs a Citus coordinator"):
            distribute(db)
    finally:
        db.close()


def test_moving_a_user_recreates_them_and_their_keys_in_the_new_tenant(
    app: Database, pair: TenantPair, cluster_db: str
) -> None:
    owner = relay_peewee.connect(cluster_db)
    try:
        with tenant_context(pair.a):
            newcomer = User.create(email=f"mover-{secrets.token_hex(3)}@acme.example")
        move = commands.move_user(owner, newcomer.email, pair.b.slug)
        assert (move.from_tenant, move.to_tenant) == (pair.a.id, pair.b.id)
        registered = owner.execute_sql(
            "SELECT tenant_id FROM relay_user_emails WHERE email = %s", (newcomer.email,)
        ).fetchone()
        assert registered == (pair.b.id,)
    finally:
        owner.close()
    with tenant_context(pair.b):
        assert User.get(User.email == newcomer.email).id == newcomer.id
    with tenant_context(pair.a):
        assert not User.select().where(User.id == newcomer.id).exists()


def test_audit_reads_citus_catalog_and_finds_nothing_after_distribute(
    cluster_db: str, distributed: tuple[str, TenantPair, tuple[str, str]]
) -> None:
    from relay_peewee.audit import audit_schema

    app_role, admin_role = distributed[2]
    owner = relay_peewee.connect(cluster_db)
    try:
        findings = audit_schema(
            owner, citus=True, migrations=(), app_role=app_role, admin_role=admin_role
        )
        # Relay's migrations after distribution: nothing pending, and they still apply.
        assert commands.migrate(owner).applied == []
    finally:
        owner.close()
    serious = [f for f in findings if f.severity in ("error", "warning")]
    assert serious == [], serious


def test_audit_of_a_citus_database_not_yet_distributed_names_what_distribute_fixes(
    cluster_db: str,
) -> None:
    from relay_peewee.audit.citus import check_citus

    owner = relay_peewee.connect(cluster_db)
    try:
        # A tenant table made after distribution: the catalog says it stays local.
        owner.execute_sql("CREATE TABLE late_notes (id text, tenant_id text NOT NULL)")
        findings = check_citus(owner, ["late_notes", "users"], {})
        assert [(f.table, f.check) for f in findings] == [("late_notes", "citus-not-distributed")]
        plan = distribute_plan(owner)
        assert plan.distributed == ["late_notes"] and plan.reference == []
    finally:
        owner.execute_sql("DROP TABLE late_notes")
        owner.close()


def test_the_command_shows_nothing_left_and_refuses_sqlite_in_one_line(
    cluster_db: str, distributed: Any, tmp_path: Any
) -> None:
    from click.testing import CliRunner

    from relay_peewee.cli import cli

    shown = CliRunner().invoke(cli, ["distribute", "--sql", "--database", cluster_db])
    assert shown.exit_code == 0 and "nothing to do" in shown.output
    sqlite = f"sqlite:///{tmp_path}/relay.db"
    assert CliRunner().invoke(cli, ["migrate", "-q", "--database", sqlite]).exit_code == 0
    refused = CliRunner().invoke(cli, ["distribute", "--database", sqlite])
    assert refused.exit_code == 1
    assert refused.output.strip().splitlines() == [
        "Error: distribute needs a Citus coordinator (CREATE EXTENSION citus); "
        "this database is not one"
    ]


def test_distribute_refuses_a_database_with_migrations_pending() -> None:
    from relay_peewee.errors import MigrationError

    for url in _cluster_database():
        db = relay_peewee.connect(url)
        try:
            commands.migrate(db, to="0005")
            with pytest.raises(MigrationError, match=r"pending \(0006_tenant_references first\)"):
                distribute(db)
            assert distributed_tables(db) == {}  # nothing was changed
        finally:
            db.close()


class CitusNote(TenantModel):
    """An application's own tenant table, made after `distribute` ran."""

    body = TextField()

    class Meta:
        table_name = "citus_app_notes"


def test_an_applications_own_tenant_model_distributed_later_is_isolated(
    app: Database, pair: TenantPair, cluster_db: str, distributed: Any
) -> None:
    app_role = distributed[2][0]
    owner = relay_peewee.connect(cluster_db)
    try:
        CitusNote.create_table()
        # One statement each: Citus forwards a DDL string to the workers whole.
        owner.execute_sql("ALTER TABLE citus_app_notes ENABLE ROW LEVEL SECURITY")
        owner.execute_sql("ALTER TABLE citus_app_notes FORCE ROW LEVEL SECURITY")
        owner.execute_sql(
            f"CREATE POLICY tenant_isolation ON citus_app_notes USING ({POLICY_PREDICATE})"
            f" WITH CHECK ({POLICY_PREDICATE})"
        )
        plan = distribute(owner)
        assert plan.distributed == ["citus_app_notes"]
        owner.execute_sql(f"GRANT SELECT, INSERT, UPDATE, DELETE ON citus_app_notes TO {app_role}")
        owner.execute_sql(f"GRANT USAGE ON SEQUENCE citus_app_notes_id_seq TO {app_role}")
    finally:
        owner.close()
    relay_peewee.database.database_proxy.initialize(app)
    with tenant_context(pair.a):
        CitusNote.create(body="a's note")
    with tenant_context(pair.b):
        assert list(CitusNote.select()) == []
        assert app.execute_sql("SELECT count(*) FROM citus_app_notes").fetchone()[0] == 0
        with pytest.raises(ProgrammingError, match="row-level security"):
            app.execute_sql(
                "INSERT INTO citus_app_notes (body, tenant_id) VALUES ('x', %s)", (pair.a.id,)
            )
    with tenant_context(pair.a):
        assert [n.body for n in CitusNote.select()] == ["a's note"]


def test_the_keys_and_triggers_keep_their_guarantees_for_raw_sql(
    app: Database, pair: TenantPair
) -> None:
    a, b = pair.a, pair.b
    with tenant_context(a):
        parent = Skill.create(
            name="p", slug="citus-parent", description="d", category="c", content="x"
        )
        child = Skill.create(
            name="c",
            slug="citus-child",
            description="d",
            category="c",
            content="x",
            forked_from=parent,
        )
        version = pair.rows_of(a).versions[0]
        app.execute_sql(
            "UPDATE skills SET published_version_id = %s WHERE tenant_id = %s AND id = %s",
            (version.id, a.id, child.id),
        )
        # ON DELETE SET NULL (col), Citus-style: a trigger on the referenced table.
        app.execute_sql(
            "DELETE FROM skill_versions WHERE tenant_id = %s AND id = %s",
            (version.id and a.id, version.id),
        )
        app.execute_sql("DELETE FROM skills WHERE tenant_id = %s AND id = %s", (a.id, parent.id))
        row = app.execute_sql(
            "SELECT forked_from_id, published_version_id FROM skills"
            " WHERE tenant_id = %s AND id = %s",
            (a.id, child.id),
        ).fetchone()
        assert row == (None, None)
    # A user nobody registered: the key to the registry refuses it.
    with pytest.raises(IntegrityError), tenant_context(a):
        app.execute_sql(
            "INSERT INTO users (id, email, tenant_id) VALUES ('raw', 'raw@acme.example', %s)",
            (a.id,),
        )
    # 0011's guarantee, by the trigger distribute puts in its place: a usage
    # event naming b's skill is refused; naming a's own is not.
    other_skill = pair.rows_of(b).skills[0]
    with pytest.raises(IntegrityError, match="skill of another tenant"), tenant_context(a):
        app.execute_sql(
            "INSERT INTO usage_events (tool_name, skill_id, tenant_id) VALUES ('t', %s, %s)",
            (other_skill.id, a.id),
        )
    with tenant_context(a):
        app.execute_sql(
            "INSERT INTO usage_events (tool_name, skill_id, tenant_id) VALUES ('t', %s, %s)",
            (pair.rows_of(a).skills[0].id, a.id),
        )
