"""Relay's own statements, shaped as its Drizzle code sends them, against the tenant schema.

Run as the application role (forced row-level security) inside a tenant:
``app.current_tenant_id`` set with ``set_config(..., true)`` in the
transaction, as Relay's ``withTenant`` does. Each statement's result is
checked, and so is the other tenant's view. The one statement Relay must
change (site settings' ``ON CONFLICT (id)``) is shown failing as it is and
working as the README says to write it.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.errors
import pytest
from helpers import PG_HOST, PG_PORT, PG_USER

from relay_peewee.database import open_database
from relay_peewee.models import DEFAULT_TENANT_ID
from relay_peewee.operations.commands import migrate
from relay_peewee.operations.roles import create_roles

pytestmark = pytest.mark.postgres_only

OTHER = "tenant-other-0000"


def _connect(role: str, dbname: str) -> Any:
    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=role, dbname=dbname)
    conn.autocommit = False
    return conn


@pytest.fixture
def app(pg_url: str) -> Iterator[tuple[Any, Any]]:
    """(app-role connection, owner connection) on a migrated database with two tenants."""
    db = open_database(pg_url)
    migrate(db)
    suffix = secrets.token_hex(4)
    app_role, admin = f"relay_app_{suffix}", f"relay_admin_{suffix}"
    create_roles(db, app_role, admin)
    dbname = str(db.database)
    db.close()
    owner = _connect(PG_USER, dbname)
    owner.autocommit = True
    conn = _connect(app_role, dbname)
    try:
        yield conn, owner
    finally:
        conn.close()
        with owner.cursor() as cur:
            cur.execute(f"DROP OWNED BY {app_role}, {admin}")
            cur.execute(f"DROP ROLE IF EXISTS {app_role}")
            cur.execute(f"DROP ROLE IF EXISTS {admin}")
        owner.close()


def _run(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else []


def _in_tenant(conn: Any, tenant: str) -> None:
    _run(conn, "SELECT set_config('app.current_tenant_id', %s, true)", (tenant,))


def test_relays_statements_run_as_the_app_role_inside_a_tenant(app: tuple[Any, Any]) -> None:
    conn, owner = app
    t = DEFAULT_TENANT_ID

    # Relay's seed (a deploy-time script, run by the owner): Drizzle sends
    # `default` for every column it was not given.
    rows = _run(
        owner,
        'insert into "tenants" ("id", "name", "slug", "domain", "logo", "is_active", "plan",'
        ' "created_at", "updated_at") values (default, %s, %s, %s, default, default, default,'
        " default, default) returning id, is_active, plan",
        ("Other", "other", "other.test"),
    )
    other_id, active, plan = rows[0]
    assert uuid.UUID(other_id) and active is True and plan == "freemium"

    _in_tenant(conn, t)
    user_id, other_user = str(uuid.uuid4()), str(uuid.uuid4())
    _run(
        conn,
        'insert into "users" ("id", "tenant_id", "email", "name") values (%s, %s, %s, %s)',
        (user_id, t, "ada@example.com", "Ada"),
    )
    _run(
        conn,
        'insert into "users" ("id", "tenant_id", "email", "name") values (%s, %s, %s, %s)',
        (other_user, t, "bob@example.com", "Bob"),
    )

    # skill + version create, then publish (createSkill / createVersion)
    skill_id, version_id = str(uuid.uuid4()), str(uuid.uuid4())
    rows = _run(
        conn,
        'insert into "skills" ("id", "tenant_id", "name", "slug", "description", "category",'
        ' "tags", "published_version_id", "draft_version_id", "total_uses", "average_rating",'
        ' "content", "hours_saved", "forked_from_id", "author_id", "created_at", "updated_at")'
        " values (%s, %s, %s, %s, %s, %s, %s, default, default, default, default, %s, %s,"
        " default, %s, default, default) returning id, total_uses",
        (
            skill_id,
            t,
            "Code review",
            "code-review",
            "Reviews pull requests",
            "prompt",
            ["review", "git"],
            "# Review",
            2,
            user_id,
        ),
    )
    assert rows == [(skill_id, 0)]
    rows = _run(
        conn,
        'insert into "skill_versions" ("id", "tenant_id", "skill_id", "version", "content_url",'
        ' "content_hash", "content_type", "name", "description", "metadata", "created_by",'
        ' "created_at") values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, default)'
        " returning created_at",
        (
            version_id,
            t,
            skill_id,
            1,
            "skills/code-review/v1.md",
            "sha",
            "text/markdown",
            "Code review",
            "Reviews pull requests",
            json.dumps({"source": "editor"}),
            user_id,
        ),
    )
    assert rows[0][0].tzinfo is not None  # timestamptz, as Relay's schema has it
    _run(
        conn,
        'update "skills" set "published_version_id" = %s where "skills"."id" = %s',
        (version_id, skill_id),
    )

    # rating insert (rateSkill) and usage event insert (trackUsage)
    _run(
        conn,
        'insert into "ratings" ("id", "tenant_id", "skill_id", "user_id", "rating", "comment",'
        ' "hours_saved_estimate", "created_at") values (%s, %s, %s, %s, %s, %s, %s, default)',
        (str(uuid.uuid4()), t, skill_id, other_user, 5, "great", 3),
    )
    rows = _run(
        conn,
        'insert into "usage_events" ("id", "tenant_id", "tool_name", "skill_id", "user_id",'
        ' "metadata", "created_at") values (default, %s, %s, %s, %s, %s, default) returning id',
        (t, "get_skill", skill_id, other_user, json.dumps({"client": "mcp"})),
    )
    assert uuid.UUID(str(rows[0][0])).version == 4

    # embedding upsert on (tenant_id, skill_id), twice: insert, then update
    for vector, model in (([0.1, 0.2], "m1"), ([0.3, 0.4], "m2")):
        _run(
            conn,
            'insert into "skill_embeddings" ("id", "tenant_id", "skill_id", "embedding",'
            ' "model_name", "dimensions", "input_hash", "created_at", "updated_at") values'
            " (%s, %s, %s, %s::real[], %s, %s, %s, default, now()) on conflict"
            ' ("tenant_id", "skill_id") do update set "embedding" = %s::real[],'
            ' "model_name" = %s, "dimensions" = %s, "input_hash" = %s, "updated_at" = now()',
            (str(uuid.uuid4()), t, skill_id, vector, model, 2, "h", vector, model, 2, "h"),
        )
    assert _run(conn, "SELECT model_name, embedding FROM skill_embeddings") == [
        ("m2", [pytest.approx(0.3), pytest.approx(0.4)])
    ]

    # review upsert (Relay's raw SQL, ON CONFLICT (tenant_id, skill_id)), twice
    for summary in ("first", "second"):
        _run(
            conn,
            "INSERT INTO skill_reviews (id, tenant_id, skill_id, requested_by, categories,"
            " summary, reviewed_content_hash, model_name, is_visible, created_at) VALUES"
            " (%s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, NOW())"
            " ON CONFLICT (tenant_id, skill_id) DO UPDATE SET"
            " requested_by = EXCLUDED.requested_by, categories = EXCLUDED.categories,"
            " summary = EXCLUDED.summary, reviewed_content_hash = EXCLUDED.reviewed_content_hash,"
            " model_name = EXCLUDED.model_name, is_visible = EXCLUDED.is_visible,"
            " created_at = NOW()",
            (
                str(uuid.uuid4()),
                t,
                skill_id,
                user_id,
                json.dumps({"quality": {"score": 4}}),
                summary,
                "sha",
                "claude",
                True,
            ),
        )
    assert _run(conn, "SELECT summary FROM skill_reviews") == [("second",)]

    # slug lookup (getSkillBySlug) and full-text search (searchSkills)
    rows = _run(
        conn,
        'select "id", "published_version_id" from "skills" where "skills"."slug" = %s limit 1',
        ("code-review",),
    )
    assert rows == [(skill_id, version_id)]
    rows = _run(
        conn,
        "select id from skills where search_vector @@ websearch_to_tsquery('english', %s)"
        " order by ts_rank(search_vector, websearch_to_tsquery('english', %s)) desc",
        ("pull requests", "pull requests"),
    )
    assert rows == [(skill_id,)]

    # writeAuditLog: id and created_at left to the database
    rows = _run(
        conn,
        'insert into "audit_logs" ("id", "actor_id", "tenant_id", "action", "resource_type",'
        ' "resource_id", "ip_address", "metadata", "created_at") values (default, %s, %s, %s,'
        " %s, %s, %s, %s, default) returning id, created_at",
        (user_id, t, "skill.create", "skill", skill_id, "127.0.0.1", json.dumps({"a": 1})),
    )
    assert uuid.UUID(str(rows[0][0])) and rows[0][1] is not None

    # site settings: Relay's upsert targets (id); the tenant schema's key is
    # (tenant_id, id), so the statement must name both.
    settings_sql = (
        'insert into "site_settings" ("id", "tenant_id", "semantic_similarity_enabled",'
        ' "ollama_url", "ollama_model", "embedding_dimensions", "last_successful_connection",'
        ' "updated_at") values (%s, %s, %s, default, default, default, default, now())'
        ' on conflict {target} do update set "semantic_similarity_enabled" = %s,'
        ' "tenant_id" = %s, "updated_at" = now() returning "semantic_similarity_enabled"'
    )
    _run(conn, "SAVEPOINT relay_as_is")
    with pytest.raises(psycopg2.errors.InvalidColumnReference):
        _run(conn, settings_sql.format(target='("id")'), ("default", t, True, True, t))
    _run(conn, "ROLLBACK TO SAVEPOINT relay_as_is")
    for enabled in (True, False):
        rows = _run(
            conn,
            settings_sql.format(target='("tenant_id", "id")'),
            ("default", t, enabled, enabled, t),
        )
        assert rows == [(enabled,)]
    conn.commit()

    # the other tenant sees none of it, and can write its own settings row
    _in_tenant(conn, other_id)
    for table in ("skills", "skill_versions", "ratings", "usage_events", "skill_embeddings"):
        assert _run(conn, f"SELECT count(*) FROM {table}") == [(0,)], table
    assert (
        _run(conn, 'select "id" from "skills" where "skills"."slug" = %s', ("code-review",)) == []
    )
    rows = _run(
        conn,
        settings_sql.format(target='("tenant_id", "id")'),
        ("default", other_id, True, True, other_id),
    )
    assert rows == [(True,)]
    conn.commit()

    # and the owner sees both tenants' rows where they belong
    assert _run(owner, "SELECT tenant_id, count(*) FROM site_settings GROUP BY 1 ORDER BY 1") == (
        sorted([(t, 1), (other_id, 1)])
    )
    assert _run(owner, "SELECT count(*) FROM skills WHERE tenant_id = %s", (t,)) == [(1,)]
