"""`relay-peewee tenants move`: SQLite -> PostgreSQL and PostgreSQL -> SQLite.

The CLI as a process of its own, killed (SIGKILL) the moment it starts each
step; after every kill both databases are consistent and the tenant is
active in at most one of them, and the same command run again completes
the move: the tenant's rows at the target equal the source's before the
move (fingerprints), none left at the source but its tombstone, the other
tenant untouched.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import CLI, kill_cli_at
from peewee import Database
from schema import scalar, sql

import relay_peewee
from relay_peewee import tenant_context
from relay_peewee.database import is_postgres
from relay_peewee.errors import RelayError
from relay_peewee.models import TENANT_MODELS
from relay_peewee.operations import create_tenant, migrate
from relay_peewee.operations.tenant_export import tenant_fingerprints
from relay_peewee.operations.tenant_move import move_tenant
from relay_peewee.testing.sample_data import populate_tenant

pytestmark = pytest.mark.postgres_only

DATA_TABLES = [m._meta.table_name for m in TENANT_MODELS]
STEPS = [
    "move: deactivating",
    "move: exporting",
    "move: importing",
    "move: verifying",
    "move: erasing at the source",
    "erasing a: skills, batch",
    "erasing a: the tombstone",
    "move: activating at the target",
]


class Pair:
    def __init__(self, source: str, target: str) -> None:
        self.source_url, self.target_url = source, target
        self.target = relay_peewee.connect(target)
        migrate(self.target)
        self.source = relay_peewee.connect(source)  # bound last: populate_tenant writes here
        migrate(self.source)
        self.ids = {}
        for slug in ("a", "b"):
            tenant = create_tenant(self.source, slug, slug.upper())
            with tenant_context(tenant):
                populate_tenant(tenant)
            self.ids[slug] = tenant.id
        self.before = self.data(self.source, "a")
        self.others = self.data(self.source, "b")

    @staticmethod
    def data(db: Database, slug: str) -> dict[str, str]:
        prints = tenant_fingerprints(db, slug)
        return {t: prints[t] for t in DATA_TABLES}

    def active_in(self, db: Database) -> bool:
        db.close()  # a fresh look at what the other process committed
        row = db.execute_sql(
            sql(db, "SELECT is_active FROM tenants WHERE id = ?"), (self.ids["a"],)
        ).fetchone()
        return bool(row and row[0])

    def consistent(self, db: Database) -> None:
        if not is_postgres(db):
            assert db.execute_sql("PRAGMA foreign_key_check").fetchall() == []
        rows = {
            t: scalar(
                db, sql(db, f"SELECT count(*) FROM {t} WHERE tenant_id = ?"), (self.ids["a"],)
            )
            for t in DATA_TABLES
        }
        # All of the tenant's rows or none: an import is one transaction, an
        # erase goes table by table, children first.
        if db is self.target:
            assert set(rows.values()) <= {0} or all(rows.values()), rows


@pytest.fixture(params=["sqlite-to-postgres", "postgres-to-sqlite"])
def pair(request: pytest.FixtureRequest, pg_url: str, tmp_path: Path) -> Iterator[Pair]:
    sqlite_url = f"sqlite:///{tmp_path / 'relay.db'}"
    urls = (sqlite_url, pg_url) if request.param == "sqlite-to-postgres" else (pg_url, sqlite_url)
    made = Pair(*urls)
    try:
        yield made
    finally:
        made.source.close()
        made.target.close()


def _move(pair: Pair) -> list[str]:
    return [
        "tenants", "move", "--slug", "a", "--to", pair.target_url,
        "--database", pair.source_url, "--batch-size", "4",
    ]  # fmt: skip


def _completed(pair: Pair) -> None:
    pair.source.close()
    pair.target.close()
    assert pair.active_in(pair.target) and not pair.active_in(pair.source)
    assert Pair.data(pair.target, "a") == pair.before
    assert Pair.data(pair.source, "b") == pair.others
    slug = scalar(
        pair.source, sql(pair.source, "SELECT slug FROM tenants WHERE id = ?"), (pair.ids["a"],)
    )
    assert slug == f"erased:{pair.ids['a']}"
    for table in DATA_TABLES:
        left = sql(pair.source, f"SELECT count(*) FROM {table} WHERE tenant_id = ?")
        assert scalar(pair.source, left, (pair.ids["a"],)) == 0, table


def test_move_completes_and_a_rerun_says_so(pair: Pair) -> None:
    done = subprocess.run([*CLI, *_move(pair)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"moved tenant a ({pair.ids['a']}) to ")
    _completed(pair)
    again = subprocess.run([*CLI, *_move(pair)], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr  # only the activation was left: a no-op
    _completed(pair)


@pytest.mark.parametrize("step", STEPS)
def test_a_move_killed_at_any_step_completes_on_rerun(pair: Pair, step: str) -> None:
    kill_cli_at(_move(pair), step)
    active = [pair.active_in(pair.source), pair.active_in(pair.target)]
    assert active.count(True) <= 1, f"active in both after a kill at {step!r}"
    pair.consistent(pair.source)
    pair.consistent(pair.target)
    done = subprocess.run([*CLI, *_move(pair)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    _completed(pair)


def test_move_refusals_change_nothing(pair: Pair) -> None:
    with pytest.raises(RelayError, match="no tenant with slug 'nope' at the source"):
        move_tenant(pair.source, "nope", pair.target)
    with pytest.raises(RelayError, match="the source and the target are the same database"):
        move_tenant(pair.source, "a", pair.source)
    with pair.target.atomic():  # a tenant of the target's own, holding the slug
        pair.target.execute_sql(
            sql(
                pair.target,
                "INSERT INTO tenants (id, name, slug, is_active, plan, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            ),
            ("other-a", "Another A", "a", True, "freemium", "2026-01-01", "2026-01-01"),
        )
    with pytest.raises(RelayError, match="the target has another tenant with slug 'a'"):
        move_tenant(pair.source, "a", pair.target)
    assert pair.active_in(pair.source)
    assert Pair.data(pair.source, "a") == pair.before


def test_move_refuses_tenant_rows_a_tenant_file_would_not_carry(pair: Pair) -> None:
    # A table no model describes: erase would delete its rows, export not carry them.
    with pair.source.atomic():
        pair.source.execute_sql(
            "CREATE TABLE notes (id TEXT PRIMARY KEY,"
            " tenant_id TEXT NOT NULL REFERENCES tenants (id))"
        )
        pair.source.execute_sql(
            sql(pair.source, "INSERT INTO notes VALUES (?, ?)"), ("n1", pair.ids["a"])
        )
    with pytest.raises(RelayError, match="table notes holds rows of tenant 'a' that a tenant file"):
        move_tenant(pair.source, "a", pair.target)
    assert pair.active_in(pair.source) and not pair.active_in(pair.target)
    assert Pair.data(pair.source, "a") == pair.before
