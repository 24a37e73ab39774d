"""The schema audit on real databases: clean ones pass, each break is named.

Every case starts from a database ``migrate`` built, breaks exactly one
thing with the SQL an operator (or a bad hand edit) would run, and checks
that the audit reports that problem - and only that one - as an error, and
that ``relay-peewee audit`` exits 1 on it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from helpers import Legacy
from legacy import FOREIGN_TABLES
from peewee import CompositeKey, Database, IntegrityError, SqliteDatabase, TextField

import relay_peewee
from relay_peewee.audit import Finding, audit_schema, report
from relay_peewee.cli import cli
from relay_peewee.database import is_postgres
from relay_peewee.migrator import HISTORY_TABLE
from relay_peewee.migrator.sqlite_ddl import TableDDL
from relay_peewee.migrator.sqlite_rebuild import rebuild_tables
from relay_peewee.models import DEFAULT_TENANT_ID
from relay_peewee.operations.commands import migrate
from relay_peewee.tenancy import TenantModel


def run_audit(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["audit", "--database", url, *args])


def problems(findings: list[Finding], severity: str = "error") -> set[tuple[str, str]]:
    return {(f.check, f.table) for f in findings if f.severity == severity}


def rebuild(db: Database, table: str, edit: Callable[[TableDDL], Any]) -> None:
    """Change a SQLite table's definition the only way SQLite allows: a rebuild."""
    assert isinstance(db, SqliteDatabase)
    db.pragma("foreign_keys", 0)  # outside the transaction, or it is ignored
    try:
        with db.atomic():
            rebuild_tables(db, {table: edit})
    finally:
        db.pragma("foreign_keys", 1)


# -- the breaks ------------------------------------------------------------


def drop_tenant_index(db: Database) -> None:
    # usage_events: its one other tenant-led index (0014's, under the user
    # key) goes too, or it would still serve tenant lookups.
    db.execute_sql("DROP INDEX usage_events_tenant_id")
    db.execute_sql("DROP INDEX usage_events_tenant_id_user_id")


def drop_tenant_fk(db: Database) -> None:
    if is_postgres(db):
        db.execute_sql("ALTER TABLE ratings DROP CONSTRAINT ratings_tenant_id_fkey")
    else:
        rebuild(
            db, "ratings", lambda ddl: ddl.replace_column("tenant_id", "tenant_id TEXT NOT NULL")
        )


def nullable_tenant(db: Database) -> None:
    if is_postgres(db):
        db.execute_sql("ALTER TABLE ratings ALTER COLUMN tenant_id DROP NOT NULL")
    else:
        rebuild(
            db,
            "ratings",
            lambda ddl: ddl.replace_column("tenant_id", "tenant_id TEXT REFERENCES tenants (id)"),
        )


def tenant_default(db: Database) -> None:
    if is_postgres(db):
        db.execute_sql(
            f"ALTER TABLE ratings ALTER COLUMN tenant_id SET DEFAULT '{DEFAULT_TENANT_ID}'"
        )
    else:
        column = f"tenant_id TEXT NOT NULL DEFAULT '{DEFAULT_TENANT_ID}' REFERENCES tenants (id)"
        rebuild(db, "ratings", lambda ddl: ddl.replace_column("tenant_id", column))


def restore_global_slug_unique(db: Database) -> None:
    db.execute_sql("CREATE UNIQUE INDEX skills_slug ON skills (slug)")


def drop_email_unique(db: Database) -> None:
    if is_postgres(db):
        db.execute_sql("ALTER TABLE users DROP CONSTRAINT users_email_unique")
    else:
        rebuild(db, "users", lambda ddl: ddl.drop_unique(["email"]))


def drop_per_tenant_unique(db: Database) -> None:
    # A plain tenant_id index first, so only the uniqueness goes missing.
    db.execute_sql("CREATE INDEX skills_tenant_id ON skills (tenant_id)")
    db.execute_sql("DROP INDEX skills_tenant_id_slug")


def global_settings_key(db: Database) -> None:
    # The key was also the table's tenant_id index; keep one of those.
    db.execute_sql("CREATE INDEX site_settings_tenant_id ON site_settings (tenant_id)")
    if is_postgres(db):
        db.execute_sql(
            "ALTER TABLE site_settings DROP CONSTRAINT site_settings_pkey, ADD PRIMARY KEY (id)"
        )
    else:
        rebuild(db, "site_settings", lambda ddl: ddl.set_primary_key(["id"]))


def delete_history_row(db: Database) -> None:
    db.execute_sql(f"DELETE FROM {HISTORY_TABLE} WHERE name = '0005_audit_logs'")


