"""Fixtures: every database test runs on SQLite and on PostgreSQL.

The backends, the PostgreSQL server and driver (``--relay-driver``), and the
template databases come from the relay_peewee pytest plugin - the same ones an
application's tests get. ``db`` is an empty database of the test's own;
``migrated_db`` (and ``db_url`` in a test that asks for it) a copy of the
session's migrated template, unless the test is marked ``relay_fresh_db``.
Without a reachable server the PostgreSQL cases skip with the reason; with
``CI=true`` they fail instead, so CI cannot go green on SQLite alone.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import Legacy, build_legacy
from legacy import POSTGRES_STYLES, SQLITE_STYLES
from peewee import Database

import relay_peewee
from relay_peewee.database import open_database
from relay_peewee.operations.commands import migrate
from relay_peewee.testing import (
    FRESH_MARK,
    backend_params,
    chosen_backends,
    postgres_server_url,
    throwaway_postgres_database,
)
from relay_peewee.testing.templates import Templates

pytest_plugins = ("pytester",)

# The owner's view of the schema: postgres_rls (the application role) is the
# plugin's relay_db's business, not these fixtures'.
OWNER_BACKENDS = ("sqlite", "postgres")


@pytest.fixture(autouse=True)
def _restore_sys_path() -> Iterator[None]:
    """The CLI puts the current folder first on sys.path (as ``python -m``
    does) and leaves it there: a test that ran it from a copy of an example
    must not make later tests import that copy's packages."""
    saved = list(sys.path)
    yield
    sys.path[:] = saved


POSTGRES_FIXTURES = {"pg_url", "pg_legacy"}


def pytest_itemcollected(item: pytest.Item) -> None:
    # A test that takes a PostgreSQL-only fixture is a PostgreSQL test, and
    # says so to `-m`, whether or not its module remembered the marker.
    names = set(getattr(item, "fixturenames", ()))
    if names & POSTGRES_FIXTURES and item.get_closest_marker("sqlite_only") is None:
        item.add_marker(pytest.mark.postgres_only)


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database, dropped after the test."""
    with throwaway_postgres_database(postgres_server_url(request.config)) as url:
        yield url


@pytest.fixture(params=backend_params(OWNER_BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    if request.param not in chosen_backends(request.config):
        pytest.skip(f"--relay-backends leaves {request.param} out")
    return str(request.param)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    migrated = "migrated_db" in request.fixturenames
    if migrated and request.node.get_closest_marker(FRESH_MARK) is None:
        templates = request.getfixturevalue("relay_templates")
        url = templates.copy(backend, templates.get(backend, False), tmp_path)
        try:
            yield url
        finally:
            if backend != "sqlite":  # tmp_path keeps it, for a failed test's post-mortem
                templates.discard(url)
        return
    if backend == "postgres":
        yield str(request.getfixturevalue("pg_url"))
    else:
        yield f"sqlite:///{tmp_path / 'relay.db'}"


@pytest.fixture
def owner(relay_db_url: str, relay_db: Database) -> Iterator[Database]:
    """The tables' owner beside ``relay_db`` (the application role's database on
    postgres_rls), for setup and checks the application role may not do."""
    database = open_database(relay_db_url)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A database of the test's own on each backend, every model bound to it."""
    database = relay_peewee.connect(db_url)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def migrated_db(db: Database, request: pytest.FixtureRequest) -> Database:
    """A migrated database: a copy of the session's template (``db_url``
    made it), or migrated from empty under ``relay_fresh_db``."""
    if request.node.get_closest_marker(FRESH_MARK) is not None:
        migrate(db)
    return db


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


@pytest.fixture
def pg_legacy(pg_url: str) -> Iterator[Legacy]:
    """A populated legacy database on PostgreSQL only."""
    legacy = build_legacy(pg_url, "postgres", "drizzle")
    try:
        yield legacy
    finally:
        legacy.db.close()


@pytest.fixture
def blank(relay_templates: Templates, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """``blank(backend)``: the URL of a new migrated, empty database of that
    backend (a template copy), for exports to be imported into."""
    made: list[str] = []

    def make(backend: str) -> str:
        url = relay_templates.copy(backend, relay_templates.get(backend, False), tmp_path)
        made.append(url)
        return url

    yield make
    for url in made:
        if not url.startswith("sqlite"):
            relay_templates.discard(url)
