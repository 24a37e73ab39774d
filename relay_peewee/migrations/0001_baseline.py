"""The pre-tenancy Relay schema, as Relay's TypeScript app created it.

On a legacy database that already has these tables, this migration is not
run: the engine recognises the schema and records it as applied.
"""

from __future__ import annotations

from typing import Any

from relay_peewee.errors import MigrationError

POSTGRES = [
    """CREATE TABLE users (
        id text PRIMARY KEY, email text NOT NULL, name text, email_verified timestamp,
        image text, created_at timestamp NOT NULL DEFAULT now(),
        updated_at timestamp NOT NULL DEFAULT now(),
        CONSTRAINT users_email_unique UNIQUE (email))""",
    """CREATE TABLE skills (
        id text PRIMARY KEY, name text NOT NULL, slug text NOT NULL, description text NOT NULL,
        category text NOT NULL, tags text[] DEFAULT '{}', published_version_id text,
        draft_version_id text, total_uses integer NOT NULL DEFAULT 0, average_rating integer,
        content text NOT NULL, hours_saved integer DEFAULT 1, forked_from_id text,
        author_id text CONSTRAINT skills_author_id_users_id_fk REFERENCES users (id),
        created_at timestamp NOT NULL DEFAULT now(), updated_at timestamp NOT NULL DEFAULT now(),
        search_vector tsvector GENERATED ALWAYS AS (
            setweight(to_tsvector('english', coalesce(name, '')), 'A') ||
            setweight(to_tsvector('english', coalesce(description, '')), 'B')) STORED,
        CONSTRAINT skills_slug_unique UNIQUE (slug))""",
    "CREATE INDEX skills_search_idx ON skills USING gin (search_vector)",
    """CREATE TABLE skill_versions (
        id text PRIMARY KEY,
        skill_id text NOT NULL REFERENCES skills (id) ON DELETE CASCADE,
        version integer NOT NULL, content_url text NOT NULL, content_hash text NOT NULL,
        content_type text NOT NULL, name text NOT NULL, description text, metadata jsonb,
        created_by text REFERENCES users (id), created_at timestamp NOT NULL DEFAULT now())""",
    """CREATE TABLE ratings (
        id text PRIMARY KEY,
        skill_id text NOT NULL REFERENCES skills (id) ON DELETE CASCADE,
        user_id text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        rating integer NOT NULL, comment text, hours_saved_estimate integer,
        created_at timestamp NOT NULL DEFAULT now())""",
    """CREATE TABLE usage_events (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(), tool_name text NOT NULL, skill_id text,
        user_id text REFERENCES users (id), metadata jsonb,
        created_at timestamp NOT NULL DEFAULT now())""",
    """CREATE TABLE skill_embeddings (
        id text PRIMARY KEY,
        skill_id text NOT NULL REFERENCES skills (id) ON DELETE CASCADE,
        embedding real[] NOT NULL, model_name text NOT NULL, dimensions integer NOT NULL,
        input_hash text NOT NULL, created_at timestamp NOT NULL DEFAULT now(),
        updated_at timestamp NOT NULL DEFAULT now(),
        CONSTRAINT skill_embeddings_skill_id_unique UNIQUE (skill_id))""",
    """CREATE TABLE skill_reviews (
        id text PRIMARY KEY,
        skill_id text NOT NULL REFERENCES skills (id) ON DELETE CASCADE,
        requested_by text REFERENCES users (id), categories jsonb NOT NULL,
        summary text NOT NULL, reviewed_content_hash text NOT NULL, model_name text NOT NULL,
        is_visible boolean NOT NULL DEFAULT true, created_at timestamp NOT NULL DEFAULT now(),
        CONSTRAINT skill_reviews_skill_id_unique UNIQUE (skill_id))""",
    """CREATE TABLE api_keys (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        user_id text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        key_hash text NOT NULL, key_prefix text NOT NULL, name text NOT NULL DEFAULT 'Default',
        last_used_at timestamp, created_at timestamp NOT NULL DEFAULT now(),
        revoked_at timestamp, expires_at timestamp,
        CONSTRAINT api_keys_key_hash_unique UNIQUE (key_hash))""",
    """CREATE TABLE site_settings (
        id text PRIMARY KEY DEFAULT 'default',
        semantic_similarity_enabled boolean NOT NULL DEFAULT false,
        ollama_url text NOT NULL DEFAULT 'http://localhost:11434',
        ollama_model text NOT NULL DEFAULT 'nomic-embed-text',
        embedding_dimensions integer NOT NULL DEFAULT 768,
        last_successful_connection timestamp, updated_at timestamp NOT NULL DEFAULT now())""",
]

