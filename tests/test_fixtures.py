"""The plugin's fixtures, as an application's suite meets them (``pytester``):
each test a database of its own, copied from a template built once."""

from __future__ import annotations

import secrets
from urllib.parse import urlparse, urlunparse

import pytest

import relay_peewee.testing as plugin
from relay_peewee.testing.backends import chosen_driver
from relay_peewee.testing.template_copies import admin_connection

APP_TESTS = """
import pytest
from peewee import Database

import relay_peewee.testing.templates as templates
from relay_peewee.models import Skill, Tenant
from relay_peewee import tenant_context
from relay_peewee.tenancy.rls import bypass_scope

BUILT = []
_real = templates.build_schema


def counting_build_schema(db: Database, config=None) -> None:
    BUILT.append(type(db).__name__)
    _real(db, config)


templates.build_schema = counting_build_schema


def test_1_commits_and_changes_its_objects(two_tenants):
    # Creating a tenant is an admin write (the application role only reads tenants).
    with bypass_scope():
        Tenant.create(slug="leaked", name="committed, outside any transaction")
    with tenant_context(two_tenants.a):
        Skill.delete().execute()
    two_tenants.a.name = "changed"


def test_2_sees_none_of_it(two_tenants):
    assert not Tenant.select().where(Tenant.slug == "leaked").exists()
    with tenant_context(two_tenants.a):
        assert Skill.select().count() == 3
    assert two_tenants.a.name == "Tenant A"
    # Related rows come with the copies, as with rows just written: no query
    # (outside a tenant context one would raise TenantRequired).
    skill = two_tenants.rows_of(two_tenants.a).skills[0]
    assert skill.author.email.endswith("@tenant-a.example")


@pytest.mark.parametrize("n", range(5))
def test_3_plain_relay_db(relay_db, n):
    assert [t.slug for t in Tenant.select()] == ["default"]


@pytest.mark.relay_fresh_db
def test_4_fresh(relay_db):
    assert [t.slug for t in Tenant.select()] == ["default"]


def test_6_relay_db_url_is_relay_dbs_own_database(relay_db, relay_db_url):
    from relay_peewee.database import open_database

    with bypass_scope():
        Tenant.create(slug="seen-by-the-owner", name="x")
    owner = open_database(relay_db_url)
    try:
        assert owner.execute_sql(
            "SELECT count(*) FROM tenants WHERE slug = 'seen-by-the-owner'"
        ).fetchone() == (1,)
    finally:
        owner.close()


def test_5_two_templates_and_one_fresh_database_were_built(relay_backend):
    assert len(BUILT) == 3, BUILT
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "postgres_rls"])
def test_tests_are_independent_and_templates_built_once(
    pytester: pytest.Pytester, backend: str, request: pytest.FixtureRequest
) -> None:
    if backend != "sqlite":
        request.applymarker(pytest.mark.postgres_only)
    pytester.makepyfile(test_app=APP_TESTS)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--relay-backends", backend)
    result.assert_outcomes(passed=10)


def test_the_options_name_their_real_defaults(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess("--help")
    text = " ".join(result.stdout.str().split())
    assert "(default: $RELAY_TEST_BACKENDS, else sqlite,postgres,postgres_rls)" in text
    assert "(default: $RELAY_TEST_DRIVER, else psycopg2 if installed, else psycopg3)" in text


# A plain peewee project's suite, in an environment where relay_peewee (and so
# its auto-loaded plugin) is installed: nothing of the plugin may show.
PLAIN_TESTS = """
from peewee import Model, SqliteDatabase, TextField

db = SqliteDatabase(":memory:")


class Note(Model):
    body = TextField()

    class Meta:
        database = db


def test_one():
    db.create_tables([Note])
    Note.create(body="x")
    assert Note.select().count() == 1


def test_two():
    assert True
