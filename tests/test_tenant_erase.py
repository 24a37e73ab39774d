"""Erasing a tenant: every row of it gone, the others untouched, a tombstone left.

The Python API on every plugin backend (``postgres_rls``: the application
role, erasing through its admin path), checked by the owner's raw SQL; the
CLI, its refusals and a kill -9 in the middle of a batched erase on SQLite
and PostgreSQL as the owner.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import CLI, kill_cli_at
from peewee import Database
from schema import scalar, sql

from relay_peewee import tenant_context
from relay_peewee.cli import cli
from relay_peewee.database import admin_database
from relay_peewee.errors import RelayError
from relay_peewee.models import DEFAULT_TENANT_SLUG, TENANT_MODELS, Skill
from relay_peewee.operations import (
    activate_tenant,
    create_tenant,
    deactivate_tenant,
    erase_tenant,
)
from relay_peewee.operations.tenant_erase import erase_order
from relay_peewee.testing import TenantPair
from relay_peewee.testing.sample_data import populate_tenant

TABLES = [m._meta.table_name for m in TENANT_MODELS]


def _counts(db: Database, tenant_id: str, tables: list[str] = TABLES) -> dict[str, int]:
    query = "SELECT count(*) FROM {} WHERE tenant_id = ?"
    return {t: scalar(db, sql(db, query.format(t)), (tenant_id,)) for t in tables}


def _audit_rows(db: Database, tenant_id: str) -> int:
    return int(
        scalar(db, sql(db, "SELECT count(*) FROM audit_logs WHERE tenant_id = ?"), (tenant_id,))
    )


def _metadata(value: Any) -> Any:
    return value if isinstance(value, dict) else json.loads(value)


def _erase_events(db: Database, tenant_id: str) -> list[tuple[str, Any]]:
    rows = db.execute_sql(
        sql(db, "SELECT action, metadata FROM audit_logs WHERE tenant_id = ? AND action LIKE ?"),
        (tenant_id, "tenant.erase%"),
    ).fetchall()
    return [(action, _metadata(m)) for action, m in rows]


@pytest.mark.parametrize("batch_size", [None, 2], ids=["one-transaction", "batches"])
def test_erase_deletes_every_row_of_the_tenant_and_leaves_a_tombstone(
    owner: Database, relay_db: Database, two_tenants: TenantPair, batch_size: int | None
) -> None:
    a, b = two_tenants.a, two_tenants.b
    before_a, before_b = _counts(owner, a.id), _counts(owner, b.id)
    assert all(before_a.values())  # the sample data fills every table
    deactivate_tenant(relay_db, a.slug)
    audit_before = _audit_rows(owner, a.id)
    erasure = erase_tenant(relay_db, a.slug, batch_size=batch_size, actor_id="dpo")

    assert _counts(owner, a.id) == dict.fromkeys(TABLES, 0)
    assert _counts(owner, b.id) == before_b
    assert erasure.deleted == before_a
    slug, name, domain, active = owner.execute_sql(
        sql(owner, "SELECT slug, name, domain, is_active FROM tenants WHERE id = ?"), (a.id,)
    ).fetchone()
    assert (slug, name, domain, bool(active)) == (f"erased:{a.id}", "erased", None, False)
    events = _erase_events(owner, a.id)
    final = [m for action, m in events if action == "tenant.erase"]
    assert final == [{"slug": a.slug, "deleted": before_a, "batches": erasure.batches}]
    batches = [m for action, m in events if action == "tenant.erase.batch"]
    assert len(batches) == erasure.batches == (0 if batch_size is None else len(batches))
    if batch_size is not None:
        assert erasure.batches >= sum(before_a.values()) // batch_size
    # The audit log is append-only: the tenant's history is all still there.
    assert _audit_rows(owner, a.id) == audit_before + 1 + erasure.batches
    # The slug is free again.
    assert create_tenant(owner, a.slug, "A again").id != a.id
    with tenant_context(b):
        assert {s.tenant_id for s in Skill.select()} == {b.id}


def test_erase_refusals_change_nothing(
    owner: Database, relay_db: Database, two_tenants: TenantPair
) -> None:
    a = two_tenants.a
    before = _counts(owner, a.id)
    with pytest.raises(RelayError, match="is active: `relay-peewee tenants deactivate"):
        erase_tenant(relay_db, a.slug)
    with pytest.raises(RelayError, match="default tenant cannot be erased"):
        erase_tenant(relay_db, DEFAULT_TENANT_SLUG)
    with pytest.raises(RelayError, match="no tenant with slug 'nope'"):
        erase_tenant(relay_db, "nope")
    deactivate_tenant(relay_db, a.slug)
    with pytest.raises(RelayError, match="batch size must be at least 1"):
        erase_tenant(relay_db, a.slug, batch_size=0)
    assert _counts(owner, a.id) == before
    assert _erase_events(owner, a.id) == []
    erase_tenant(relay_db, a.slug)
    with pytest.raises(RelayError, match=f"tenant '{a.slug}' is already erased"):
        erase_tenant(relay_db, a.slug)
    with pytest.raises(RelayError, match="was erased; it cannot be activated"):
        activate_tenant(relay_db, f"erased:{a.id}")


APP_TABLES = {
    # A child of skills that does not cascade (NO ACTION): skills can only go
    # after it, and its own child after that - the order is the catalog's.
    "invoices": "CREATE TABLE invoices (id TEXT NOT NULL, tenant_id TEXT NOT NULL"
    " REFERENCES tenants (id), skill_id TEXT NOT NULL, PRIMARY KEY (tenant_id, id),"
    " FOREIGN KEY (tenant_id, skill_id) REFERENCES skills (tenant_id, id))",
    "invoice_lines": "CREATE TABLE invoice_lines (id TEXT NOT NULL, tenant_id TEXT NOT NULL"
    " REFERENCES tenants (id), invoice_id TEXT NOT NULL, PRIMARY KEY (tenant_id, id),"
    " FOREIGN KEY (tenant_id, invoice_id) REFERENCES invoices (tenant_id, id))",
}


@pytest.mark.parametrize("batch_size", [None, 1], ids=["one-transaction", "batches"])
def test_the_applications_own_tables_are_erased_children_first(
    owner: Database, relay_db: Database, two_tenants: TenantPair, batch_size: int | None
) -> None:
    a, b = two_tenants.a, two_tenants.b
    with owner.atomic():
        for ddl in APP_TABLES.values():
            owner.execute_sql(ddl)
        admin = admin_database(relay_db)
        if admin is not None:  # postgres_rls: as `relay-peewee roles` grants an app's tables
            role = admin.connect_params["user"]
            owner.execute_sql(f'GRANT ALL ON invoices, invoice_lines TO "{role}"')
        for tenant in (a, b):
            skill = two_tenants.rows_of(tenant).skills[0].id
            for n in ("1", "2"):
                owner.execute_sql(
                    sql(owner, "INSERT INTO invoices VALUES (?, ?, ?)"), (f"i{n}", tenant.id, skill)
                )
                owner.execute_sql(
                    sql(owner, "INSERT INTO invoice_lines VALUES (?, ?, ?)"),
                    (f"l{n}", tenant.id, f"i{n}"),
                )
    order = erase_order(owner)
    assert order.index("invoice_lines") < order.index("invoices") < order.index("skills")
    deactivate_tenant(relay_db, a.slug)
    erasure = erase_tenant(relay_db, a.slug, batch_size=batch_size)
    assert erasure.deleted["invoices"] == erasure.deleted["invoice_lines"] == 2
    assert _counts(owner, a.id, list(APP_TABLES)) == {"invoices": 0, "invoice_lines": 0}
    assert _counts(owner, b.id, list(APP_TABLES)) == {"invoices": 2, "invoice_lines": 2}


# --- the CLI, as the owner -------------------------------------------------------


@pytest.fixture
def populated(db_url: str, migrated_db: Database) -> dict[str, str]:
    """Tenants a and b with the sample data, on the test's own database."""
    ids = {}
    for slug in ("a", "b"):
        tenant = create_tenant(migrated_db, slug, slug.upper())
        with tenant_context(tenant):
            populate_tenant(tenant)
        ids[slug] = tenant.id
    return ids


