"""A peewee app that is not Relay, on the tenancy core alone: examples/tweepee.

``relay_schema = false`` (issue 20): the database gets ``tenants``,
``audit_logs``, the history and the host lookup, and none of Relay's nine
tables. Here the example's legacy tables - peewee's Flask "twitter" shape,
built by its models as they were before tenancy and populated - are
migrated through the CLI from the example's folder (reading its
pyproject.toml) on SQLite and PostgreSQL, audited clean, given roles, and
attacked across tenants as the application role, with the ORM and raw SQL.
A database never changes base set: each command refuses the other one.
"""

from __future__ import annotations

import importlib
import json
import secrets
import shutil
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from click.testing import CliRunner, Result
from peewee import (
    CharField,
    Database,
    DateTimeField,
    ForeignKeyField,
    IntegrityError,
    Model,
    ProgrammingError,
)
from peewee import TextField as Text

import relay_peewee
from relay_peewee import CrossTenantWrite, tenant_context
from relay_peewee.cli import cli
from relay_peewee.database import catalog, open_database
from relay_peewee.migrator import CORE_MIGRATIONS, HISTORY_TABLE
from relay_peewee.models import TENANT_MODELS
from relay_peewee.operations.commands import create_tenant, migrate
from relay_peewee.testing import postgres_server_url, throwaway_postgres_database
from relay_peewee.testing.backends import connect_as_app_role, drop_test_roles

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tweepee"
APP = "tweepee.migrations"
CORE = [
    f"{CORE_MIGRATIONS}:{name}"
    for name in ("0001_tenants", "0002_audit_logs", "0003_audit_log_append_only")
]
CORE += [f"{CORE_MIGRATIONS}:0004_tenant_lookup", f"{CORE_MIGRATIONS}:0005_audit_log_imports"]
APPLIED = [*CORE, f"{APP}:0001_baseline", f"{APP}:0002_tenantize"]
DEFAULT_TENANT_ID = "default-tenant-000-0000-000000000000"
RELAY_TABLES = {m._meta.table_name for m in TENANT_MODELS}
APP_TABLES = ("user", "relationship", "message")
APP_TABLES_IN_ORDER = ("user", "message", "relationship")  # peewee's dependency order
WHEN = datetime(2021, 5, 4, 12, 0, 0)
_IGNORE = shutil.ignore_patterns("__pycache__", "*.db")

if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))


# --- the application as it was before tenancy ---------------------------------


def legacy_models(db: Database) -> list[type[Model]]:
    """peewee's twitter example's models, as the app had them: plain Models."""

    class User(Model):
        username = CharField(unique=True)
        password = CharField()
        email = CharField()
        join_date = DateTimeField()

        class Meta:
            database = db

    class Relationship(Model):
        from_user = ForeignKeyField(User, backref="relationships")
        to_user = ForeignKeyField(User, backref="related_to")

        class Meta:
            database = db
            indexes = ((("from_user", "to_user"), True),)

    class Message(Model):
        user = ForeignKeyField(User, backref="messages")
        content = Text()
        pub_date = DateTimeField(index=True)

        class Meta:
            database = db

    return [User, Relationship, Message]


