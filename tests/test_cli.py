"""The ``relay-peewee`` command line, end to end through ``CliRunner``.

Every command runs against a real database on both backends (the ``url``
and ``legacy`` fixtures). Errors must be exactly one ``Error: ...`` line on
stderr with exit code 1 - never a traceback - and must leave the database as
it was; ``state()`` fingerprints schema, history and every row to prove it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from helpers import PG_HOST, PG_PORT, PG_USER, Legacy
from peewee import Database, PostgresqlDatabase
from playhouse import db_url as playhouse_db_url

from relay_peewee.cli import EXIT_CODES, EXIT_USAGE, cli
from relay_peewee.database import open_database
from relay_peewee.errors import MigrationError
from relay_peewee.migrator.runner import MIGRATIONS_DIR
from relay_peewee.operations import commands

REPO_ROOT = Path(__file__).resolve().parent.parent
HISTORY = "relay_peewee_migrations"
DEFAULT_TENANT_ID = "default-tenant-000-0000-000000000000"
RELAY_MIGRATIONS = [
    "0001_baseline",
    "0002_tenants",
    "0003_tenant_columns",
    "0004_tenant_keys",
    "0005_audit_logs",
]
# Every migration the package ships, so later ones do not break these tests.
NAMES = sorted(p.stem for p in Path(MIGRATIONS_DIR).glob("[0-9]*.py"))
KNOWN = ", ".join(NAMES)
LEGACY_LINE = "recognised a legacy Relay database: recorded 0001_baseline as applied"
UNREACHABLE_PG = "postgresql://root@127.0.0.1:1/x"
APPLIED_ROW = re.compile(r"^\[x\] (\S+)  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
FUTURE = "9999_from_the_future"
TENANTS_CREATE = ["tenants", "create", "--slug", "acme", "--name", "Acme"]
NO_TENANTS = "this database has no tenants table yet: run `relay-peewee migrate`"
NO_BASELINE_ROLLBACK = (
    "0001_baseline cannot be rolled back: it would drop every Relay table and its rows"
)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def run(args: Sequence[str], url: str | None = None, runner: CliRunner | None = None) -> Result:
    """Invoke the CLI; ``--database url`` goes after the (sub)command's name."""
    argv = list(args)
    if url is not None:
        argv += ["--database", url]
    return (runner or CliRunner()).invoke(cli, argv)


def assert_ok(result: Result) -> None:
    assert result.exit_code == 0, result.output
    assert result.exception is None, result.exception
    assert "Traceback" not in result.output


def assert_error(result: Result, *fragments: str, exact: str | None = None) -> str:
    """Exit 1 with one ``Error:`` line on stderr holding every fragment."""
    assert result.exit_code == 1, result.output
    # An uncaught exception also exits 1 under CliRunner: insist on SystemExit.
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("Error: "), line
    if exact is not None:
        assert line == f"Error: {exact}"
    for fragment in fragments:
        assert fragment in line, line
    return line


def out_lines(result: Result) -> list[str]:
    return result.stdout.splitlines()


def applied_lines(*names: str) -> list[str]:
    return [f"applied: {n}" for n in names]


def reverted_lines(*names: str) -> list[str]:
    """What rollback prints for ``names``: newest first."""
    return [f"reverted: {n}" for n in reversed(names)]


def applied_names(lines: Sequence[str]) -> list[str]:
    """The names of ``[x]`` status rows; fails on any other row."""
    names = []
    for line in lines:
        match = APPLIED_ROW.match(line)
        assert match, line
        names.append(match[1])
    return names


def ups(result: Result) -> list[str]:
    """The migrations a ``migrate --sql`` plan runs, from its ``-- up:`` headers."""
    return [s[len("-- up: ") :] for s in out_lines(result) if s.startswith("-- up: ")]


def assert_sql_dry_run(result: Result, first: str) -> str:
    assert_ok(result)
    assert result.stderr == ""
    planned = ups(result)
    assert planned == NAMES[NAMES.index(first) :]
    assert result.stdout.rstrip().endswith(";")  # statements may span lines
    return result.stdout


@contextmanager
def raw(url: str) -> Iterator[Database]:
    """A plain peewee connection of our own, independent of the CLI's."""
    db: Database = playhouse_db_url.connect(url)
    db.connect()
    try:
        yield db
    finally:
        db.close()


def execute(url: str, sql: str, params: Sequence[Any] = ()) -> None:
    with raw(url) as db, db.atomic():
        db.execute_sql(sql, tuple(params))


def sqlite_file(url: str) -> Path | None:
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def param(url: str) -> str:
    return "?" if url.startswith("sqlite") else "%s"


def _rows(db: Database, sql: str) -> list[tuple[str, ...]]:
    return [tuple(map(repr, row)) for row in db.execute_sql(sql).fetchall()]


