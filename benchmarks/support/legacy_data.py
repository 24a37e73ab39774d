"""Build a big legacy (pre-tenancy) Relay database fast, on SQLite or PostgreSQL.

``tests/legacy.py`` owns the legacy *schema* (tables, view, trigger, CHECK,
extra index, foreign tables) and we reuse it unchanged, so the benchmark
migrates exactly what the test-suite migrates. Its ``populate`` builds rows
in Python, which is fine for 30 skills and hopeless for 1.6 million rows;
here every row is generated *inside* the database with one
``INSERT ... SELECT`` per table over a number series (``generate_series`` on
PostgreSQL, a recursive CTE on SQLite), so nothing passes through Python.

Values are deterministic functions of the row number (no ``random()``), and
ids are uuid-shaped text whose leading 8 hex digits come from a
multiplicative hash: they sort in a scrambled order, like real v4 uuids,
so primary-key and index builds see realistic (random) insertion order.
The same N gives the same rows on both backends.

Per skill: 1 skill, 3 versions, 5 ratings, 5 usage events, 1 embedding,
1 review; per two skills: 1 user with 1 api key, 1 account, 1 session;
plus one site_settings row and one skill_slug_history row (fired by the
legacy slug trigger, as ``populate`` does) - 17 rows per skill in the nine
migrated tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# tests/legacy.py is not a package module: the support package puts tests/
# on the path, as the tests do.
from legacy import FOREIGN_TABLES, LEGACY_TABLES, create_legacy_schema
from peewee import Database, PostgresqlDatabase

__all__ = [
    "FOREIGN_TABLES",
    "LEGACY_TABLES",
    "build_legacy_database",
    "expected_row_counts",
    "fill_tenant",
    "migrated_rows",
    "row_counts",
]

VERSIONS_PER_SKILL = 3
RATINGS_PER_SKILL = 5
EVENTS_PER_SKILL = 5
EMBEDDING_DIMS = 8  # what tests/legacy.populate uses

# One "tag" per table keeps ids of different tables apart.
_TAG = {
    "users": 1,
    "skills": 2,
    "skill_versions": 3,
    "ratings": 4,
    "usage_events": 5,
    "skill_embeddings": 6,
    "skill_reviews": 7,
    "api_keys": 8,
    "accounts": 9,
    "audit_logs": 10,
}


def n_users(n_skills: int) -> int:
    # Same rule as tests/legacy.py: one user per two skills, at least three.
    return max(3, n_skills // 2)


def expected_row_counts(n_skills: int) -> dict[str, int]:
    users = n_users(n_skills)
    return {
        "users": users,
        "skills": n_skills,
        "skill_versions": n_skills * VERSIONS_PER_SKILL,
        "ratings": n_skills * RATINGS_PER_SKILL,
        "usage_events": n_skills * EVENTS_PER_SKILL,
        "skill_embeddings": n_skills,
        "skill_reviews": n_skills,
        "api_keys": users,
        "site_settings": 1,
        "accounts": users,
        "sessions": users,
        "skill_slug_history": 1 if n_skills else 0,
    }


def migrated_rows(counts: dict[str, int]) -> int:
    """Rows in the nine tables ``migrate`` changes (the benchmark's unit of work)."""
    return sum(counts[t] for t in LEGACY_TABLES)


def row_counts(db: Database) -> dict[str, int]:
    out: dict[str, int] = {}
    for table in LEGACY_TABLES + FOREIGN_TABLES:
        (out[table],) = db.execute_sql(f'SELECT count(*) FROM "{table}"').fetchone()
    return out


@dataclass(frozen=True)
class _Dialect:
    """The few spellings that differ between the backends."""

    pg: bool
    # Another id space (fill_tenant): ids, emails and key hashes apart from space 0's.
    space: int = 0

    def series(self, n: int, var: str) -> tuple[str, str]:
        """(WITH prefix, FROM source) yielding integers ``var`` = 0 .. n-1."""
        if self.pg:
            # bigint, so the hash arithmetic below cannot overflow int4.
            return "", f"generate_series(0::bigint, {n - 1}) AS g({var})"
        # SQLite's stdlib build has no generate_series; a recursive CTE
        # produces the same series without materialising it.
        return (
            f"WITH RECURSIVE g({var}) AS "
            f"(SELECT 0 UNION ALL SELECT {var} + 1 FROM g WHERE {var} < {n - 1}) ",
            "g",
        )

    def hex(self, expr: str, width: int) -> str:
        if self.pg:
            return f"lpad(to_hex({expr}), {width}, '0')"
        return f"printf('%0{width}x', {expr})"

    def uid(self, table: str, expr: str) -> str:
        # Leading 8 hex digits: (n * odd constant) mod 2^32 is a bijection,
        # so ids are unique yet scattered; the tail keeps the uuid shape.
        tag = _TAG[table] + 16 * self.space
        scrambled = f"((({expr}) + {tag * 7919}) * 2654435761) % 4294967296"
        tail = self.hex(f"({expr})", 12)
        return f"{self.hex(scrambled, 8)} || '-{tag:04x}-4000-8000-' || {tail}"

    def ts(self, expr: str) -> str:
        """A timestamp in 2024, ``expr`` seconds (mod one year) after New Year."""
        if self.pg:
            return f"timestamp '2024-01-01' + (({expr}) % 31536000) * interval '1 second'"
        return f"datetime('2024-01-01', '+' || (({expr}) % 31536000) || ' seconds')"

    def json(self, text_expr: str) -> str:
        return f"({text_expr})::jsonb" if self.pg else f"({text_expr})"

    def text_list(self, items: tuple[str, ...]) -> str:
        if self.pg:
            return "ARRAY[" + ", ".join(f"'{t}'" for t in items) + "]::text[]"
        return "'[" + ", ".join(f'"{t}"' for t in items) + "]'"

    def real_list(self, exprs: list[str]) -> str:
        if self.pg:
            return "ARRAY[" + ", ".join(exprs) + "]::real[]"
        # SQLite's || binds tighter than arithmetic: parenthesise each operand.
        return "'[' || " + " || ', ' || ".join(f"({e})" for e in exprs) + " || ']'"

    def boolean(self, cond: str) -> str:
        # SQLite stores booleans as 0/1, which a comparison already yields.
        return f"({cond})"

    def uuid(self, expr: str) -> str:
        return f"({expr})::uuid" if self.pg else expr


def _mix(expr: str, salt: int, mod: int) -> str:
    """A cheap deterministic pseudo-random value in [0, mod)."""
    return f"((({expr}) * {2 * salt + 1} + {salt * 104729}) * 40503 % 65521 % {mod})"


def _null_if(expr: str, salt: int, percent: int, value: str) -> str:
    return f"CASE WHEN {_mix(expr, salt, 100)} < {percent} THEN NULL ELSE {value} END"


def _statements(d: _Dialect, n: int, tenant_id: str | None = None) -> list[tuple[str, str]]:
    """(table, INSERT ... SELECT) for every table, parents first.

    ``tenant_id``: rows of that tenant, for a migrated database (the auth
    tables, which belong to no tenant, left out).
    """
    u = n_users(n)
    out: list[tuple[str, str]] = []

    def add(table: str, rows: int, columns: str, select: str, var: str = "i") -> None:
        if tenant_id is not None:
            if table in FOREIGN_TABLES:
                return
            columns, select = f"tenant_id, {columns}", f"'{tenant_id}', {select}"
        if rows > 0:
            with_, source = d.series(rows, var)
            out.append(
                (table, f"{with_}INSERT INTO {table} ({columns}) SELECT {select} FROM {source}")
            )

    def plain_user(expr: str) -> str:
        # Everyone but the last user appears in non-cascading references (as
        # in tests/legacy.populate): deleting that user exercises cascades.
        return d.uid("users", f"({expr}) % {max(1, u - 1)}")

    cats = ("engineering", "writing", "data", "ops", "design")
    category = "CASE i % 5 " + " ".join(f"WHEN {k} THEN '{c}'" for k, c in enumerate(cats))
    tag_sets: tuple[tuple[str, ...], ...] = (
        (),
        ("python",),
        ("sql", "ai"),
        ("typescript", "docs", "ci"),
    )
    tags = "CASE i % 4 " + " ".join(
        f"WHEN {k} THEN {d.text_list(t)}" for k, t in enumerate(tag_sets)
    )

    avatar = "'https://avatars.example.com/u/' || i || '.png'"
    email = (
        f"'user{d.space}-' || i || '@example.com'" if d.space else "'user' || i || '@example.com'"
    )
    add(
        "users",
        u,
        "id, email, name, email_verified, image, created_at, updated_at",
        f"{d.uid('users', 'i')}, {email}, 'User ' || i, "
        f"{_null_if('i', 1, 40, d.ts('i * 7'))}, {_null_if('i', 2, 50, avatar)}, "
        f"{d.ts('i * 13')}, {d.ts('i * 13 + 3600')}",
    )

    published = d.uid("skill_versions", f"i * {VERSIONS_PER_SKILL} + 2")
    draft = d.uid("skill_versions", f"i * {VERSIONS_PER_SKILL} + 1")
    rating = "1 + " + _mix("i", 7, 5)
    hours = "1 + " + _mix("i", 9, 12)
    forked = d.uid("skills", _mix("i", 11, 65521) + " % i")
    content = (
        "'# Skill helper ' || i || '\n\nHelps with task ' || i || '.\n\n"
        "Step 1: read the input.\nStep 2: do the thing.\nStep 3: report back.\n'"
    )
    add(
        "skills",
        n,
        "id, name, slug, description, category, tags, published_version_id, draft_version_id, "
        "total_uses, average_rating, content, hours_saved, forked_from_id, author_id, "
        "created_at, updated_at",
        f"{d.uid('skills', 'i')}, 'Skill helper ' || i, 'skill-' || i, "
        "'Helps with task ' || i || ': review, refactor and deploy.', "
        f"{category} END, {tags} END, "
        f"{_null_if('i', 3, 20, published)}, {_null_if('i', 4, 60, draft)}, "
        f"{_mix('i', 5, 5000)}, {_null_if('i', 6, 30, rating)}, {content}, "
        f"{_null_if('i', 8, 20, hours)}, "
        f"CASE WHEN i > 0 AND {_mix('i', 10, 100)} < 15 THEN {forked} END, "
        f"{_null_if('i', 12, 10, plain_user('i'))}, {d.ts('i * 17')}, {d.ts('i * 17 + 86400')}",
    )

    # k enumerates (skill, version): skill k / 3, version k % 3 + 1.
    v_skill = f"(k / {VERSIONS_PER_SKILL})"
    v_num = f"(k % {VERSIONS_PER_SKILL} + 1)"
    v_desc = "'Helps with task ' || k"
    v_meta = d.json(
        '\'{"source": "editor", "stats": {"lines": \' || '
        + _mix("k", 15, 400)
        + ' || \', "words": null}, "changes": ["fix 1"]}\''
    )
    add(
        "skill_versions",
        n * VERSIONS_PER_SKILL,
        "id, skill_id, version, content_url, content_hash, content_type, name, description, "
        "metadata, created_by, created_at",
        f"{d.uid('skill_versions', 'k')}, {d.uid('skills', v_skill)}, {v_num}, "
        f"'https://cdn.example.com/skills/skill-' || {v_skill} || '/v' || {v_num} || '.md', "
        f"{d.uid('skill_versions', 'k')} || {d.uid('skills', v_skill)}, "
        f"'text/markdown', 'Skill helper ' || {v_skill}, "
        # NOT NULL in Relay's schema (0010 refuses NULLs here).
        f"{v_desc}, "
        f"{_null_if('k', 14, 30, v_meta)}, {_null_if('k', 16, 20, plain_user('k'))}, "
        f"{d.ts('k * 19')}",
        var="k",
    )

    r_skill = f"(k / {RATINGS_PER_SKILL})"
    comment = "'Rated ' || k || ' - makes reviews 100% faster'"
    add(
        "ratings",
        n * RATINGS_PER_SKILL,
        "id, skill_id, user_id, rating, comment, hours_saved_estimate, created_at",
        f"{d.uid('ratings', 'k')}, {d.uid('skills', r_skill)}, "
        # Rotation: every user (the last one too) rates something.
        f"{d.uid('users', f'k % {u}')}, 1 + {_mix('k', 17, 5)}, "
        f"{_null_if('k', 18, 50, comment)}, {_null_if('k', 19, 40, _mix('k', 20, 41))}, "
        f"{d.ts('k * 23')}",
        var="k",
    )

    e_skill = f"(k / {EVENTS_PER_SKILL})"
    tools = ("search_skills", "get_skill", "list_skills", "rate_skill")
    tool = "CASE k % 4 " + " ".join(f"WHEN {t} THEN '{name}'" for t, name in enumerate(tools))
    e_meta = d.json(
        '\'{"query": "sql", "client": {"name": "mcp", "version": [1, \' || '
        + _mix("k", 24, 9)
        + " || ']}, \"latency_ms\": ' || "
        + _mix("k", 25, 900)
        + " || '}'"
    )
    add(
        "usage_events",
        n * EVENTS_PER_SKILL,
        "id, tool_name, skill_id, user_id, metadata, created_at",
        f"{d.uuid(d.uid('usage_events', 'k'))}, {tool} END, "
        # Real data holds ids of deleted skills here (there is no FK).
        f"CASE WHEN k % {EVENTS_PER_SKILL} = 4 AND {e_skill} % 4 = 0 "
        f"THEN 'deleted-skill-' || {e_skill} "
        f"WHEN {_mix('k', 21, 100)} < 20 THEN NULL ELSE {d.uid('skills', e_skill)} END, "
        f"{_null_if('k', 22, 30, plain_user('k'))}, {_null_if('k', 23, 30, e_meta)}, "
        f"{d.ts('k * 29')}",
        var="k",
    )

    vector = d.real_list(
        [f"({_mix('i', 30 + j, 2001)} - 1000) / 1000.0" for j in range(EMBEDDING_DIMS)]
    )
    add(
        "skill_embeddings",
        n,
        "id, skill_id, embedding, model_name, dimensions, input_hash, created_at, updated_at",
        f"{d.uid('skill_embeddings', 'i')}, {d.uid('skills', 'i')}, {vector}, "
        f"'nomic-embed-text', {EMBEDDING_DIMS}, "
        f"{d.uid('skill_embeddings', 'i')} || {d.uid('skills', 'i')}, "
        f"{d.ts('i * 31')}, {d.ts('i * 31 + 600')}",
    )

    categories = d.json(
        '\'{"security": {"score": \' || (1 + '
        + _mix("i", 41, 5)
        + ') || \', "issues": []}, "quality": {"score": \' || (1 + '
        + _mix("i", 42, 5)
        + ') || \', "issues": [{"line": 3, "msg": "naive loop"}]}}\''
    )
    visible = d.boolean(_mix("i", 43, 100) + " >= 20")
    add(
        "skill_reviews",
        n,
        "id, skill_id, requested_by, categories, summary, reviewed_content_hash, model_name, "
        "is_visible, created_at",
        f"{d.uid('skill_reviews', 'i')}, {d.uid('skills', 'i')}, "
        f"{plain_user('i')}, {categories}, "
        "'Looks fine overall - task ' || i || '.', "
        f"{d.uid('skill_reviews', 'i')} || {d.uid('skills', 'i')}, 'llama3.1:8b', "
        f"{visible}, {d.ts('i * 37')}",
    )

    add(
        "api_keys",
        u,
        "id, user_id, key_hash, key_prefix, name, last_used_at, created_at, revoked_at, expires_at",
        f"{d.uuid(d.uid('api_keys', 'i'))}, {d.uid('users', 'i')}, "
        f"{d.uid('api_keys', 'i')} || {d.uid('users', 'i')}, "
        f"'rk_' || {d.hex('((i + 8) * 2654435761) % 4294967296', 8)}, "
        "CASE WHEN i % 2 = 1 THEN 'Default' ELSE 'laptop-' || i END, "
        f"{_null_if('i', 50, 30, d.ts('i * 41'))}, {d.ts('i * 43')}, "
        f"{_null_if('i', 51, 80, d.ts('i * 47'))}, {_null_if('i', 52, 50, d.ts('i * 53'))}",
    )
    add(
        "site_settings",
        1,
        "id, semantic_similarity_enabled, ollama_url, ollama_model, embedding_dimensions, "
        "last_successful_connection, updated_at",
        f"'default', {d.boolean('i = 1')}, 'http://localhost:11434', 'nomic-embed-text', 768, "
        f"NULL, {d.ts('0')}",
    )
    add(
        "accounts",
        u,
        "id, user_id, provider, provider_account_id",
        f"{d.uid('accounts', 'i')}, {d.uid('users', 'i')}, "
        "CASE WHEN i % 2 = 0 THEN 'github' ELSE 'google' END, '' || (1000000 + i * 7)",
    )
    add(
        "sessions",
        u,
        "session_token, user_id, expires",
        f"'sess-' || {d.uid('accounts', 'i')}, {d.uid('users', 'i')}, {d.ts('i * 59')}",
    )
    return out


def build_legacy_database(
    db: Database,
    n_skills: int,
    progress: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Create the legacy schema in an empty ``db`` and fill it; return row counts.

    The caller opens ``db`` (any peewee SQLite or PostgreSQL database) and
    keeps ownership of it.
    """
    pg = isinstance(db, PostgresqlDatabase)
    d = _Dialect(pg)
    create_legacy_schema(db)
    if not pg:
        # Loading only: no rollback journal, no fsync, a big page cache, and
        # no per-row FK lookups (the data is consistent by construction, and
        # the migration's own `PRAGMA foreign_key_check` re-proves it). None
        # of these settings persist in the file, so the migrations later run
        # with SQLite's ordinary defaults.
        for pragma in (
            "journal_mode = OFF",
            "synchronous = OFF",
            "cache_size = -262144",
            "foreign_keys = OFF",
        ):
            db.execute_sql(f"PRAGMA {pragma}")
    with db.atomic():
        if pg:
            # FK checks are row triggers in PostgreSQL; a superuser can skip
            # them for the bulk load (`replica` disables ordinary triggers,
            # including the RI ones), which halves the load time.
            (superuser,) = db.execute_sql(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            if superuser:
                db.execute_sql("SET LOCAL session_replication_role = replica")
        for table, sql in _statements(d, n_skills):
            if progress:
                progress(f"loading {table}")
            # A raw cursor with no parameters: psycopg2 would otherwise read
            # every `%` (modulo, '100%') as a placeholder.
            db.cursor().execute(sql)
        if pg:
            db.execute_sql("SET LOCAL session_replication_role = origin")
        if n_skills:
            # Fire the legacy slug trigger once, as tests/legacy.populate does,
            # so skill_slug_history holds a real row.
            db.execute_sql("UPDATE skills SET slug = slug || '-renamed' WHERE slug = 'skill-0'")
    if pg:
        # A production database has been vacuumed and analysed: hint bits set,
        # visibility map current. Without this the first approach to scan a
        # table would pay the build's cleanup bill.
        if progress:
            progress("vacuum analyze")
        db.execute_sql("VACUUM (ANALYZE)")
    else:
        db.execute_sql("PRAGMA foreign_keys = ON")
        db.execute_sql("PRAGMA journal_mode = DELETE")
    counts = row_counts(db)
    expected = expected_row_counts(n_skills)
    if counts != expected:
        raise RuntimeError(f"legacy build produced {counts}, expected {expected}")
    return counts


def fill_tenant(
    db: Database, tenant_id: str, n_skills: int, space: int = 1, events: int = 0
) -> None:
    """Rows of ``n_skills`` skills (17 rows a skill, as above) for ``tenant_id``
    in a migrated database, plus ``events`` audit events of the tenant.

    ``space`` keeps ids, emails and key hashes apart from the legacy rows'
    (space 0) and from other tenants filled with another space.
    """
    pg = isinstance(db, PostgresqlDatabase)
    d = _Dialect(pg, space)
    with db.atomic():
        if pg:
            # Keys and triggers off for the bulk load, as build_legacy_database.
            db.execute_sql("SET LOCAL session_replication_role = replica")
        else:
            db.execute_sql("PRAGMA defer_foreign_keys = ON")
        for _table, sql in _statements(d, n_skills, tenant_id):
            db.cursor().execute(sql)
        if events:
            with_, source = d.series(events, "i")
            when = "now() AT TIME ZONE 'UTC'" if pg else "datetime('now')"
            meta = d.json('\'{"n": \' || i || \', "why": "bench"}\'')
            db.cursor().execute(
                f"{with_}INSERT INTO audit_logs (id, tenant_id, action, resource_type,"
                f" resource_id, metadata, created_at) SELECT {d.uuid(d.uid('audit_logs', 'i'))},"
                f" '{tenant_id}', 'skill.update', 'skill', {d.uid('skills', 'i')}, {meta}, {when}"
                f" FROM {source}"
            )
        if pg:
            db.execute_sql("SET LOCAL session_replication_role = origin")
    db.execute_sql("ANALYZE")