def add_future_history_row(db: Database) -> None:
    db.execute_sql(
        f"INSERT INTO {HISTORY_TABLE} (name, applied) VALUES ('0099_future', '2030-01-01')"
    )


def drop_history(db: Database) -> None:
    db.execute_sql(f"DROP TABLE {HISTORY_TABLE}")


def drop_table(db: Database) -> None:
    db.execute_sql("DROP TABLE usage_events")


def drop_tenant_reference(db: Database) -> None:
    if is_postgres(db):
        db.execute_sql("ALTER TABLE ratings DROP CONSTRAINT ratings_skill_id_tenant_fkey")
    else:

        def single_column_key(ddl: TableDDL) -> None:
            ddl.drop_foreign_key(["tenant_id", "skill_id"])
            ddl.add("FOREIGN KEY (skill_id) REFERENCES skills (id) ON DELETE CASCADE")

        rebuild(db, "ratings", single_column_key)


def drop_audit_trigger(db: Database) -> None:
    if is_postgres(db):
        db.execute_sql("DROP TRIGGER audit_logs_append_only ON audit_logs")
    else:
        db.execute_sql("DROP TRIGGER audit_logs_no_delete")


BREAKS = {
    "tenant index dropped": (drop_tenant_index, {("tenant-index", "usage_events")}),
    "tenant foreign key dropped": (drop_tenant_fk, {("tenant-fk", "ratings")}),
    "tenant_id nullable": (nullable_tenant, {("tenant-not-null", "ratings")}),
    "tenant_id default": (tenant_default, {("tenant-default", "ratings")}),
    "global slug unique back": (restore_global_slug_unique, {("global-unique-left", "skills")}),
    "email unique dropped": (drop_email_unique, {("global-unique-missing", "users")}),
    "per-tenant unique dropped": (drop_per_tenant_unique, {("tenant-unique", "skills")}),
    "site_settings keyed by id alone": (
        global_settings_key,
        {("tenant-primary-key", "site_settings")},
    ),
    "history row deleted": (delete_history_row, {("migration-pending", HISTORY_TABLE)}),
    "history row unknown": (add_future_history_row, {("migration-unknown", HISTORY_TABLE)}),
    "history table dropped": (drop_history, {("history-missing", HISTORY_TABLE)}),
    "table dropped": (drop_table, {("table-missing", "usage_events")}),
    "tenant-consistent reference dropped": (
        drop_tenant_reference,
        {("tenant-reference", "ratings")},
    ),
    "audit log trigger dropped": (drop_audit_trigger, {("audit-append-only", "audit_logs")}),
}


@pytest.mark.parametrize("name", list(BREAKS))
def test_each_break_is_named_and_fails_the_cli(
    name: str, migrated_db: Database, db_url: str
) -> None:
    breaker, expected = BREAKS[name]
    breaker(migrated_db)

    findings = audit_schema(migrated_db)
    assert problems(findings) == expected, findings
    assert all("fix: " in f.message for f in findings)

    result = run_audit(db_url)
    assert result.exit_code == 1, result.output
    for check, table in expected:
        assert any(check in line and table in line for line in result.output.splitlines())


# -- PostgreSQL only: states SQLite has no way to be in ------------------


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[Database]:
    database = relay_peewee.connect(pg_url)
    migrate(database)
    try:
        yield database
    finally:
        database.close()


def test_not_valid_tenant_fk_is_an_error(pg_db: Database, pg_url: str) -> None:
    pg_db.execute_sql("ALTER TABLE ratings DROP CONSTRAINT ratings_tenant_id_fkey")
    pg_db.execute_sql(
        "ALTER TABLE ratings ADD CONSTRAINT ratings_tenant_id_fkey FOREIGN KEY (tenant_id) "
        "REFERENCES tenants (id) NOT VALID"
    )
    findings = audit_schema(pg_db)
    assert problems(findings) == {("tenant-fk-not-valid", "ratings")}
    assert 'VALIDATE CONSTRAINT "ratings_tenant_id_fkey"' in findings[0].message
    assert run_audit(pg_url).exit_code == 1


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("DROP POLICY tenant_isolation ON ratings", ("rls-policy", "ratings")),
        ("ALTER TABLE skills NO FORCE ROW LEVEL SECURITY", ("rls-forced", "skills")),
        ("ALTER TABLE users DISABLE ROW LEVEL SECURITY", ("rls-forced", "users")),
    ],
)
def test_row_level_security_gaps_are_errors(
    pg_db: Database, pg_url: str, statement: str, expected: tuple[str, str]
) -> None:
    pg_db.execute_sql(statement)
    assert problems(audit_schema(pg_db)) == {expected}
    assert run_audit(pg_url).exit_code == 1


