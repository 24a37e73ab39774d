"""`migrate` on empty and populated legacy databases, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import LEGACY_SKILLS, Legacy
from legacy import (
    EXTRA_INDEX,
    SLUG_TRIGGER,
    SQLITE_STYLES,
    STATS_VIEW,
    create_legacy_schema,
    expected_row_counts,
    populate,
    row_counts,
    snapshot,
)
from peewee import Database, DatabaseError, IntegrityError
from schema import TENANT_TABLES, fingerprint, scalar, sql, tenancy_structure

import relay_peewee
import relay_peewee.database.catalog
import relay_peewee.operations.commands
from relay_peewee.database import is_postgres
from relay_peewee.errors import MigrationError, UnrecognisedSchema
from relay_peewee.models import DEFAULT_TENANT_ID
from relay_peewee.operations.commands import migrate, rollback, status

ALL = [
    "0001_baseline",
    "0002_tenants",
    "0003_tenant_columns",
    "0004_tenant_keys",
    "0005_audit_logs",
    "0006_tenant_references",
    "0007_audit_log_append_only",
    "0008_row_level_security",
    "0009_isolation_hardening",
    "0010_relay_app_compat",
    "0011_tenant_consistent_ids",
    "0012_api_keys_of_active_tenants",
    "0013_audit_log_imports",
    "0014_foreign_key_indexes",
]

# The end state section 3 of the foundation issue asks for.
EXPECTED_TENANT_KEYS = {
    "users": [(("tenant_id", "id"), True)],
    # 0014: an index under each tenant-consistent key that had none.
    "skills": [
        (("tenant_id", "author_id"), False),
        (("tenant_id", "draft_version_id"), False),
        (("tenant_id", "forked_from_id"), False),
        (("tenant_id", "id"), True),
        (("tenant_id", "published_version_id"), False),
        (("tenant_id", "slug"), True),
    ],
    "skill_versions": [
        (("tenant_id", "created_by"), False),
        (("tenant_id", "id"), True),
        (("tenant_id", "skill_id"), False),
    ],
    "ratings": [
        (("tenant_id",), False),
        (("tenant_id", "skill_id"), False),
        (("tenant_id", "user_id"), False),
    ],
    "usage_events": [(("tenant_id",), False), (("tenant_id", "user_id"), False)],
    "skill_embeddings": [(("tenant_id", "skill_id"), True)],
    "skill_reviews": [
        (("tenant_id", "requested_by"), False),
        (("tenant_id", "skill_id"), True),
    ],
    "api_keys": [(("tenant_id",), False)],
    "site_settings": [(("tenant_id", "id"), True)],
}
GLOBAL_UNIQUES = {"users": ("email",), "api_keys": ("key_hash",)}
SWAPPED = {"skills": ("slug",), "skill_embeddings": ("skill_id",), "skill_reviews": ("skill_id",)}


def assert_tenancy_structure(db: Database) -> None:
    for table, shape in tenancy_structure(db).items():
        assert shape["nullable"] is False, table
        assert shape["default"] is None, f"{table}.tenant_id keeps a default"
        assert shape["fk"] == [("tenants", "id")], table
        assert shape["tenant_keys"] == EXPECTED_TENANT_KEYS[table], table
        if table in GLOBAL_UNIQUES:
            assert GLOBAL_UNIQUES[table] in shape["uniques"], table
        if table in SWAPPED:
            assert SWAPPED[table] not in shape["uniques"], f"{table} kept its global unique"
    assert tenancy_structure(db)["site_settings"]["primary_key"] == ("tenant_id", "id")


def test_empty_database_gets_the_full_schema(db: Database) -> None:
    result = migrate(db)
    assert result.applied == ALL
    assert not result.adopted_legacy
    assert {"tenants", "audit_logs", *TENANT_TABLES} <= set(db.get_tables())
    assert_tenancy_structure(db)
    assert scalar(db, "SELECT slug FROM tenants") == "default"
    assert scalar(db, "SELECT id FROM tenants") == DEFAULT_TENANT_ID
    assert all(s.applied for s in status(db))


def test_second_run_changes_nothing(migrated_db: Database) -> None:
    before = fingerprint(migrated_db)
    assert migrate(migrated_db).applied == []
    assert fingerprint(migrated_db) == before


def test_legacy_database_keeps_every_row(legacy: Legacy) -> None:
    db = legacy.db
    before = snapshot(db)
    counts = row_counts(db)
    assert counts == expected_row_counts(LEGACY_SKILLS)
    view_before = db.execute_sql(f"SELECT * FROM {STATS_VIEW} ORDER BY id").fetchall()

    result = migrate(db)

    assert result.adopted_legacy
    assert result.applied == ALL[1:]
    assert snapshot(db) == before
    assert row_counts(db) == counts
    for table in TENANT_TABLES:
        tenants = db.execute_sql(f"SELECT DISTINCT tenant_id FROM {table}").fetchall()
        assert tenants == [(DEFAULT_TENANT_ID,)], table
    assert_tenancy_structure(db)
    assert db.execute_sql(f"SELECT * FROM {STATS_VIEW} ORDER BY id").fetchall() == view_before
    assert migrate(db).applied == []


def test_legacy_extras_still_work_after_migration(legacy: Legacy) -> None:
    db = legacy.db
    migrate(db)
    # the trigger fires
    skill_id, slug = db.execute_sql("SELECT id, slug FROM skills ORDER BY id").fetchone()
    history = scalar(db, "SELECT count(*) FROM skill_slug_history")
    db.execute_sql(
        sql(db, "UPDATE skills SET slug = ? WHERE id = ?"), (slug + "-renamed", skill_id)
    )
    assert scalar(db, "SELECT count(*) FROM skill_slug_history") == history + 1
    # the CHECK constraint still refuses bad ratings
    rating_id = scalar(db, "SELECT id FROM ratings ORDER BY id")
    with pytest.raises(IntegrityError), db.atomic():
        db.execute_sql(sql(db, "UPDATE ratings SET rating = 9 WHERE id = ?"), (rating_id,))
    # other indexes survive
    index_names = {ix.name for ix in relay_peewee.database.catalog.indexes(db, "ratings")}
    assert EXTRA_INDEX in index_names
    # the foreign tables' cascades still work
    user_id = scalar(
        db,
        "SELECT user_id FROM accounts WHERE user_id NOT IN (SELECT author_id FROM skills "
        "WHERE author_id IS NOT NULL) AND user_id NOT IN (SELECT created_by FROM skill_versions "
        "WHERE created_by IS NOT NULL) AND user_id NOT IN (SELECT requested_by FROM skill_reviews"
        " WHERE requested_by IS NOT NULL) AND user_id NOT IN (SELECT user_id FROM usage_events "
        "WHERE user_id IS NOT NULL) ORDER BY user_id",
    )
    db.execute_sql(sql(db, "DELETE FROM users WHERE id = ?"), (user_id,))
    for child in ("accounts", "sessions", "api_keys", "ratings"):
        assert (
            scalar(db, sql(db, f"SELECT count(*) FROM {child} WHERE user_id = ?"), (user_id,)) == 0
        )
    if is_postgres(db):
        assert "search_vector" in [c.name for c in db.get_columns("skills")]
        assert scalar(db, "SELECT count(*) FROM skills WHERE search_vector IS NULL") == 0
        assert "skills_search_idx" in {
            ix.name for ix in relay_peewee.database.catalog.indexes(db, "skills")
        }
    else:
        triggers = db.execute_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        assert SLUG_TRIGGER in {row[0] for row in triggers.fetchall()}


def test_fresh_and_migrated_legacy_databases_have_the_same_tenancy(
    legacy: Legacy, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    migrate(legacy.db)
    fresh_url = (
        str(request.getfixturevalue("pg_url"))
        if legacy.backend == "postgres"
        else f"sqlite:///{tmp_path / 'fresh.db'}"
    )
    fresh = relay_peewee.database.open_database(fresh_url)
    try:
        migrate(fresh)
        assert tenancy_structure(fresh) == tenancy_structure(legacy.db)
    finally:
        fresh.close()


def _add_tenant(db: Database, tenant_id: str, slug: str) -> None:
    db.execute_sql(
        sql(
            db,
            "INSERT INTO tenants (id, name, slug, is_active, plan, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, 'freemium', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        ),
        (tenant_id, slug.title(), slug, True),
    )


def _add_skill(db: Database, skill_id: str, tenant_id: str | None, slug: str) -> None:
    db.execute_sql(
        sql(
            db,
            "INSERT INTO skills (id, name, slug, description, category, content, tenant_id)"
            " VALUES (?, 'n', ?, 'd', 'c', 'x', ?)",
        ),
        (skill_id, slug, tenant_id),
    )


def test_database_enforces_tenancy_rules(migrated_db: Database) -> None:
    db = migrated_db
    _add_tenant(db, "t-acme", "acme")
    _add_skill(db, "s1", DEFAULT_TENANT_ID, "writer")
    _add_skill(db, "s2", "t-acme", "writer")  # same slug, other tenant: fine
    with pytest.raises(IntegrityError), db.atomic():
        _add_skill(db, "s3", "t-acme", "writer")  # twice in one tenant
    with pytest.raises(IntegrityError), db.atomic():
        _add_skill(db, "s4", None, "orphan")  # no tenant
    with pytest.raises(IntegrityError), db.atomic():
        _add_skill(db, "s5", "no-such-tenant", "ghost")  # unknown tenant
    with pytest.raises(IntegrityError), db.atomic():
        db.execute_sql(  # omitting tenant_id: no default may file it anywhere
            "INSERT INTO skills (id, name, slug, description, category, content)"
            " VALUES ('s6', 'n', 'omitted', 'd', 'c', 'x')"
        )
    insert_user = sql(db, "INSERT INTO users (id, email, tenant_id) VALUES (?, ?, ?)")
    db.execute_sql(insert_user, ("u1", "ann@example.com", DEFAULT_TENANT_ID))
    with pytest.raises(IntegrityError), db.atomic():
        db.execute_sql(insert_user, ("u2", "ann@example.com", "t-acme"))  # email is global
    # every tenant has its own settings row with id 'default'
    insert_settings = sql(db, "INSERT INTO site_settings (id, tenant_id) VALUES ('default', ?)")
    db.execute_sql(insert_settings, (DEFAULT_TENANT_ID,))
    db.execute_sql(insert_settings, ("t-acme",))
    with pytest.raises(IntegrityError), db.atomic():
        db.execute_sql(insert_settings, ("t-acme",))
    assert scalar(db, "SELECT count(*) FROM skills") == 2


def test_unrecognised_database_is_refused_and_left_alone(db: Database) -> None:
    db.execute_sql("CREATE TABLE users (id text PRIMARY KEY, email text)")
    db.execute_sql("CREATE TABLE skills (id text PRIMARY KEY)")
    before = fingerprint(db)
    with pytest.raises(UnrecognisedSchema) as info:
        migrate(db)
    message = str(info.value)
    assert "missing tables" in message and "skill_versions" in message
    assert "skills lacks column(s)" in message and "slug" in message
    assert "\n" not in message
    assert fingerprint(db) == before


def test_half_migrated_database_without_history_is_refused(legacy: Legacy) -> None:
    db = legacy.db
    db.execute_sql("ALTER TABLE skills ADD COLUMN tenant_id text")
    before = fingerprint(db)
    with pytest.raises(UnrecognisedSchema, match="skills already has tenant_id"):
        migrate(db)
    assert fingerprint(db) == before


def test_a_failing_migration_leaves_the_database_as_it_was(legacy: Legacy) -> None:
    db = legacy.db
    migrate(db, to="0003")
    # An unrelated index squatting on a name 0004 needs makes it fail after
    # it has already altered users, skills and skill_versions.
    db.execute_sql("CREATE INDEX ratings_tenant_id ON accounts (provider)")
    before, rows = fingerprint(db), snapshot(db, exclude_columns=())
    with pytest.raises(DatabaseError):
        migrate(db)
    assert fingerprint(db) == before
    assert snapshot(db, exclude_columns=()) == rows
    assert [s.name for s in status(db) if s.applied] == ALL[:3]


def test_rollback_to_before_tenancy_restores_the_legacy_shape(legacy: Legacy) -> None:
    db = legacy.db
    before = snapshot(db)
    migrate(db)
    assert rollback(db, to="0002") == ALL[:0:-1]
    assert "tenants" not in db.get_tables()
    for table in TENANT_TABLES:
        assert "tenant_id" not in [c.name for c in db.get_columns(table)], table
    assert snapshot(db) == before
    # the global unique is back
    slug = scalar(db, "SELECT slug FROM skills ORDER BY id")
    with pytest.raises(IntegrityError), db.atomic():
        db.execute_sql(
            sql(
                db,
                "INSERT INTO skills (id, name, slug, description, category, content)"
                " VALUES ('dup', 'n', ?, 'd', 'c', 'x')",
            ),
            (slug,),
        )
    # and the way forward works again
    assert migrate(db).applied == ALL[1:]
    assert snapshot(db) == before
    assert_tenancy_structure(db)


def test_rollback_is_refused_while_another_tenant_holds_data(migrated_db: Database) -> None:
    db = migrated_db
    _add_tenant(db, "t-acme", "acme")
    _add_skill(db, "s1", "t-acme", "mine")
    rollback(db, to="0005")  # audit_logs is empty: 0007-0005 may go
    before = fingerprint(db)
    with pytest.raises(MigrationError, match=r"skills \(1 rows\)"):
        rollback(db)
    assert fingerprint(db) == before


def test_rollback_through_the_baseline_is_refused_before_undoing_anything(
    migrated_db: Database,
) -> None:
    before = fingerprint(migrated_db)
    with pytest.raises(MigrationError, match="0001_baseline cannot be rolled back"):
        rollback(migrated_db, to="0001")
    assert fingerprint(migrated_db) == before
    assert all(s.applied for s in status(migrated_db))


def test_history_from_a_newer_release_is_refused(migrated_db: Database) -> None:
    db = migrated_db
    db.execute_sql(
        sql(db, "INSERT INTO relay_peewee_migrations (name, applied) VALUES (?, ?)"),
        ("0099_from_the_future", "2030-01-01 00:00:00"),
    )
    with pytest.raises(MigrationError, match="0099_from_the_future"):
        migrate(db)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("style", ["inline", "drizzle"])
def test_sqlite_dangling_reference_stops_before_any_change(tmp_path: Path, style: str) -> None:
    db = relay_peewee.database.open_database(f"sqlite:///{tmp_path / 'dangling.db'}")
    create_legacy_schema(db, style)
    populate(db, n_skills=3)
    db.pragma("foreign_keys", 0)
    db.execute_sql(
        "INSERT INTO ratings (id, skill_id, user_id, rating) VALUES ('r-x', 'gone', 'gone', 3)"
    )
    db.pragma("foreign_keys", 1)
    before = fingerprint(db)
    with pytest.raises(MigrationError, match="foreign key check failed: ratings"):
        migrate(db)
    assert fingerprint(db) == before


@pytest.mark.sqlite_only
@pytest.mark.parametrize("legacy", [("sqlite", s) for s in SQLITE_STYLES], indirect=True)
def test_sqlite_copies_each_table_once_per_run(legacy: Legacy) -> None:
    """0004 and 0006 both rebuild ratings & co.; one migrate copies each once."""
    plan = relay_peewee.operations.commands.migration_sql(legacy.db)
    copies = [line for line in plan if line.startswith('CREATE TABLE "_relay_new_')]
    tables = [line.split('"')[1].removeprefix("_relay_new_") for line in copies]
    # 0010 adds tenants and audit_logs (Relay's column defaults).
    assert sorted(tables) == sorted([*TENANT_TABLES, "tenants", "audit_logs"])
    assert sum(line.startswith("PRAGMA foreign_key_check") for line in plan) <= 1