"""


def test_the_plugin_leaves_a_plain_peewee_suite_alone(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_plain=PLAIN_TESTS)
    # Deselecting "not sqlite_only" must not drop tests the plugin never saw.
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-m", "not sqlite_only")
    result.assert_outcomes(passed=2)
    # A stray variable meant for another project aborts nothing.
    monkeypatch.setenv("RELAY_TEST_BACKENDS", "mysql")
    monkeypatch.setenv("RELAY_TEST_DRIVER", "pg8000")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert result.ret == 0


def test_a_suite_that_uses_the_fixtures_still_has_its_choices_checked(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_app="def test_db(relay_db):\n    pass\n")
    monkeypatch.setenv("RELAY_TEST_BACKENDS", "mysql")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--relay-backends: unknown backend(s) mysql" in result.stderr.str()
    # Given on the command line, an option is checked even by a plain suite.
    monkeypatch.delenv("RELAY_TEST_BACKENDS")
    pytester.makepyfile(test_app="def test_plain():\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--relay-backends", "mysql")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


# A PostgreSQL copy is reset for a later test rather than dropped (template_copies).
# Every test here first checks that its database is exactly the template -
# rows, sequences, schema, policies, grants, settings - then changes it in one
# way. Copies rotate, so each check meets what some earlier test left behind.
RESET_CONFTEST = """
from peewee import TextField

from relay_peewee import TenantModel


class Note(TenantModel):
    body = TextField()

    class Meta:
        table_name = "app_notes"


def pytest_relay_build_schema(db):
    db.create_tables([Note])
    # A table of no columns: its rows cannot be copied back, only checked.
    db.execute_sql("CREATE TABLE app_no_columns ()")
"""

RESET_TESTS = """
from urllib.parse import urlparse

import pytest

from conftest import Note
from relay_peewee import tenant_context
from relay_peewee.database import open_database
from relay_peewee.models import Skill, Tenant
from relay_peewee.tenancy.rls import bypass_scope

TEMPLATE = {}
USED = []  # (database, whether the copy should be reused)
LEFT_OPEN = []
AUDIT_ROW = (
    "INSERT INTO audit_logs (id, action, created_at) VALUES (gen_random_uuid(), '{}', now())"
)


def owner_sql(url, *statements):
    # As the database's owner; the rows of the last statement.
    owner = open_database(url)
    try:
        for sql in statements:
            cursor = owner.execute_sql(sql)
        return cursor.fetchall() if cursor.description else None
    finally:
        owner.close()


def fingerprint(url):
    owner = open_database(url)
    try:
        return _fingerprint(lambda sql: owner.execute_sql(sql).fetchall())
    finally:
        owner.close()


def _fingerprint(q):
    tables = [r[0] for r in q(
        "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
    )]
    return {
        "rows": {t: sorted(map(repr, q(f"SELECT * FROM {t}"))) for t in tables},
        "sequences": q("SELECT sequencename, last_value FROM pg_sequences ORDER BY 1"),
        "columns": q("SELECT table_name, column_name, data_type, column_default "
                     "FROM information_schema.columns WHERE table_schema = 'public' "
                     "ORDER BY 1, 2"),
        "indexes": q("SELECT indexname, indexdef FROM pg_indexes "
                     "WHERE schemaname = 'public' ORDER BY 1"),
        "policies": q("SELECT tablename, policyname, qual, with_check FROM pg_policies "
                      "ORDER BY 1, 2"),
        "triggers": q("SELECT tgname, tgenabled FROM pg_trigger ORDER BY 1"),
        "grants": q("SELECT table_name, grantee, privilege_type "
                    "FROM information_schema.role_table_grants "
                    "WHERE table_schema = 'public' ORDER BY 1, 2, 3"),
        "settings": q("SELECT setconfig FROM pg_db_role_setting WHERE setdatabase = "
                      "(SELECT oid FROM pg_database WHERE datname = current_database())"),
    }


@pytest.fixture(autouse=True)
def starts_from_the_template(two_tenants, relay_db_url, request):
    seen = fingerprint(relay_db_url)
    TEMPLATE.setdefault("fingerprint", seen)
    assert seen == TEMPLATE["fingerprint"]
    reused = request.node.get_closest_marker("replaced") is None
    USED.append((urlparse(relay_db_url).path[1:], reused))


def test_00_template():
    pass