def test_invalid_tenant_index_is_an_error(pg_db: Database, pg_url: str) -> None:
    db, tenant = pg_db, DEFAULT_TENANT_ID
    db.execute_sql(
        "INSERT INTO users (id, email, tenant_id) VALUES ('u1', 'u@x.org', %s)", (tenant,)
    )
    db.execute_sql(
        "INSERT INTO skills (id, name, slug, description, category, content, tenant_id)"
        " VALUES ('s1', 'S', 's', 'd', 'c', 'x', %s)",
        (tenant,),
    )
    for n in (1, 2):
        db.execute_sql(
            "INSERT INTO ratings (id, skill_id, user_id, rating, tenant_id)"
            " VALUES (%s, 's1', 'u1', 5, %s)",
            (f"r{n}", tenant),
        )
    # Every tenant-led index of ratings goes (0014's too), so only the INVALID one is left.
    for index in ("ratings_tenant_id", "ratings_tenant_id_skill_id", "ratings_tenant_id_user_id"):
        db.execute_sql(f"DROP INDEX {index}")
    # Two ratings in one tenant make this build fail half-way, which leaves
    # the index behind marked INVALID - what a failed deploy step leaves.
    with pytest.raises(IntegrityError):
        db.execute_sql("CREATE UNIQUE INDEX CONCURRENTLY ratings_tenant_id ON ratings (tenant_id)")
    findings = audit_schema(db)
    assert problems(findings) == {("tenant-index", "ratings")}
    assert "ratings_tenant_id is INVALID" in findings[0].message
    assert run_audit(pg_url).exit_code == 1


def test_fresh_migrated_database_is_clean(migrated_db: Database, db_url: str) -> None:
    assert audit_schema(migrated_db) == []
    result = run_audit(db_url)
    assert result.exit_code == 0, result.output
    assert result.output == "0 errors, 0 warnings, 0 info\n"


def test_migrated_legacy_database_is_clean(legacy: Legacy) -> None:
    migrate(legacy.db)
    findings = audit_schema(legacy.db)
    # Only the auth tables Relay shares the database with, listed, not failed.
    assert {(f.severity, f.check, f.table) for f in findings} == {
        ("info", "unmodelled-table", t) for t in FOREIGN_TABLES
    }
    assert run_audit(legacy.url).exit_code == 0


def test_unmigrated_legacy_database_fails(legacy: Legacy) -> None:
    found = problems(audit_schema(legacy.db))
    assert ("history-missing", HISTORY_TABLE) in found
    assert ("table-missing", "tenants") in found
    assert ("tenant-column", "skills") in found
    assert ("global-unique-left", "skills") in found  # slug is still unique globally


def test_table_without_model_is_information(migrated_db: Database, db_url: str) -> None:
    migrated_db.execute_sql("CREATE TABLE countries (code TEXT PRIMARY KEY, name TEXT)")
    findings = audit_schema(migrated_db)
    assert [(f.severity, f.check, f.table) for f in findings] == [
        ("info", "unmodelled-table", "countries")
    ]
    result = run_audit(db_url)
    assert result.exit_code == 0, result.output
    assert "countries" in result.output


def test_undeclared_global_unique_is_a_warning_that_strict_fails(
    migrated_db: Database, db_url: str
) -> None:
    migrated_db.execute_sql("CREATE UNIQUE INDEX skills_name ON skills (name)")
    assert problems(audit_schema(migrated_db), "warning") == {
        ("global-unique-undeclared", "skills")
    }
    assert problems(audit_schema(migrated_db)) == set()
    assert problems(audit_schema(migrated_db, strict=True)) == {
        ("global-unique-undeclared", "skills")
    }
    assert run_audit(db_url).exit_code == 0
    assert run_audit(db_url, "--strict").exit_code == 1


class Invoice(TenantModel):
    number = TextField()

    class Meta:
        table_name = "audit_test_invoices"
        tenant_unique = [("number",)]


class Membership(TenantModel):
    id = TextField()

    class Meta:
        table_name = "audit_test_memberships"
        primary_key = CompositeKey("tenant", "id")


