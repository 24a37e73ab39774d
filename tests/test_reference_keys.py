"""Issue 10, migration 0011: the database itself refuses another tenant's id in
``skills.forked_from_id``, ``published_version_id``, ``draft_version_id`` and
``usage_events.skill_id`` - attacked with raw SQL as tenant A, on SQLite, on
PostgreSQL and through the application role under row-level security.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from helpers import Legacy
from peewee import Database, IntegrityError
from schema import fingerprint

from relay_peewee import tenant_context
from relay_peewee.database import is_postgres
from relay_peewee.errors import CrossTenantWrite, MigrationError
from relay_peewee.models import DEFAULT_TENANT_ID, UsageEvent
from relay_peewee.operations.commands import migrate, rollback, status
from relay_peewee.testing import TenantPair

SKILL_COLUMNS = ("forked_from_id", "published_version_id", "draft_version_id")
COLUMNS = (*SKILL_COLUMNS, "usage_events.skill_id")


def _run(db: Database, sql: str, *params: Any) -> None:
    db.execute_sql(sql.replace("?", db.param), params)


def _one(db: Database, sql: str, *params: Any) -> Any:
    return db.execute_sql(sql.replace("?", db.param), params).fetchone()


def _refused(db: Database, sql: str, *params: Any) -> None:
    # A savepoint: the refusal leaves the test's transaction usable.
    with pytest.raises(IntegrityError), db.atomic():
        _run(db, sql, *params)


def _ids(pair: TenantPair, column: str) -> tuple[str, str]:
    """(an id of tenant A, one of tenant B) that ``column`` may point at."""
    ours, theirs = pair.rows_of(pair.a), pair.rows_of(pair.b)
    if column in ("forked_from_id", "usage_events.skill_id"):
        return ours.skills[1].id, theirs.skills[0].id
    return ours.versions[0].id, theirs.versions[0].id


@pytest.mark.parametrize("column", COLUMNS)
def test_raw_sql_cannot_store_another_tenants_id(
    relay_db: Database, two_tenants: TenantPair, column: str
) -> None:
    a = two_tenants.a
    own, foreign = _ids(two_tenants, column)
    skill = two_tenants.rows_of(a).skills[0].id
    event = UsageEvent.id.db_value(two_tenants.rows_of(a).usage_events[0].id)
    user = two_tenants.rows_of(a).users[0].id
    with tenant_context(a), relay_db.atomic():
        if column == "usage_events.skill_id":
            insert = (
                "INSERT INTO usage_events (id, tool_name, skill_id, user_id, tenant_id, created_at)"
                " VALUES (?, 'cli', ?, ?, ?, CURRENT_TIMESTAMP)"
            )
            _refused(relay_db, insert, str(uuid.uuid4()), foreign, user, a.id)
            _refused(relay_db, "UPDATE usage_events SET skill_id = ? WHERE id = ?", foreign, event)
            _run(relay_db, insert, str(uuid.uuid4()), own, user, a.id)
            _run(relay_db, "UPDATE usage_events SET skill_id = ? WHERE id = ?", own, event)
            assert _one(relay_db, "SELECT skill_id FROM usage_events WHERE id = ?", event) == (own,)
            return
        insert = (
            f"INSERT INTO skills (id, name, slug, description, category, content, tenant_id,"
            f" total_uses, created_at, updated_at, {column})"
            " VALUES (?, 'n', ?, 'd', 'c', 'x', ?, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, ?)"
        )
        _refused(relay_db, insert, "new-1", "new-1", a.id, foreign)
        _refused(relay_db, f"UPDATE skills SET {column} = ? WHERE id = ?", foreign, skill)
        _run(relay_db, insert, "new-2", "new-2", a.id, own)
        _run(relay_db, f"UPDATE skills SET {column} = ? WHERE id = ?", own, skill)
        assert _one(relay_db, f"SELECT {column} FROM skills WHERE id = ?", skill) == (own,)


def test_the_orm_still_raises_cross_tenant_write(
    relay_db: Database, two_tenants: TenantPair
) -> None:
    a = two_tenants.a
    _own, foreign = _ids(two_tenants, "usage_events.skill_id")
    with tenant_context(a), pytest.raises(CrossTenantWrite):
        UsageEvent.create(tool_name="cli", skill=foreign)


def test_deleting_a_forked_from_skill_keeps_the_fork_and_the_usage(
    relay_db: Database, two_tenants: TenantPair
) -> None:
    a = two_tenants.a
    origin, fork = (s.id for s in two_tenants.rows_of(a).skills[:2])
    with tenant_context(a), relay_db.atomic():
        _run(relay_db, "UPDATE skills SET forked_from_id = ? WHERE id = ?", origin, fork)
        events = _one(relay_db, "SELECT count(*) FROM usage_events WHERE skill_id = ?", origin)[0]
        assert events > 0
        _run(relay_db, "DELETE FROM skills WHERE id = ?", origin)
        left = _one(relay_db, "SELECT forked_from_id FROM skills WHERE id = ?", fork)
        # PostgreSQL nulls it (the key's SET NULL); SQLite, with no key, keeps
        # the dangling id - which names a row of no tenant, so leaks nothing.
        assert left == ((None,) if is_postgres(relay_db) else (origin,))
        after = _one(relay_db, "SELECT count(*) FROM usage_events WHERE skill_id = ?", origin)
        assert after == (events,)


def test_deleting_a_published_skill_and_a_published_version(
    relay_db: Database, two_tenants: TenantPair
) -> None:
    a = two_tenants.a
    rows = two_tenants.rows_of(a)
    (s1, v1), (s2, v2) = ((rows.skills[i].id, rows.versions[i].id) for i in range(2))
    with tenant_context(a), relay_db.atomic():
        for skill, version in ((s1, v1), (s2, v2)):
            _run(
                relay_db,
                "UPDATE skills SET published_version_id = ?, draft_version_id = ? WHERE id = ?",
                version,
                version,
                skill,
            )
        # skills -> skill_versions (CASCADE) -> skills (SET NULL): a cycle.
        _run(relay_db, "DELETE FROM skills WHERE id = ?", s1)
        assert _one(relay_db, "SELECT count(*) FROM skill_versions WHERE skill_id = ?", s1) == (0,)
        _run(relay_db, "DELETE FROM skill_versions WHERE id = ?", v2)
        left = _one(
            relay_db, "SELECT published_version_id, draft_version_id FROM skills WHERE id = ?", s2
        )
        assert left == ((None, None) if is_postgres(relay_db) else (v2, v2))


# --- the migration on a populated legacy database ---------------------------


def _to_0010_with_tenant_b(db: Database) -> str:
    migrate(db, to="0010")
    b = "tenant-b-0000-0000-0000-000000000000"
    _run(
        db,
        "INSERT INTO tenants (id, name, slug, is_active, plan, created_at, updated_at)"
        " VALUES (?, 'B', 'b', ?, 'freemium', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        b,
        True,
    )
    _run(
        db,
        "INSERT INTO skills (id, name, slug, description, category, content, tenant_id,"
        " total_uses, created_at, updated_at)"
        " VALUES ('b-skill', 's', 's', 'd', 'c', 'x', ?, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        b,
    )
    _run(
        db,
        "INSERT INTO skill_versions (id, skill_id, version, content_url, content_hash,"
        " content_type, name, description, tenant_id, created_at)"
        " VALUES ('b-version', 'b-skill', 1, 'u', 'h', 't', 'n', 'd', ?, CURRENT_TIMESTAMP)",
        b,
    )
    return "b-skill"


AFTER_0010 = (
    "0011_tenant_consistent_ids",
    "0012_api_keys_of_active_tenants",
    "0013_audit_log_imports",
    "0014_foreign_key_indexes",
)


def _rows(db: Database) -> dict[str, list[Any]]:
    tables = ("skills", "skill_versions", "usage_events", "ratings")
    return {t: db.execute_sql(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in tables}


def test_migration_keeps_every_row_of_a_legacy_database(legacy: Legacy) -> None:
    db = legacy.db
    _to_0010_with_tenant_b(db)
    before = _rows(db)
    assert all(before.values())
    assert migrate(db).applied == [*AFTER_0010]
    assert _rows(db) == before
    assert rollback(db, "11") == [*reversed(AFTER_0010)]
    _run(db, "UPDATE skills SET forked_from_id = 'b-skill' WHERE tenant_id = ?", DEFAULT_TENANT_ID)
    _run(db, "UPDATE skills SET forked_from_id = NULL")
    assert migrate(db).applied == [*AFTER_0010]


@pytest.mark.parametrize("column", COLUMNS)
def test_migration_refuses_a_database_holding_a_cross_tenant_id(
    legacy: Legacy, column: str
) -> None:
    db = legacy.db
    foreign = _to_0010_with_tenant_b(db)
    if column == "usage_events.skill_id":
        table, col = "usage_events", "skill_id"
    else:
        table, col = "skills", column
        if column != "forked_from_id":
            foreign = "b-version"
    # Two rows of tenant A point into tenant B.
    _run(
        db,
        f"UPDATE {table} SET {col} = ? WHERE id IN (SELECT id FROM {table}"
        f" WHERE tenant_id = ? ORDER BY id LIMIT 2)",
        foreign,
        DEFAULT_TENANT_ID,
    )
    before = fingerprint(db)
    with pytest.raises(MigrationError) as refused:
        migrate(db)
    message = str(refused.value)
    assert "\n" not in message
    assert f"{table}.{col} (2 rows" in message
    assert fingerprint(db) == before
    assert [s.name for s in status(db) if not s.applied] == [*AFTER_0010]
