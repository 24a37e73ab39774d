"""What the database refuses on its own, whatever client writes the SQL."""

from __future__ import annotations

import pytest
from helpers import Legacy
from peewee import Database, DatabaseError, IntegrityError
from schema import fingerprint, scalar, sql
from test_migrations import ALL

from relay_peewee.database import is_postgres
from relay_peewee.errors import MigrationError
from relay_peewee.models import DEFAULT_TENANT_ID
from relay_peewee.operations.commands import migrate, rollback


def _two_tenants(db: Database) -> None:
    db.execute_sql(
        "INSERT INTO tenants (id, name, slug, is_active, plan, created_at, updated_at) VALUES "
        "('t-b', 'B', 'b', true, 'freemium', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
    )
    for tenant, suffix in ((DEFAULT_TENANT_ID, "a"), ("t-b", "b")):
        db.execute_sql(
            sql(db, "INSERT INTO users (id, email, tenant_id) VALUES (?, ?, ?)"),
            (f"u-{suffix}", f"{suffix}@example.com", tenant),
        )
        db.execute_sql(
            sql(
                db,
                "INSERT INTO skills (id, name, slug, description, category, content, tenant_id)"
                " VALUES (?, 'n', 'same-slug', 'd', 'c', 'x', ?)",
            ),
            (f"s-{suffix}", tenant),
        )


FROM_0006 = ALL[ALL.index("0006_tenant_references") :]
INSERT_RATING = (
    "INSERT INTO ratings (id, skill_id, user_id, rating, tenant_id) VALUES (?, ?, ?, 4, ?)"
)


def test_a_row_cannot_reference_another_tenants_row(migrated_db: Database) -> None:
    db = migrated_db
    _two_tenants(db)
    db.execute_sql(sql(db, INSERT_RATING), ("r-ok", "s-a", "u-a", DEFAULT_TENANT_ID))
    for rating in (
        ("r-1", "s-b", "u-a", DEFAULT_TENANT_ID),  # A's rating of B's skill
        ("r-2", "s-a", "u-b", DEFAULT_TENANT_ID),  # ... by B's user
        ("r-3", "s-a", "u-a", "t-b"),  # filed under B, pointing at A
    ):
        with pytest.raises(IntegrityError), db.atomic():
            db.execute_sql(sql(db, INSERT_RATING), rating)
    with pytest.raises(IntegrityError), db.atomic():
        db.execute_sql("UPDATE skills SET author_id = 'u-b' WHERE id = 's-a'")
    with pytest.raises(IntegrityError), db.atomic():
        db.execute_sql(
            "INSERT INTO api_keys (id, user_id, key_hash, key_prefix, name, tenant_id, created_at)"
            " VALUES ('5f0e6f2c-4d5e-4c3b-9a51-2f7d1e0c8b11', 'u-b', 'h', 'p', 'n',"
            " 'default-tenant-000-0000-000000000000',"
            " CURRENT_TIMESTAMP)"
        )
    assert scalar(db, "SELECT count(*) FROM ratings") == 1


def test_cascades_still_follow_the_composite_keys(migrated_db: Database) -> None:
    db = migrated_db
    _two_tenants(db)
    db.execute_sql(sql(db, INSERT_RATING), ("r-a", "s-a", "u-a", DEFAULT_TENANT_ID))
    db.execute_sql(sql(db, INSERT_RATING), ("r-b", "s-b", "u-b", "t-b"))
    db.execute_sql("DELETE FROM skills WHERE id = 's-a'")
    assert [r[0] for r in db.execute_sql("SELECT id FROM ratings").fetchall()] == ["r-b"]
    db.execute_sql("DELETE FROM users WHERE id = 'u-b'")
    assert scalar(db, "SELECT count(*) FROM ratings") == 0


def test_audit_log_rows_cannot_be_changed_or_removed(migrated_db: Database) -> None:
    db = migrated_db
    db.execute_sql(
        "INSERT INTO audit_logs (id, action, created_at) VALUES "
        "('a1', 'user.create', CURRENT_TIMESTAMP)"
        if not is_postgres(db)
        else "INSERT INTO audit_logs (id, action, created_at) VALUES "
        "(gen_random_uuid(), 'user.create', now())"
    )
    statements = ["UPDATE audit_logs SET action = 'x'", "DELETE FROM audit_logs"]
    if is_postgres(db):
        statements.append("TRUNCATE audit_logs")
    for statement in statements:
        with pytest.raises(DatabaseError, match="audit_logs is append-only"), db.atomic():
            db.execute_sql(statement)
    assert scalar(db, "SELECT action FROM audit_logs") == "user.create"


def test_existing_cross_tenant_rows_stop_the_migration_with_a_report(legacy: Legacy) -> None:
    db = legacy.db
    migrate(db, to="0005")
    db.execute_sql(
        "INSERT INTO tenants (id, name, slug, is_active, plan, created_at, updated_at) VALUES "
        "('t-b', 'B', 'b', true, 'freemium', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
    )
    rating = scalar(db, "SELECT id FROM ratings ORDER BY id")
    db.execute_sql(sql(db, "UPDATE ratings SET tenant_id = 't-b' WHERE id = ?"), (rating,))
    before = fingerprint(db)
    with pytest.raises(MigrationError) as info:
        migrate(db)
    message = str(info.value)
    assert f"ratings.skill_id (1 rows: {rating})" in message
    assert f"ratings.user_id (1 rows: {rating})" in message
    assert fingerprint(db) == before
    # fixed, it goes through
    db.execute_sql(
        sql(db, "UPDATE ratings SET tenant_id = ? WHERE id = ?"), (DEFAULT_TENANT_ID, rating)
    )
    assert migrate(db).applied == FROM_0006


def test_the_guards_roll_back_and_forward(migrated_db: Database) -> None:
    db = migrated_db
    assert rollback(db, to="0006") == FROM_0006[::-1]
    _two_tenants(db)
    db.execute_sql(sql(db, INSERT_RATING), ("r-x", "s-b", "u-a", DEFAULT_TENANT_ID))
    with pytest.raises(MigrationError, match=r"ratings.skill_id \(1 rows: r-x\)"):
        migrate(db)
    db.execute_sql("DELETE FROM ratings WHERE id = 'r-x'")
    assert migrate(db).applied == FROM_0006
