"""makemigration drafts what a maintainer would commit, and its drafts converge.

Each shape of model the README shows is drafted from a real database (its
legacy tables populated where it has any), written through the CLI into a
throw-away package, migrated, and checked again: ``--check`` must then say
the models and the database agree, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from peewee import Database, IntegrityError

from relay_peewee.cli import cli
from relay_peewee.operations.commands import create_tenant

DEFAULT_TENANT_ID = "default-tenant-000-0000-000000000000"

HEAD = """
from peewee import ForeignKeyField, IntegerField, TextField

from relay_peewee import TenantModel
from relay_peewee.fields import TenantForeignKeyField
from relay_peewee.models import User
"""

# name -> (legacy DDL run before drafting, models module body)
SHAPES: dict[str, tuple[list[str], str]] = {
    "plain-fk": (
        [
            "CREATE TABLE mm_projects (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
            "CREATE TABLE mm_tasks (id INTEGER PRIMARY KEY,"
            " project_id INTEGER NOT NULL REFERENCES mm_projects (id), title TEXT NOT NULL)",
            "INSERT INTO mm_projects (id, name) VALUES (1, 'p')",
            "INSERT INTO mm_tasks (id, project_id, title) VALUES (1, 1, 't')",
        ],
        """
class Project(TenantModel):
    id = IntegerField(primary_key=True)
    name = TextField()

    class Meta:
        table_name = "mm_projects"


class Task(TenantModel):
    id = IntegerField(primary_key=True)
    project = ForeignKeyField(Project, backref="tasks")
    title = TextField()

    class Meta:
        table_name = "mm_tasks"
""",
    ),
    "tenant-fk-and-uniques": (
        [
            "CREATE TABLE mm_customers (id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE,"
            " code TEXT NOT NULL UNIQUE)",
            "CREATE TABLE mm_orders (id TEXT PRIMARY KEY,"
            " customer_id TEXT NOT NULL REFERENCES mm_customers (id), number TEXT NOT NULL)",
            "INSERT INTO mm_customers (id, email, code) VALUES ('c1', 'a@x', 'A')",
            "INSERT INTO mm_orders (id, customer_id, number) VALUES ('o1', 'c1', 'N1')",
        ],
        """
class Customer(TenantModel):
    id = TextField(primary_key=True)
    email = TextField()
    code = TextField(unique=True)  # unique across all tenants

    class Meta:
        table_name = "mm_customers"
        tenant_unique = [("email",), ("id",)]


class Order(TenantModel):
    id = TextField(primary_key=True)
    customer = TenantForeignKeyField(Customer, index=False)
    number = TextField()

    class Meta:
        table_name = "mm_orders"
        tenant_unique = [("number",)]
""",
    ),
    "new-tables-set-null": (
        [],
        """
class Board(TenantModel):
    name = TextField()

    class Meta:
        table_name = "mm_boards"


class Card(TenantModel):
    board = ForeignKeyField(Board, on_delete="CASCADE")
    owner = TenantForeignKeyField(User, null=True, on_delete="SET NULL", index=False)
    reviewer = ForeignKeyField(User, null=True, on_delete="SET NULL")

    class Meta:
        table_name = "mm_cards"
""",
    ),
    "new-column": (
        [],
        """
class Note(TenantModel):
    body = TextField()
    pinned = IntegerField(null=True)

    class Meta:
        table_name = "mm_notes"
""",
    ),
}
# A shape drafted and migrated in two rounds: first the table, then the column.
FIRST_ROUND = {
    "new-column": """
class Note(TenantModel):
    body = TextField()

    class Meta:
        table_name = "mm_notes"
"""
}


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A throw-away application folder: a migrations package and a models module."""
    (tmp_path / "mm_app").mkdir()
    (tmp_path / "mm_app" / "__init__.py").write_text("")
    (tmp_path / "mm_app" / "migrations").mkdir()
    (tmp_path / "mm_app" / "migrations" / "__init__.py").write_text("")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.relay_peewee]\nmigrations = ["mm_app.migrations"]\nmodels = ["mm_app.models"]\n'
    )
    monkeypatch.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        for name in [n for n in sys.modules if n.startswith("mm_app")]:
            del sys.modules[name]


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def set_models(app: Path, body: str) -> None:
    (app / "mm_app" / "models.py").write_text(HEAD + body)
    for name in [n for n in sys.modules if n.startswith("mm_app.models")]:
        del sys.modules[name]


def draft_and_migrate(app: Path, url: str, name: str) -> Path:
    wrote = run("makemigration", name, "--database", url)
    assert wrote.exit_code == 0, wrote.output
    path = Path(wrote.output.strip().removeprefix("wrote "))
    applied = run("migrate", "--database", url, "-q")
    assert applied.exit_code == 0, applied.output
    return path


