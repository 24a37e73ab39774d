"""What a newcomer runs first: a checkout, an sdist, empty options, Ctrl-C,
a half-migrated database, odd tenant input, either PostgreSQL driver."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from helpers import Legacy
from peewee import Database

import relay_peewee
from relay_peewee.cli import cli
from relay_peewee.database import postgres_driver
from relay_peewee.models import Tenant
from relay_peewee.testing.backends import chosen_driver

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def one_error_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


def tenant_rows(url: str) -> list[tuple[Any, ...]]:
    db = relay_peewee.database.open_database(url)
    try:
        return list(db.execute_sql("SELECT slug, name, domain FROM tenants ORDER BY slug"))
    finally:
        db.close()


# --- empty and missing settings ---------------------------------------------


@pytest.mark.parametrize("command", [["migrate"], ["status"], ["tenants", "list"], ["audit"]])
def test_an_empty_database_option_is_an_error(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run(*command, "--database", "")
    assert result.exit_code in (1, 2), result.output  # audit: 2, "could not look"
    assert "the database URL is empty" in result.stderr
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []  # no ./relay.db


def test_an_empty_database_url_variable_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "")
    line = one_error_line(run("migrate"))
    assert line == "Error: DATABASE_URL is set but empty"
    assert list(tmp_path.iterdir()) == []


def test_version_from_a_checkout_that_was_never_installed(tmp_path: Path) -> None:
    # A fresh checkout (no egg-info), only the dependencies on the path - no
    # relay_peewee metadata anywhere, no .pth files (-S) - and `python cli.py`.
    import click
    import peewee
    import playhouse

    checkout, deps = tmp_path / "checkout", tmp_path / "deps"
    shutil.copytree(ROOT / "relay_peewee", checkout / "relay_peewee")
    shutil.copy(ROOT / "cli.py", checkout / "cli.py")
    deps.mkdir()
    for module in (peewee, playhouse, click):
        source = Path(module.__file__ or "")
        source = source.parent if source.name == "__init__.py" else source
        (deps / source.name).symlink_to(source)
    result = subprocess.run(
        [sys.executable, "-S", "cli.py", "--version"],
        cwd=checkout,
        env={"PYTHONPATH": str(deps), "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"relay-peewee, version {relay_peewee.__version__}\n"


def test_the_sdist_carries_what_its_tests_need(tmp_path: Path) -> None:
    from setuptools import build_meta

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        name = build_meta.build_sdist(str(tmp_path))
    finally:
        os.chdir(cwd)
    with tarfile.open(tmp_path / name) as sdist:
        members = {m.split("/", 1)[1] for m in sdist.getnames() if "/" in m}
    for path in ROOT.joinpath("tests").glob("*.py"):
        assert f"tests/{path.name}" in members
    for wanted in ("LICENSE", ".squawk.toml", "cli.py", "CHANGELOG.md", "README.md", "mkdocs.yml"):
        assert wanted in members
    for path in ROOT.joinpath("docs").rglob("*.md"):
        assert f"docs/{path.relative_to(ROOT / 'docs')}" in members
    assert "MIT License" in (ROOT / "LICENSE").read_text()


# --- tenants ----------------------------------------------------------------


def test_tenants_create_refuses_a_half_migrated_database(db_url: str) -> None:
    assert run("migrate", "--to", "3", "--database", db_url).exit_code == 0
    before = tenant_rows(db_url)
    line = one_error_line(
        run("tenants", "create", "--slug", "acme", "--name", "A", "--database", db_url)
    )
    assert line.startswith("Error: this database is not fully migrated (")
    assert "from 0004_tenant_keys): run `relay-peewee migrate` first" in line
    assert tenant_rows(db_url) == before


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--slug", "a" * 100_000, "--name", "X"],
            f"Error: invalid slug {'a' * 80!r}... (100000 chars): use 1-64 lower-case",
        ),
        (["--slug", "x", "--name", "two\nlines"], "Error: invalid name 'two\\nlines': one line"),
        (["--slug", "x", "--name", "N" * 201], "Error: invalid name "),
        (["--slug", "x", "--name", "X", "--domain", "not a domain"], "Error: invalid domain"),
        (["--slug", "x", "--name", "X", "--domain", "localhost"], "Error: invalid domain"),
        (["--slug", "x", "--name", "X", "--domain", "a..b.com"], "Error: invalid domain"),
        (["--slug", "x", "--name", "X", "--domain", "d" * 250 + ".com"], "Error: invalid domain"),
        (
            ["--slug", "x", "--name", "X", "--domain", "ACME.example."],
            "Error: another tenant already has the domain 'acme.example'",
        ),
    ],
)
def test_tenant_input_has_limits(
    migrated_db: Database, db_url: str, args: list[str], expected: str
) -> None:
    first = run(
        "tenants",
        "create",
        "--slug",
        "acme",
        "--name",
        "Acme",
        "--domain",
        "acme.example",
        "--database",
        db_url,
    )
    assert first.exit_code == 0, first.output
    before = tenant_rows(db_url)
    line = one_error_line(run("tenants", "create", *args, "--database", db_url))
    assert line.startswith(expected), line
    assert len(line) < 300
    assert tenant_rows(db_url) == before


def test_tenants_list_keeps_one_line_per_tenant(migrated_db: Database, db_url: str) -> None:
    # Written by other code than `tenants create`, which would refuse them.
    Tenant.create(slug="odd", name="two\nlines\tand a tab", domain="x" * 500)
    result = run("tenants", "list", "--database", db_url)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3  # header, default, odd
    assert "two\\nlines\\tand a tab" in lines[2]
    assert max(len(line) for line in lines) < 200


def test_a_domain_is_stored_as_dns_compares_it(migrated_db: Database, db_url: str) -> None:
    result = run(
        "tenants",
        "create",
        "--slug",
        "acme",
        "--name",
        "Acme",
        "--domain",
        " Skills.ACME.example. ",
        "--database",
        db_url,
    )
    assert result.exit_code == 0, result.output
    assert ("acme", "Acme", "skills.acme.example") in tenant_rows(db_url)


# --- Ctrl-C during migrate --------------------------------------------------


class _InterruptAt(logging.Handler):
    """Raises KeyboardInterrupt - what SIGINT raises in the main thread - as
    playhouse's runner announces ``name``, after the ones before it ran."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name_ = name

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == f"up: {self.name_}":
            raise KeyboardInterrupt


