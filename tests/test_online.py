"""`migrate --online` on PostgreSQL: bounded locks, resumable steps, a lint-clean plan."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import Legacy
from legacy import snapshot
from peewee import Database
from schema import scalar, tenancy_structure
from test_migrations import ALL, assert_tenancy_structure

from relay_peewee.cli import cli
from relay_peewee.database import catalog, open_database
from relay_peewee.errors import MigrationError
from relay_peewee.operations.commands import migrate, migration_sql

pytestmark = pytest.mark.postgres_only
ROOT = Path(__file__).resolve().parent.parent


def test_online_migration_keeps_every_row(pg_legacy: Legacy) -> None:
    db = pg_legacy.db
    before = snapshot(db)
    steps: list[str] = []
    result = migrate(db, progress=steps.append, online=True, lock_timeout=0.5)
    assert result.adopted_legacy and result.applied == ALL[1:]
    assert snapshot(db) == before
    assert_tenancy_structure(db)
    assert any("concurrently" in s for s in steps)
    assert any("NOT VALID" in s for s in steps)


def test_online_cli_prints_each_step_once(pg_legacy: Legacy) -> None:
    result = CliRunner().invoke(cli, ["migrate", "--online", "--database", pg_legacy.url])
    assert result.exit_code == 0, result.output
    steps = [line.strip() for line in result.stderr.splitlines()]
    added = [s for s in steps if s.endswith(": add tenant_id (default tenant)")]
    assert "users: add tenant_id (default tenant)" in added
    assert len(added) == len(set(added)), added
    assert [s for s in steps if steps.count(s) > 1] == []


def test_online_and_transactional_paths_end_in_the_same_structure(
    pg_legacy: Legacy, pg_url: str
) -> None:
    migrate(pg_legacy.db, online=True)
    other = open_database(pg_url)
    try:
        migrate(other)
        assert tenancy_structure(other) == tenancy_structure(pg_legacy.db)
    finally:
        other.close()


def test_online_resumes_from_invalid_index_and_unvalidated_key(pg_legacy: Legacy) -> None:
    db = pg_legacy.db
    migrate(db, to="0003")
    # What a run killed mid-step leaves: a foreign key added NOT VALID and an
    # INVALID index (a failed CONCURRENTLY build) under the name we need.
    db.execute_sql(
        "ALTER TABLE skills ADD CONSTRAINT skills_tenant_id_fkey FOREIGN KEY (tenant_id)"
        " REFERENCES tenants (id) NOT VALID"
    )
    with pytest.raises(Exception, match="could not create unique index"):
        db.execute_sql(
            "CREATE UNIQUE INDEX CONCURRENTLY skills_tenant_id_slug ON skills (tenant_id, category)"
        )
    leftover = [ix for ix in catalog.indexes(db, "skills") if ix.name == "skills_tenant_id_slug"]
    assert leftover and not leftover[0].valid

    steps: list[str] = []
    migrate(db, progress=steps.append, online=True)

    fixed = [ix for ix in catalog.indexes(db, "skills") if ix.name == "skills_tenant_id_slug"]
    assert fixed == [catalog.Index("skills_tenant_id_slug", ("tenant_id", "slug"), True, "index")]
    assert any("invalid index" in s for s in steps)
    keys = {fk.name: fk.validated for fk in catalog.foreign_keys(db, "skills")}
    assert keys["skills_tenant_id_fkey"] is True
    assert_tenancy_structure(db)


def test_online_waits_out_a_long_transaction_without_blocking_readers(
    pg_legacy: Legacy,
) -> None:
    db, url = pg_legacy.db, pg_legacy.url
    migrate(db, to="0003")
    lock_timeout, hold = 0.3, 2.0
    holder = open_database(url)
    reader = open_database(url)
    latencies: list[float] = []
    stop = threading.Event()
    holding = threading.Event()

    def hold_lock() -> None:
        with holder.atomic():
            holder.execute_sql("LOCK TABLE skills IN ACCESS SHARE MODE")
            holding.set()
            time.sleep(hold)

    def read() -> None:
        while not stop.is_set():
            start = time.monotonic()
            reader.execute_sql("SELECT count(*) FROM skills WHERE total_uses >= 0").fetchone()
            latencies.append(time.monotonic() - start)
            time.sleep(0.01)

    threads = [threading.Thread(target=hold_lock), threading.Thread(target=read)]
    for t in threads:
        t.start()
    holding.wait(5)
    steps: list[str] = []
    started = time.monotonic()
    try:
        migrate(db, progress=steps.append, online=True, lock_timeout=lock_timeout)
    finally:
        stop.set()
        for t in threads:
            t.join()
        holder.close()
        reader.close()
    assert time.monotonic() - started >= hold * 0.5  # it really had to wait
    assert any("table busy, retry" in s for s in steps)
    assert_tenancy_structure(db)
    # A statement queued behind a waiting ACCESS EXCLUSIVE request waits as
    # long as that request: at most one lock_timeout, plus scheduling noise.
    assert max(latencies) < lock_timeout + 0.5, max(latencies)


def test_online_gives_up_with_a_clear_message(pg_legacy: Legacy) -> None:
    db, url = pg_legacy.db, pg_legacy.url
    migrate(db, to="0003")
    holder = open_database(url)
    try:
        with holder.atomic():
            holder.execute_sql("LOCK TABLE users IN ACCESS SHARE MODE")
            with pytest.raises(MigrationError, match=r"no lock within 0\.05s"):
                from relay_peewee.migrator import MigrationRunner

                runner = MigrationRunner(db, online=True, lock_timeout=0.05)
                runner.migrator.attempts = 2
                runner.upgrade()
    finally:
        holder.close()
    assert scalar(db, "SELECT count(*) FROM relay_peewee_migrations") == 3


def test_online_plan_changes_nothing_and_passes_squawk(pg_legacy: Legacy, tmp_path: Path) -> None:
    db = pg_legacy.db
    tables = sorted(db.get_tables())
    plan = migration_sql(db, online=True)
    assert sorted(db.get_tables()) == tables
    text = "\n".join(plan)
    assert "CREATE UNIQUE INDEX CONCURRENTLY" in text and "NOT VALID" in text
    # The venv's own bin folder, whether or not the venv is activated.
    squawk = shutil.which("squawk", path=str(Path(sys.executable).parent))
    if squawk is None:
        pytest.fail("squawk is not installed: pip install -e '.[dev]' (squawk-cli)")
    path = tmp_path / "online.sql"
    path.write_text(text + "\n")
    lint = subprocess.run(
        [squawk, "--config", str(ROOT / ".squawk.toml"), str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.sqlite_only
def test_online_is_refused_on_sqlite(tmp_path: Path) -> None:
    db: Database = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(MigrationError, match="--online is for PostgreSQL"):
        migrate(db, online=True)


def test_online_says_which_open_transaction_an_index_build_waits_for(pg_legacy: Legacy) -> None:
    db, url = pg_legacy.db, pg_legacy.url
    migrate(db, to="0003")
    idle = open_database(url)
    opened = threading.Event()

    def idle_in_transaction() -> None:
        with idle.atomic():
            idle.execute_sql("SELECT 1")  # a snapshot the index build must outwait
            opened.set()
            time.sleep(2.5)

    holder = threading.Thread(target=idle_in_transaction)
    holder.start()
    opened.wait(5)
    time.sleep(1.2)  # older than the one-second threshold when the build starts
    steps: list[str] = []
    try:
        migrate(db, progress=steps.append, online=True)
    finally:
        holder.join()
        idle.close()
    waits = [s for s in steps if "waits for transactions already open" in s]
    assert waits and "idle in transaction" in waits[0], steps
    assert_tenancy_structure(db)