def assert_formatted(path: Path) -> None:
    """ruff's own verdict, with its defaults (long DDL strings aside): nothing to fix."""
    for check in (["format", "--check"], ["check", "--select", "E,F,W,I,UP", "--ignore", "E501"]):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *check, "--isolated", str(path)],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr + path.read_text()


@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_drafted_migration_converges(
    app: Path, db_url: str, migrated_db: Database, shape: str
) -> None:
    legacy, body = SHAPES[shape]
    for sql in legacy:
        migrated_db.execute_sql(sql)
    migrated_db.close()
    drafts = []
    if shape in FIRST_ROUND:
        set_models(app, FIRST_ROUND[shape])
        drafts.append(draft_and_migrate(app, db_url, "first"))
    set_models(app, body)
    check = run("makemigration", "--check", "--database", db_url)
    assert check.exit_code == 1, check.output
    drafts.append(draft_and_migrate(app, db_url, shape))

    agree = run("makemigration", "--check", "--database", db_url)
    assert agree.exit_code == 0, agree.output + drafts[-1].read_text()
    assert agree.output.strip() == "models and database agree."
    audit = run("audit", "--database", db_url)
    assert audit.exit_code == 0 and "0 errors" in audit.output, audit.output
    for path in drafts:
        assert_formatted(path)
    back = run("rollback", "--database", db_url, "-q")
    assert back.exit_code == 0, back.output


def test_a_plain_foreign_key_is_drafted_tenant_consistent(
    app: Path, db_url: str, migrated_db: Database
) -> None:
    """The database itself refuses a task of tenant B in tenant A's project."""
    legacy, body = SHAPES["plain-fk"]
    for sql in legacy:
        migrated_db.execute_sql(sql)
    set_models(app, body)
    path = draft_and_migrate(app, db_url, "tenantize")
    text = path.read_text()
    assert "Task.project -> mm_projects" in text and "(tenant_id, id)" in text
    migrated_db.connect(reuse_if_open=True)
    other = create_tenant(migrated_db, "other-mm", "Other")
    p = migrated_db.param
    with pytest.raises(IntegrityError), migrated_db.atomic():
        migrated_db.execute_sql(
            f"INSERT INTO mm_tasks (id, tenant_id, project_id, title) VALUES (2, {p}, 1, 'x')",
            (other.id,),
        )
    # The same row inside the project's own tenant is accepted.
    migrated_db.execute_sql(
        f"INSERT INTO mm_tasks (id, tenant_id, project_id, title) VALUES (3, {p}, 1, 'x')",
        (DEFAULT_TENANT_ID,),
    )


def test_a_new_table_with_a_plain_foreign_key_is_tenant_consistent(
    app: Path, db_url: str, migrated_db: Database
) -> None:
    _legacy, body = SHAPES["new-tables-set-null"]
    set_models(app, body)
    draft_and_migrate(app, db_url, "boards")
    migrated_db.connect(reuse_if_open=True)
    other = create_tenant(migrated_db, "other-mm", "Other")
    p = migrated_db.param
    migrated_db.execute_sql(
        f"INSERT INTO mm_boards (id, tenant_id, name) VALUES (1, {p}, 'b')", (DEFAULT_TENANT_ID,)
    )
    with pytest.raises(IntegrityError), migrated_db.atomic():
        migrated_db.execute_sql(
            f"INSERT INTO mm_cards (id, tenant_id, board_id) VALUES (1, {p}, 1)", (other.id,)
        )


EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "invoicing"


def _forget_invoicing() -> None:
    for name in [n for n in sys.modules if n == "invoicing" or n.startswith("invoicing.")]:
        del sys.modules[name]


