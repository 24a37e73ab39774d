"""What relay_peewee's own tests share besides fixtures: the PostgreSQL server
they run against and the legacy databases they migrate.

Fixtures live in ``conftest.py`` (and, for the backends and the template
databases, in the relay_peewee pytest plugin); test modules import from here,
never from ``conftest``.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from legacy import create_legacy_schema, populate
from peewee import Database

import relay_peewee

__all__ = [
    "LEGACY_SKILLS",
    "PG_ADMIN_DB",
    "PG_HOST",
    "PG_PORT",
    "PG_USER",
    "Legacy",
    "build_legacy",
]

# libpq's variables, so CI or a developer can point elsewhere.
PG_HOST = os.environ.get("PGHOST", "127.0.0.1")
PG_PORT = int(os.environ.get("PGPORT", "5432"))
PG_USER = os.environ.get("PGUSER", "root")
PG_ADMIN_DB = os.environ.get("PGDATABASE", "test")
LEGACY_SKILLS = 30


class Legacy(NamedTuple):
    db: Database
    url: str
    backend: str
    style: str


def build_legacy(url: str, backend: str, style: str, n_skills: int = LEGACY_SKILLS) -> Legacy:
    database = relay_peewee.connect(url)
    create_legacy_schema(database, style)
    populate(database, n_skills=n_skills)
    return Legacy(database, url, backend, style)
