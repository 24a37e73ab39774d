"""An application's own tables through the same engine: examples/invoicing.

The example application keeps ``customers``, ``invoices`` (referencing
Relay's ``users``) and ``payments`` in Relay's database, with an unmodelled
``invoice_notes`` child (ON DELETE CASCADE), a view, a CHECK and a global
unique to swap. Here its populated legacy tables are migrated by its own
scripts through the CLI, from its folder, reading its pyproject.toml - on
SQLite and PostgreSQL - then audited, attacked across tenants, rolled back.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from helpers import CLI, Legacy, build_legacy, kill_cli_at
from peewee import Database, IntegrityError

from relay_peewee.audit import audit_schema
from relay_peewee.cli import cli
from relay_peewee.config import load_models
from relay_peewee.database import catalog
from relay_peewee.migrator.runner import MigrationRunner
from relay_peewee.operations.commands import migrate

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "invoicing"
DEFAULT_TENANT_ID = "default-tenant-000-0000-000000000000"
APP = "invoicing.migrations"
APP_TABLES = ("customers", "invoices", "payments", "invoice_notes")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.db")
N = {"customers": 4, "invoices": 6, "payments": 9, "invoice_notes": 5}

if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))
baseline = importlib.import_module("invoicing.migrations.0001_baseline")


@pytest.fixture(
    params=[
        pytest.param(("sqlite", "inline"), id="sqlite", marks=pytest.mark.sqlite_only),
        pytest.param(("postgres", "drizzle"), id="postgres", marks=pytest.mark.postgres_only),
    ]
)
def app_legacy(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Legacy]:
    """A populated legacy Relay database holding the application's legacy tables too."""
    backend, style = request.param
    if backend == "postgres":
        url = str(request.getfixturevalue("pg_url"))
    else:
        url = f"sqlite:///{tmp_path / 'app.db'}"
    legacy = build_legacy(url, backend, style)
    db = legacy.db
    for statement in baseline.POSTGRES if backend == "postgres" else baseline.SQLITE:
        db.execute_sql(statement)
    users = [r[0] for r in db.execute_sql("SELECT id FROM users ORDER BY id").fetchall()]
    p = db.param
    with db.atomic():
        for i in range(N["customers"]):
            db.execute_sql(
                f"INSERT INTO customers (id, name, email) VALUES ({p}, {p}, {p})",
                (f"c{i}", f"Customer {i}", f"c{i}@example.com"),
            )
        for i in range(N["invoices"]):
            db.execute_sql(
                "INSERT INTO invoices (id, number, customer_id, owner_id, total)"
                f" VALUES ({p}, {p}, {p}, {p}, {p})",
                (f"i{i}", f"INV-{i}", f"c{i % N['customers']}", users[i % len(users)], 100 * i),
            )
        for i in range(N["payments"]):
            db.execute_sql(
                f"INSERT INTO payments (id, invoice_id, amount) VALUES ({p}, {p}, {p})",
                (f"p{i}", f"i{i % N['invoices']}", 10 + i),
            )
        for i in range(N["invoice_notes"]):
            db.execute_sql(
                f"INSERT INTO invoice_notes (invoice_id, body) VALUES ({p}, {p})",
                (f"i{i % N['invoices']}", f"note {i}"),
            )
    # The CLI runs from the application's folder, as its users would.
    monkeypatch.chdir(EXAMPLE)
    try:
        yield legacy
    finally:
        db.close()


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def app_rows(db: Database) -> dict[str, list[tuple[object, ...]]]:
    out = {}
    for table in APP_TABLES:
        cols = [c for c in catalog.table_columns(db, table) if c != "tenant_id"]
        select = ", ".join(cols)
        out[table] = sorted(
            tuple(map(str, r)) for r in db.execute_sql(f"SELECT {select} FROM {table}")
        )
    out["invoice_balances"] = sorted(
        tuple(map(str, r)) for r in db.execute_sql("SELECT * FROM invoice_balances")
    )
    if db.param == "?":  # SQLite: the trigger and the CHECKs survive every rebuild
        out["schema"] = sorted(
            (name, " ".join(sql.split()))
            for name, sql in db.execute_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
                " AND tbl_name IN ('customers', 'invoices', 'payments', 'invoice_notes')"
            ).fetchall()
        )
        checks = []
        for table in ("invoices", "payments"):
            (sql,) = db.execute_sql(
                "SELECT sql FROM sqlite_master WHERE name = ?", (table,)
            ).fetchone()
            checks.append(" ".join(sql.split()).count("CHECK ("))
        out["checks"] = [tuple(map(str, checks))]
    else:
        out["checks"] = sorted(
            tuple(map(str, r))
            for r in db.execute_sql(
                "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE contype = 'c' AND conrelid::regclass::text IN ('invoices', 'payments')"
            )
        )
    return out


