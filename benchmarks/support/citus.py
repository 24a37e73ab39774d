"""A throw-away database on the Citus cluster of ``shared/citus/cluster.sh``.

The coordinator is ``$RELAY_CITUS_URL`` (default root@127.0.0.1:5440), the
workers ``$RELAY_CITUS_WORKERS`` (default 127.0.0.1:5441,127.0.0.1:5442): the
database is created on all three with the extension, the workers registered,
and dropped from all three on exit.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse, urlunparse

CITUS_URL = os.environ.get("RELAY_CITUS_URL", "postgresql://root@127.0.0.1:5440/postgres")
WORKERS = os.environ.get("RELAY_CITUS_WORKERS", "127.0.0.1:5441,127.0.0.1:5442").split(",")


def _connect(port: int, dbname: str) -> Any:
    import psycopg2

    parsed = urlparse(CITUS_URL)
    conn = psycopg2.connect(
        host=parsed.hostname, port=port, user=parsed.username, dbname=dbname, connect_timeout=3
    )
    conn.autocommit = True
    return conn


@contextmanager
def citus_database(prefix: str, scheme: str = "postgresql") -> Iterator[str]:
    """The URL of a new database on the coordinator and every worker."""
    coordinator = int(urlparse(CITUS_URL).port or 5432)
    ports = [coordinator] + [int(w.rsplit(":", 1)[1]) for w in WORKERS]
    try:
        nodes = [_connect(port, "postgres") for port in ports]
    except Exception as exc:
        raise SystemExit(f"citus: unreachable ({str(exc).strip().splitlines()[0]})") from None
    name = f"{prefix}_{secrets.token_hex(4)}"
    try:
        for port, node in zip(ports, nodes, strict=True):
            node.cursor().execute(f'CREATE DATABASE "{name}"')
            with _connect(port, name) as db:
                db.cursor().execute("CREATE EXTENSION citus")
        with _connect(coordinator, name) as db:
            cur = db.cursor()
            cur.execute(
                "SELECT citus_set_coordinator_host(%s, %s)",
                (urlparse(CITUS_URL).hostname, coordinator),
            )
            for worker in WORKERS:
                w_host, w_port = worker.rsplit(":", 1)
                cur.execute("SELECT citus_add_node(%s, %s)", (w_host, int(w_port)))
        yield urlunparse(urlparse(CITUS_URL)._replace(path=f"/{name}", scheme=scheme))
    finally:
        for node in nodes:
            node.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            node.close()