class App(NamedTuple):
    url: str
    backend: str


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite_only),
        pytest.param("postgres", marks=pytest.mark.postgres_only),
    ]
)
def legacy_app(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[App]:
    """The app's populated database, as peewee created it; the CLI runs from its folder."""
    backend = request.param
    url = (
        str(request.getfixturevalue("pg_url"))
        if backend == "postgres"
        else (f"sqlite:///{tmp_path / 'tweepee.db'}")
    )
    db = open_database(url)
    user, relationship, message = legacy_models(db)
    db.create_tables([user, relationship, message])
    with db.atomic():
        users = [
            user.create(username=n, password="pw", email=f"{n}@example.com", join_date=WHEN)
            for n in ("ann", "bob", "cy", "dee")
        ]
        for a in users:
            for b in users:
                if a is not b and (a.id + b.id) % 2:
                    relationship.create(from_user=a, to_user=b)
            for i in range(3):
                message.create(user=a, content=f"{a.username} {i}", pub_date=WHEN)
    db.close()
    monkeypatch.chdir(EXAMPLE)
    yield App(url, backend)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def rows(db: Database) -> dict[str, list[tuple[str, ...]]]:
    """Every app row but its tenant_id, as text."""
    out = {}
    for table in APP_TABLES:
        cols = [c for c in catalog.table_columns(db, table) if c != "tenant_id"]
        select = ", ".join(f'"{c}"' for c in cols)
        found = db.execute_sql(f'SELECT {select} FROM "{table}"').fetchall()
        out[table] = sorted(tuple(map(str, r)) for r in found)
    return out


def tweepee_models() -> Any:
    return importlib.import_module("tweepee.models")


# --- through the CLI ---------------------------------------------------------


def test_the_cli_tenantizes_the_apps_populated_tables_without_relays(legacy_app: App) -> None:
    url = legacy_app.url
    db = open_database(url)
    before = rows(db)
    db.close()

    plan = run("migrate", "--sql", "--database", url)
    assert plan.exit_code == 0, plan.output
    assert 'CREATE TABLE "tenants"' in plan.output and "users" not in plan.output
    result = run("migrate", "--database", url, "-q")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f"applied: {name}" for name in APPLIED]

    db = open_database(url)
    try:
        tables = set(db.get_tables())
        assert not tables & RELAY_TABLES  # no `users` beside the app's `user`
        assert tables == {*APP_TABLES, "tenants", "audit_logs", HISTORY_TABLE} | (
            {"sqlite_sequence"} & tables
        )
        assert rows(db) == before  # every row kept
        for table in APP_TABLES:
            (others,) = db.execute_sql(
                f"SELECT count(*) FROM \"{table}\" WHERE tenant_id <> '{DEFAULT_TENANT_ID}'"
            ).fetchone()
            assert others == 0
    finally:
        db.close()

    for args in (["status"], ["audit"], ["makemigration", "--check"]):
        checked = run(*args, "--database", url)
        assert checked.exit_code == 0, checked.output
    audit = run("audit", "--database", url)
    assert "0 errors, 0 warnings" in audit.output
    assert run("migrate", "--database", url).output.strip() == "nothing to do."

    granted = run("roles")  # the SQL, printed: the app's tables, none of Relay's
    assert granted.exit_code == 0, granted.output
    assert 'ON "user", "message", "relationship" TO' in granted.output
    assert not any(f'"{t}"' in granted.output for t in RELAY_TABLES)
    created = run("tenants", "create", "--slug", "acme", "--name", "Acme", "--database", url)
    assert created.exit_code == 0, created.output
    listed = run("tenants", "list", "--json", "--database", url)
    assert sorted(t["slug"] for t in json.loads(listed.output)) == ["acme", "default"]
    moved = run("users", "move", "--email", "ann@example.com", "--to", "acme", "--database", url)
    assert moved.exit_code == 1
    assert moved.output.startswith("Error: users move needs Relay's users table")
    assert len(moved.output.splitlines()) == 1


def _second_tenant(owner: Database) -> tuple[str, int]:
    """Tenant acme with a user and a message of its own, written as the owner."""
    relay_peewee.connect(owner)
    acme = create_tenant(owner, "acme", "Acme", "acme.example")
    models = tweepee_models()
    with tenant_context(acme):
        carl = models.User.create(username="ann", password="x", email="a@acme", join_date=WHEN)
        models.Message.create(user=carl, content="acme's", pub_date=WHEN)
    return acme.id, carl.id


