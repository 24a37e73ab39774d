"""Builders for *legacy* single-tenant Relay databases, plus row snapshots.

Relay's old TypeScript app (Drizzle ORM) and hand-made installs left behind
populated single-tenant databases.  Migration tests need such databases to
exist before ``relay_peewee`` touches them, so everything here is written in
raw SQL and deliberately never imports ``relay_peewee``: a bug in the package
must not be able to shape the fixture it is being tested against.

Public API::

    create_legacy_schema(db, style=None)   # tables, view, trigger, indexes
    populate(db, n_skills=20, seed=1)      # deterministic rows everywhere
    snapshot(db, tables=None, exclude_columns=('tenant_id',))
    row_counts(db)
    expected_row_counts(n_skills)          # what populate() produces
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

from peewee import Database, PostgresqlDatabase

__all__ = [
    "EXTRA_INDEX",
    "FOREIGN_TABLES",
    "LEGACY_TABLES",
    "POSTGRES_STYLES",
    "SLUG_TRIGGER",
    "SQLITE_STYLES",
    "STATS_VIEW",
    "create_legacy_schema",
    "expected_row_counts",
    "populate",
    "row_counts",
    "snapshot",
]

# Tables the package owns (it will add tenant_id etc. to these).
LEGACY_TABLES: tuple[str, ...] = (
    "users",
    "skills",
    "skill_versions",
    "ratings",
    "usage_events",
    "skill_embeddings",
    "skill_reviews",
    "api_keys",
    "site_settings",
)
# Tables living in the same database that the package must leave alone
# (auth adapter tables and a hand-made audit table fed by a trigger).
FOREIGN_TABLES: tuple[str, ...] = ("accounts", "sessions", "skill_slug_history")

SQLITE_STYLES: tuple[str, ...] = ("inline", "constraint", "drizzle")
POSTGRES_STYLES: tuple[str, ...] = ("drizzle",)

# Hand-added objects that a table rebuild could silently lose; exported so
# migration tests can assert they survive.
STATS_VIEW = "skill_stats"
SLUG_TRIGGER = "skills_record_slug_change"
EXTRA_INDEX = "ratings_user_idx"


# ---------------------------------------------------------------------------
# Schema description
#
# One logical description rendered four ways (3 SQLite styles + PG drizzle)
# keeps the variants from drifting apart: only the *spelling* of constraints
# differs between styles, never the set of columns.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Col:
    name: str
    # Logical type; see _PG_TYPES / _SQLITE_TYPES.
    kind: str
    not_null: bool = False
    # Logical default; see _render_default().
    default: str | None = None
    pk: bool = False
    unique: bool = False
    # Referenced table (always its "id" column).
    ref: str | None = None
    cascade: bool = False


@dataclass(frozen=True)
class _Check:
    name: str
    column: str
    expr: str


@dataclass(frozen=True)
class _Table:
    name: str
    cols: tuple[_Col, ...]
    check: _Check | None = None


def _c(name: str, kind: str = "text", **kw: Any) -> _Col:
    return _Col(name, kind, **kw)


def _ts(name: str, *, now: bool = False) -> _Col:
    # Drizzle's ``timestamp().notNull().defaultNow()`` pattern.
    return _Col(name, "timestamp", not_null=now, default="now" if now else None)


_TSVECTOR_EXPR = (
    "setweight(to_tsvector('english', coalesce(name, '')), 'A') || "
    "setweight(to_tsvector('english', coalesce(description, '')), 'B')"
)

_TABLES: tuple[_Table, ...] = (
    _Table(
        "users",
        (
            _c("id", pk=True),
            _c("email", not_null=True, unique=True),
            _c("name"),
            _ts("email_verified"),
            _c("image"),
            _ts("created_at", now=True),
            _ts("updated_at", now=True),
        ),
    ),
    _Table(
        "skills",
        (
            _c("id", pk=True),
            _c("name", not_null=True),
            _c("slug", not_null=True, unique=True),
            _c("description", not_null=True),
            _c("category", not_null=True),
            _c("tags", "text[]", default="empty_list"),
            _c("published_version_id"),
            _c("draft_version_id"),
            _c("total_uses", "integer", not_null=True, default="0"),
            _c("average_rating", "integer"),
            _c("content", not_null=True),
            _c("hours_saved", "integer", default="1"),
            _c("forked_from_id"),
            _c("author_id", ref="users"),
            _ts("created_at", now=True),
            _ts("updated_at", now=True),
            _c("search_vector", "tsvector"),
        ),
    ),
    _Table(
        "skill_versions",
        (
            _c("id", pk=True),
            _c("skill_id", not_null=True, ref="skills", cascade=True),
            _c("version", "integer", not_null=True),
            _c("content_url", not_null=True),
            _c("content_hash", not_null=True),
            _c("content_type", not_null=True),
            _c("name", not_null=True),
            _c("description", not_null=True),  # as in Relay's schema
            _c("metadata", "json"),
            _c("created_by", ref="users"),
            _ts("created_at", now=True),
        ),
    ),
    _Table(
        "ratings",
        (
            _c("id", pk=True),
            _c("skill_id", not_null=True, ref="skills", cascade=True),
            _c("user_id", not_null=True, ref="users", cascade=True),
            _c("rating", "integer", not_null=True),
            _c("comment"),
            _c("hours_saved_estimate", "integer"),
            _ts("created_at", now=True),
        ),
        check=_Check("ratings_rating_check", "rating", "rating BETWEEN 1 AND 5"),
    ),
    _Table(
        "usage_events",
        (
            _c("id", "uuid", pk=True, default="gen_uuid"),
            _c("tool_name", not_null=True),
            # No FK on purpose: real data holds ids of deleted skills here.
            _c("skill_id"),
            _c("user_id", ref="users"),
            _c("metadata", "json"),
            _ts("created_at", now=True),
        ),
    ),
    _Table(
        "skill_embeddings",
        (
            _c("id", pk=True),
            _c("skill_id", not_null=True, unique=True, ref="skills", cascade=True),
            _c("embedding", "real[]", not_null=True),
            _c("model_name", not_null=True),
            _c("dimensions", "integer", not_null=True),
            _c("input_hash", not_null=True),
            _ts("created_at", now=True),
            _ts("updated_at", now=True),
        ),
    ),
    _Table(
        "skill_reviews",
        (
            _c("id", pk=True),
            _c("skill_id", not_null=True, unique=True, ref="skills", cascade=True),
            _c("requested_by", not_null=True, ref="users"),  # as in Relay's schema
            _c("categories", "json", not_null=True),
            _c("summary", not_null=True),
            _c("reviewed_content_hash", not_null=True),
            _c("model_name", not_null=True),
            _c("is_visible", "bool", not_null=True, default="true"),
            _ts("created_at", now=True),
        ),
    ),
    _Table(
        "api_keys",
        (
            _c("id", "uuid", pk=True, default="gen_uuid"),
            _c("user_id", not_null=True, ref="users", cascade=True),
            _c("key_hash", not_null=True, unique=True),
            _c("key_prefix", not_null=True),
            _c("name", not_null=True, default="'Default'"),
            _ts("last_used_at"),
            _ts("created_at", now=True),
            _ts("revoked_at"),
            _ts("expires_at"),
        ),
    ),
    _Table(
        "site_settings",
        (
            _c("id", pk=True, default="'default'"),
            _c("semantic_similarity_enabled", "bool", not_null=True, default="false"),
            _c("ollama_url", not_null=True, default="'http://localhost:11434'"),
            _c("ollama_model", not_null=True, default="'nomic-embed-text'"),
            _c("embedding_dimensions", "integer", not_null=True, default="768"),
            _ts("last_successful_connection"),
            _ts("updated_at", now=True),
        ),
    ),
    _Table(
        "accounts",
        (
            _c("id", pk=True),
            _c("user_id", not_null=True, ref="users", cascade=True),
            _c("provider", not_null=True),
            _c("provider_account_id", not_null=True),
        ),
    ),
    _Table(
        "sessions",
        (
            _c("session_token", pk=True),
            _c("user_id", not_null=True, ref="users", cascade=True),
            _c("expires", "timestamp", not_null=True),
        ),
    ),
    _Table(
        "skill_slug_history",
        (
            _c("id", "serial", pk=True),
            _c("skill_id", not_null=True),
            _c("old_slug", not_null=True),
            _c("new_slug", not_null=True),
        ),
    ),
)
_BY_NAME: dict[str, _Table] = {t.name: t for t in _TABLES}

_PG_TYPES: dict[str, str] = {
    "text": "text",
    "integer": "integer",
    "timestamp": "timestamp",
    "json": "jsonb",
    "bool": "boolean",
    "uuid": "uuid",
    "text[]": "text[]",
    "real[]": "real[]",
    "serial": "serial",
    "tsvector": "tsvector",
}
# SQLite has no arrays/json/uuid/bool: Drizzle-era SQLite installs stored them
# as TEXT (JSON) and INTEGER 0/1.
_SQLITE_TYPES: dict[str, str] = {
    "text": "TEXT",
    "integer": "INTEGER",
    "timestamp": "DATETIME",
    "json": "TEXT",
    "bool": "INTEGER",
    "uuid": "TEXT",
    "text[]": "TEXT",
    "real[]": "TEXT",
    "serial": "INTEGER",
}
# Explicit casts for PG parameters, so inserts do not depend on the driver
# sending untyped literals (psycopg3 would bind text[] vs real[] differently).
_PG_CASTS: dict[str, str] = {
    "timestamp": "::timestamp",
    "json": "::jsonb",
    "uuid": "::uuid",
    "text[]": "::text[]",
    "real[]": "::real[]",
}

_VIEW_SQL = (
    f"CREATE VIEW {STATS_VIEW} AS "
    "SELECT s.id, s.slug, count(r.id) AS n_ratings, avg(r.rating) AS avg_rating "
    "FROM skills s LEFT JOIN ratings r ON r.skill_id = s.id GROUP BY s.id, s.slug"
)

_SQLITE_TRIGGER_SQL = f"""CREATE TRIGGER {SLUG_TRIGGER}
AFTER UPDATE OF slug ON skills
FOR EACH ROW WHEN old.slug <> new.slug
BEGIN
    INSERT INTO skill_slug_history (skill_id, old_slug, new_slug)
    VALUES (new.id, old.slug, new.slug);