def test_01_committed_rows(two_tenants, relay_db_url):
    a, b = two_tenants.a, two_tenants.b
    with tenant_context(a):
        Note.create(body="committed")
        Skill.create(name="new", slug="new", description="", category="x", tags=[],
                     content="", author=two_tenants.rows_of(a).users[0])
        Skill.delete().where(Skill.slug == "alpha").execute()
    with tenant_context(b):
        Skill.update(name="renamed").execute()
    with bypass_scope():
        Tenant.update(name="changed").where(Tenant.id == a.id).execute()
    # audit_logs is append-only (a trigger refuses DELETE): the reset must
    # still take the row out.
    owner_sql(relay_db_url, AUDIT_ROW.format("test"))


def test_02_rolled_back_and_sequences(two_tenants, relay_db, relay_db_url):
    with tenant_context(two_tenants.a):
        with relay_db.atomic() as txn:
            Note.create(body="rolled back")
            txn.rollback()
    owner_sql(relay_db_url, "SELECT setval('app_notes_id_seq', 1000)")


def test_03_statistics_only(relay_db_url):
    owner_sql(relay_db_url, "VACUUM ANALYZE skills", "ANALYZE")


@pytest.mark.replaced
def test_04_creates_a_table(relay_db_url):
    owner_sql(relay_db_url, "CREATE TABLE extra (id int)")


@pytest.mark.replaced
def test_05_adds_a_column(relay_db_url):
    owner_sql(relay_db_url, "ALTER TABLE skills ADD COLUMN extra int")


@pytest.mark.replaced
def test_06_adds_a_policy(relay_db_url):
    owner_sql(relay_db_url, "CREATE POLICY extra ON skills USING (true)")


@pytest.mark.replaced
def test_07_sets_a_database_setting(relay_db_url):
    name = urlparse(relay_db_url).path[1:]
    owner_sql(relay_db_url, f'ALTER DATABASE "{name}" SET work_mem = 7777')


@pytest.mark.replaced
def test_08_truncates(relay_db_url):
    owner_sql(relay_db_url, "TRUNCATE ratings")


@pytest.mark.replaced
def test_09_grants(relay_db_url):
    owner_sql(relay_db_url, "GRANT SELECT ON tenants TO PUBLIC")


@pytest.mark.replaced
def test_10_leaves_a_connection_open(relay_db_url):
    leaked = open_database(relay_db_url)
    leaked.execute_sql(AUDIT_ROW.format("leaked"))
    LEFT_OPEN.append(leaked)


@pytest.mark.parametrize("n", range(4))
def test_11_plain(n):
    pass


def test_12_each_copy_was_reused_or_replaced_as_it_should():
    names = [name for name, _ in USED]
    for i, (name, reused) in enumerate(USED[:-3]):  # a reused copy is back 3 tests on
        assert (name in names[i + 1 :]) == reused, (i, USED)
"""


@pytest.mark.postgres_only
@pytest.mark.parametrize("backend", ["postgres", "postgres_rls"])
def test_a_reused_copy_is_exactly_the_template(
    pytester: pytest.Pytester, backend: str, request: pytest.FixtureRequest
) -> None:
    pytester.makeconftest(RESET_CONFTEST)
    pytester.makepyfile(test_reset=RESET_TESTS)
    pytester.makeini("[pytest]\nmarkers = replaced\n")
    driver = chosen_driver(request.config)
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-v", "--relay-backends", backend,
        *(["--relay-driver", driver] if driver else []),
    )  # fmt: skip
    result.assert_outcomes(passed=16)
    # Every change below the rows replaced the copy, and said why.
    result.stdout.fnmatch_lines(
        [
            # (The last tests' copies are dropped at the end, reset or not.)
            "relay_peewee: PostgreSQL copies reset for the next test: *, replaced: 7",
            "*a connection to it was still open",
        ]
    )


# Issue 19, hole 6: a reset copy kept the planner statistics of its last
# test, and ``pg_stats`` shows sampled column values to whoever reads it.
STATISTICS_CONFTEST = """
from peewee import TextField

from relay_peewee import TenantModel


class Note(TenantModel):
    body = TextField()

    class Meta:
        table_name = "app_notes"


def pytest_relay_build_schema(db):
    db.create_tables([Note])
    # Extended statistics keep most common values too (pg_stats_ext).
    db.execute_sql("CREATE STATISTICS app_notes_mcv (mcv) ON tenant_id, body FROM app_notes")