def test_cli_migrates_the_application_tables_after_relays(app_legacy: Legacy) -> None:
    db, url = app_legacy.db, app_legacy.url
    before = app_rows(db)
    result = run("migrate", "--database", url, "-q")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("recognised a legacy Relay database")
    applied = [line.removeprefix("applied: ") for line in lines[1:]]
    # Relay's migrations under their bare names, then the application's with its package.
    assert applied[-2:] == [f"{APP}:0001_baseline", f"{APP}:0002_tenantize"]
    assert all(":" not in name for name in applied[:-2])

    db.connect(reuse_if_open=True)
    assert app_rows(db) == before  # nothing lost: rows, cascade children, the view
    for table in ("customers", "invoices", "payments"):
        column = next(c for c in catalog.columns(db, table) if c.name == "tenant_id")
        assert column.not_null and (
            column.default is None or str(column.default).upper().startswith("NULL")
        )
        (other,) = db.execute_sql(
            f"SELECT count(*) FROM {table} WHERE tenant_id <> '{DEFAULT_TENANT_ID}'"
        ).fetchone()
        assert other == 0
    if app_legacy.backend == "postgres":
        # Its view reads with the reader's rights, so row-level security binds it.
        (options,) = db.execute_sql(
            "SELECT reloptions FROM pg_class WHERE relname = 'invoice_balances'"
        ).fetchone()
        assert "security_invoker=true" in options
    # The unmodelled child's cascade still works.
    db.execute_sql("DELETE FROM invoices WHERE id = 'i1'")
    (notes,) = db.execute_sql(
        "SELECT count(*) FROM invoice_notes WHERE invoice_id = 'i1'"
    ).fetchone()
    assert notes == 0

    status = run("status", "--database", url)
    assert status.exit_code == 0, status.output
    assert f"[x] {APP}:0002_tenantize" in status.output

    audit = run("audit", "--database", url)
    assert audit.exit_code == 0, audit.output
    assert " error " not in audit.output and "0 errors" in audit.output
    for table in ("customers", "invoices", "payments"):
        assert f"  {table}  " not in audit.output  # no finding at all for its tables
    assert "invoice_notes" in audit.output  # listed as an unmodelled table (info)

    again = run("migrate", "--database", url)
    assert again.output.strip() == "nothing to do."

    # The README's Python audit, from the application's folder: its history
    # rows are known through [tool.relay_peewee], as the CLI reads them.
    app_models = load_models(["invoicing.models"])
    assert [f for f in audit_schema(db, models=app_models) if f.severity == "error"] == []
    unnamed = audit_schema(db, models=app_models, migrations=())  # explicitly none
    assert [f.check for f in unnamed if f.severity == "error"] == ["migration-unknown"]