END"""

_PG_FUNCTION_SQL = """CREATE FUNCTION record_slug_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO skill_slug_history (skill_id, old_slug, new_slug)
    VALUES (NEW.id, OLD.slug, NEW.slug);
    RETURN NEW;
END;
$$"""

_PG_TRIGGER_SQL = (
    f"CREATE TRIGGER {SLUG_TRIGGER} AFTER UPDATE OF slug ON skills "
    "FOR EACH ROW WHEN (OLD.slug <> NEW.slug) EXECUTE FUNCTION record_slug_change()"
)


def _is_pg(db: Database) -> bool:
    return isinstance(db, PostgresqlDatabase)


def _fk_name(table: str, col: _Col) -> str:
    # Drizzle's naming scheme: <table>_<column>_<reftable>_<refcolumn>_fk.
    return f"{table}_{col.name}_{col.ref}_id_fk"


def _render_default(col: _Col, backend: str, style: str) -> str | None:
    d = col.default
    if d is None:
        return None
    if d == "now":
        if backend == "pg":
            return "now()"
        # Drizzle wraps SQL expressions in parentheses; hand-written DDL
        # does not.  Both spellings appear in the wild.
        return "(CURRENT_TIMESTAMP)" if style == "drizzle" else "CURRENT_TIMESTAMP"
    if d == "empty_list":
        return "'{}'" if backend == "pg" else "'[]'"
    if d in ("true", "false"):
        if backend == "pg":
            return d
        return "1" if d == "true" else "0"
    if d == "gen_uuid":
        # SQLite installs generated uuids in application code.
        return "gen_random_uuid()" if backend == "pg" else None
    return d


# --- PostgreSQL (drizzle-kit output) ----------------------------------------


def _pg_statements() -> list[str]:
    creates: list[str] = []
    alters: list[str] = []
    for table in _TABLES:
        parts: list[str] = []
        for col in table.cols:
            if col.kind == "tsvector":
                parts.append(f'"{col.name}" tsvector GENERATED ALWAYS AS ({_TSVECTOR_EXPR}) STORED')
                continue
            bits = [f'"{col.name}"', _PG_TYPES[col.kind]]
            if col.pk:
                bits.append("PRIMARY KEY")
            default = _render_default(col, "pg", "drizzle")
            if default is not None:
                bits.append(f"DEFAULT {default}")
            if col.not_null or col.pk:
                bits.append("NOT NULL")
            parts.append(" ".join(bits))
            if col.ref:
                # drizzle-kit emits FKs as ALTERs after all CREATE TABLEs.
                on_delete = "cascade" if col.cascade else "no action"
                alters.append(
                    f'ALTER TABLE "{table.name}" ADD CONSTRAINT "{_fk_name(table.name, col)}" '
                    f'FOREIGN KEY ("{col.name}") REFERENCES "public"."{col.ref}"("id") '
                    f"ON DELETE {on_delete} ON UPDATE no action;"
                )
        for col in table.cols:
            if col.unique:
                parts.append(f'CONSTRAINT "{table.name}_{col.name}_unique" UNIQUE("{col.name}")')
        if table.check:
            parts.append(f'CONSTRAINT "{table.check.name}" CHECK ({table.check.expr})')
        body = ",\n\t".join(parts)
        creates.append(f'CREATE TABLE "{table.name}" (\n\t{body}\n);')
    indexes = [
        'CREATE INDEX "skills_search_idx" ON "skills" USING gin ("search_vector");',
        f'CREATE INDEX "{EXTRA_INDEX}" ON "ratings" USING btree ("user_id");',
    ]
    return [
        *creates,
        *alters,
        *indexes,
        _VIEW_SQL,
        _PG_FUNCTION_SQL,
        _PG_TRIGGER_SQL,
    ]


# --- SQLite ------------------------------------------------------------------


def _sqlite_col_sql(table: _Table, col: _Col, style: str) -> str:
    drizzle = style == "drizzle"
    sqltype = _SQLITE_TYPES[col.kind]
    name = f"`{col.name}`" if drizzle else col.name
    bits = [name, sqltype.lower() if drizzle else sqltype]
    if col.pk:
        bits.append("PRIMARY KEY")
        if col.kind == "serial":
            bits.append("AUTOINCREMENT")
    default = _render_default(col, "sqlite", style)
    if drizzle:
        # drizzle-kit order: PRIMARY KEY, DEFAULT, NOT NULL; PKs always NOT NULL.
        if default is not None:
            bits.append(f"DEFAULT {default}")
        if col.not_null or col.pk:
            bits.append("NOT NULL")
        return " ".join(bits)
    if col.not_null:
        bits.append("NOT NULL")
    if default is not None:
        bits.append(f"DEFAULT {default}")
    if style == "inline":
        if col.unique:
            bits.append("UNIQUE")
        if col.ref:
            bits.append(f"REFERENCES {col.ref}(id)")
            if col.cascade:
                bits.append("ON DELETE CASCADE")
        if table.check and table.check.column == col.name:
            bits.append(f"CHECK ({table.check.expr})")
    return " ".join(bits)


def _sqlite_statements(style: str) -> list[str]:
    drizzle = style == "drizzle"
    creates: list[str] = []
    unique_indexes: list[str] = []
    for table in _TABLES:
        cols = [c for c in table.cols if c.kind != "tsvector"]  # PG-only column
        parts = [_sqlite_col_sql(table, c, style) for c in cols]
        if style == "constraint":
            parts += [
                f"CONSTRAINT {table.name}_{c.name}_unique UNIQUE ({c.name})"
                for c in cols
                if c.unique
            ]
            for c in cols:
                if c.ref:
                    cascade = " ON DELETE CASCADE" if c.cascade else ""
                    parts.append(
                        f"CONSTRAINT {_fk_name(table.name, c)} FOREIGN KEY ({c.name}) "
                        f"REFERENCES {c.ref}(id){cascade}"
                    )
            if table.check:
                parts.append(f"CONSTRAINT {table.check.name} CHECK ({table.check.expr})")
        elif drizzle:
            for c in cols:
                if c.ref:
                    on_delete = "cascade" if c.cascade else "no action"
                    parts.append(
                        f"FOREIGN KEY (`{c.name}`) REFERENCES `{c.ref}`(`id`) "
                        f"ON UPDATE no action ON DELETE {on_delete}"
                    )
                if c.unique:
                    unique_indexes.append(
                        f"CREATE UNIQUE INDEX `{table.name}_{c.name}_unique` "
                        f"ON `{table.name}` (`{c.name}`);"
                    )
            if table.check:
                parts.append(f'CONSTRAINT "{table.check.name}" CHECK({table.check.expr})')
        if drizzle:
            body = ",\n\t".join(parts)
            creates.append(f"CREATE TABLE `{table.name}` (\n\t{body}\n);")
        else:
            body = ",\n    ".join(parts)
            creates.append(f"CREATE TABLE {table.name} (\n    {body}\n)")
    extra_index = (
        f"CREATE INDEX `{EXTRA_INDEX}` ON `ratings` (`user_id`);"
        if drizzle
        else f"CREATE INDEX {EXTRA_INDEX} ON ratings (user_id)"
    )
    return [*creates, *unique_indexes, extra_index, _VIEW_SQL, _SQLITE_TRIGGER_SQL]


def create_legacy_schema(db: Database, style: str | None = None) -> None:
    """Create the legacy tables, view, trigger and indexes in an empty database.

    ``style`` defaults to 'inline' on SQLite and 'drizzle' on PostgreSQL.
    """
    if _is_pg(db):
        style = style or "drizzle"
        if style not in POSTGRES_STYLES:
            raise ValueError(f"unknown PostgreSQL style {style!r}; use one of {POSTGRES_STYLES}")
        statements = _pg_statements()
    else:
        style = style or "inline"
        if style not in SQLITE_STYLES:
            raise ValueError(f"unknown SQLite style {style!r}; use one of {SQLITE_STYLES}")
        statements = _sqlite_statements(style)
    # One transaction so a failing statement leaves no half-built schema.
    with db.atomic():
        for sql in statements:
            db.execute_sql(sql)


# ---------------------------------------------------------------------------
# Population
# ---------------------------------------------------------------------------

_VERSIONS_PER_SKILL = 3
_RATINGS_PER_SKILL = 5
_EVENTS_PER_SKILL = 5

_PERSON_NAMES: tuple[str | None, ...] = (
    "Ada Lovelace",
    "Zoë Ångström",
    "李小龍",
    "José Ñúñez",
    "Siobhán O'Connor",
    "Grace Hopper",
    None,
)
_SKILL_WORDS: tuple[str, ...] = (
    "Résumé",
    "naïve",
    "日本語",
    "🚀 Rocket",
    "SQL",
    "Review",
    "Refactor",
    "Deploy",
)
_CATEGORIES: tuple[str, ...] = ("engineering", "writing", "data", "ops", "design")
_TAGS: tuple[str, ...] = ("python", "typescript", "sql", "ai", "ünïcödé", "docs", "ci")
_TOOLS: tuple[str, ...] = ("search_skills", "get_skill", "list_skills", "rate_skill")
# Awkward text on purpose: quotes, a literal '%' (psycopg2 treats it as a
# placeholder when SQL is built by string formatting), backslashes, newlines.
_ODD_TEXT: tuple[str, ...] = (
    "Makes reviews 100% faster",
    'Say "hello" and it\'s done',
    "Windows path C:\\temp\\new",
    "line one\nline two\n\ttabbed",
    "Emoji 🎉 and CJK 漢字",
)


def expected_row_counts(n_skills: int) -> dict[str, int]:
    """Row counts that ``populate(db, n_skills)`` produces, per table."""
    n_users = _n_users(n_skills)
    return {
        "users": n_users,
        "skills": n_skills,
        "skill_versions": n_skills * _VERSIONS_PER_SKILL,
        "ratings": n_skills * _RATINGS_PER_SKILL,
        "usage_events": n_skills * _EVENTS_PER_SKILL,
        "skill_embeddings": n_skills,
        "skill_reviews": n_skills,
        "api_keys": n_users,
        "site_settings": 1,
        "accounts": n_users,
        "sessions": n_users,
        "skill_slug_history": 1 if n_skills else 0,
    }


def _n_users(n_skills: int) -> int:
    return max(3, n_skills // 2)


class _Gen:
    """Deterministic value factory; all randomness flows from one Random."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.epoch = datetime(2024, 1, 1)

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def ts(self) -> str:
        # Mostly whole seconds (as CURRENT_TIMESTAMP writes them), some with
        # microseconds so precision loss in a migration would show up.
        offset = timedelta(seconds=self.rng.randrange(365 * 86400))
        if self.rng.random() < 0.3:
            offset += timedelta(microseconds=self.rng.randrange(1, 1_000_000))
        return (self.epoch + offset).isoformat(sep=" ")

    def maybe(self, value: Any, p_null: float = 0.3) -> Any:
        return None if self.rng.random() < p_null else value

    def sha(self, *parts: object) -> str:
        return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def _encode(db: Database, kind: str, value: Any) -> Any:
    """Turn a python value into the parameter the backend's column expects."""
    if value is None:
        return None
    if kind == "json":
        return json.dumps(value, ensure_ascii=False)
    if kind in ("text[]", "real[]"):
        # PG takes real arrays; SQLite stores the JSON text Drizzle wrote.
        return list(value) if _is_pg(db) else json.dumps(value, ensure_ascii=False)
    return value


