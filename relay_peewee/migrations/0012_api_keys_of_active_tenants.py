"""A deactivated tenant's API keys stop resolving, as its host already does.

0010's ``relay_find_api_key`` refused revoked and expired keys but never
read ``tenants.is_active``: a deactivated tenant's host got a 404 while its
keys kept working. This replaces the function with one that also requires
the key's tenant to be active (and then stamps ``last_used_at`` only on keys
it accepts). Owner, grants, the pinned ``search_path`` and ``TimeZone`` are
those of 0010 (``CREATE OR REPLACE`` keeps owner and grants).

SQLite has no function: ``relay_peewee.operations.lookups`` runs the
statement itself, and does the same check there. So nothing changes in a
SQLite database; the migration is recorded all the same, so that both
backends' histories read alike.

Frozen: ``relay-peewee audit`` compares the live function with the body
below (the latest applied migration that defines it wins).
"""

from __future__ import annotations

import importlib
from typing import Any

# With `migrate --online`: one short lock-bounded transaction.
ONLINE = True
MERGES_REBUILDS = True

_0010 = importlib.import_module("relay_peewee.migrations.0010_relay_app_compat")

FUNCTIONS = {
    "relay_find_api_key(text)": (
        _0010.FUNCTIONS["relay_find_api_key(text)"][0],
        """
UPDATE api_keys AS k SET last_used_at = now()
  FROM tenants AS t
 WHERE k.key_hash = p_key_hash AND k.revoked_at IS NULL
   AND (k.expires_at IS NULL OR k.expires_at > now())
   AND t.id = k.tenant_id AND t.is_active
RETURNING k.tenant_id, k.user_id, k.id::text
""",
    ),
}


def _statements(db: Any, functions: dict[str, tuple[str, str]]) -> list[str]:
    # As 0010 made them: settings pinned, EXECUTE for no one but the grantees.
    schema = db.execute_sql("SELECT quote_ident(current_schema())").fetchone()[0]
    statements = []
    for signature, (head, body) in functions.items():
        statements.append(
            f"CREATE OR REPLACE FUNCTION {head}"
            f" SET search_path = pg_catalog, {schema}, pg_temp SET TimeZone = 'UTC'"
            f" AS $fn${body}$fn$"
        )
        statements.append(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
    return statements


def _apply(migrator: Any, db: Any, functions: dict[str, tuple[str, str]], step: str) -> None:
    from relay_peewee.database import is_postgres

    if not is_postgres(db):
        return
    migrator.step(step)
    statements = _statements(db, functions)
    if hasattr(migrator, "locked"):  # migrate --online
        migrator.locked(step, *statements)
    else:
        migrator.migrate(*[migrator.sql(s) for s in statements])


def up(migrator: Any, db: Any) -> None:
    _apply(migrator, db, FUNCTIONS, "relay_find_api_key: only keys of active tenants")


def down(migrator: Any, db: Any) -> None:
    previous = {sig: _0010.FUNCTIONS[sig] for sig in FUNCTIONS}
    _apply(migrator, db, previous, "relay_find_api_key: 0010's definition")