SQLITE = [
    """CREATE TABLE "users" (
        "id" TEXT NOT NULL PRIMARY KEY, "email" TEXT NOT NULL, "name" TEXT,
        "email_verified" DATETIME, "image" TEXT,
        "created_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
        "updated_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
        CONSTRAINT "users_email_unique" UNIQUE ("email"))""",
    """CREATE TABLE "skills" (
        "id" TEXT NOT NULL PRIMARY KEY, "name" TEXT NOT NULL, "slug" TEXT NOT NULL,
        "description" TEXT NOT NULL, "category" TEXT NOT NULL, "tags" TEXT DEFAULT '[]',
        "published_version_id" TEXT, "draft_version_id" TEXT,
        "total_uses" INTEGER NOT NULL DEFAULT 0, "average_rating" INTEGER,
        "content" TEXT NOT NULL, "hours_saved" INTEGER DEFAULT 1, "forked_from_id" TEXT,
        "author_id" TEXT REFERENCES "users" ("id"),
        "created_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
        "updated_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
        CONSTRAINT "skills_slug_unique" UNIQUE ("slug"))""",
    """CREATE TABLE "skill_versions" (
        "id" TEXT NOT NULL PRIMARY KEY,
        "skill_id" TEXT NOT NULL REFERENCES "skills" ("id") ON DELETE CASCADE,
        "version" INTEGER NOT NULL, "content_url" TEXT NOT NULL, "content_hash" TEXT NOT NULL,
        "content_type" TEXT NOT NULL, "name" TEXT NOT NULL, "description" TEXT, "metadata" TEXT,
        "created_by" TEXT REFERENCES "users" ("id"),
        "created_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP)""",
    """CREATE TABLE "ratings" (
        "id" TEXT NOT NULL PRIMARY KEY,
        "skill_id" TEXT NOT NULL REFERENCES "skills" ("id") ON DELETE CASCADE,
        "user_id" TEXT NOT NULL REFERENCES "users" ("id") ON DELETE CASCADE,
        "rating" INTEGER NOT NULL, "comment" TEXT, "hours_saved_estimate" INTEGER,
        "created_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP)""",
    """CREATE TABLE "usage_events" (
        "id" TEXT NOT NULL PRIMARY KEY, "tool_name" TEXT NOT NULL, "skill_id" TEXT,
        "user_id" TEXT REFERENCES "users" ("id"), "metadata" TEXT,
        "created_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP)""",
    """CREATE TABLE "skill_embeddings" (
        "id" TEXT NOT NULL PRIMARY KEY,
        "skill_id" TEXT NOT NULL REFERENCES "skills" ("id") ON DELETE CASCADE,
        "embedding" TEXT NOT NULL, "model_name" TEXT NOT NULL, "dimensions" INTEGER NOT NULL,
        "input_hash" TEXT NOT NULL, "created_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
        "updated_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
        CONSTRAINT "skill_embeddings_skill_id_unique" UNIQUE ("skill_id"))""",
    """CREATE TABLE "skill_reviews" (
        "id" TEXT NOT NULL PRIMARY KEY,
        "skill_id" TEXT NOT NULL REFERENCES "skills" ("id") ON DELETE CASCADE,
        "requested_by" TEXT REFERENCES "users" ("id"), "categories" TEXT NOT NULL,
        "summary" TEXT NOT NULL, "reviewed_content_hash" TEXT NOT NULL,
        "model_name" TEXT NOT NULL, "is_visible" INTEGER NOT NULL DEFAULT 1,
        "created_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
        CONSTRAINT "skill_reviews_skill_id_unique" UNIQUE ("skill_id"))""",
    """CREATE TABLE "api_keys" (
        "id" TEXT NOT NULL PRIMARY KEY,
        "user_id" TEXT NOT NULL REFERENCES "users" ("id") ON DELETE CASCADE,
        "key_hash" TEXT NOT NULL, "key_prefix" TEXT NOT NULL,
        "name" TEXT NOT NULL DEFAULT 'Default', "last_used_at" DATETIME,
        "created_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP, "revoked_at" DATETIME,
        "expires_at" DATETIME,
        CONSTRAINT "api_keys_key_hash_unique" UNIQUE ("key_hash"))""",
    """CREATE TABLE "site_settings" (
        "id" TEXT NOT NULL PRIMARY KEY DEFAULT 'default',
        "semantic_similarity_enabled" INTEGER NOT NULL DEFAULT 0,
        "ollama_url" TEXT NOT NULL DEFAULT 'http://localhost:11434',
        "ollama_model" TEXT NOT NULL DEFAULT 'nomic-embed-text',
        "embedding_dimensions" INTEGER NOT NULL DEFAULT 768,
        "last_successful_connection" DATETIME,
        "updated_at" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP)""",
]


def up(migrator: Any, db: Any) -> None:
    from relay_peewee.database import is_postgres

    migrator.step("creating the pre-tenancy tables")
    migrator.migrate(*[migrator.sql(s) for s in (POSTGRES if is_postgres(db) else SQLITE)])


def check_down(migrator: Any, db: Any) -> None:
    raise MigrationError(
        "0001_baseline cannot be rolled back: it would drop every Relay table and its rows"
    )


def down(migrator: Any, db: Any) -> None:
    check_down(migrator, db)