def state(url: str) -> dict[str, Any]:
    """Schema objects, history and every row: equal state means nothing changed."""
    with raw(url) as db:
        snap: dict[str, Any] = {}
        if isinstance(db, PostgresqlDatabase):
            schema = "table_schema = 'public'"
            snap["columns"] = _rows(
                db,
                "SELECT table_name, column_name, data_type, is_nullable, column_default, "
                f"is_generated FROM information_schema.columns WHERE {schema} ORDER BY 1, 2",
            )
            snap["constraints"] = _rows(
                db,
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
                "FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2",
            )
            snap["indexes"] = _rows(
                db,
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
            )
            snap["views"] = _rows(
                db,
                "SELECT viewname, definition FROM pg_views WHERE schemaname = 'public' ORDER BY 1",
            )
            snap["triggers"] = _rows(
                db,
                "SELECT tgrelid::regclass::text, tgname FROM pg_trigger "
                "WHERE NOT tgisinternal ORDER BY 1, 2",
            )
        else:
            snap["master"] = _rows(
                db, "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY 1, 2"
            )
        tables = sorted(db.get_tables())
        snap["tables"] = tables
        for table in tables:
            snap[f"rows:{table}"] = sorted(_rows(db, f'SELECT * FROM "{table}"'))
        return snap


def tables(url: str) -> list[str]:
    with raw(url) as db:
        return sorted(db.get_tables())


def history(url: str) -> list[str]:
    with raw(url) as db:
        if HISTORY not in db.get_tables():
            return []
        return [r[0] for r in db.execute_sql(f"SELECT name FROM {HISTORY} ORDER BY name")]


def migrate(url: str, *extra: str) -> Result:
    result = run(["migrate", "-q", *extra], url)
    assert_ok(result)
    return result


def create_tenant(url: str, slug: str = "acme", name: str = "Acme") -> str:
    result = run(["tenants", "create", "--slug", slug, "--name", name], url)
    assert_ok(result)
    prefix = f"created tenant {slug}: "
    assert result.stdout.startswith(prefix)
    return result.stdout[len(prefix) :].strip()


def insert_future_row(url: str) -> None:
    execute(
        url,
        f"INSERT INTO {HISTORY} (name, applied) VALUES ('{FUTURE}', '2030-01-02 03:04:05')",
    )


def insert_tenant(url: str, slug: str = "acme") -> str:
    tenant_id = str(uuid.uuid4())
    p = param(url)
    execute(
        url,
        "INSERT INTO tenants (id, name, slug, is_active, plan, created_at, updated_at) "
        f"VALUES ({p}, {p}, {p}, {p}, 'freemium', '2024-01-01 00:00:00', '2024-01-01 00:00:00')",
        (tenant_id, slug.title(), slug, True),
    )
    return tenant_id


def insert_user(url: str, tenant_id: str, user_id: str = "u-acme") -> None:
    p = param(url)
    execute(
        url,
        "INSERT INTO users (id, email, name, created_at, updated_at, tenant_id) "
        f"VALUES ({p}, {p}, 'Acme user', '2024-01-01 00:00:00', '2024-01-01 00:00:00', {p})",
        (user_id, f"{user_id}@acme.example", tenant_id),
    )


# ---------------------------------------------------------------------------
# migrate
#
# Creating a PostgreSQL database per test is the slow part of this file, so
# each test below walks one database through several related commands.
# ---------------------------------------------------------------------------


def test_the_first_five_migrations_are_relays() -> None:
    assert NAMES[:5] == RELAY_MIGRATIONS


def test_migrate_empty_database_then_nothing_to_do(url: str) -> None:
    result = run(["migrate"], url)
    assert_ok(result)
    assert out_lines(result) == applied_lines(*NAMES)
    # Progress goes to stderr, indented, so stdout stays machine-readable.
    progress = result.stderr.splitlines()
    assert progress and all(line.startswith("  ") for line in progress)
    assert "  creating tenants and the default tenant" in progress
    assert history(url) == NAMES
    assert {"tenants", "audit_logs", "users", "skills"} <= set(tables(url))

    before = state(url)
    for args in (["migrate"], ["migrate", "--to", "2"], ["migrate", "--to", NAMES[-1]]):
        again = run(args, url)
        assert_ok(again)
        assert again.stdout == "nothing to do.\n"
        assert again.stderr == ""
    dry = run(["migrate", "--sql"], url)
    assert_ok(dry)
    assert ups(dry) == []
    assert state(url) == before


def test_migrate_to_stops_after_target(url: str) -> None:
    # Every spelling of a target resolves to the same plan (dry runs: cheap).
    for target in ("0003", "3", "03", "0003_tenant_columns"):
        dry = run(["migrate", "--sql", "--to", target], url)
        assert_ok(dry)
        assert ups(dry) == NAMES[:3], target
    assert tables(url) == []

    result = run(["migrate", "--to", "0003"], url)
    assert_ok(result)
    assert out_lines(result) == applied_lines(*NAMES[:3])
    assert result.stderr  # progress
    assert history(url) == NAMES[:3]

    # On a partly migrated database --sql plans the rest and changes nothing.
    before = state(url)
    plan = assert_sql_dry_run(run(["migrate", "--sql"], url), "0004_tenant_keys")
    assert "ALTER TABLE" in plan
    assert 'CREATE TABLE "audit_logs"' in plan
    assert state(url) == before

    # rollback --to must name an applied migration.
    assert_error(
        run(["rollback", "--to", "nope"], url), exact=f"unknown migration 'nope'; known: {KNOWN}"
    )
    assert_error(
        run(["rollback", "--to", "4"], url),
        exact="0004_tenant_keys is not applied; nothing to roll back to it",
    )
    assert state(url) == before

    rest = run(["migrate", "-q"], url)
    assert_ok(rest)
    assert out_lines(rest) == applied_lines(*NAMES[3:])
    assert rest.stderr == ""  # -q: no progress