def _insert(db: Database, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    spec = {c.name: c for c in _BY_NAME[table].cols}
    kinds = [spec[c].kind for c in columns]
    encoded = [tuple(_encode(db, k, v) for k, v in zip(kinds, row, strict=True)) for row in rows]
    col_sql = ", ".join(columns)
    cursor = db.cursor()
    if _is_pg(db):
        placeholders = ", ".join(f"%s{_PG_CASTS.get(k, '')}" for k in kinds)
        try:
            from psycopg2.extensions import cursor as pg2_cursor
            from psycopg2.extras import execute_values
        except ImportError:  # psycopg3: executemany is pipelined, good enough
            pg2_cursor = None
        if pg2_cursor is not None and isinstance(cursor, pg2_cursor):
            # psycopg2's executemany is one round trip per row; batch instead.
            execute_values(
                cursor,
                f"INSERT INTO {table} ({col_sql}) VALUES %s",
                encoded,
                template=f"({placeholders})",
                page_size=1000,
            )
            return
    else:
        placeholders = ", ".join(db.param for _ in columns)
    cursor.executemany(f"INSERT INTO {table} ({col_sql}) VALUES ({placeholders})", encoded)


def populate(db: Database, n_skills: int = 20, seed: int = 1) -> None:
    """Fill every legacy and foreign table with deterministic rows.

    The same ``seed`` and ``n_skills`` give identical data (see
    ``expected_row_counts``).  The last user is only referenced through
    ON DELETE CASCADE foreign keys (ratings, api_keys, accounts, sessions),
    so tests can delete it to exercise cascades.
    """
    g = _Gen(seed)
    rng = g.rng
    n_users = _n_users(n_skills)

    users: list[tuple[Any, ...]] = []
    for i in range(n_users):
        created = g.ts()
        users.append(
            (
                g.uuid(),
                f"user{i}@example.com",
                _PERSON_NAMES[i % len(_PERSON_NAMES)],
                g.maybe(g.ts(), 0.4),
                g.maybe(f"https://avatars.example.com/u/{i}.png", 0.5),
                created,
                g.ts() if i % 3 else created,
            )
        )
    user_ids = [u[0] for u in users]
    # Everyone but the last user may appear in non-cascading references.
    plain_users = user_ids[:-1]

    skills: list[tuple[Any, ...]] = []
    versions: list[tuple[Any, ...]] = []
    ratings: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    embeddings: list[tuple[Any, ...]] = []
    reviews: list[tuple[Any, ...]] = []
    for i in range(n_skills):
        skill_id = g.uuid()
        word = _SKILL_WORDS[i % len(_SKILL_WORDS)]
        name = f"{word} helper {i}"
        slug = f"skill-{i:05d}"
        description = _ODD_TEXT[i % len(_ODD_TEXT)] if i % 2 else f"Helps with {word}."
        content = f"# {name}\n\n{description}\n\nStep 1: ✅ do the thing.\n"
        version_ids = [g.uuid() for _ in range(_VERSIONS_PER_SKILL)]
        created = g.ts()
        skills.append(
            (
                skill_id,
                name,
                slug,
                description,
                rng.choice(_CATEGORIES),
                # k=0 gives the empty-list case Drizzle's '{}' default produces.
                rng.sample(_TAGS, k=rng.randrange(4)),
                g.maybe(version_ids[-1], 0.2),
                g.maybe(version_ids[-2], 0.6),
                rng.randrange(0, 5000),
                g.maybe(rng.randint(1, 5)),
                content,
                g.maybe(rng.randint(1, 12), 0.2),
                skills[rng.randrange(i)][0] if i and rng.random() < 0.15 else None,
                g.maybe(rng.choice(plain_users), 0.1),
                created,
                g.ts(),
            )
        )
        for v, version_id in enumerate(version_ids, start=1):
            versions.append(
                (
                    version_id,
                    skill_id,
                    v,
                    f"https://cdn.example.com/skills/{slug}/v{v}.md",
                    g.sha(skill_id, v),
                    "text/markdown",
                    name,
                    g.maybe(description, 0.0),  # NOT NULL in Relay
                    g.maybe(
                        {
                            "source": rng.choice(["upload", "editor", "import"]),
                            "stats": {"lines": rng.randrange(1, 400), "words": None},
                            "changes": [f"fix {k}" for k in range(rng.randrange(3))],
                            "note": "ünïcödé ✓",
                        }
                    ),
                    g.maybe(rng.choice(plain_users), 0.2),
                    g.ts(),
                )
            )
        for j in range(_RATINGS_PER_SKILL):
            ratings.append(
                (
                    g.uuid(),
                    skill_id,
                    # Rotation guarantees every user (the last one too) rates.
                    user_ids[(i * _RATINGS_PER_SKILL + j) % n_users],
                    rng.randint(1, 5),
                    g.maybe(rng.choice(_ODD_TEXT), 0.5),
                    g.maybe(rng.randint(0, 40), 0.4),
                    g.ts(),
                )
            )
        for j in range(_EVENTS_PER_SKILL):
            if j == 4 and i % 4 == 0:
                event_skill: str | None = f"deleted-skill-{i}"  # dangling on purpose
            else:
                event_skill = g.maybe(skill_id, 0.2)
            events.append(
                (
                    g.uuid(),
                    rng.choice(_TOOLS),
                    event_skill,
                    g.maybe(rng.choice(plain_users), 0.3),
                    g.maybe(
                        {
                            "query": rng.choice(["résumé", "sql", "", "100%"]),
                            "client": {"name": "mcp", "version": [1, rng.randrange(9)]},
                            "latency_ms": round(rng.uniform(1, 900), 3),
                        }
                    ),
                    g.ts(),
                )
            )
        embeddings.append(
            (
                g.uuid(),
                skill_id,
                [round(rng.uniform(-1, 1), 6) for _ in range(8)],
                "nomic-embed-text",
                8,
                g.sha("embed", skill_id),
                created,
                g.ts(),
            )
        )
        reviews.append(
            (
                g.uuid(),
                skill_id,
                g.maybe(rng.choice(plain_users), 0.0),  # NOT NULL in Relay
                {
                    "security": {"score": rng.randint(1, 5), "issues": []},
                    "quality": {
                        "score": rng.randint(1, 5),
                        "issues": [{"line": rng.randrange(50), "msg": "naïve loop"}],
                    },
                },
                f"Looks fine overall — {word}.",
                g.sha(content),
                "llama3.1:8b",
                rng.random() > 0.2,
                g.ts(),
            )
        )

    api_keys: list[tuple[Any, ...]] = []
    accounts: list[tuple[Any, ...]] = []
    sessions: list[tuple[Any, ...]] = []
    for i, user_id in enumerate(user_ids):
        key_hash = g.sha("key", user_id)
        api_keys.append(
            (
                g.uuid(),
                user_id,
                key_hash,
                f"rk_{key_hash[:8]}",
                "Default" if i % 2 else f"laptop-{i} 💻",
                g.maybe(g.ts()),
                g.ts(),
                g.maybe(g.ts(), 0.8),
                g.maybe(g.ts(), 0.5),
            )
        )
        accounts.append(
            (
                g.uuid(),
                user_id,
                rng.choice(["github", "google"]),
                str(rng.randrange(10**6, 10**9)),
            )
        )
        sessions.append((f"{rng.getrandbits(128):032x}", user_id, g.ts()))

    settings = [("default", False, "http://localhost:11434", "nomic-embed-text", 768, None, g.ts())]

    def cols(table: str) -> list[str]:
        return [c.name for c in _BY_NAME[table].cols if c.kind != "tsvector"]

    with db.atomic():
        _insert(db, "users", cols("users"), users)
        _insert(db, "skills", cols("skills"), skills)
        _insert(db, "skill_versions", cols("skill_versions"), versions)
        _insert(db, "ratings", cols("ratings"), ratings)
        _insert(db, "usage_events", cols("usage_events"), events)
        _insert(db, "skill_embeddings", cols("skill_embeddings"), embeddings)
        _insert(db, "skill_reviews", cols("skill_reviews"), reviews)
        _insert(db, "api_keys", cols("api_keys"), api_keys)
        _insert(db, "site_settings", cols("site_settings"), settings)
        _insert(db, "accounts", cols("accounts"), accounts)
        _insert(db, "sessions", cols("sessions"), sessions)
        if skills:
            # Fires the slug trigger, so skill_slug_history holds real data.
            p = db.param
            db.execute_sql(
                f"UPDATE skills SET slug = {p} WHERE id = {p}",
                (f"{skills[0][2]}-renamed", skills[0][0]),
            )


# ---------------------------------------------------------------------------
# Snapshots
# ---------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Recursively convert a driver value into JSON-able, comparable data."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        # real/float4 round trips are inexact; 5 places is what we promise.
        return round(value, 5)
    if isinstance(value, Decimal):
        return round(float(value), 5)
    if isinstance(value, datetime) and value.tzinfo is not None:
        # timestamptz: compare the instant (0010 turns some timestamp
        # columns, which hold UTC, into timestamptz without changing one).
        return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat()
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)  # e.g. tsvector, intervals: compare by text form