def test_database_refuses_cross_tenant_rows_in_the_application_tables(
    app_legacy: Legacy,
) -> None:
    db, url = app_legacy.db, app_legacy.url
    assert run("migrate", "--database", url, "-q").exit_code == 0
    db.connect(reuse_if_open=True)
    other = "other-tenant"
    db.execute_sql(
        "INSERT INTO tenants (id, name, slug, is_active, plan, created_at, updated_at) "
        f"VALUES ('{other}', 'Other', 'other', true, 'freemium', "
        "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
    )
    # A per-tenant unique: the other tenant may reuse an invoice number and an address...
    db.execute_sql(
        f"INSERT INTO customers (id, tenant_id, name, email) VALUES "
        f"('oc', '{other}', 'O', 'c0@example.com')"
    )
    db.execute_sql(
        "INSERT INTO invoices (id, tenant_id, number, customer_id, total) VALUES "
        f"('oi', '{other}', 'INV-0', 'oc', 5)"
    )
    # ...but not point at the default tenant's rows, through any reference.
    attacks = [
        "INSERT INTO payments (id, tenant_id, invoice_id, amount) "
        f"VALUES ('x1', '{other}', 'i0', 1)",
        "INSERT INTO invoices (id, tenant_id, number, customer_id, total) "
        f"VALUES ('x2', '{other}', 'INV-9', 'c0', 1)",
        "UPDATE invoices SET owner_id = (SELECT min(id) FROM users) WHERE id = 'oi'",
        "INSERT INTO invoices (id, number, customer_id, total) VALUES ('x3', 'N', 'c0', 1)",
    ]
    for sql in attacks:
        with pytest.raises(IntegrityError), db.atomic():
            db.execute_sql(sql)
    # The global unique is gone within a tenant's own rows only.
    with pytest.raises(IntegrityError), db.atomic():
        db.execute_sql(
            "INSERT INTO invoices (id, tenant_id, number, customer_id, total) "
            f"VALUES ('x4', '{DEFAULT_TENANT_ID}', 'INV-0', 'c0', 1)"
        )


def test_rollback_and_sql_cover_the_application_migrations(app_legacy: Legacy) -> None:
    db, url = app_legacy.db, app_legacy.url
    before = app_rows(db)
    plan = run("migrate", "--database", url, "--sql")
    assert plan.exit_code == 0, plan.output
    assert f"-- up: {APP}:0002_tenantize" in plan.output
    db.connect(reuse_if_open=True)
    assert "relay_peewee_migrations" not in db.get_tables()  # --sql changed nothing
    assert run("migrate", "--database", url, "-q").exit_code == 0

    back = run("rollback", "--database", url, "-q")
    assert back.exit_code == 0, back.output
    assert back.output.strip() == f"reverted: {APP}:0002_tenantize"
    db.connect(reuse_if_open=True)
    assert app_rows(db) == before
    for table in ("customers", "invoices", "payments"):
        assert "tenant_id" not in catalog.table_columns(db, table)
    assert catalog.unique_on(db, "invoices", ("number",))  # the global unique is back
    # Relay's own keys on its parent tables stay: users (tenant_id, id).
    assert catalog.unique_on(db, "users", ("tenant_id", "id"))
    status = run("status", "--database", url)
    assert status.exit_code == 1 and f"[ ] {APP}:0002_tenantize" in status.output
    assert run("migrate", "--database", url, "-q").exit_code == 0
    db.connect(reuse_if_open=True)
    assert app_rows(db) == before


def test_a_database_migrated_by_relay_alone_adds_the_application_migrations(
    app_legacy: Legacy,
) -> None:
    db, url = app_legacy.db, app_legacy.url
    # An earlier release (or a run without the application) migrated Relay's tables.
    migrate(db)
    relay_only = [s.name for s in MigrationRunner(db).statuses()]
    result = run("migrate", "--database", url, "-q")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"applied: {APP}:0001_baseline",
        f"applied: {APP}:0002_tenantize",
    ]
    names = [s.name for s in MigrationRunner(db, migrations=[APP]).statuses()]
    assert names == [*relay_only, f"{APP}:0001_baseline", f"{APP}:0002_tenantize"]
    # Without the application's package its rows are unknown, and migrate refuses.
    # (--migrations given replaces the pyproject.toml default.)
    refused = run("migrate", "--database", url, "--migrations", "relay_peewee.migrations")
    assert refused.exit_code == 1
    assert f"does not have: {APP}:0001_baseline, {APP}:0002_tenantize" in refused.output
    assert "--migrations" in refused.output