def test_migrate_fake_records_without_running(url: str) -> None:
    before = state(url)
    assert_error(
        run(["migrate", "--fake"], url),
        exact="--fake needs --to NAME: the last migration to record as applied",
    )
    sql = run(["migrate", "--fake", "--sql", "--to", "1"], url)
    assert sql.exit_code == EXIT_USAGE, sql.output
    assert state(url) == before

    # A migration whose change was made by hand: --fake records it, runs nothing.
    migrate(url)
    last = NAMES[-1]
    execute(url, f"DELETE FROM {HISTORY} WHERE name = '{last}'")
    schema = {k: v for k, v in state(url).items() if k != f"rows:{HISTORY}"}
    faked = run(["migrate", "--fake", "--to", last], url)
    assert_ok(faked)
    assert out_lines(faked) == [f"recorded as applied, not run: {last}"]
    assert history(url) == NAMES
    assert {k: v for k, v in state(url).items() if k != f"rows:{HISTORY}"} == schema
    assert_ok(run(["status"], url))
    again = run(["migrate", "--fake", "--to", last], url)
    assert_ok(again)
    assert again.stdout == "nothing to do.\n"


def test_empty_and_baseline_only_database(url: str) -> None:
    before = state(url)
    plan = assert_sql_dry_run(run(["migrate", "--sql"], url), "0001_baseline")
    assert "CREATE TABLE" in plan
    assert "ALTER TABLE" in plan
    assert "recognised a legacy" not in plan
    partial = run(["migrate", "--sql", "--to", "2"], url)
    assert_ok(partial)
    assert ups(partial) == NAMES[:2]

    for target in ("nope", "0", "99", "0003_tenant", "baseline", ""):
        for args in (["migrate"], ["migrate", "--sql"]):
            assert_error(
                run([*args, "--to", target], url),
                exact=f"unknown migration {target!r}; known: {KNOWN}",
            )
    for args in (["rollback"], ["rollback", "--to", "0002_tenants"]):
        assert_error(
            run(args, url), exact="nothing to roll back: this database has no migration history"
        )
    assert_error(run(["tenants", "list"], url), exact=NO_TENANTS)
    assert_error(run(TENANTS_CREATE, url), exact=NO_TENANTS)
    assert state(url) == before
    assert tables(url) == []

    migrate(url, "--to", "1")
    before = state(url)
    assert_error(run(["rollback"], url), exact=NO_BASELINE_ROLLBACK)
    assert_error(run(["tenants", "list"], url), exact=NO_TENANTS)
    assert_error(run(TENANTS_CREATE, url), exact=NO_TENANTS)
    assert state(url) == before

    # A history table with no rows: nothing to undo, and nothing is touched.
    execute(url, f"DELETE FROM {HISTORY}")
    before = state(url)
    result = run(["rollback"], url)
    assert_ok(result)
    assert result.stdout == "nothing to do.\n"
    assert state(url) == before


def test_migrate_legacy_database(legacy: Legacy) -> None:
    url = legacy.url
    before = state(url)

    status = run(["status"], url)
    assert status.exit_code == 1
    assert out_lines(status) == [f"[ ] {n}" for n in NAMES]
    assert state(url) == before

    dry = run(["migrate", "--sql"], url)
    assert_ok(dry)
    statements = out_lines(dry)
    assert statements[0] == ("-- recognised a legacy Relay database")
    assert not any(s.startswith('CREATE TABLE "users"') for s in statements)  # not run
    assert ups(dry)[-len(NAMES) + 1 :] == NAMES[1:]
    assert any(s.startswith("ALTER TABLE") for s in statements)
    assert state(url) == before

    dry_to = run(["migrate", "--sql", "--to", "0003"], url)
    assert_ok(dry_to)
    assert ups(dry_to)[-2:] == ["0002_tenants", "0003_tenant_columns"]
    assert state(url) == before

    result = run(["migrate"], url)
    assert_ok(result)
    assert out_lines(result) == [LEGACY_LINE, *applied_lines(*NAMES[1:])]
    assert history(url) == NAMES

    assert_ok(run(["status"], url))
    again = run(["migrate"], url)
    assert_ok(again)
    assert again.stdout == "nothing to do.\n"


@pytest.mark.parametrize("legacy", [("sqlite", "drizzle")], indirect=True)
def test_migrate_sql_on_legacy_database_does_not_claim_to_run_baseline(
    legacy: Legacy,
) -> None:
    result = run(["migrate", "--sql"], legacy.url)
    assert_ok(result)
    assert "0001_baseline" not in ups(result)


# ---------------------------------------------------------------------------
# status
# ---------------------------------------------------------------------------


def test_status(url: str) -> None:
    result = run(["status"], url)
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert out_lines(result) == [f"[ ] {n}" for n in NAMES]
    assert result.stderr == f"{len(NAMES)} pending: run `relay-peewee migrate`\n"
    assert tables(url) == []  # status never creates the history table

    migrate(url, "--to", "2")
    partial = run(["status"], url)
    assert partial.exit_code == 1
    lines = out_lines(partial)
    assert applied_names(lines[:2]) == NAMES[:2]
    assert lines[2:] == [f"[ ] {n}" for n in NAMES[2:]]
    assert partial.stderr == f"{len(NAMES) - 2} pending: run `relay-peewee migrate`\n"

    migrate(url)
    done = run(["status"], url)
    assert_ok(done)
    assert applied_names(out_lines(done)) == NAMES
    assert done.stderr == ""


