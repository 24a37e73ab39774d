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