"""

STATISTICS_TESTS = """
from urllib.parse import urlparse

import pytest

from conftest import Note
from relay_peewee import tenant_context
from relay_peewee.database import open_database

SECRET = "secret-7d3f91"
USED = []


def sampled(url):
    # As the database's owner, who may read every table's statistics.
    owner = open_database(url)
    try:
        return owner.execute_sql(
            "SELECT tablename, attname FROM pg_stats"
            " WHERE concat(most_common_vals, histogram_bounds) LIKE %s"
            " UNION ALL SELECT tablename, statistics_name FROM pg_stats_ext"
            " WHERE most_common_vals::text LIKE %s",
            ("%" + SECRET + "%",) * 2,
        ).fetchall()
    finally:
        owner.close()


def test_0_inserts_and_analyzes(two_tenants, relay_db_url):
    USED.append(urlparse(relay_db_url).path[1:])
    with tenant_context(two_tenants.a):
        for _ in range(20):
            Note.create(body=SECRET)
    owner = open_database(relay_db_url)
    owner.execute_sql("ANALYZE")
    owner.close()
    # The probe finds what it looks for: the column and the extended statistics.
    assert sorted(sampled(relay_db_url)) == [("app_notes", "app_notes_mcv"), ("app_notes", "body")]


@pytest.mark.parametrize("n", range(4))
def test_1_later_tests_see_no_trace(two_tenants, relay_db_url, n):
    USED.append(urlparse(relay_db_url).path[1:])
    assert sampled(relay_db_url) == []


def test_2_the_analyzed_copy_was_reset_not_replaced():
    assert USED[0] in USED[1:], USED
"""


@pytest.mark.postgres_only
@pytest.mark.parametrize("backend", ["postgres", "postgres_rls"])
def test_a_reset_copy_keeps_no_statistics_of_its_last_test(
    pytester: pytest.Pytester, backend: str, request: pytest.FixtureRequest
) -> None:
    pytester.makeconftest(STATISTICS_CONFTEST)
    pytester.makepyfile(test_statistics=STATISTICS_TESTS)
    driver = chosen_driver(request.config)
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-v", "--relay-backends", backend,
        *(["--relay-driver", driver] if driver else []),
    )  # fmt: skip
    result.assert_outcomes(passed=6)


NO_SUPERUSER_TESTS = """
import pytest

from conftest import Note
from relay_peewee import tenant_context
from relay_peewee.models import Tenant


@pytest.mark.parametrize("n", range(4))
def test_each_sees_only_the_template(relay_db, n):
    assert relay_db.execute_sql("SELECT count(*) FROM app_notes").fetchone() == (0,)
    with tenant_context(Tenant.get(Tenant.slug == "default")):
        Note.create(body="committed")
"""


@pytest.mark.postgres_only
def test_without_a_superuser_each_test_gets_a_new_copy(
    pytester: pytest.Pytester, request: pytest.FixtureRequest
) -> None:
    # Putting rows back skips triggers (session_replication_role), which
    # only a superuser may do: any other role gets a copy per test.
    server = plugin.postgres_server_url(request.config)
    admin = admin_connection(server, pytest.skip)
    role = f"relay_nosuper_{secrets.token_hex(4)}"
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE ROLE {role} LOGIN CREATEDB")
        parsed = urlparse(server)
        url = urlunparse(parsed._replace(netloc=f"{role}@{parsed.hostname}:{parsed.port}"))
        pytester.makeconftest(RESET_CONFTEST)
        pytester.makepyfile(test_app=NO_SUPERUSER_TESTS)
        result = pytester.runpytest_inprocess(
            "-p", "no:cacheprovider", "-v", "--relay-backends", "postgres",
            "--relay-postgres-url", url,
        )  # fmt: skip
        result.assert_outcomes(passed=4)
        result.stdout.fnmatch_lines(
            [
                "relay_peewee: PostgreSQL copies reset for the next test: 0, replaced: *",
                "*  resetting needs a superuser",
            ]
        )
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP ROLE IF EXISTS {role}")
        admin.close()