def test_the_application_role_cannot_cross_tenants(legacy_app: App) -> None:
    url = legacy_app.url
    assert run("migrate", "--database", url, "-q").exit_code == 0
    owner = open_database(url)
    acme, carl = _second_tenant(owner)
    models = tweepee_models()
    roles: tuple[str, str] | None = None
    try:
        if legacy_app.backend == "postgres":
            suffix = secrets.token_hex(4)
            roles = (f"tw_app_{suffix}", f"tw_admin_{suffix}")
            applied = run(
                "roles", "--apply", "--app-role", roles[0], "--admin-role", roles[1],
                "--database", url,
            )  # fmt: skip
            assert applied.exit_code == 0, applied.output
            audit = run(
                "audit", "--app-role", roles[0], "--admin-role", roles[1], "--database", url
            )
            assert audit.exit_code == 0, audit.output
            db = connect_as_app_role(url, roles)
        else:
            db = relay_peewee.connect(url)
        p = db.param
        with tenant_context(DEFAULT_TENANT_ID):
            # The ORM: this tenant's rows only, and no reference into acme's.
            assert {u.tenant_id for u in models.User.select()} == {DEFAULT_TENANT_ID}
            assert models.User.get_or_none(models.User.id == carl) is None
            with pytest.raises(CrossTenantWrite):
                models.Message.create(user=carl, content="x", pub_date=WHEN)
            # A serial key from the database (on PostgreSQL: its sequence granted).
            new = models.User.create(username="eve", password="x", email="e@x", join_date=WHEN)
            assert isinstance(new.id, int)
            # Raw SQL: the composite key refuses acme's user.
            with pytest.raises(IntegrityError), db.atomic():
                db.execute_sql(
                    "INSERT INTO message (tenant_id, user_id, content, pub_date)"
                    f" VALUES ({p}, {p}, 'x', {p})",
                    (DEFAULT_TENANT_ID, carl, WHEN),
                )
            with pytest.raises(IntegrityError), db.atomic():
                db.execute_sql(
                    "INSERT INTO relationship (tenant_id, from_user_id, to_user_id)"
                    f" VALUES ({p}, {p}, {p})",
                    (DEFAULT_TENANT_ID, new.id, carl),
                )
        if roles is not None:
            # Row-level security: raw SQL sees and changes its tenant's rows only.
            with tenant_context(DEFAULT_TENANT_ID), db.atomic():
                for table in ('"user"', "relationship", "message"):
                    seen = db.execute_sql(f"SELECT DISTINCT tenant_id FROM {table}").fetchall()
                    assert seen == [(DEFAULT_TENANT_ID,)]
                hit = db.execute_sql(
                    "UPDATE message SET content = 'x' WHERE tenant_id = %s", (acme,)
                )
                assert hit.rowcount == 0
                with pytest.raises(ProgrammingError, match="row-level security"), db.atomic():
                    db.execute_sql(
                        "INSERT INTO message (tenant_id, user_id, content, pub_date)"
                        " VALUES (%s, %s, 'x', %s)",
                        (acme, carl, WHEN),
                    )
            with db.atomic():  # no tenant at all: nothing
                assert db.execute_sql('SELECT count(*) FROM "user"').fetchone() == (0,)
        db.close()
        (acme_rows,) = owner.execute_sql(
            f"SELECT count(*) FROM message WHERE tenant_id = {owner.param}", (acme,)
        ).fetchone()
        assert acme_rows == 1  # untouched
    finally:
        owner.close()
        if roles is not None:
            drop_test_roles(url, roles)


def test_rollback_gives_the_app_its_tables_back_as_they_were(legacy_app: App) -> None:
    url = legacy_app.url
    db = open_database(url)
    before = rows(db), sorted(catalog.table_columns(db, "user"))
    db.close()
    # A bare number names the base set's migration: here the core's 0004.
    first = run("migrate", "--to", "4", "--database", url, "-q")
    assert first.output.splitlines() == [f"applied: {name}" for name in CORE[:4]], first.output
    status = run("status", "--database", url)
    assert status.exit_code == 1 and f"[ ] {APP}:0001_baseline" in status.output
    assert run("migrate", "--database", url, "-q").exit_code == 0
    reverted = run("rollback", "--to", f"{APP}:2", "--database", url, "-q")
    assert reverted.exit_code == 0, reverted.output
    assert reverted.output.strip() == f"reverted: {APP}:0002_tenantize"
    db = open_database(url)
    try:
        assert (rows(db), sorted(catalog.table_columns(db, "user"))) == before
    finally:
        db.close()
    # The adopted baseline created nothing (its tables were there): its down
    # would drop the app's own rows, so the drafted check_down refuses.
    past_baseline = run("rollback", "--to", f"{APP}:1", "--database", url, "-q")
    assert past_baseline.exit_code == 1, past_baseline.output
    assert "refusing to drop tables that hold rows: user (" in past_baseline.output
    db = open_database(url)
    try:
        assert (rows(db), sorted(catalog.table_columns(db, "user"))) == before
    finally:
        db.close()


# --- a database does not change base set ------------------------------------


def _state(url: str) -> Any:
    db = open_database(url)
    try:
        return sorted(db.get_tables()), db.execute_sql(
            f'SELECT "name" FROM "{HISTORY_TABLE}" ORDER BY "id"'
        ).fetchall()
    finally:
        db.close()


