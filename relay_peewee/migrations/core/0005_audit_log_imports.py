"""An imported tenant's audit events keep their times; everyone else's get the clock's.

Relay's 0013, the same statements: `relay-peewee tenants import` writes a
tenant's events with the times they happened, and only a role that bypasses
row-level security, inside an import's transaction, may (see 0013's
docstring). Nothing changes in a SQLite database; the migration is recorded
there all the same, as Relay's is.
"""

from __future__ import annotations

import importlib
from typing import Any

_0013 = importlib.import_module("relay_peewee.migrations.0013_audit_log_imports")

ONLINE = True
MERGES_REBUILDS = True


def up(migrator: Any, db: Any) -> None:
    _0013.up(migrator, db)


def down(migrator: Any, db: Any) -> None:
    _0013.down(migrator, db)
