"""Both PostgreSQL drivers, psycopg2 and psycopg 3, and machines with only one.

The rest of the suite runs on either (``--relay-driver``; CI runs the
PostgreSQL tests once per driver). These tests pin what differs: which driver
a URL picks, what happens when one is missing, ``migrate --sql`` rendering
literals, and reading SQLSTATEs from either driver's errors.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest
from peewee import Database, DatabaseError

import relay_peewee
from relay_peewee.database import open_database, postgres_driver, sqlstate

TIMESTAMP = re.compile(r"'\d{4}-\d\d-\d\d[ T][\d:.]+'")
DRIVER_MODULES = {"psycopg2": "psycopg2", "psycopg3": "psycopg"}


def with_scheme(url: str, scheme: str) -> str:
    return urlunparse(urlparse(url)._replace(scheme=scheme))


def cli_without(hidden: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    """``relay-peewee ARGS`` in a fresh interpreter where ``hidden`` drivers
    cannot be imported - as on a machine where they were never installed."""
    code = (
        "import sys\n"
        f"for name in {hidden!r}: sys.modules[name] = None\n"
        "from relay_peewee.cli import main\n"
        f"sys.argv = ['relay-peewee', *{list(args)!r}]\n"
        "main()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )


def test_no_driver_at_all_is_one_line_naming_both_extras() -> None:
    result = cli_without(["psycopg2", "psycopg"], "status", "--database", "postgresql://x@h/db")
    assert result.returncode == 1
    assert result.stderr == (
        "Error: PostgreSQL needs a driver: pip install 'relay_peewee[psycopg3]' (psycopg 3) "
        "or 'relay_peewee[postgres]' (psycopg2)\n"
    )


def test_psycopg3_url_without_psycopg3_is_one_line() -> None:
    result = cli_without(["psycopg"], "status", "--database", "psycopg3://x@h/db")
    assert result.returncode == 1
    assert result.stderr == (
        "Error: psycopg3:// needs psycopg 3: pip install 'relay_peewee[psycopg3]'\n"
    )


@pytest.mark.postgres_only
def test_only_psycopg3_installed_postgresql_url_works(pg_url: str) -> None:
    url = with_scheme(pg_url, "postgresql")
    migrated = cli_without(["psycopg2"], "migrate", "-q", "--database", url)
    assert migrated.returncode == 0, migrated.stderr
    assert "applied: 0008_row_level_security" in migrated.stdout
    status = cli_without(["psycopg2"], "status", "--database", url)
    assert status.returncode == 0, status.stderr
    created = cli_without(
        ["psycopg2"], "tenants", "create", "--slug", "acme", "--name", "A", "--database", url
    )
    assert created.returncode == 0, created.stderr


@pytest.mark.postgres_only
@pytest.mark.parametrize("driver", ["psycopg2", "psycopg3"])
def test_a_url_scheme_picks_the_driver(pg_url: str, driver: str) -> None:
    scheme = "psycopg3" if driver == "psycopg3" else "postgresql"
    db = open_database(with_scheme(pg_url, scheme))
    try:
        assert postgres_driver(db) == driver
    finally:
        db.close()


@pytest.mark.postgres_only
def test_migrate_sql_renders_the_same_plan_with_either_driver(pg_url: str) -> None:
    plans = {}
    for hidden, scheme in ((["psycopg"], "postgresql"), (["psycopg2"], "psycopg3")):
        result = cli_without(hidden, "migrate", "--sql", "--database", with_scheme(pg_url, scheme))
        assert result.returncode == 0, result.stderr
        # The timestamps differ in time, and psycopg 3 writes ISO's "T".
        plans[scheme] = TIMESTAMP.sub("'<now>'", result.stdout)
    assert plans["postgresql"] == plans["psycopg3"]
    # The default tenant's row, with its parameters bound as literals.
    assert "'default-tenant-000-0000-000000000000'" in plans["psycopg3"]


@pytest.mark.postgres_only
@pytest.mark.parametrize("driver", ["psycopg2", "psycopg3"])
def test_sqlstate_is_read_from_either_driver(pg_url: str, driver: str) -> None:
    scheme = "psycopg3" if driver == "psycopg3" else "postgresql"
    db = open_database(with_scheme(pg_url, scheme))
    try:
        with pytest.raises(DatabaseError) as caught:
            db.execute_sql("SELECT * FROM no_such_table")
        assert sqlstate(caught.value) == "42P01"  # undefined_table
        assert type(caught.value.__context__).__module__.startswith(DRIVER_MODULES[driver])
    finally:
        db.close()


def test_sqlstate_of_a_sqlite_error_is_none(tmp_path: object) -> None:
    db = open_database("sqlite:///:memory:")
    with pytest.raises(DatabaseError) as caught:
        db.execute_sql("SELECT * FROM no_such_table")
    assert sqlstate(caught.value) is None


def _busy_timeout(db: Database) -> int:
    return int(db.execute_sql("PRAGMA busy_timeout").fetchone()[0])


def test_sqlite_wait_for_locks_is_peewees_own_timeout(tmp_path: Path) -> None:
    # connect() used to set busy_timeout 10000 by pragma while db.timeout
    # said 5, and each reconnect put 10000 back over db.timeout = 2.5.
    db = relay_peewee.connect(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        assert db.timeout == 10.0
        assert _busy_timeout(db) == 10_000
        db.timeout = 2.5
        assert _busy_timeout(db) == 2_500
        db.close()
        db.connect()
        assert _busy_timeout(db) == 2_500
        assert db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
    finally:
        db.close()
    own = relay_peewee.connect(f"sqlite:///{tmp_path / 'b.db'}?timeout=3")
    try:
        assert (own.timeout, _busy_timeout(own)) == (3, 3_000)
    finally:
        own.close()