def test_each_command_refuses_the_other_base_set(legacy_app: App, tmp_path: Path) -> None:
    core = legacy_app.url
    assert run("migrate", "--database", core, "-q").exit_code == 0
    before = _state(core)
    for args in (
        ["migrate"],
        ["migrate", "--sql"],
        ["status"],
        ["rollback"],
        ["makemigration", "--check"],
        *([["roles", "--apply"]] if legacy_app.backend == "postgres" else []),
    ):
        refused = run(*args, "--relay-schema", "--database", core)
        assert refused.exit_code == 1, (args, refused.output)
        assert refused.output.startswith("Error: this database holds the tenancy core"), args
        assert len(refused.output.splitlines()) == 1
    audit = run("audit", "--relay-schema", "--database", core)
    assert audit.exit_code == 2 and "holds the tenancy core" in audit.output
    assert _state(core) == before

    # Relay's database, asked for the core alone (the example's pyproject says so).
    relay = (
        f"sqlite:///{tmp_path / 'relay.db'}"
        if legacy_app.backend == "sqlite"
        else core.rsplit("/", 1)[0] + "/" + core.rsplit("/", 1)[1] + "_relay"
    )
    if legacy_app.backend == "postgres":
        owner = open_database(core)
        owner.execute_sql(f'CREATE DATABASE "{relay.rsplit("/", 1)[1]}"')
        owner.close()
    try:
        relay_db = relay_peewee.connect(relay)
        migrate(relay_db)
        relay_db.close()
        before = _state(relay)
        for args in (["migrate"], ["status"], ["rollback"]):
            refused = run(*args, "--database", relay)
            assert refused.exit_code == 1
            assert refused.output.startswith(
                "Error: this database holds Relay's schema (its history lists 0001_baseline)"
            ), refused.output
        assert _state(relay) == before
    finally:
        if legacy_app.backend == "postgres":
            admin = open_database(core)
            admin.execute_sql(f'DROP DATABASE IF EXISTS "{relay.rsplit("/", 1)[1]}" WITH (FORCE)')
            admin.close()


def test_the_core_refuses_a_tenants_table_it_did_not_make(legacy_app: App) -> None:
    db = open_database(legacy_app.url)
    db.execute_sql("CREATE TABLE tenants (id TEXT PRIMARY KEY)")
    db.close()
    before = sorted(open_database(legacy_app.url).get_tables())
    refused = run("migrate", "--database", legacy_app.url)
    assert refused.exit_code == 1
    assert "tenants already exists but there is no relay_peewee_migrations" in refused.output
    assert sorted(open_database(legacy_app.url).get_tables()) == before


def test_relay_schema_must_be_a_boolean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.relay_peewee]\nrelay_schema = "no"\n')
    monkeypatch.chdir(tmp_path)
    refused = run("migrate", "--database", f"sqlite:///{tmp_path / 'x.db'}")
    assert refused.exit_code == 1
    assert "relay_schema must be true or false, not 'no'" in refused.output
    assert not (tmp_path / "x.db").exists()


# --- the core's tables are Relay's ------------------------------------------

_PG_CORE = [
    """SELECT table_name, column_name, data_type, is_nullable, column_default
         FROM information_schema.columns WHERE table_schema = current_schema()
          AND table_name IN ('tenants', 'audit_logs') ORDER BY 1, 2""",
    """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
        WHERE conrelid::regclass::text IN ('tenants', 'audit_logs') ORDER BY 1, 2""",
    """SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE tablename IN ('tenants', 'audit_logs') ORDER BY 1, 2""",
    """SELECT event_object_table, trigger_name, action_statement FROM information_schema.triggers
        WHERE event_object_table IN ('tenants', 'audit_logs') ORDER BY 1, 2""",
    """SELECT tablename, policyname, cmd, qual, with_check FROM pg_policies
        WHERE tablename IN ('tenants', 'audit_logs') ORDER BY 1, 2""",
    """SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class
        WHERE relname IN ('tenants', 'audit_logs') ORDER BY 1""",
    """SELECT proname, prosrc, prosecdef, proconfig FROM pg_proc
        WHERE proname IN ('relay_find_tenant', 'relay_audit_logs_append_only',
                          'relay_audit_logs_created_at') ORDER BY 1""",
]