def status_json(url: str, exit_code: int) -> dict[str, Any]:
    result = run(["status", "--json"], url)
    assert result.exit_code == exit_code, result.output
    assert result.stderr == ""  # the exit code says it; stdout stays one JSON document
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_status_json(url: str) -> None:
    empty = status_json(url, 1)
    assert [m["name"] for m in empty["migrations"]] == NAMES
    assert (empty["pending"], empty["unknown"]) == (len(NAMES), 0)
    assert all(m["applied"] is None and m["known"] for m in empty["migrations"])

    migrate(url)
    done = status_json(url, 0)
    assert (done["pending"], done["unknown"]) == (0, 0)
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d.*", m["applied"]) for m in done["migrations"]
    )

    insert_future_row(url)
    future = status_json(url, 1)
    assert future["migrations"][-1] == {
        "name": FUTURE,
        "applied": "2030-01-02 03:04:05",
        "known": False,
    }
    assert (future["pending"], future["unknown"]) == (0, 1)


def test_unknown_history_row_is_shown_and_blocks_migrate(url: str) -> None:
    migrate(url, "--to", "4")
    insert_future_row(url)
    result = run(["status"], url)
    assert result.exit_code == 1  # 0005 is still pending
    lines = out_lines(result)
    assert lines[-1] == (
        f"[?] {FUTURE}  2030-01-02 03:04:05  (unknown to this version of relay_peewee)"
    )
    assert lines[4] == "[ ] 0005_audit_logs"

    before = state(url)
    refusal = (
        "the history lists migration(s) this version of relay_peewee does not have: "
        f"{FUTURE}; upgrade relay_peewee before migrating"
    )
    assert_error(run(["migrate"], url), exact=refusal)
    assert_error(run(["migrate", "--sql"], url), exact=refusal)
    assert_error(run(["migrate", "--to", "5"], url), exact=refusal)
    assert_error(run(["rollback"], url), exact=f"cannot roll back {FUTURE}: its file is missing")
    assert state(url) == before

    # With every known migration applied the extra row alone still fails
    # status: `migrate` refuses such a database, so a deploy gate must too.
    execute(url, f"DELETE FROM {HISTORY} WHERE name = '{FUTURE}'")
    migrate(url)
    insert_future_row(url)
    done = run(["status"], url)
    assert done.exit_code == 1
    assert applied_names(out_lines(done)[:-1]) == NAMES
    assert out_lines(done)[-1].startswith(f"[?] {FUTURE}  ")
    assert done.stderr == "1 unknown: upgrade relay_peewee\n"

    # tenants create writes: refused like migrate, nothing written.
    before = state(url)
    assert_error(
        run(TENANTS_CREATE, url),
        exact="the history lists migration(s) this version of relay_peewee does not have: "
        f"{FUTURE}; upgrade relay_peewee before changing tenants",
    )
    assert state(url) == before
    assert_ok(run(["tenants", "list"], url))  # reading is harmless

    # An application's history row (package:name) is not Relay's schema.
    execute(url, f"DELETE FROM {HISTORY} WHERE name = '{FUTURE}'")
    execute(url, f"INSERT INTO {HISTORY} (name, applied) VALUES ('app:0001_x', '2030-01-01')")
    create_tenant(url)


# ---------------------------------------------------------------------------
# rollback
# ---------------------------------------------------------------------------


def test_rollback_one_at_a_time_and_to_a_target(url: str) -> None:
    migrate(url)
    last = run(["rollback"], url)
    assert_ok(last)
    assert last.stdout == f"reverted: {NAMES[-1]}\n"
    assert history(url) == NAMES[:-1]
    status = run(["status"], url)
    assert status.exit_code == 1
    assert out_lines(status)[-1] == f"[ ] {NAMES[-1]}"
    migrate(url)

    to_audit = run(["rollback", "-q", "--to", "0005_audit_logs"], url)
    assert_ok(to_audit)
    assert out_lines(to_audit) == reverted_lines(*NAMES[4:])
    assert to_audit.stderr == ""  # -q: no progress
    assert "audit_logs" not in tables(url)

    keys = run(["rollback"], url)
    assert_ok(keys)
    assert keys.stdout == "reverted: 0004_tenant_keys\n"
    assert keys.stderr  # progress for the long rebuild

    to_tenants = run(["rollback", "--to", "0002_tenants"], url)
    assert_ok(to_tenants)
    assert out_lines(to_tenants) == reverted_lines(*NAMES[1:3])
    assert history(url) == NAMES[:1]
    assert "tenants" not in tables(url)
    with raw(url) as db:
        assert "tenant_id" not in {c.name for c in db.get_columns("users")}

    again = run(["migrate", "-q"], url)
    assert_ok(again)
    assert out_lines(again) == applied_lines(*NAMES[1:])


def test_rollback_refused_while_another_tenant_exists(url: str) -> None:
    migrate(url)
    acme = create_tenant(url)
    insert_user(url, acme)
    before = state(url)
    line = assert_error(run(["rollback", "--to", "0002_tenants"], url), "refusing to ")
    assert state(url) == before, line
    assert history(url) == NAMES  # not even the later migrations were undone


