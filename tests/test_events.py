"""The audit log: record_event, the events models record themselves, unscoped()."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

import pytest
from peewee import Database

from relay_peewee import record_event, tenant_context, unscoped
from relay_peewee.errors import RelayError
from relay_peewee.models import ApiKey, AuditLog, SiteSettings, Skill, Tenant, User
from relay_peewee.tenancy.rls import bypass_scope
from relay_peewee.testing import TenantPair, bound_by_row_level_security


def events(**where: Any) -> list[AuditLog]:
    """Every event, read as an admin (row-level security shows the app role only its tenant's)."""
    query = AuditLog.select().order_by(AuditLog.created_at, AuditLog.id)
    for name, value in where.items():
        query = query.where(getattr(AuditLog, name) == value)
    with bypass_scope():
        return list(query)


def new_tenant() -> Tenant:
    with bypass_scope():  # creating a tenant is an admin operation
        return Tenant.create(slug="acme", name="Acme")


def actions(prefix: str) -> list[str]:
    return [e.action for e in events() if e.action.startswith(prefix)]


def test_record_event_writes_one_row_for_the_tenant_in_context(relay_db: Database) -> None:
    tenant = new_tenant()
    with tenant_context(tenant):
        row_id = record_event(
            "skill.export",
            resource_type="skill",
            resource_id="s-1",
            actor_id="u-1",
            ip_address="10.0.0.1",
            metadata={"format": "zip", "at": datetime(2024, 1, 2), "ref": uuid.UUID(int=1)},
        )
    with bypass_scope():  # an event of no tenant: only an admin may write it
        system_id = record_event("system.maintenance")
    (row,) = events(action="skill.export")
    assert row.id == row_id
    assert (row.tenant_id, row.resource_type, row.resource_id) == (tenant.id, "skill", "s-1")
    assert (row.actor_id, row.ip_address) == ("u-1", "10.0.0.1")
    # Values JSON cannot hold are written as text rather than losing the event.
    assert row.metadata == {
        "format": "zip",
        "at": "2024-01-02 00:00:00",
        "ref": "00000000-0000-0000-0000-000000000001",
    }
    (system,) = events(action="system.maintenance")
    assert system.id == system_id and system.tenant_id is None and system.metadata is None
    with pytest.raises(ValueError):
        record_event("")


def skip_without_ddl(db: Database) -> None:
    # These tests break the schema (rename audit_logs) to make the event
    # write fail; the application role of postgres_rls may not run DDL.
    if bound_by_row_level_security(db):
        pytest.skip("needs DDL rights to break audit_logs; the application role has none")


def test_a_failed_event_is_logged_and_the_callers_transaction_goes_on(
    relay_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    skip_without_ddl(relay_db)
    tenant = new_tenant()
    caplog.set_level(logging.ERROR, logger="relay_peewee.events")
    with tenant_context(tenant), relay_db.atomic():
        User.create(email="before@acme.example")
        # A real database error, inside the caller's transaction: the table is gone.
        relay_db.execute_sql("ALTER TABLE audit_logs RENAME TO audit_logs_away")
        assert record_event("user.invite") is None
        User.create(email="after@acme.example")  # the transaction is still usable
        relay_db.execute_sql("ALTER TABLE audit_logs_away RENAME TO audit_logs")
    with tenant_context(tenant):
        assert {u.email for u in User.select()} == {"before@acme.example", "after@acme.example"}
    failures = [r for r in caplog.records if "could not record audit event" in r.getMessage()]
    # The user.create event of "after" failed too; every failure is logged.
    assert any("'user.invite'" in r.getMessage() for r in failures)
    assert all(r.exc_info for r in failures)
    assert actions("user.invite") == []


def test_an_event_rolls_back_with_the_change_it_describes(relay_db: Database) -> None:
    tenant = new_tenant()
    with tenant_context(tenant):
        with pytest.raises(RuntimeError), relay_db.atomic():
            User.create(email="gone@acme.example")
            raise RuntimeError("abort the request")
        assert actions("user.") == []
        assert User.select().count() == 0


def test_audited_models_record_create_update_and_delete(two_tenants: TenantPair) -> None:
    a = two_tenants.a
    start = len(events())
    with tenant_context(a):
        user = User.create(email="new@a.example", name="New")
        user.name = "Renamed"
        user.save()
        key = ApiKey.create(user=user, key_hash="h-new", key_prefix="rk")
        key.delete_instance()
        settings = SiteSettings.for_tenant()  # exists already: no event
        settings.ollama_model = "other"
        settings.save()
        Skill.create(name="n", slug="not-audited", description="d", category="c", content="x")
        user.delete_instance()
    new = events()[start:]
    assert [(e.action, e.tenant_id) for e in new] == [
        ("user.create", a.id),
        ("user.update", a.id),
        ("api_key.create", a.id),
        ("api_key.delete", a.id),
        ("site_settings.update", a.id),
        ("user.delete", a.id),
    ]
    by_action = {e.action: e for e in new}
    assert by_action["user.create"].resource_id == user.id
    assert by_action["user.create"].resource_type == "user"
    assert by_action["user.update"].metadata["fields"] == ["name"]
    assert by_action["api_key.delete"].resource_id == str(key.id)
    assert by_action["site_settings.update"].resource_id == "default"


def test_statement_writes_record_one_event_with_the_row_count(two_tenants: TenantPair) -> None:
    a = two_tenants.a
    start = len(events())
    with tenant_context(a):
        User.insert_many([{"email": f"u{i}@a.example"} for i in range(3)]).execute()
        User.insert(id="fixed-id", email="one@a.example").execute()
        assert User.update(name="x").where(User.email.startswith("u")).execute() == 3
        assert User.update(name="y").where(User.email == "nobody").execute() == 0
        assert User.delete().where(User.email.startswith("u")).execute() == 3
    new = [(e.action, e.resource_id, e.metadata) for e in events()[start:]]
    assert new == [
        ("user.create", None, {"rows": 3}),
        ("user.create", "fixed-id", None),
        ("user.update", None, {"fields": ["name"], "rows": 3}),
        ("user.delete", None, {"rows": 3}),
    ]


def test_tenant_rows_record_events_too(relay_db: Database) -> None:
    tenant = new_tenant()
    with bypass_scope():
        tenant.plan = "team"
        tenant.save()
        tenant.delete_instance()
    rows = [
        (e.action, e.resource_id, e.tenant_id) for e in events() if e.action.startswith("tenant.")
    ]
    assert rows == [
        ("tenant.create", tenant.id, None),
        ("tenant.update", tenant.id, None),
        ("tenant.delete", tenant.id, None),
    ]


def test_unscoped_is_refused_when_its_audit_row_cannot_be_written(relay_db: Database) -> None:
    skip_without_ddl(relay_db)
    tenant = new_tenant()
    relay_db.execute_sql("ALTER TABLE audit_logs RENAME TO audit_logs_away")
    try:
        with tenant_context(tenant), relay_db.atomic():
            with (
                pytest.raises(RelayError, match="audit row could not be committed"),
                unscoped("no trace, no access"),
            ):
                pytest.fail("entered unscoped without an audit row")
            # Still scoped to the tenant, and the transaction is still usable.
            assert Skill.select().count() == 0
    finally:
        relay_db.execute_sql("ALTER TABLE audit_logs_away RENAME TO audit_logs")


def test_a_write_inside_unscoped_is_filed_under_the_rows_tenant(two_tenants: TenantPair) -> None:
    a, b = two_tenants.a, two_tenants.b
    with tenant_context(a), unscoped("support: fix a typo for tenant b"):
        b_user = User.get(User.email == f"ann@{b.slug}.example")
        b_user.name = "Ann B."
        b_user.save()
    (event,) = [e for e in events() if e.action == "user.update"]
    assert (event.tenant_id, event.resource_id) == (b.id, b_user.id)
    assert event.metadata == {"fields": ["name"], "unscoped": "support: fix a typo for tenant b"}


@pytest.mark.postgres_only
def test_an_event_written_to_sqlite_while_the_models_point_at_postgres(
    pg_url: str, tmp_path: Any
) -> None:
    """The CLI writes to its own database while the models may still be bound
    to another backend's: peewee must not ask SQLite for PostgreSQL's
    RETURNING (it used to fail with 'no attribute lastrowid' and the event
    was dropped)."""
    import relay_peewee
    from relay_peewee.database import open_database
    from relay_peewee.models.audit_log import write_event
    from relay_peewee.operations.commands import migrate

    sqlite = open_database(f"sqlite:///{tmp_path / 'cli.db'}")
    migrate(sqlite)
    pg = relay_peewee.connect(pg_url)
    migrate(pg)
    try:
        assert AuditLog._meta.database.obj is pg
        written = write_event(sqlite, {"action": "test.cross_backend"}, strict=True)
        assert written is not None
        found = sqlite.execute_sql(
            "SELECT id FROM audit_logs WHERE action = 'test.cross_backend'"
        ).fetchall()
        assert [uuid.UUID(str(r[0])) for r in found] == [written]
    finally:
        pg.close()
        sqlite.close()