def _core_catalog(db: Database) -> list[Any]:
    if db.param == "%s":
        return [db.execute_sql(q).fetchall() for q in _PG_CORE]
    return db.execute_sql(
        "SELECT type, name, sql FROM sqlite_master WHERE tbl_name IN ('tenants', 'audit_logs')"
        " ORDER BY type, name"
    ).fetchall()


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("sqlite", marks=pytest.mark.sqlite_only),
        pytest.param("postgres", marks=pytest.mark.postgres_only),
    ],
)
def test_the_cores_tables_are_those_relays_migrations_make(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """tenants, audit_logs, their triggers, policies and functions: one definition."""
    with ExitStack() as stack:
        if backend == "postgres":
            server = postgres_server_url(request.config)
            urls = [stack.enter_context(throwaway_postgres_database(server)) for _ in range(2)]
        else:
            urls = [f"sqlite:///{tmp_path / name}" for name in ("relay.db", "core.db")]
        found = []
        for url, relay_schema in zip(urls, (True, False), strict=True):
            db = relay_peewee.connect(url)
            migrate(db, relay_schema=relay_schema)
            found.append(_core_catalog(db))
            db.close()
        assert found[0] == found[1]
        assert found[0]  # there is something to compare


def test_the_example_application_tests_pass_through_the_plugin(
    pytester: pytest.Pytester,
) -> None:
    """Its relay_db is the core plus its migrations (read from its pyproject.toml), on
    every backend; on postgres_rls as an application role."""
    shutil.copytree(EXAMPLE, pytester.path, dirs_exist_ok=True, ignore=_IGNORE)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    # 7 tests x (sqlite, postgres, postgres_rls); the RLS one skips off postgres_rls.
    result.assert_outcomes(passed=19, skipped=2)


BEFORE = """from peewee import CharField, DateTimeField, ForeignKeyField, Model, TextField


class User(Model):
    username = CharField(unique=True)
    password = CharField()
    email = CharField()
    join_date = DateTimeField()


class Relationship(Model):
    from_user = ForeignKeyField(User, backref="relationships")
    to_user = ForeignKeyField(User, backref="related_to")

    class Meta:
        indexes = ((("from_user", "to_user"), True),)


class Message(Model):
    user = ForeignKeyField(User, backref="messages")
    content = TextField()
    pub_date = DateTimeField(index=True)
"""


def test_the_shipped_migrations_are_makemigrations_drafts_unedited(
    legacy_app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's steps write exactly the committed scripts (and ruff leaves them alone)."""
    url = legacy_app.url
    package = f"drafts_{secrets.token_hex(3)}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / f"{package}_before.py").write_text(BEFORE)
    shipped = EXAMPLE / "tweepee" / "migrations"
    monkeypatch.syspath_prepend(str(tmp_path))
    # 1. the baseline, from the models as they were, against an empty database
    opts = ["--migrations", package, "--no-relay-schema"]
    monkeypatch.chdir(tmp_path)
    wrote = run(
        "makemigration", "baseline", "--database", "sqlite:///:memory:",
        "--models", f"{package}_before", *opts,
    )  # fmt: skip
    assert wrote.exit_code == 0, wrote.output
    drafted = (tmp_path / package / "0001_baseline.py").read_text()
    assert drafted == (shipped / "0001_baseline.py").read_text()
    # 2. tenantize, from the TenantModels, against the populated database
    monkeypatch.chdir(EXAMPLE)
    assert run("migrate", "--to", f"{APP}:1", "--database", url, "-q").exit_code == 0
    wrote = run(
        "makemigration", "tenantize", "--database", url, *opts, "--models", "tweepee.models"
    )
    assert wrote.exit_code == 0, wrote.output
    drafted = (tmp_path / package / "0002_tenantize.py").read_text()
    assert drafted == (shipped / "0002_tenantize.py").read_text()
    for name in [n for n in sys.modules if n.startswith(package)]:
        sys.modules.pop(name)


def test_makemigration_refuses_a_reference_to_relays_tables_on_the_core(
    legacy_app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"uses_relay_{secrets.token_hex(3)}"
    (tmp_path / f"{module}.py").write_text(
        "from peewee import ForeignKeyField, TextField\n"
        "from relay_peewee import TenantModel\n"
        "from relay_peewee.models import User\n\n\n"
        "class Note(TenantModel):\n"
        "    author = ForeignKeyField(User)\n"
        "    body = TextField()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert run("migrate", "--database", legacy_app.url, "-q").exit_code == 0
    refused = run("makemigration", "--check", "--models", module, "--database", legacy_app.url)
    assert refused.exit_code == 1
    assert refused.output.splitlines() == [
        "Error: Note.author references Relay's users, which relay_schema = false leaves out: "
        "reference a model of your own (or use Relay's schema)"
    ]
    sys.modules.pop(module, None)


def test_migrate_online_tenantizes_the_app_on_postgres(legacy_app: App) -> None:
    url = legacy_app.url
    result = run("migrate", "--online", "--database", url, "-q")
    if legacy_app.backend == "sqlite":
        assert result.exit_code == 1
        assert result.output.startswith("Error: --online is for PostgreSQL")
        return
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f"applied: {name}" for name in APPLIED]
    audit = run("audit", "--database", url)
    assert audit.exit_code == 0, audit.output


def test_the_core_rolls_back_as_relays_does(
    backend: str, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its events and tenants stop the rollback, naming the way past; then it is all gone."""
    monkeypatch.chdir(tmp_path)  # no pyproject.toml: the core alone, no app migrations
    opts = ["--no-relay-schema", "--database", db_url]
    assert run("migrate", *opts, "-q").exit_code == 0
    # In one process the CLI's audit rows go where the models are bound: here.
    relay_peewee.connect(db_url).close()
    created = run("tenants", "create", "--slug", "acme", "--name", "Acme", "--database", db_url)
    assert created.exit_code == 0, created.output
    db = open_database(db_url)
    (events,) = db.execute_sql("SELECT count(*) FROM audit_logs").fetchone()
    db.close()
    to_first = ["rollback", "--to", f"{CORE_MIGRATIONS}:1", *opts, "-q"]
    refused = run(*to_first)
    assert refused.exit_code == 1
    expected = (
        f"refusing to drop audit_logs: it holds {events} security event(s)"
        if events
        else "refusing to drop tenants: tenants other than the default exist (acme)"
    )
    assert expected in refused.output
    lifted = run("rollback", "--to", f"{CORE_MIGRATIONS}:3", *opts, "-q")
    assert lifted.output.splitlines() == [f"reverted: {name}" for name in reversed(CORE[2:])]
    db = open_database(db_url)
    db.execute_sql("DELETE FROM audit_logs")  # the guard is lifted: the operator's choice
    db.execute_sql("DELETE FROM tenants WHERE slug = 'acme'")
    db.close()
    gone = run(*to_first)
    assert gone.exit_code == 0, gone.output
    db = open_database(db_url)
    try:
        assert not {"tenants", "audit_logs"} & set(db.get_tables())
        assert db.execute_sql(f'SELECT count(*) FROM "{HISTORY_TABLE}"').fetchone() == (0,)
    finally:
        db.close()


# --- a tenant's life on the core ---------------------------------------------


def test_a_tenant_of_the_app_moves_to_another_core_database(
    legacy_app: App, tmp_path: Path
) -> None:
    """Export, move and erase carry the app's tables and no Relay table, to SQLite from either."""
    from relay_peewee.operations.tenant_export import tenant_fingerprints

    url = legacy_app.url
    assert run("migrate", "--database", url, "-q").exit_code == 0
    owner = open_database(url)
    acme, _carl = _second_tenant(owner)
    models = tweepee_models()
    app_models = [models.User, models.Relationship, models.Message]
    before = tenant_fingerprints(owner, "acme", models=app_models)
    owner.close()
    assert set(before) == {"tenants", *APP_TABLES, "audit_logs"}
    exported = tmp_path / "acme.jsonl"
    wrote = run("tenants", "export", "--slug", "acme", "--database", url, "--output", str(exported))
    assert wrote.exit_code == 0, wrote.output
    header = json.loads(exported.read_text().splitlines()[0])
    assert [t["name"] for t in header["tables"]] == ["tenants", *APP_TABLES_IN_ORDER, "audit_logs"]

    target = f"sqlite:///{tmp_path / 'target.db'}"
    assert run("migrate", "--database", target, "-q").exit_code == 0
    moved = run("tenants", "move", "--slug", "acme", "--to", target, "--database", url)
    assert moved.exit_code == 0, moved.output
    there = open_database(target)
    try:
        after = tenant_fingerprints(there, "acme", models=app_models)
        # The tenants row and its events gain the move's own (deactivated, activated).
        assert {t: after[t] for t in APP_TABLES} == {t: before[t] for t in APP_TABLES}
        assert not RELAY_TABLES & set(there.get_tables())
    finally:
        there.close()
    source = open_database(url)
    try:
        p = source.param
        for table in APP_TABLES:
            count = source.execute_sql(
                f'SELECT count(*) FROM "{table}" WHERE tenant_id = {p}', (acme,)
            ).fetchone()
            assert count == (0,), table
        (slug,) = source.execute_sql(f"SELECT slug FROM tenants WHERE id = {p}", (acme,)).fetchone()
        assert slug.startswith("erased:")
    finally:
        source.close()