def test_rollback_tenancy_refusal_messages(url: str) -> None:
    migrate(url)
    assert_ok(run(["rollback", "-q", "--to", "0005_audit_logs"], url))
    # Inserted by SQL: audit_logs is gone, so no tenants create is involved.
    acme = insert_tenant(url)
    before = state(url)
    # An empty extra tenant: the tenant columns could go, the tenants table not.
    assert_error(
        run(["rollback", "--to", "0002_tenants"], url),
        exact="refusing to drop tenants: tenants other than the default exist (acme); "
        "delete them first",
    )
    assert state(url) == before

    insert_user(url, acme)
    before = state(url)
    for args in (["rollback"], ["rollback", "--to", "3"], ["rollback", "--to", "0002_tenants"]):
        assert_error(
            run(args, url),
            exact="refusing to undo tenancy: tenants other than the default hold data in "
            "users (1 rows); move or delete those rows first",
        )
        assert state(url) == before


def test_rollback_refusals_at_baseline_and_audit_logs(url: str) -> None:
    migrate(url)
    before = state(url)
    assert_error(run(["rollback", "--to", "0001_baseline"], url), exact=NO_BASELINE_ROLLBACK)
    assert state(url) == before

    execute(
        url,
        "INSERT INTO audit_logs (id, action, created_at) VALUES "
        "('00000000-0000-4000-8000-000000000001', 'login', CURRENT_TIMESTAMP)",
    )
    before = state(url)
    assert_error(
        run(["rollback", "--to", "0005_audit_logs"], url),
        exact="refusing to drop audit_logs: it holds 1 security event(s); export them, "
        "lift the append-only rule (`relay-peewee rollback --to 0007_audit_log_append_only`),"
        " delete them, then roll back again",
    )
    assert state(url) == before
    # The advice works: lift the rule, delete, roll back.
    assert_ok(run(["rollback", "--to", "0007_audit_log_append_only"], url))
    execute(url, "DELETE FROM audit_logs")
    assert_ok(run(["rollback", "--to", "0005_audit_logs"], url))
    assert "audit_logs" not in tables(url)


# ---------------------------------------------------------------------------
# tenants
# ---------------------------------------------------------------------------


def test_tenants_create_and_list(url: str) -> None:
    migrate(url)
    result = run([*TENANTS_CREATE, "--domain", "acme.example"], url)
    assert_ok(result)
    match = re.fullmatch(r"created tenant acme: (\S+)\n", result.stdout)
    assert match, result.stdout
    acme = match[1]
    uuid.UUID(acme)

    before = state(url)
    for slug in ("acme", "default"):
        assert_error(
            run(["tenants", "create", "--slug", slug, "--name", "Other"], url),
            exact=f"a tenant with slug {slug!r} already exists",
        )
    for slug in ("Bad Slug", "ACME", "-acme", "acme-", "a_b", "", "a" * 65, "acmé"):
        assert_error(
            run(["tenants", "create", "--slug", slug, "--name", "X"], url),
            f"invalid slug {slug!r}: use 1-64 lower-case letters, digits and dashes",
        )
    assert_error(
        run(["tenants", "create", "--slug", "blank", "--name", "   "], url),
        exact="a tenant needs a non-empty name",
    )
    assert state(url) == before

    beta = create_tenant(url, "beta-2", "  Beta Two ")
    listing = run(["tenants", "list", "--json"], url)
    assert_ok(listing)
    assert json.loads(listing.stdout) == [
        {
            "id": DEFAULT_TENANT_ID,
            "slug": "default",
            "name": "Default",
            "domain": None,
            "active": True,
        },
        {"id": acme, "slug": "acme", "name": "Acme", "domain": "acme.example", "active": True},
        {"id": beta, "slug": "beta-2", "name": "Beta Two", "domain": None, "active": True},
    ]
    table = out_lines(run(["tenants", "list"], url))
    assert table[0].split() == ["ID", "SLUG", "NAME", "DOMAIN", "ACTIVE"]
    assert table[2].split() == [acme, "acme", "Acme", "acme.example", "yes"]
    # columns are aligned: every row puts its slug where the header's SLUG is
    column = table[0].index("SLUG")
    assert [row[column:].split()[0] for row in table[1:]] == ["default", "acme", "beta-2"]

    for slug in ("a", "7", "a" * 64, "a-b-c-1"):  # the edges of a valid slug
        create_tenant(url, slug, "X")


def test_tenants_list_shows_whole_slugs_and_unescaped_names(url: str) -> None:
    migrate(url)
    slug, name, long_name = "a" * 64, "Café Zürich 東京", "N" * 70
    create_tenant(url, slug, name)
    create_tenant(url, "long-name", long_name)
    table = out_lines(run(["tenants", "list"], url))
    assert table[2].split()[1:3] == [slug, "Café"]
    # Only the display name is cut to fit a terminal; identifiers never are.
    assert table[3].split()[2] == "N" * 57 + "..."
    listing = run(["tenants", "list", "--json"], url)
    assert_ok(listing)
    assert f'"name": "{name}"' in listing.stdout
    assert f'"slug": "{slug}"' in listing.stdout
    assert [t["name"] for t in json.loads(listing.stdout)][1:] == [name, long_name]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tenants", "create", "--name", "Acme"], "Missing option '--slug'"),
        (["tenants", "create", "--slug", "acme"], "Missing option '--name'"),
        (["migrate", "--bogus"], "No such option '--bogus'"),
        (["audit", "--jsn"], "No such option '--jsn'. Did you mean '--json'?"),
        (["rollback", "--to"], "Option '--to' requires an argument"),
        (["migrate", "--lock-timeout", "abc"], "Invalid value for '--lock-timeout'"),
        (["nonsense"], "No such command 'nonsense'"),
        (["tenants", "nonsense"], "No such command 'nonsense'"),
    ],
)
def test_usage_errors_are_one_line_and_exit_64(
    args: list[str], message: str, tmp_path: Path
) -> None:
    # 64 (EX_USAGE), not click's 2: audit exits 2 when it cannot read the
    # database, and a gate must not read `audit --jsn` as that.
    path = tmp_path / "never-opened.db"
    result = run(args, runner=CliRunner(env={"DATABASE_URL": f"sqlite:///{path}"}))
    assert result.exit_code == EXIT_USAGE == 64, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error: {message}"), lines[0]
    assert not path.exists()


