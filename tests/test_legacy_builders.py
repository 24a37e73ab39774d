"""The legacy-database builders in ``legacy.py`` must be trustworthy.

Migration tests lean on these fixtures to prove "nothing was lost", so here
we check that the builders really produce the constraints, cascades, view
and trigger a legacy install has, on every SQLite style and on PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import LEGACY_SKILLS as N_SKILLS
from helpers import Legacy as LegacyFixture
from legacy import (
    EXTRA_INDEX,
    FOREIGN_TABLES,
    LEGACY_TABLES,
    SLUG_TRIGGER,
    SQLITE_STYLES,
    STATS_VIEW,
    create_legacy_schema,
    expected_row_counts,
    populate,
    row_counts,
    snapshot,
)
from peewee import Database, IntegrityError, SqliteDatabase

UNIQUES = (
    ("users", "email"),
    ("skills", "slug"),
    ("skill_embeddings", "skill_id"),
    ("skill_reviews", "skill_id"),
    ("api_keys", "key_hash"),
)

Legacy = LegacyFixture


def _sqlite(path: Path) -> SqliteDatabase:
    return SqliteDatabase(str(path), pragmas={"foreign_keys": 1})


@pytest.fixture
def legacy_db(legacy: LegacyFixture) -> LegacyFixture:
    return legacy


def _scalar(db: Database, sql: str, params: tuple[Any, ...] = ()) -> Any:
    return db.execute_sql(sql, params).fetchone()[0]


def test_row_counts_match_populate(legacy_db: Legacy) -> None:
    counts = row_counts(legacy_db.db)
    assert set(counts) == set(LEGACY_TABLES) | set(FOREIGN_TABLES)
    assert counts == expected_row_counts(N_SKILLS)
    assert all(n > 0 for n in counts.values()), counts


def test_unique_slug_rejects_duplicate(legacy_db: Legacy) -> None:
    db, p = legacy_db.db, legacy_db.db.param
    slug = _scalar(db, "SELECT slug FROM skills ORDER BY slug LIMIT 1")
    # atomic() so PG's aborted transaction is rolled back, not left dangling.
    with pytest.raises(IntegrityError), db.atomic():
        db.execute_sql(
            "INSERT INTO skills (id, name, slug, description, category, content) "
            f"VALUES ({p}, {p}, {p}, {p}, {p}, {p})",
            ("dup-skill", "Dup", slug, "d", "c", "x"),
        )


def test_check_rejects_out_of_range_rating(legacy_db: Legacy) -> None:
    db, p = legacy_db.db, legacy_db.db.param
    skill_id = _scalar(db, "SELECT id FROM skills LIMIT 1")
    user_id = _scalar(db, "SELECT id FROM users LIMIT 1")
    with pytest.raises(IntegrityError), db.atomic():
        db.execute_sql(
            f"INSERT INTO ratings (id, skill_id, user_id, rating) VALUES ({p}, {p}, {p}, {p})",
            ("bad-rating", skill_id, user_id, 9),
        )


def test_deleting_user_cascades(legacy_db: Legacy) -> None:
    db, p = legacy_db.db, legacy_db.db.param
    # A user referenced only through ON DELETE CASCADE FKs (populate keeps
    # the last user that way); others would trip the no-action FKs.
    user_id = _scalar(
        db,
        "SELECT id FROM users WHERE id NOT IN ("
        " SELECT author_id FROM skills WHERE author_id IS NOT NULL"
        " UNION SELECT created_by FROM skill_versions WHERE created_by IS NOT NULL"
        " UNION SELECT user_id FROM usage_events WHERE user_id IS NOT NULL"
        " UNION SELECT requested_by FROM skill_reviews WHERE requested_by IS NOT NULL"
        ") ORDER BY email LIMIT 1",
    )
    assert user_id is not None
    dependants = ("accounts", "sessions", "api_keys", "ratings")
    for table in dependants:
        assert _scalar(db, f"SELECT count(*) FROM {table} WHERE user_id = {p}", (user_id,)) > 0

    with db.atomic():
        db.execute_sql(f"DELETE FROM users WHERE id = {p}", (user_id,))

    for table in dependants:
        assert _scalar(db, f"SELECT count(*) FROM {table} WHERE user_id = {p}", (user_id,)) == 0


def test_slug_trigger_records_history(legacy_db: Legacy) -> None:
    db, p = legacy_db.db, legacy_db.db.param
    # populate() renamed exactly one skill.
    rows = db.execute_sql("SELECT skill_id, old_slug, new_slug FROM skill_slug_history").fetchall()
    assert len(rows) == 1
    skill_id, old_slug, new_slug = rows[0]
    assert new_slug == f"{old_slug}-renamed"
    assert _scalar(db, f"SELECT slug FROM skills WHERE id = {p}", (skill_id,)) == new_slug

    # Setting the same slug again must not log (WHEN old.slug <> new.slug).
    with db.atomic():
        db.execute_sql(f"UPDATE skills SET slug = slug WHERE id = {p}", (skill_id,))
    assert _scalar(db, "SELECT count(*) FROM skill_slug_history") == 1
    with db.atomic():
        db.execute_sql(f"UPDATE skills SET slug = {p} WHERE id = {p}", ("again", skill_id))
    assert _scalar(db, "SELECT count(*) FROM skill_slug_history") == 2


def test_view_has_one_row_per_skill(legacy_db: Legacy) -> None:
    db = legacy_db.db
    assert _scalar(db, f"SELECT count(*) FROM {STATS_VIEW}") == N_SKILLS
    assert _scalar(db, f"SELECT sum(n_ratings) FROM {STATS_VIEW}") == row_counts(db)["ratings"]


def test_uniqueness_spelled_per_style(legacy_db: Legacy) -> None:
    """Each style must really produce its own form of the five uniques."""
    db = legacy_db.db
    if legacy_db.backend == "postgres":
        names = {
            r[0]
            for r in db.execute_sql(
                "SELECT conname FROM pg_constraint WHERE connamespace = 'public'::regnamespace"
            ).fetchall()
        }
        assert {f"{t}_{c}_unique" for t, c in UNIQUES} <= names
        assert {"ratings_rating_check", "skills_author_id_users_id_fk"} <= names
        indexes = {r[0] for r in db.execute_sql("SELECT indexname FROM pg_indexes").fetchall()}
        assert {"skills_search_idx", EXTRA_INDEX} <= indexes
        assert _scalar(db, "SELECT count(*) FROM pg_trigger WHERE tgname = %s", (SLUG_TRIGGER,))
        return

    # PRAGMA index_list origin: 'u' = UNIQUE in CREATE TABLE, 'c' = CREATE INDEX.
    want_origin = "c" if legacy_db.style == "drizzle" else "u"
    for table, column in UNIQUES:
        found = []
        for _seq, name, unique, origin, _partial in db.execute_sql(
            f"PRAGMA index_list('{table}')"
        ).fetchall():
            cols = [r[2] for r in db.execute_sql(f"PRAGMA index_info('{name}')").fetchall()]
            if unique and cols == [column]:
                found.append((name, origin))
        assert [o for _, o in found] == [want_origin], (table, found)
        if legacy_db.style == "drizzle":
            assert found[0][0] == f"{table}_{column}_unique"

    ddl = _scalar(db, "SELECT sql FROM sqlite_master WHERE name = 'skills'")
    if legacy_db.style == "constraint":
        assert "CONSTRAINT skills_slug_unique UNIQUE (slug)" in ddl
    elif legacy_db.style == "drizzle":
        assert ddl.startswith("CREATE TABLE `skills`")
    else:
        assert "slug TEXT NOT NULL UNIQUE" in ddl
    objects = {r[0] for r in db.execute_sql("SELECT name FROM sqlite_master").fetchall()}
    assert {STATS_VIEW, SLUG_TRIGGER, EXTRA_INDEX} <= objects


def test_snapshot_is_stable_and_excludes_tenant_column(legacy_db: Legacy) -> None:
    db = legacy_db.db
    first = snapshot(db)
    assert set(first) == set(LEGACY_TABLES) | set(FOREIGN_TABLES)
    assert {t: len(rows) for t, rows in first.items()} == row_counts(db)
    assert snapshot(db) == first

    # A migration adds tenant_id; the default snapshot must not notice.
    db.execute_sql("ALTER TABLE users ADD COLUMN tenant_id INTEGER DEFAULT 1")
    assert snapshot(db) == first
    assert snapshot(db, ["users"], exclude_columns=()) != {"users": first["users"]}


@pytest.mark.sqlite_only
@pytest.mark.parametrize("style", SQLITE_STYLES)
def test_same_seed_same_data_across_styles(tmp_path: Path, style: str) -> None:
    """Styles differ only in DDL spelling, never in data; seeds drive data."""
    dbs = {}
    for name, st, seed in (("ref", "inline", 7), ("same", style, 7), ("other", style, 8)):
        db = _sqlite(tmp_path / f"{name}.db")
        create_legacy_schema(db, st)
        populate(db, n_skills=5, seed=seed)
        dbs[name] = snapshot(db)
        db.close()
    assert dbs["same"] == dbs["ref"]
    assert dbs["other"] != dbs["ref"]