def _sqlite_objects(db: Database) -> list[tuple[str, str]]:
    return sorted(
        db.execute_sql(
            "SELECT type, name FROM sqlite_master WHERE type IN ('trigger', 'view', 'index')"
            " AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
    )


@pytest.mark.sqlite_only
def test_a_later_column_on_a_tenantized_sqlite_table_keeps_rows_triggers_and_views(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's example, copied: migrate, add Invoice.currency, draft, migrate.

    Adding a NOT NULL column rebuilds ``invoices`` on SQLite; the SET NULL
    trigger on ``users`` names it, the view reads it, ``invoice_notes``
    cascades from it.
    """
    import shutil

    import relay_peewee

    app = tmp_path / "invoicing-copy"
    shutil.copytree(EXAMPLE, app, ignore=shutil.ignore_patterns("__pycache__", "*.db"))
    monkeypatch.chdir(app)
    _forget_invoicing()
    url = f"sqlite:///{app / 'app.db'}"
    try:
        assert run("migrate", "--database", url, "-q").exit_code == 0
        db = relay_peewee.connect(url)
        (user,) = db.execute_sql("SELECT id FROM users LIMIT 1").fetchone() or ("u1",)
        if user == "u1":
            db.execute_sql(
                "INSERT INTO users (id, email, tenant_id, created_at, updated_at) VALUES "
                f"('u1', 'u1@x', '{DEFAULT_TENANT_ID}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        t = DEFAULT_TENANT_ID
        for sql in (
            f"INSERT INTO customers (id, tenant_id, name, email) VALUES ('c1', '{t}', 'C', 'c@x')",
            "INSERT INTO invoices (id, tenant_id, number, customer_id, owner_id, total)"
            f" VALUES ('i1', '{t}', 'N1', 'c1', '{user}', 100)",
            "INSERT INTO payments (id, tenant_id, invoice_id, amount)"
            f" VALUES ('p1', '{t}', 'i1', 40)",
            "INSERT INTO invoice_notes (invoice_id, body) VALUES ('i1', 'note')",
        ):
            db.execute_sql(sql)
        before = _sqlite_objects(db)
        assert ("trigger", "invoices_owner_id_set_null") in before
        db.close()

        models = app / "invoicing" / "models.py"
        models.write_text(
            models.read_text().replace(
                "    total = IntegerField()\n",
                '    total = IntegerField()\n    currency = TextField(default="EUR")\n',
                1,
            )
        )
        _forget_invoicing()
        wrote = run("makemigration", "add_currency", "--database", url)
        assert wrote.exit_code == 0, wrote.output
        assert_formatted(Path(wrote.output.strip().removeprefix("wrote ")))
        dry = run("migrate", "--database", url, "--sql")
        assert dry.exit_code == 0, dry.output
        applied = run("migrate", "--database", url, "-q")
        assert applied.exit_code == 0, applied.output

        db = relay_peewee.connect(url)
        assert _sqlite_objects(db) == before
        assert db.execute_sql("SELECT currency FROM invoices").fetchall() == [("EUR",)]
        assert db.execute_sql("SELECT count(*) FROM invoice_notes").fetchone() == (1,)
        assert db.execute_sql("SELECT balance FROM invoice_balances").fetchall() == [(60,)]
        # The SET NULL trigger still clears the owner alone.
        db.execute_sql(f"DELETE FROM users WHERE id = '{user}'")
        assert db.execute_sql("SELECT owner_id, tenant_id FROM invoices").fetchone() == (None, t)
        db.close()
        agree = run("makemigration", "--check", "--database", url)
        assert agree.exit_code == 0, agree.output
    finally:
        _forget_invoicing()


@pytest.mark.sqlite_only
@pytest.mark.parametrize("name", ['ends"', "back\\N", "x" * 300, "two\nlines", "../up", ""])
def test_a_name_that_makes_no_file_or_docstring_is_one_line_and_writes_nothing(
    app: Path, name: str
) -> None:
    set_models(app, SHAPES["new-column"][1])
    url = f"sqlite:///{app / 'relay.db'}"
    assert run("migrate", "--database", url, "-q").exit_code == 0
    for args in (["makemigration", name, "--database", url], ["makemigration", name, "--empty"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert sorted(p.name for p in (app / "mm_app" / "migrations").iterdir()) == ["__init__.py"]


@pytest.mark.sqlite_only
def test_empty_writes_a_script_to_fill_in_without_a_database(app: Path) -> None:
    wrote = run("makemigration", "backfill prices", "--empty")
    assert wrote.exit_code == 0, wrote.output
    path = app / "mm_app" / "migrations" / "0001_backfill_prices.py"
    assert wrote.output.strip() == f"wrote {path}"
    assert not (app / "relay.db").exists()
    assert_formatted(path)
    module = __import__("mm_app.migrations.0001_backfill_prices", fromlist=["up"])
    assert callable(module.up) and callable(module.down)
    assert module.__doc__.startswith("backfill prices\n")


BROKEN_MODELS = {
    "syntax": ("class Broken(:\n    pass\n", "SyntaxError"),
    "raises": ("raise RuntimeError('no settings: set APP_ENV')\n", "RuntimeError: no settings"),
    "missing-import": ("import no_such_module_mm\n", "No module named 'no_such_module_mm'"),
}


@pytest.mark.sqlite_only
@pytest.mark.parametrize("kind", list(BROKEN_MODELS))
@pytest.mark.parametrize(
    ("command", "code"),
    [
        (["makemigration", "--check"], 1),
        (["makemigration", "x"], 1),
        (["roles"], 1),
        (["audit"], 2),  # audit's "could not look", not "found errors"
    ],
)
def test_a_broken_models_module_is_one_line_naming_it(
    app: Path, kind: str, command: list[str], code: int
) -> None:
    source, message = BROKEN_MODELS[kind]
    (app / "mm_app" / "models.py").write_text(source)
    url = f"sqlite:///{app / 'relay.db'}"
    assert run("migrate", "--database", url, "-q").exit_code == 0
    result = CliRunner().invoke(cli, [*command, "--database", url])
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "'mm_app.models'" in lines[0] and message in lines[0], lines[0]