@contextmanager
def interrupted_at(name: str) -> Iterator[None]:
    logger = logging.getLogger("peewee.migrations")
    handler, level = _InterruptAt(name), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.postgres_only
def test_ctrl_c_during_migrate_says_what_was_applied(pg_url: str) -> None:
    """PostgreSQL commits each migration: an interrupt after three leaves three."""
    with interrupted_at("0004_tenant_keys"):
        result = run("migrate", "--database", pg_url)
    assert result.exit_code == 130, result.output
    assert result.stdout.splitlines() == [
        "applied: 0001_baseline",
        "applied: 0002_tenants",
        "applied: 0003_tenant_columns",
    ]
    assert result.stderr.splitlines()[-1].startswith(
        "interrupted: not applied: 0004_tenant_keys, 0005_audit_logs"
    )
    assert result.stderr.rstrip().endswith("; run `relay-peewee migrate` to continue")
    finish = run("migrate", "--database", pg_url)
    assert finish.exit_code == 0, finish.output
    assert finish.stdout.splitlines()[0] == "applied: 0004_tenant_keys"


@pytest.mark.postgres_only
def test_ctrl_c_after_adopting_a_legacy_database_says_adopted(pg_legacy: Legacy) -> None:
    """The baseline of a legacy database is recorded, not run: an interrupt
    later must say so, as an uninterrupted migrate does."""
    with interrupted_at("0003_tenant_columns"):
        result = run("migrate", "--database", pg_legacy.url)
    assert result.exit_code == 130, result.output
    assert result.stdout.splitlines() == [
        "recognised a legacy Relay database: recorded 0001_baseline as applied",
        "applied: 0002_tenants",
    ]


@pytest.mark.sqlite_only
def test_ctrl_c_during_migrate_on_sqlite_keeps_nothing(tmp_path: Path) -> None:
    """SQLite runs every migration in one transaction: an interrupt keeps none."""
    url = f"sqlite:///{tmp_path / 'relay.db'}"
    with interrupted_at("0004_tenant_keys"):
        result = run("migrate", "--database", url)
    assert result.exit_code == 130, result.output
    assert result.stdout == ""
    assert "interrupted: not applied: 0001_baseline, 0002_tenants" in result.stderr


# --- drivers ------------------------------------------------------------------


def test_relay_db_uses_the_chosen_driver(
    relay_db: Database, request: pytest.FixtureRequest
) -> None:
    if relay_peewee.database.is_sqlite(relay_db):
        pytest.skip("SQLite has one driver")
    chosen = chosen_driver(request.config)
    assert postgres_driver(relay_db) == chosen
