"""Fixtures: every database test runs on SQLite and on PostgreSQL.

Each test gets its own database: a file under ``tmp_path`` for SQLite, a
throw-away PostgreSQL database (dropped afterwards) for PostgreSQL. Without a
reachable server the PostgreSQL cases skip with the reason; with ``CI=true``
they fail instead, so CI cannot go green on SQLite alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from legacy import POSTGRES_STYLES, SQLITE_STYLES, create_legacy_schema, populate
from peewee import Database

import relay_peewee
from relay_peewee.commands import migrate
from relay_peewee.testing import throwaway_postgres_database

# libpq's variables, so CI or a developer can point elsewhere.
PG_HOST = os.environ.get("PGHOST", "127.0.0.1")
PG_PORT = int(os.environ.get("PGPORT", "5432"))
PG_USER = os.environ.get("PGUSER", "root")
PG_ADMIN_DB = os.environ.get("PGDATABASE", "test")
LEGACY_SKILLS = 30


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database, dropped after the test."""
    server = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{PG_ADMIN_DB}"
    with throwaway_postgres_database(server) as url:
        yield url


BACKENDS = [
    pytest.param("sqlite", marks=pytest.mark.sqlite_only),
    pytest.param("postgres", marks=pytest.mark.postgres_only),
]


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'relay.db'}"


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """An empty database on each backend, with every model bound to it."""
    database = relay_peewee.connect(db_url)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def migrated_db(db: Database) -> Database:
    """A database built from empty by `migrate`."""
    migrate(db)
    return db


class Legacy(NamedTuple):
    db: Database
    url: str
    backend: str
    style: str


LEGACY_BACKENDS = [
    *(
        pytest.param(("sqlite", s), id=f"sqlite-{s}", marks=pytest.mark.sqlite_only)
        for s in SQLITE_STYLES
    ),
    *(
        pytest.param(("postgres", s), id=f"postgres-{s}", marks=pytest.mark.postgres_only)
        for s in POSTGRES_STYLES
    ),
]


@pytest.fixture(params=LEGACY_BACKENDS)
def legacy(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Legacy]:
    """A populated legacy (pre-tenancy) Relay database in each known style."""
    backend, style = request.param
    if backend == "postgres":
        url = str(request.getfixturevalue("pg_url"))
    else:
        url = f"sqlite:///{tmp_path / f'legacy-{style}.db'}"
    legacy = build_legacy(url, backend, style)
    try:
        yield legacy
    finally:
        legacy.db.close()


def build_legacy(url: str, backend: str, style: str, n_skills: int = LEGACY_SKILLS) -> Legacy:
    database = relay_peewee.connect(url)
    create_legacy_schema(database, style)
    populate(database, n_skills=n_skills)
    return Legacy(database, url, backend, style)


@pytest.fixture
def pg_legacy(pg_url: str) -> Iterator[Legacy]:
    """A populated legacy database on PostgreSQL only."""
    legacy = build_legacy(pg_url, "postgres", "drizzle")
    try:
        yield legacy
    finally:
        legacy.db.close()
