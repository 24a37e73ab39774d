"""What the benchmarks share: one module a concern.

* ``databases``: the PostgreSQL server (libpq's PG* variables), throw-away
  databases (``Workspace``, ``throwaway``, ``sqlite_url``), application roles,
  a run's environment line and its cleanup (``run_in_workspace``);
* ``timing``: sides taking turns part by part, quartiles, verdicts, table
  rules, progress logging, argument parsing;
* ``legacy_data``: building a big legacy Relay database inside the database;
* ``baselines``: the hand-written migrations ``migrate`` is measured against;
* ``checks``: row counts, tenants and end-state schemas after a migration;
* ``migration``: a migrating child process (its statements, steps and timing)
  and where its time went;
* ``sampling``: peak RSS and the ``pg_locks`` sampler;
* ``app_load``: a pre-tenant application's load and the phases of ``lock_impact``;
* ``plain_models``: the hand-written side, plain peewee models on the same tables.
* ``skill_rows``: the small skills the request benchmarks insert.

Importing this package puts the repository root (``relay_peewee``) and
``tests/`` (``legacy``) on ``sys.path``, so every script runs as
``python benchmarks/<name>.py`` from a checkout without installing anything.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
for _path in (ROOT, ROOT / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