BAD_LOCK_TIMEOUTS = ["nan", "NaN", "inf", "-inf", "1e400", "0", "3000000"]


def test_lock_timeout_must_be_finite_on_both_backends(url: str) -> None:
    # nan passed FloatRange (every comparison with it is false) and inf
    # reached round(): a traceback on PostgreSQL --online, silence on SQLite.
    migrate(url, "--to", "1")
    before = state(url)
    for value in BAD_LOCK_TIMEOUTS:
        for extra in ([], ["--online"], ["--sql"], ["--sql", "--online"]):
            result = run(["migrate", *extra, "--lock-timeout", value], url)
            assert result.exit_code == EXIT_USAGE, (value, extra, result.output)
            assert "Traceback" not in result.output
            assert result.stdout == ""
            (line,) = result.stderr.splitlines()
            assert line.startswith("Error: Invalid value for '--lock-timeout': "), line
    assert state(url) == before


@pytest.mark.parametrize("seconds", [float("nan"), float("inf"), -1.0, 0.0])
def test_lock_timeout_is_checked_by_the_library_too(url: str, seconds: float) -> None:
    db = open_database(url)
    try:
        online = isinstance(db, PostgresqlDatabase)
        with pytest.raises(MigrationError, match="--lock-timeout must be a number of seconds"):
            commands.migrate(db, online=online, lock_timeout=seconds)
    finally:
        db.close()
    assert tables(url) == []


