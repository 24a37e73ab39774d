"""kill -9 in the middle of `migrate`, and several migrators at once."""

from __future__ import annotations

import subprocess

import pytest
from helpers import CLI, Legacy, build_legacy, kill_cli_at
from legacy import snapshot
from schema import scalar
from test_migrations import ALL, assert_tenancy_structure

from relay_peewee.audit import audit_schema
from relay_peewee.database import is_postgres, open_database
from relay_peewee.migrator.locking import migration_lock
from relay_peewee.operations.commands import migrate

SKILLS = 1500  # enough rows that every step takes a moment to interrupt


@pytest.fixture
def big_legacy(db_url: str) -> Legacy:
    backend = "sqlite" if db_url.startswith("sqlite") else "postgres"
    legacy = build_legacy(db_url, backend, "drizzle" if backend == "postgres" else "inline", SKILLS)
    return legacy


def _history_names(legacy: Legacy) -> list[str]:
    # SQLite runs a whole migrate in one transaction: killed, it leaves
    # not even the history table behind.
    if "relay_peewee_migrations" not in legacy.db.get_tables():
        return []
    rows = legacy.db.execute_sql("SELECT name FROM relay_peewee_migrations ORDER BY name")
    return [r[0] for r in rows.fetchall()]


# Progress lines announce a step before it runs: killing right after one
# interrupts that step. Each mode is cut inside 0003, inside 0004 (the long
# one) and inside 0005.
TRANSACTIONAL_CUTS = [
    "skills: add tenant_id",
    "rebuilding|ratings: tenant foreign key",
    "creating audit_logs",
]
ONLINE_CUTS = [
    "skills: add tenant_id",
    "skills: building index",
    "ratings: validating",
    "site_settings: primary key",
    "creating audit_logs",
]


@pytest.mark.parametrize(
    ("online", "step"),
    [(False, s) for s in TRANSACTIONAL_CUTS] + [(True, s) for s in ONLINE_CUTS],
)
def test_kill_9_then_migrate_again_finishes_with_every_row(
    big_legacy: Legacy, online: bool, step: str
) -> None:
    db = big_legacy.db
    if online and not is_postgres(db):
        pytest.skip("online mode is PostgreSQL only")
    before = snapshot(db)
    args = ["migrate", "--database", big_legacy.url] + (["--online"] if online else [])
    kill_cli_at(args, step)
    db.close()  # see the database as a new process would
    assert len(_history_names(big_legacy)) < len(ALL)

    migrate(db, online=online)

    assert snapshot(db) == before
    assert_tenancy_structure(db)
    assert _history_names(big_legacy) == ALL
    assert scalar(db, "SELECT count(DISTINCT tenant_id) FROM ratings") == 1
    assert [f for f in audit_schema(db) if f.severity == "error"] == []


def test_three_migrators_at_once_apply_exactly_once(big_legacy: Legacy) -> None:
    before = snapshot(big_legacy.db)
    args = ["migrate", "-q", "--database", big_legacy.url]
    procs = [
        subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    appliers = [out for out, _err in outputs if "applied: 0004_tenant_keys" in out]
    idle = [out for out, _err in outputs if out.strip() == "nothing to do."]
    assert len(appliers) == 1 and len(idle) == 2, outputs
    assert _history_names(big_legacy) == ALL  # no duplicates
    assert snapshot(big_legacy.db) == before


def test_a_second_migrator_waits_or_with_no_wait_refuses(big_legacy: Legacy) -> None:
    args = ["migrate", "--database", big_legacy.url]
    holder = open_database(big_legacy.url)
    try:
        with migration_lock(holder, wait=False):
            busy = subprocess.run(
                [*CLI, *args, "--no-wait"], capture_output=True, text=True, check=False
            )
            waiter = subprocess.Popen(
                [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            assert waiter.stderr is not None
            first = waiter.stderr.readline()
            assert waiter.poll() is None  # still waiting while the lock is held
    finally:
        holder.close()
    out, _err = waiter.communicate(timeout=300)
    assert busy.returncode == 1
    assert busy.stderr.startswith("Error: another relay-peewee migrate or rollback is running")
    assert len(busy.stderr.strip().splitlines()) == 1
    assert first.startswith("  waiting: another relay-peewee migrate")
    assert waiter.returncode == 0 and "applied: 0005_audit_logs" in out