def test_callers_own_tenant_models_are_audited(migrated_db: Database) -> None:
    mine = [Invoice, Membership]
    assert problems(audit_schema(migrated_db, mine)) == {
        ("table-missing", "audit_test_invoices"),
        ("table-missing", "audit_test_memberships"),
    }
    with migrated_db.bind_ctx(mine):
        migrated_db.create_tables(mine)
    assert problems(audit_schema(migrated_db, mine)) == set()
    # PostgreSQL: row-level security on an app's own tables is advised, not owed.
    expected = (
        {("rls-policy", "audit_test_invoices"), ("rls-policy", "audit_test_memberships")}
        if is_postgres(migrated_db)
        else set()
    )
    assert problems(audit_schema(migrated_db, mine), "warning") == expected
    # Without them, their tables are merely unknown to the audit.
    assert problems(audit_schema(migrated_db), "info") == {
        ("unmodelled-table", "audit_test_invoices"),
        ("unmodelled-table", "audit_test_memberships"),
    }


def test_citus_rules_are_warnings_unless_strict(migrated_db: Database, db_url: str) -> None:
    db = migrated_db
    for sql in (
        # Laid out the way Citus wants: tenant_id in every key and reference.
        "CREATE TABLE notes (tenant_id TEXT NOT NULL REFERENCES tenants (id), id TEXT NOT NULL,"
        " PRIMARY KEY (tenant_id, id))",
        "CREATE TABLE note_links (tenant_id TEXT NOT NULL, note_id TEXT NOT NULL,"
        " PRIMARY KEY (tenant_id, note_id),"
        " FOREIGN KEY (tenant_id, note_id) REFERENCES notes (tenant_id, id))",
        # Keyed and referenced by id alone, and a tenant_id that may be NULL.
        "CREATE TABLE folders (tenant_id TEXT, id TEXT PRIMARY KEY)",
        "CREATE TABLE files (tenant_id TEXT NOT NULL, id TEXT NOT NULL,"
        " folder_id TEXT REFERENCES folders (id), PRIMARY KEY (tenant_id, id))",
        # No tenant_id: one may be a reference table, one points into a tenant's rows.
        "CREATE TABLE countries (code TEXT PRIMARY KEY)",
        "CREATE TABLE logins (id TEXT PRIMARY KEY, user_id TEXT REFERENCES users (id))",
    ):
        db.execute_sql(sql)
    mine = {"notes", "note_links", "folders", "files", "countries", "logins"}

    findings = audit_schema(db, citus=True)
    assert problems(findings) == set()
    assert {(f.severity, f.check, f.table) for f in findings if f.table in mine} == {
        ("info", "unmodelled-table", t) for t in mine
    } | {
        ("warning", "citus-null-tenant", "folders"),
        ("warning", "citus-unique", "folders"),
        ("warning", "citus-foreign-key", "files"),
        ("warning", "citus-foreign-key", "logins"),
        ("info", "citus-reference-table", "countries"),
    }
    assert ("citus-reference-table", "tenants") in problems(findings, "info")
    # users.email is global on purpose: the advice is not "add tenant_id" to it.
    email = next(f for f in findings if f.check == "citus-unique" and "(email)" in f.message)
    assert "reference table" in email.message

    assert problems(audit_schema(db, citus=True, strict=True)) == problems(findings, "warning")
    assert run_audit(db_url, "--citus").exit_code == 0
    assert run_audit(db_url, "--citus", "--strict").exit_code == 1


def test_json_output_parses(migrated_db: Database, db_url: str) -> None:
    drop_tenant_index(migrated_db)
    migrated_db.execute_sql("CREATE TABLE countries (code TEXT PRIMARY KEY)")
    result = run_audit(db_url, "--json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["summary"] == {"error": 1, "warning": 0, "info": 1}
    assert [(f["severity"], f["table"], f["check"]) for f in data["findings"]] == [
        ("error", "usage_events", "tenant-index"),
        ("info", "countries", "unmodelled-table"),
    ]


def test_human_report_is_aligned() -> None:
    findings = [
        Finding("error", "ratings", "tenant-index", "no index; fix: CREATE INDEX"),
        Finding("info", "accounts", "unmodelled-table", "no model; fix: none"),
    ]
    assert report(findings).splitlines() == [
        "SEVERITY  TABLE     CHECK             MESSAGE",
        "error     ratings   tenant-index      no index; fix: CREATE INDEX",
        "info      accounts  unmodelled-table  no model; fix: none",
        "1 error, 0 warnings, 1 info",
    ]


def test_unreachable_server_exits_2_with_one_line() -> None:
    result = run_audit("postgresql://root@127.0.0.1:1/x")
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot audit the database: "), lines
    assert "Traceback" not in result.output


def test_file_that_is_not_a_database_exits_2(tmp_path: Path) -> None:
    junk = tmp_path / "notes.db"
    junk.write_text("meeting notes, not a database\n" * 20)
    result = run_audit(f"sqlite:///{junk}")
    assert result.exit_code == 2
    assert result.stderr == "Error: cannot audit the database: file is not a database\n"