def test_cli_erase_needs_yes_and_a_deactivated_tenant(
    db_url: str, migrated_db: Database, populated: dict[str, str]
) -> None:
    runner = CliRunner()
    before = _counts(migrated_db, populated["a"])

    def run(*args: str) -> Any:
        return runner.invoke(cli, [*args, "--database", db_url])

    refused = run("tenants", "erase", "--slug", "a")
    assert refused.exit_code == 1
    assert refused.output.strip().splitlines() == [
        "Error: tenants erase deletes every row of tenant 'a' for good: pass --yes to confirm "
        "(nothing was changed)"
    ]
    active = run("tenants", "erase", "--slug", "a", "--yes")
    assert active.exit_code == 1 and len(active.output.strip().splitlines()) == 1
    assert "is active" in active.output and "Traceback" not in active.output
    assert _counts(migrated_db, populated["a"]) == before

    assert run("tenants", "deactivate", "--slug", "a").output == (
        f"tenant a ({populated['a']}) is now inactive\n"
    )
    assert "was already inactive" in run("tenants", "deactivate", "--slug", "a").output
    done = run("tenants", "erase", "--slug", "a", "--yes", "-q")
    assert done.exit_code == 0, done.output
    assert done.output.startswith(f"erased tenant a ({populated['a']}): ")
    assert _counts(migrated_db, populated["a"]) == dict.fromkeys(TABLES, 0)
    again = run("tenants", "activate", "--slug", "a")
    assert again.exit_code == 1 and "no tenant with slug 'a'" in again.output
    default = run("tenants", "deactivate", "--slug", "default")
    assert default.exit_code == 1 and "default tenant cannot be deactivated" in default.output


@pytest.mark.parametrize("step", [r"skills, batch", r"the tombstone"])
def test_a_batched_erase_killed_mid_way_completes_on_rerun(
    db_url: str, migrated_db: Database, populated: dict[str, str], step: str
) -> None:
    a = populated["a"]
    before = _counts(migrated_db, a)
    others = _counts(migrated_db, populated["b"])
    args = ["tenants", "deactivate", "--slug", "a", "--database", db_url]
    subprocess.run([*CLI, *args], check=True, capture_output=True)
    erase = ["tenants", "erase", "--slug", "a", "--yes", "--batch-size", "1", "--database", db_url]
    kill_cli_at(erase, step)
    migrated_db.close()  # a fresh view of what the killed process committed
    left = _counts(migrated_db, a)
    assert sum(left.values()) < sum(before.values())  # some batches committed
    assert (
        scalar(migrated_db, sql(migrated_db, "SELECT slug FROM tenants WHERE id = ?"), (a,)) == "a"
    )
    done = subprocess.run([*CLI, *erase], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _counts(migrated_db, a) == dict.fromkeys(TABLES, 0)
    assert _counts(migrated_db, populated["b"]) == others
    final = [m for action, m in _erase_events(migrated_db, a) if action == "tenant.erase"]
    assert len(final) == 1 and final[0]["deleted"] == before  # the killed run's batches count
    rerun = subprocess.run([*CLI, *erase], capture_output=True, text=True)
    assert rerun.returncode == 1
    assert rerun.stderr.strip() == f"Error: tenant 'a' is already erased (its id was {a})"