def test_a_group_without_a_command_shows_its_help_and_exits_64() -> None:
    for args in ([], ["tenants"], ["users"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == EXIT_USAGE, (args, result.output)
        assert result.stderr.startswith("Usage: "), result.stderr


def test_exit_codes_are_distinct_and_listed_in_help() -> None:
    codes = [code for code, _ in EXIT_CODES]
    assert codes == sorted(set(codes)) == [0, 1, 2, 64, 130]
    result = CliRunner().invoke(cli, ["--help"])
    assert_ok(result)
    text = result.stdout[result.stdout.index("Exit codes:") :]
    for code, meaning in EXIT_CODES:
        assert re.search(rf"^ +{code} +{re.escape(meaning.split()[0])}", text, re.M), code


# ---------------------------------------------------------------------------
# Connecting
# ---------------------------------------------------------------------------

COMMANDS = [
    ["migrate"],
    ["migrate", "--sql"],
    ["status"],
    ["rollback"],
    ["tenants", "list"],
    TENANTS_CREATE,
]
COMMAND_IDS = ["migrate", "migrate-sql", "status", "rollback", "tenants-list", "tenants-create"]


@pytest.mark.parametrize("args", COMMANDS, ids=COMMAND_IDS)
@pytest.mark.parametrize(
    ("bad_url", "expected"),
    [
        pytest.param(
            "foo://x",
            "unsupported database URL 'foo://x': scheme 'foo' is not one of ",
            id="unknown-scheme",
        ),
        pytest.param(UNREACHABLE_PG, f"cannot connect to {UNREACHABLE_PG}: ", id="unreachable"),
    ],
)
def test_connection_errors_are_one_line(args: list[str], bad_url: str, expected: str) -> None:
    assert_error(run(args, bad_url), expected)


def test_read_only_commands_refuse_a_missing_sqlite_file(
    missing_sqlite: tuple[str, Path],
) -> None:
    url, path = missing_sqlite
    for args in COMMANDS:
        if args[0] == "migrate":
            continue
        assert_error(run(args, url), exact=f"no such database file: {path}")
    assert not path.exists()


def test_migrate_sql_on_a_missing_sqlite_file_plans_all_and_creates_nothing(
    missing_sqlite: tuple[str, Path],
) -> None:
    url, path = missing_sqlite
    result = run(["migrate", "--sql"], url)
    assert_sql_dry_run(result, "0001_baseline")
    assert not path.exists()
    created = run(["migrate", "-q"], url)
    assert_ok(created)
    assert out_lines(created) == applied_lines(*NAMES)
    assert path.is_file()


def test_a_refused_migrate_creates_no_sqlite_file(missing_sqlite: tuple[str, Path]) -> None:
    url, path = missing_sqlite
    for args, fragment in (
        (["migrate", "--to", "99"], "unknown migration '99'"),
        (["migrate", "--to", "nope"], "unknown migration 'nope'"),
        (["migrate", "--online"], "--online is for PostgreSQL"),
    ):
        assert_error(run(args, url), fragment)
        assert sorted(p.name for p in path.parent.iterdir()) == [], args
    # A file that was there before a refusal stays, empty or not.
    path.touch()
    assert_error(run(["migrate", "--to", "99"], url), "unknown migration '99'")
    assert path.is_file()
    assert_ok(run(["migrate", "-q"], url))
    before = state(url)
    assert_error(run(["migrate", "--online"], url), "--online is for PostgreSQL")
    assert state(url) == before


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """``path`` unwritable for this process; root ignores modes, so it gets
    the immutable flag instead (skipped where the filesystem has none)."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o444)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode:
        pytest.skip("cannot make a file read-only for root here (no chattr +i)")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


def test_migrate_sql_on_a_read_only_half_migrated_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "half.db"
    url = f"sqlite:///{path}"
    migrate(url, "--to", "3")
    expected = run(["migrate", "--sql"], url)
    assert_sql_dry_run(expected, "0004_tenant_keys")
    before = state(url)
    with read_only(path):
        with pytest.raises(Exception, match="readonly"):
            execute(url, "DELETE FROM tenants")  # the file really is read-only
        result = run(["migrate", "--sql"], url)
        assert_sql_dry_run(result, "0004_tenant_keys")
        stamp = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?")
        assert stamp.sub("T", result.stdout) == stamp.sub("T", expected.stdout)
        assert_ok(run(["tenants", "list"], url))
    assert state(url) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half.db"]


def test_sqlite_file_in_missing_folder() -> None:
    url = "sqlite:////nonexistent-relay-dir/relay.db"
    assert_error(run(["migrate"], url), f"cannot connect to {url}: unable to open database file")
    for args in COMMANDS:
        if args[0] != "migrate":
            assert_error(
                run(args, url), exact="no such database file: /nonexistent-relay-dir/relay.db"
            )


def test_migrate_sql_in_missing_folder_fails_like_migrate() -> None:
    url = "sqlite:////nonexistent-relay-dir/relay.db"
    assert_error(
        run(["migrate", "--sql"], url),
        exact="cannot create /nonexistent-relay-dir/relay.db: "
        "no such folder /nonexistent-relay-dir",
    )


def test_password_is_redacted_from_connection_errors() -> None:
    line = assert_error(run(["status"], "postgresql://root:s3cret@127.0.0.1:1/x"))
    assert "s3cret" not in line
    assert "postgresql://root:***@127.0.0.1:1/x" in line


@pytest.mark.parametrize(
    ("bad_url", "message"),
    [
        pytest.param(
            "postgresql://root:s3cret@127.0.0.1:notaport/x",
            "cannot open 'postgresql://root:***@127.0.0.1:notaport/x': ",
            id="bad-port",
        ),
        pytest.param(
            "foo://root:s3cret@db.example/x",
            "unsupported database URL 'foo://root:***@db.example/x': ",
            id="unknown-scheme",
        ),
    ],
)
def test_password_is_redacted_from_url_errors(bad_url: str, message: str) -> None:
    line = assert_error(run(["status"], bad_url), message)
    assert "s3cret" not in line


def test_malformed_url_is_one_line() -> None:
    assert_error(run(["status"], "postgresql://root@[::1/x"), "postgresql://root@[::1/x")


@pytest.mark.postgres_only
def test_missing_postgres_database_is_one_line() -> None:
    url = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/relay_missing_{uuid.uuid4().hex[:12]}"
    assert_error(run(["status"], url), f"cannot connect to {url}: ")


@pytest.mark.parametrize("bad_url", ["sqlite:///", "sqlite://"])
def test_sqlite_url_without_a_path_is_refused(bad_url: str) -> None:
    assert_error(
        run(["migrate"], bad_url),
        exact=f"database URL {bad_url!r} names no file (sqlite:///path.db)",
    )


def test_database_url_env_var_is_used(url: str) -> None:
    runner = CliRunner(env={"DATABASE_URL": url})
    result = run(["migrate", "-q"], runner=runner)
    assert_ok(result)
    assert out_lines(result) == applied_lines(*NAMES)
    assert_ok(run(["status"], runner=runner))
    assert history(url) == NAMES
    listing = run(["tenants", "list"], runner=runner)
    assert_ok(listing)
    assert out_lines(listing)[1].startswith(DEFAULT_TENANT_ID)


def test_database_option_wins_over_env_var(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'explicit.db'}"
    runner = CliRunner(env={"DATABASE_URL": "foo://x"})
    assert_ok(run(["migrate", "-q"], url, runner=runner))
    assert history(url) == NAMES
    assert_error(run(["status"], runner=runner), "unsupported database URL 'foo://x'")


def test_default_database_is_relay_db_in_current_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner(env={"DATABASE_URL": None})
    result = run(["migrate", "-q"], runner=runner)
    assert_ok(result)
    assert out_lines(result) == applied_lines(*NAMES)
    db_file = tmp_path / "relay.db"
    assert db_file.is_file()
    assert history(f"sqlite:///{db_file}") == NAMES
    assert_ok(run(["status"], runner=runner))


# ---------------------------------------------------------------------------
# Unrecognised databases
# ---------------------------------------------------------------------------

USERS_ONLY = "CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT NOT NULL)"


@pytest.mark.parametrize(
    ("ddl", "fragments"),
    [
        pytest.param(
            [USERS_ONLY],
            [
                "not a Relay database relay_peewee can adopt (no relay_peewee_migrations table",
                "missing tables api_keys, ratings, site_settings, skill_embeddings, "
                "skill_reviews, skill_versions, skills, usage_events",
                "users lacks column(s) created_at, email_verified, image, name, updated_at",
                "; nothing was changed",
            ],
            id="users-only",
        ),
        pytest.param(
            ["CREATE TABLE tenants (id TEXT PRIMARY KEY)", "CREATE TABLE other (x INTEGER)"],
            ["tenants already exists", "missing tables api_keys, ratings,"],
            id="tenants-only",
        ),
        # Some other application's database: its tables, none of Relay's.
        pytest.param(
            ["CREATE TABLE foo (id INTEGER PRIMARY KEY)"],
            ["not a Relay database: it holds foo, notes and none of Relay's tables"],
            id="foo-only",
        ),
        pytest.param(
            ['CREATE TABLE orders (id INTEGER PRIMARY KEY, "user" TEXT)'],
            ["not a Relay database: it holds notes, orders and none of Relay's tables"],
            id="orders-only",
        ),
    ],
)
def test_unrecognised_database_is_refused_unchanged(
    url: str, ddl: list[str], fragments: list[str]
) -> None:
    for statement in ddl:
        execute(url, statement)
    execute(url, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    execute(url, "INSERT INTO notes (id, body) VALUES (1, 'keep me')")
    before = state(url)
    for args in (["migrate"], ["migrate", "--sql"], ["migrate", "--to", "2"]):
        assert_error(run(args, url), *fragments)
        assert state(url) == before
    assert_error(run(["rollback"], url), *fragments)
    if "tenants" in tables(url):
        # A tenants table that is not ours: the query fails, as one line.
        assert_error(run(["tenants", "list"], url), "database error: ")
    assert state(url) == before


def test_legacy_database_with_tenant_id_is_refused(url: str) -> None:
    migrate(url)
    execute(url, f"DROP TABLE {HISTORY}")
    execute(url, "DROP TABLE audit_logs")
    before = state(url)
    assert_error(run(["migrate"], url), "tenants already exists", "users already has tenant_id")
    assert state(url) == before


# ---------------------------------------------------------------------------
# Help, version and entry points
# ---------------------------------------------------------------------------


def _walk(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _walk(sub, (*path, name))


ALL_PATHS = list(_walk(cli))


def test_command_tree_has_every_command_tested_here() -> None:
    assert set(ALL_PATHS) >= {
        (),
        ("migrate",),
        ("rollback",),
        ("status",),
        ("tenants",),
        ("tenants", "create"),
        ("tenants", "list"),
    }


@pytest.mark.parametrize("path", ALL_PATHS, ids=lambda p: "-".join(p) or "root")
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    assert command.help and command.help.strip()
    for option in command.params:
        if isinstance(option, click.Option):
            assert option.help and option.help.strip(), option.name
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert_ok(result)
    assert "Usage:" in result.stdout
    first_line = command.help.strip().splitlines()[0]
    assert " ".join(first_line.split()) in " ".join(result.stdout.split())
    if not isinstance(command, click.Group) and path:
        assert "--database URL" in result.stdout


@pytest.mark.parametrize("path", ALL_PATHS, ids=lambda p: "-".join(p) or "root")
def test_dash_h_is_help_everywhere(path: tuple[str, ...]) -> None:
    short, long = (CliRunner().invoke(cli, [*path, flag]) for flag in ("-h", "--help"))
    assert_ok(short)
    assert short.stdout == long.stdout


@pytest.mark.parametrize(
    "path", [("migrate",), ("status",), ("tenants", "create"), ("users", "move")]
)
def test_help_shows_examples(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert_ok(result)
    examples = result.stdout[result.stdout.index("Examples:") :].splitlines()[1:]
    assert examples and examples[0].strip().startswith(f"relay-peewee {' '.join(path)}")


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert_ok(result)
    assert re.search(r"\d+\.\d+", result.stdout)


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)
    return env


def test_top_level_cli_py_help() -> None:
    proc = subprocess.run(
        [sys.executable, "cli.py", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=_subprocess_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: relay-peewee ")
    for name in ("migrate", "rollback", "status", "tenants"):
        assert name in proc.stdout


def _console_script() -> str:
    beside = Path(sys.executable).parent / "relay-peewee"
    found = str(beside) if beside.exists() else shutil.which("relay-peewee")
    assert found, "the relay-peewee console script is not installed"
    return found


def test_console_script_help() -> None:
    proc = subprocess.run(
        [_console_script(), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_subprocess_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: relay-peewee ")
    assert "tenants" in proc.stdout


def test_console_script_error_is_one_line_on_stderr() -> None:
    proc = subprocess.run(
        [_console_script(), "status", "--database", "foo://x"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_subprocess_env(),
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith("Error: unsupported database URL 'foo://x'")


# ---------------------------------------------------------------------------
# Local fixtures
# ---------------------------------------------------------------------------


@pytest.fixture
def url(db_url: str) -> str:
    """``db_url`` as an existing, empty database (SQLite: an empty file)."""
    path = sqlite_file(db_url)
    if path is not None:
        path.touch()
    return db_url


@pytest.fixture
def missing_sqlite(tmp_path: Path) -> tuple[str, Path]:
    """A SQLite URL whose file does not exist yet."""
    path = tmp_path / "missing.db"
    return f"sqlite:///{path}", path