def test_the_example_application_tests_pass_through_the_plugin(
    pytester: pytest.Pytester,
) -> None:
    """Its relay_db applies its migrations, read from its pyproject.toml, on every backend."""
    shutil.copytree(EXAMPLE, pytester.path, dirs_exist_ok=True, ignore=_IGNORE)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    # 4 tests x (sqlite, postgres, postgres_rls); the RLS one skips off postgres_rls.
    result.assert_outcomes(passed=10, skipped=2)


def test_makemigration_drafts_the_tenantize_script_and_check_gates_ci(
    app_legacy: Legacy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = app_legacy.url
    assert run("migrate", "--database", url, "-q", "--to", f"{APP}:0001").exit_code == 0
    check = run("makemigration", "--check", "--database", url)
    assert check.exit_code == 1
    assert check.output.splitlines() == [
        "tenantize customers",
        "tenantize invoices",
        "tenantize payments",
    ]
    # Written into another package, so the example's own folder stays as it is.
    (tmp_path / "drafts13").mkdir()
    (tmp_path / "drafts13" / "__init__.py").write_text("")
    monkeypatch.chdir(tmp_path)
    wrote = run(
        "makemigration",
        "tenantize",
        "--database",
        url,
        "--migrations",
        "drafts13",
        "--models",
        "invoicing.models",
    )
    assert wrote.exit_code == 0, wrote.output
    path = tmp_path / "drafts13" / "0001_tenantize.py"
    assert wrote.output.strip() == f"wrote {path}"
    drafted = importlib.import_module("drafts13.0001_tenantize")
    shipped = importlib.import_module(f"{APP}.0002_tenantize")
    assert drafted.PLAN == shipped.PLAN and drafted.ONLINE
    sys.modules.pop("drafts13", None)
    sys.modules.pop("drafts13.0001_tenantize", None)

    monkeypatch.chdir(EXAMPLE)
    assert run("migrate", "--database", url, "-q").exit_code == 0
    agree = run("makemigration", "--check", "--database", url)
    assert agree.exit_code == 0, agree.output
    assert agree.output.strip() == "models and database agree."


# Progress lines announce a step before it runs: killing right after one
# interrupts that step of the application's 0002_tenantize.
APP_CUTS = [
    (False, "invoices: add tenant_id"),
    (False, "rebuilding|customers: tenant foreign key"),
    (True, "invoices: add tenant_id"),
    (True, "invoices: building index"),
    (True, "payments.invoice_id: validating"),
    (True, "payments: row-level security"),
]


@pytest.mark.parametrize(("online", "step"), APP_CUTS)
def test_kill_9_inside_the_application_migration_then_migrate_again(
    app_legacy: Legacy, online: bool, step: str
) -> None:
    db, url = app_legacy.db, app_legacy.url
    if online and app_legacy.backend != "postgres":
        pytest.skip("online mode is PostgreSQL only")
    before = app_rows(db)
    db.close()
    mode = ["--online"] if online else []
    kill_cli_at(["migrate", "--database", url, *mode], step)

    again = run("migrate", "--database", url, "-q", *mode)
    assert again.exit_code == 0, again.output
    assert f"{APP}:0002_tenantize" in again.output
    db.connect(reuse_if_open=True)
    assert app_rows(db) == before
    audit = run("audit", "--database", url)
    assert audit.exit_code == 0, audit.output
    assert "0 errors" in audit.output


def test_roles_grant_the_application_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(EXAMPLE)
    from invoicing.models import Customer, Invoice, Payment

    from relay_peewee.operations.roles import role_statements

    grants = [
        s
        for s in role_statements(models=[Customer, Invoice, Payment])
        if s.startswith("GRANT SELECT, INSERT, UPDATE, DELETE") and "invoices" in s
    ]
    assert len(grants) == 1
    on = grants[0].split(" ON ")[1].split(" TO ")[0]
    assert on.endswith('"customers", "invoices", "payments"')
    result = run("roles")  # from the example's folder: its pyproject.toml names the models
    assert '"customers", "invoices", "payments" TO "relay_app", "relay_admin";' in result.output


def test_audit_flags_a_plain_foreign_key_between_tenant_models(migrated_db: Database) -> None:
    from peewee import ForeignKeyField, IntegerField, TextField

    from relay_peewee import TenantModel
    from relay_peewee.audit import audit_schema

    class Bill(TenantModel):
        id = TextField(primary_key=True)

        class Meta:
            table_name = "bills13"
            tenant_unique = [("id",)]

    class BillPayment(TenantModel):
        bill = ForeignKeyField(Bill)  # invoice_id -> invoices(id) alone
        amount = IntegerField()

        class Meta:
            table_name = "bill_payments13"

    migrated_db.create_tables([Bill, BillPayment])
    findings = audit_schema(migrated_db, [Bill, BillPayment])
    flagged = [f for f in findings if f.check == "tenant-reference"]
    assert [(f.severity, f.table) for f in flagged] == [("error", "bill_payments13")]
    assert "TenantForeignKeyField" in flagged[0].message


@pytest.mark.parametrize(
    ("pyproject", "args", "message"),
    [
        ("[tool.relay_peewee]\nmigrations = 3\n", [], "must be a list of dotted module names"),
        ("[tool.relay_peewee\n", [], "cannot read"),
        ("", ["--migrations", "no_such_pkg13"], "cannot import migrations package"),
        ("", ["--migrations", "textwrap"], "is a module, not a package"),
        ("", ["--migrations", "bad name"], "invalid migrations package name"),
    ],
)
def test_bad_application_config_is_one_line_and_changes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pyproject: str,
    args: list[str],
    message: str,
) -> None:
    (tmp_path / "pyproject.toml").write_text(pyproject)
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = CliRunner().invoke(cli, ["migrate", "--database", url, *args])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0]
    assert not (tmp_path / "x.db").exists() or "relay_peewee_migrations" not in (
        (tmp_path / "x.db").read_bytes().decode("latin-1")
    )


