"""Migration 0010: Relay's defaults, and a fresh schema that is Relay's production schema.

A fresh database (``migrate`` on an empty one, the SQLite dev database) and
a migrated legacy one are compared catalog by catalog for the nine tables;
the only differences allowed are the ones the README lists under
"Fresh and migrated databases".
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import PG_ADMIN_DB, PG_HOST, PG_PORT, PG_USER, Legacy
from legacy import EXTRA_INDEX
from peewee import Database, IntegrityError
from schema import TENANT_TABLES, fingerprint, scalar

import relay_peewee
from relay_peewee.database import is_postgres
from relay_peewee.errors import MigrationError
from relay_peewee.operations.commands import migrate, status
from relay_peewee.testing import throwaway_postgres_database


def _p(db: Database) -> str:
    return "%s" if is_postgres(db) else "?"


# --- defaults ----------------------------------------------------------------


def test_tenant_insert_with_name_and_slug_only(migrated_db: Database) -> None:
    db = migrated_db
    db.execute_sql("INSERT INTO tenants (name, slug) VALUES ('Acme', 'acme')")
    row = db.execute_sql(
        "SELECT id, is_active, plan, created_at, updated_at, domain FROM tenants"
        " WHERE slug = 'acme'"
    ).fetchone()
    tenant_id, active, plan, created, updated, domain = row
    assert str(uuid.UUID(tenant_id)) == tenant_id  # a lower-case UUID, as gen_random_uuid()::text
    assert uuid.UUID(tenant_id).version == 4
    assert active in (True, 1) and plan == "freemium" and domain is None
    assert created is not None and updated is not None
    # Relay's seed: id, name, slug, domain given; the rest from defaults
    db.execute_sql(
        "INSERT INTO tenants (id, name, slug, domain) VALUES ('t-seed', 'Seed', 'seed', 's.test')"
    )
    assert scalar(db, "SELECT plan FROM tenants WHERE id = 't-seed'") == "freemium"
    for i in range(20):
        db.execute_sql(f"INSERT INTO tenants (name, slug) VALUES ('n', 'bulk-{i}')")
    # a new id per row, not one constant
    assert db.execute_sql("SELECT count(DISTINCT id), count(*) FROM tenants").fetchone() == (
        23,
        23,
    )


def test_audit_event_with_action_only(migrated_db: Database) -> None:
    db = migrated_db
    db.execute_sql("INSERT INTO audit_logs (action) VALUES ('auth.login')")
    db.execute_sql("INSERT INTO audit_logs (action) VALUES ('auth.login')")
    rows = db.execute_sql("SELECT id, created_at FROM audit_logs").fetchall()
    assert len(rows) == 2 and rows[0][0] != rows[1][0]
    for event_id, created in rows:
        uuid.UUID(str(event_id))
        assert created is not None


def test_defaults_after_migrating_a_legacy_database(legacy: Legacy) -> None:
    migrate(legacy.db)
    legacy.db.execute_sql("INSERT INTO tenants (name, slug) VALUES ('Acme', 'acme')")
    legacy.db.execute_sql("INSERT INTO audit_logs (action) VALUES ('tenant.create')")
    assert scalar(legacy.db, "SELECT count(*) FROM audit_logs WHERE action = 'tenant.create'") == 1


# --- NOT NULL, refused on NULLs -------------------------------------------------


@pytest.mark.parametrize(
    ("table", "column", "statement"),
    [
        ("skill_versions", "description", "UPDATE skill_versions SET description = NULL"),
        ("skill_reviews", "requested_by", "UPDATE skill_reviews SET requested_by = NULL"),
    ],
)
def test_nulls_in_a_column_that_becomes_not_null_are_refused(
    legacy: Legacy, table: str, column: str, statement: str
) -> None:
    db = legacy.db
    migrate(db, "0009")
    # The legacy builder has Relay's NOT NULL; an older relay_peewee baseline did not.
    if is_postgres(db):
        db.execute_sql(f"ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL")
        db.execute_sql(f"{statement} WHERE ctid IN (SELECT ctid FROM {table} LIMIT 2)")
    else:
        _sqlite_make_nullable(db, table, column)
        db.execute_sql(f"{statement} WHERE rowid IN (SELECT rowid FROM {table} LIMIT 2)")
    before = fingerprint(db)
    with pytest.raises(MigrationError) as refused:
        migrate(db)
    message = str(refused.value)
    assert "\n" not in message
    assert f"{table}.{column}" in message and "2 row(s)" in message and "fix:" in message
    assert fingerprint(db) == before
    assert [s.name for s in status(db) if not s.applied] == [
        "0010_relay_app_compat",
        "0011_tenant_consistent_ids",
        "0012_api_keys_of_active_tenants",
        "0013_audit_log_imports",
        "0014_foreign_key_indexes",
    ]


def _sqlite_make_nullable(db: Database, table: str, column: str) -> None:
    from relay_peewee.migrator.sqlite_rebuild import rebuild_tables

    def transform(ddl: Any) -> None:
        item = list(ddl.column(column))
        upper = [t.upper() for t in item]
        pos = next(i for i in range(len(item) - 1) if upper[i : i + 2] == ["NOT", "NULL"])
        ddl.replace_column(column, " ".join(item[:pos] + item[pos + 2 :]))

    db.pragma("foreign_keys", 0)
    with db.atomic():
        rebuild_tables(db, {table: transform}, [])
    db.pragma("foreign_keys", 1)


# --- fresh == migrated legacy ------------------------------------------------------


def _pg_catalog(db: Database) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for table in TENANT_TABLES:
        cols = db.execute_sql(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
            " pg_get_expr(d.adbin, d.adrelid), a.attgenerated FROM pg_attribute a"
            " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
            " WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped",
            (table,),
        ).fetchall()
        idx = db.execute_sql(
            "SELECT indexname, regexp_replace(indexdef, 'INDEX \\S+ ON', 'INDEX ON')"
            " FROM pg_indexes WHERE tablename = %s AND schemaname = current_schema()",
            (table,),
        ).fetchall()
        cons = db.execute_sql(
            "SELECT conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint"
            " WHERE conrelid = to_regclass(%s)",
            (table,),
        ).fetchall()
        out[table] = {
            **{f"column {c[0]}": c[1:] for c in cols},
            **{f"index {i[0]}": i[1] for i in idx},
            **{f"constraint {c[0]}": c[1:] for c in cons},
        }
    return out


def _sqlite_catalog(db: Database) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for table in TENANT_TABLES:
        entry: dict[str, Any] = {}
        for _cid, name, type_, notnull, default, pk, hidden in db.execute_sql(
            f'PRAGMA table_xinfo("{table}")'
        ):
            # SQLite keeps the declared type's spelling; the affinity is what counts.
            entry[f"column {name}"] = (type_.upper(), bool(notnull or pk), default, pk, hidden)
        for _seq, name, unique, _origin, partial in db.execute_sql(f'PRAGMA index_list("{table}")'):
            cols = tuple(r[2] for r in db.execute_sql(f'PRAGMA index_info("{name}")'))
            # An inline UNIQUE gets an automatic name; compare it by its columns.
            key = f"unique {cols}" if name.startswith("sqlite_autoindex") else f"index {name}"
            if unique and not name.startswith("sqlite_autoindex"):
                key = f"unique {cols}"
            entry[key] = (bool(unique), bool(partial), cols)
        fks = db.execute_sql(f'PRAGMA foreign_key_list("{table}")').fetchall()
        for fk in fks:
            entry[f"foreign key {fk[0]}.{fk[1]}"] = tuple(fk[2:])
        out[table] = entry
    return out


def _catalog(db: Database) -> dict[str, dict[str, Any]]:
    return _pg_catalog(db) if is_postgres(db) else _sqlite_catalog(db)


# Objects the legacy builder adds of its own (an index and a CHECK a real
# database may have); migrate keeps them and cannot invent them for a fresh one.
OWN_OBJECTS = {("ratings", f"index {EXTRA_INDEX}"), ("ratings", "constraint ratings_rating_check")}


@pytest.fixture
def fresh(legacy: Legacy, tmp_path: Path) -> Iterator[Database]:
    if legacy.backend == "postgres":
        server = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{PG_ADMIN_DB}"
        with throwaway_postgres_database(server) as url:
            db = relay_peewee.database.open_database(url)
            migrate(db)
            yield db
            db.close()
        return
    db = relay_peewee.database.open_database(f"sqlite:///{tmp_path / 'fresh.db'}")
    migrate(db)
    yield db
    db.close()


def test_fresh_and_migrated_legacy_catalogs_are_the_same(legacy: Legacy, fresh: Database) -> None:
    migrate(legacy.db)
    want, got = _catalog(fresh), _catalog(legacy.db)
    differences = [
        f"{table}: {key}: fresh {want[table].get(key)!r}, legacy {got[table].get(key)!r}"
        for table in TENANT_TABLES
        for key in sorted(set(want[table]) | set(got[table]))
        if want[table].get(key) != got[table].get(key) and (table, key) not in OWN_OBJECTS
    ]
    assert differences == []


@pytest.mark.postgres_only
def test_fresh_postgres_has_relays_types_indexes_and_nullability(pg_url: str) -> None:
    db = relay_peewee.database.open_database(pg_url)
    try:
        migrate(db)
        catalog = _pg_catalog(db)
        for table in ("ratings", "skill_versions", "skill_reviews"):
            assert catalog[table]["column created_at"][:2] == ("timestamp with time zone", True)
        assert catalog["skill_versions"]["column description"][1] is True
        assert catalog["skill_reviews"]["column requested_by"][1] is True
        assert "(key_hash)" in catalog["api_keys"]["index api_keys_key_hash_idx"]
        assert "(user_id)" in catalog["api_keys"]["index api_keys_user_id_idx"]
        assert "(skill_id)" in catalog["skill_embeddings"]["index skill_embeddings_skill_id_idx"]
    finally:
        db.close()


@pytest.mark.sqlite_only
def test_fresh_sqlite_has_relays_indexes_and_nullability(tmp_path: Path) -> None:
    db = relay_peewee.database.open_database(f"sqlite:///{tmp_path / 'dev.db'}")
    try:
        migrate(db)
        catalog = _sqlite_catalog(db)
        assert catalog["skill_versions"]["column description"][1] is True
        assert catalog["skill_reviews"]["column requested_by"][1] is True
        assert catalog["api_keys"]["index api_keys_key_hash_idx"][2] == ("key_hash",)
        assert catalog["api_keys"]["index api_keys_user_id_idx"][2] == ("user_id",)
        assert catalog["skill_embeddings"]["index skill_embeddings_skill_id_idx"][2] == (
            "skill_id",
        )
    finally:
        db.close()


@pytest.mark.postgres_only
def test_timestamptz_change_keeps_instants_and_rewrites_nothing(pg_legacy: Legacy) -> None:
    db = pg_legacy.db
    migrate(db, "0008")
    before = {
        t: scalar(db, "SELECT relfilenode FROM pg_class WHERE oid = to_regclass(%s)", (t,))
        for t in ("ratings", "skill_versions", "skill_reviews")
    }
    epoch = {
        t: db.execute_sql(
            f"SELECT id, extract(epoch FROM created_at AT TIME ZONE 'UTC') FROM {t} ORDER BY id"
        ).fetchall()
        for t in before
    }
    migrate(db)
    for table, filenode in before.items():
        after = scalar(db, "SELECT relfilenode FROM pg_class WHERE oid = to_regclass(%s)", (table,))
        assert after == filenode, f"{table} was rewritten"
        assert (
            db.execute_sql(
                f"SELECT id, extract(epoch FROM created_at) FROM {table} ORDER BY id"
            ).fetchall()
            == epoch[table]
        )


@pytest.mark.postgres_only
def test_relays_own_timestamp3_is_kept(pg_legacy: Legacy) -> None:
    db = pg_legacy.db
    db.execute_sql(
        "ALTER TABLE ratings ALTER COLUMN created_at TYPE timestamp(3) with time zone"
        " USING created_at AT TIME ZONE 'UTC'"
    )
    migrate(db)
    assert _pg_catalog(db)["ratings"]["column created_at"][0] == "timestamp(3) with time zone"


def test_rollback_of_0010_drops_defaults_and_functions_keeps_relays_schema(
    migrated_db: Database,
) -> None:
    from relay_peewee.operations.commands import rollback

    db = migrated_db
    assert rollback(db, "10") == [
        "0014_foreign_key_indexes",
        "0013_audit_log_imports",
        "0012_api_keys_of_active_tenants",
        "0011_tenant_consistent_ids",
        "0010_relay_app_compat",
    ]
    with pytest.raises(IntegrityError), db.atomic():  # id and is_active have no default
        db.execute_sql("INSERT INTO tenants (name, slug) VALUES ('n', 'no-defaults')")
    catalog = _catalog(db)
    assert "index api_keys_user_id_idx" in catalog["api_keys"]
    assert catalog["skill_versions"]["column description"][1] is True
    if is_postgres(db):
        assert scalar(db, "SELECT to_regprocedure('relay_find_api_key(text)')") is None
    assert migrate(db).applied == [
        "0010_relay_app_compat",
        "0011_tenant_consistent_ids",
        "0012_api_keys_of_active_tenants",
        "0013_audit_log_imports",
        "0014_foreign_key_indexes",
    ]
    db.execute_sql("INSERT INTO tenants (name, slug) VALUES ('n', 'defaults-again')")


@pytest.mark.postgres_only
def test_online_0010_ends_like_the_transactional_one_and_resumes(pg_legacy: Legacy) -> None:
    from helpers import build_legacy

    db = pg_legacy.db
    migrate(db, "0008")
    # nullable, as the old baseline made it; and as if an earlier --online
    # run stopped after its first NOT NULL step
    db.execute_sql("ALTER TABLE skill_versions ALTER COLUMN description DROP NOT NULL")
    db.execute_sql(
        "ALTER TABLE skill_versions ADD CONSTRAINT skill_versions_description_not_null"
        " CHECK (description IS NOT NULL) NOT VALID"
    )
    migrate(db, online=True)
    server = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{PG_ADMIN_DB}"
    with throwaway_postgres_database(server) as url:
        other = build_legacy(url, "postgres", "drizzle", n_skills=3).db
        try:
            migrate(other)
            assert _pg_catalog(db) == _pg_catalog(other)
        finally:
            other.close()
    assert scalar(db, "SELECT to_regprocedure('relay_find_tenant(text, text)')") is not None
    db.execute_sql("INSERT INTO tenants (name, slug) VALUES ('Online', 'online')")
