"""What relay_peewee's own tests share besides fixtures: the PostgreSQL server
they run against, the legacy databases they migrate, and the CLI run as a
process (to be killed mid-migration).

Fixtures live in ``conftest.py`` (and, for the backends and the template
databases, in the relay_peewee pytest plugin); test modules import from here,
never from ``conftest``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from legacy import create_legacy_schema, populate
from peewee import Database

import relay_peewee

__all__ = [
    "CLI",
    "LEGACY_SKILLS",
    "PG_ADMIN_DB",
    "PG_HOST",
    "PG_PORT",
    "PG_USER",
    "Legacy",
    "build_legacy",
    "kill_cli_at",
]

# libpq's variables, so CI or a developer can point elsewhere.
PG_HOST = os.environ.get("PGHOST", "127.0.0.1")
PG_PORT = int(os.environ.get("PGPORT", "5432"))
PG_USER = os.environ.get("PGUSER", "root")
PG_ADMIN_DB = os.environ.get("PGDATABASE", "test")
LEGACY_SKILLS = 30
# The CLI as a process of its own, as a deploy runs it.
CLI = [sys.executable, str(Path(__file__).resolve().parent.parent / "cli.py")]


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


def kill_cli_at(args: list[str], step: str) -> None:
    """Run the CLI and SIGKILL it the moment its progress reports starting
    ``step`` (a regular expression): a crash at exactly that step."""
    proc = subprocess.Popen(
        [*CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if re.search(step, line):
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"not killed at {step!r}: {''.join(seen)}"
