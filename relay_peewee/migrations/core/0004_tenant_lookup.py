"""PostgreSQL: the host lookup that runs before the request's tenant is known.

``relay_find_tenant`` as Relay's 0010 creates it (``by_host`` in the web
middleware, ``relay_peewee.operations.lookups``): SECURITY DEFINER, owned
by the role that migrates, ``search_path`` and ``TimeZone`` pinned, EXECUTE
revoked from PUBLIC; ``relay-peewee roles`` grants it to the application
role. Relay's other lookup, ``relay_find_api_key``, reads Relay's
``api_keys`` and is not part of the core.

SQLite has no function (the lookup runs its statement itself): the
migration is recorded all the same, so both backends' histories read alike.
Frozen: ``relay-peewee audit`` compares the live function with ``FUNCTIONS``.
"""

from __future__ import annotations

import importlib
from typing import Any

from relay_peewee.database import is_postgres

_0010 = importlib.import_module("relay_peewee.migrations.0010_relay_app_compat")

FUNCTIONS = {"relay_find_tenant(text, text)": _0010.FUNCTIONS["relay_find_tenant(text, text)"]}


def _statements(db: Any, functions: dict[str, tuple[str, str]], create: bool) -> list[str]:
    schema = db.execute_sql("SELECT quote_ident(current_schema())").fetchone()[0]
    statements = []
    for signature, (head, body) in functions.items():
        if not create:
            statements.append(f"DROP FUNCTION IF EXISTS {signature}")
            continue
        statements.append(
            f"CREATE OR REPLACE FUNCTION {head}"
            f" SET search_path = pg_catalog, {schema}, pg_temp SET TimeZone = 'UTC'"
            f" AS $fn${body}$fn$"
        )
        statements.append(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
    return statements


def up(migrator: Any, db: Any) -> None:
    if not is_postgres(db):
        return
    migrator.step("relay_find_tenant: the host lookup before the tenant is known")
    migrator.migrate(*[migrator.sql(s) for s in _statements(db, FUNCTIONS, True)])


def down(migrator: Any, db: Any) -> None:
    if is_postgres(db):
        migrator.migrate(*[migrator.sql(s) for s in _statements(db, FUNCTIONS, False)])