MORE_MODELS = """
from peewee import IntegerField, Model, TextField

from relay_peewee import TenantModel, database_proxy
from relay_peewee.fields import TenantForeignKeyField
from invoicing.models import Invoice
from relay_peewee.models import User


class CustomerWithPhone(TenantModel):
    id = TextField(primary_key=True)
    name = TextField()
    email = TextField()
    phone = TextField(null=True)

    class Meta:
        table_name = "customers"
        tenant_unique = [("email",), ("id",)]


class Refund(TenantModel):
    id = TextField(primary_key=True)
    invoice = TenantForeignKeyField(Invoice, on_delete="CASCADE", index=False)
    approver = TenantForeignKeyField(User, null=True, on_delete="SET NULL", index=False)
    amount = IntegerField()

    class Meta:
        table_name = "refunds13"


class Currency(Model):
    code = TextField(primary_key=True)
    name = TextField()

    class Meta:
        database = database_proxy
        table_name = "currencies13"
"""


def test_makemigration_creates_tables_and_columns_and_the_result_migrates(
    app_legacy: Legacy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, url = app_legacy.db, app_legacy.url
    assert run("migrate", "--database", url, "-q").exit_code == 0
    (tmp_path / "more13").mkdir()
    (tmp_path / "more13" / "__init__.py").write_text("")
    (tmp_path / "more13models.py").write_text(MORE_MODELS)
    monkeypatch.chdir(tmp_path)
    more = ["--migrations", APP, "--migrations", "more13", "--models", "more13models"]
    try:
        check = run("makemigration", "--check", "--database", url, *more)
        assert check.exit_code == 1
        assert check.output.splitlines() == [
            "create tenant table refunds13",
            "create table currencies13",
            "add column customers.phone",
        ]
        wrote = run("makemigration", "more", "--database", url, *more)
        assert wrote.output.strip() == f"wrote {tmp_path / 'more13' / '0001_more.py'}"
        applied = run("migrate", "--database", url, "-q", *more)
        assert applied.output.strip() == "applied: more13:0001_more", applied.output
        agree = run("makemigration", "--check", "--database", url, *more)
        assert agree.exit_code == 0, agree.output
        audit = run("audit", "--database", url, *more)
        assert audit.exit_code == 0 and "0 errors" in audit.output, audit.output
        db.connect(reuse_if_open=True)
        # The new tenant table's reference cannot cross tenants either.
        with pytest.raises(IntegrityError), db.atomic():
            db.execute_sql(
                "INSERT INTO refunds13 (id, tenant_id, invoice_id, amount) "
                "VALUES ('r', 'no-such-tenant', 'i0', 1)"
            )
        # ON DELETE SET NULL clears the approver alone, on both backends.
        db.execute_sql(
            "INSERT INTO users (id, email, tenant_id, created_at, updated_at) VALUES "
            f"('u13', 'u13@x', '{DEFAULT_TENANT_ID}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        )
        db.execute_sql(
            "INSERT INTO refunds13 (id, tenant_id, invoice_id, approver_id, amount) "
            f"VALUES ('r', '{DEFAULT_TENANT_ID}', 'i0', 'u13', 1)"
        )
        db.execute_sql("DELETE FROM users WHERE id = 'u13'")
        row = db.execute_sql("SELECT approver_id, tenant_id FROM refunds13").fetchone()
        assert row == (None, DEFAULT_TENANT_ID)
        back = run("rollback", "--database", url, "-q", *more)
        assert back.output.strip() == "reverted: more13:0001_more", back.output
        db.connect(reuse_if_open=True)
        assert {"refunds13", "currencies13"}.isdisjoint(db.get_tables())
        assert "phone" not in catalog.table_columns(db, "customers")
        # Nothing of it is left behind (SQLite's SET NULL trigger lives on users).
        db.execute_sql(
            "INSERT INTO users (id, email, tenant_id, created_at, updated_at) VALUES "
            f"('u14', 'u14@x', '{DEFAULT_TENANT_ID}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        )
        db.execute_sql("DELETE FROM users WHERE id = 'u14'")
    finally:
        for name in [n for n in sys.modules if n.startswith("more13")]:
            del sys.modules[name]


def test_online_sql_plan_includes_the_application_steps_and_changes_nothing(
    app_legacy: Legacy,
) -> None:
    db, url = app_legacy.db, app_legacy.url
    if app_legacy.backend != "postgres":
        pytest.skip("online mode is PostgreSQL only")
    plan = run("migrate", "--database", url, "--online", "--sql")
    assert plan.exit_code == 0, plan.output
    out = plan.output
    assert f"-- up: {APP}:0002_tenantize" in out
    assert 'CREATE UNIQUE INDEX CONCURRENTLY "invoices_tenant_id_number"' in out
    assert "VALIDATE CONSTRAINT" in out and "CREATE POLICY tenant_isolation ON" in out
    db.connect(reuse_if_open=True)
    assert "tenant_id" not in catalog.table_columns(db, "invoices")


def test_rollback_is_refused_while_another_tenant_holds_application_rows(
    app_legacy: Legacy,
) -> None:
    db, url = app_legacy.db, app_legacy.url
    assert run("migrate", "--database", url, "-q").exit_code == 0
    runner = MigrationRunner(db, migrations=[APP])
    assert runner.resolve(f"{APP}:2") == f"{APP}:0002_tenantize"
    assert runner.resolve(f"{APP}:0002_tenantize") == f"{APP}:0002_tenantize"
    assert runner.resolve("4") == "0004_tenant_keys"
    db.execute_sql(
        "INSERT INTO tenants (id, name, slug, is_active, plan, created_at, updated_at) "
        "VALUES ('t2', 'T2', 't2', true, 'freemium', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
    )
    db.execute_sql(
        "INSERT INTO customers (id, tenant_id, name, email) VALUES ('z', 't2', 'Z', 'z')"
    )
    before = app_rows(db)
    db.close()
    refused = CliRunner().invoke(cli, ["rollback", "--database", url, "--to", f"{APP}:2"])
    assert refused.exit_code == 1
    assert refused.output.strip() == (
        "Error: refusing to undo tenancy: tenants other than the default hold data in "
        "customers (1 rows); move or delete those rows first"
    )
    db.connect(reuse_if_open=True)
    assert app_rows(db) == before
    assert "tenant_id" in catalog.table_columns(db, "customers")


def test_tenancy_plan_is_what_the_example_script_froze_and_refuses_unkeyed_parents() -> None:
    from invoicing.models import Customer, Invoice, Payment
    from peewee import IntegerField, TextField

    from relay_peewee import TenantModel
    from relay_peewee.errors import MigrationError
    from relay_peewee.fields import TenantForeignKeyField
    from relay_peewee.migrator import tenancy_plan

    shipped = importlib.import_module(f"{APP}.0002_tenantize")
    assert tenancy_plan([Payment, Invoice, Customer]) == shipped.PLAN

    class Unkeyed(TenantModel):
        id = TextField(primary_key=True)

        class Meta:
            table_name = "unkeyed13"

    class Child(TenantModel):
        parent = TenantForeignKeyField(Unkeyed)
        n = IntegerField()

        class Meta:
            table_name = "child13"

    with pytest.raises(MigrationError, match=r"Child.parent references Unkeyed, which must"):
        tenancy_plan([Unkeyed, Child])


def test_on_delete_set_null_still_works_on_a_tenant_consistent_reference(
    app_legacy: Legacy,
) -> None:
    """invoices.owner_id -> users ON DELETE SET NULL: deleting a user clears only owner_id."""
    db, url = app_legacy.db, app_legacy.url
    (owner,) = db.execute_sql("SELECT owner_id FROM invoices WHERE id = 'i1'").fetchone()
    assert run("migrate", "--database", url, "-q").exit_code == 0
    for round_trip in ("migrated", "rolled back"):
        db.connect(reuse_if_open=True)
        with db.atomic() as txn:
            db.execute_sql(f"DELETE FROM skills WHERE author_id = {db.param}", (owner,))
            for table in ("skill_versions", "ratings", "usage_events", "skill_reviews"):
                for column in ("user_id", "created_by", "requested_by"):
                    if column in catalog.table_columns(db, table):
                        db.execute_sql(f"DELETE FROM {table} WHERE {column} = {db.param}", (owner,))
            for table in ("accounts", "sessions", "api_keys"):
                db.execute_sql(f"DELETE FROM {table} WHERE user_id = {db.param}", (owner,))
            db.execute_sql(f"DELETE FROM users WHERE id = {db.param}", (owner,))
            row = db.execute_sql("SELECT owner_id, customer_id FROM invoices WHERE id = 'i1'")
            assert row.fetchone() == (None, "c1"), round_trip
            txn.rollback()
        if round_trip == "migrated":
            db.close()
            assert run("rollback", "--database", url, "-q").exit_code == 0


def test_a_model_created_set_null_reference_clears_only_its_column_on_postgres(
    migrated_db: Database,
) -> None:
    from peewee import TextField

    from relay_peewee import TenantModel, tenant_context
    from relay_peewee.database import is_postgres
    from relay_peewee.fields import TenantForeignKeyField
    from relay_peewee.models import Tenant, User

    class Memo(TenantModel):
        text = TextField()
        author = TenantForeignKeyField(User, null=True, on_delete="SET NULL", index=False)

        class Meta:
            table_name = "memos13"

    migrated_db.create_tables([Memo])
    tenant = Tenant.create(slug="memo", name="Memo")
    with tenant_context(tenant):
        user = User.create(email="m@example.com")
        memo = Memo.create(text="x", author=user)
        if not is_postgres(migrated_db):
            # SQLite cannot null one column of a composite key: refused (README).
            with pytest.raises(IntegrityError), migrated_db.atomic():
                user.delete_instance()
            return
        user.delete_instance()
        assert Memo.get_by_id(memo.id).author_id is None


def test_three_migrators_at_once_apply_the_application_migrations_once(
    app_legacy: Legacy,
) -> None:
    db, url = app_legacy.db, app_legacy.url
    before = app_rows(db)
    db.close()
    procs = [
        subprocess.Popen(
            [*CLI, "migrate", "-q", "--database", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    appliers = [out for out, _err in outputs if f"applied: {APP}:0002_tenantize" in out]
    idle = [out for out, _err in outputs if out.strip() == "nothing to do."]
    assert len(appliers) == 1 and len(idle) == 2, outputs
    db.connect(reuse_if_open=True)
    names = [s.name for s in MigrationRunner(db, migrations=[APP]).statuses()]
    assert names.count(f"{APP}:0002_tenantize") == 1
    assert app_rows(db) == before


def test_tenantize_straight_from_the_models_in_a_script(
    app_legacy: Legacy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = app_legacy.url
    package = tmp_path / "bymodels13"
    package.mkdir()
    (package / "__init__.py").write_text("")
    shutil.copy(EXAMPLE / "invoicing" / "migrations" / "0001_baseline.py", package)
    (package / "0002_tenantize.py").write_text(
        "from invoicing.models import Customer, Invoice, Payment\n\n\n"
        "def up(migrator, db):\n"
        "    migrator.tenantize(Customer, Invoice, Payment)\n\n\n"
        "def down(migrator, db):\n"
        "    migrator.untenantize(Customer, Invoice, Payment)\n"
    )
    monkeypatch.chdir(tmp_path)
    try:
        opts = ["--database", url, "--migrations", "bymodels13", "--models", "invoicing.models"]
        result = run("migrate", "-q", *opts)
        assert result.exit_code == 0, result.output
        assert result.output.splitlines()[-1] == "applied: bymodels13:0002_tenantize"
        audit = run("audit", *opts)
        assert audit.exit_code == 0 and "0 errors" in audit.output, audit.output
        assert run("rollback", "-q", *opts).exit_code == 0
        app_legacy.db.connect(reuse_if_open=True)
        assert "tenant_id" not in catalog.table_columns(app_legacy.db, "invoices")
    finally:
        for name in [n for n in sys.modules if n.startswith("bymodels13")]:
            del sys.modules[name]


def test_load_models_takes_the_modules_own_tables_not_its_base_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relay_peewee.config import load_models

    (tmp_path / "cfgmodels13.py").write_text(
        "from peewee import Model, TextField\n"
        "from relay_peewee import database_proxy\n"
        "from relay_peewee.models import User  # imported: not this module's\n\n\n"
        "class BaseModel(Model):\n"
        "    class Meta:\n"
        "        database = database_proxy\n\n\n"
        "class Thing(BaseModel):\n"
        "    name = TextField()\n"
    )
    monkeypatch.chdir(tmp_path)
    try:
        assert [m.__name__ for m in load_models(["cfgmodels13"])] == ["Thing"]
    finally:
        sys.modules.pop("cfgmodels13", None)