def _normalise(value: Any) -> Any:
    plain = _plain(value)
    if isinstance(plain, (dict, list)):
        return json.dumps(plain, sort_keys=True, ensure_ascii=False)
    return plain


def _sort_key(row: tuple[Any, ...]) -> tuple[tuple[Any, ...], ...]:
    # None and mixed types are not orderable in python; rank by (is-null,
    # type name) first so any normalised row sorts deterministically.
    return tuple((0, "", 0) if v is None else (1, type(v).__name__, v) for v in row)


def snapshot(
    db: Database,
    tables: Iterable[str] | None = None,
    exclude_columns: Collection[str] = ("tenant_id",),
) -> dict[str, list[tuple[Any, ...]]]:
    """Return every row of ``tables`` (default: legacy + foreign tables).

    Values are normalised (see ``_plain``) and, within each row, columns are
    ordered by *name* rather than position: a SQLite table rebuild may
    legitimately reorder columns, which is not a data change.  Rows are
    sorted, so equal data gives equal snapshots.  Columns named in
    ``exclude_columns`` (the tenant column a migration adds) are dropped.
    """
    names = tuple(tables) if tables is not None else LEGACY_TABLES + FOREIGN_TABLES
    excluded = set(exclude_columns)
    result: dict[str, list[tuple[Any, ...]]] = {}
    for table in names:
        cursor = db.execute_sql(f'SELECT * FROM "{table}"')
        columns = [d[0] for d in cursor.description]
        keep = sorted((name, i) for i, name in enumerate(columns) if name not in excluded)
        rows = [tuple(_normalise(raw[i]) for _, i in keep) for raw in cursor.fetchall()]
        rows.sort(key=_sort_key)
        result[table] = rows
    return result


def row_counts(db: Database) -> dict[str, int]:
    """``count(*)`` of every legacy and foreign table."""
    counts: dict[str, int] = {}
    for table in LEGACY_TABLES + FOREIGN_TABLES:
        (counts[table],) = db.execute_sql(f'SELECT count(*) FROM "{table}"').fetchone()
    return counts
