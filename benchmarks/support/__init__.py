"""What the benchmarks share: one module a concern.

* ``databases``: the PostgreSQL server (libpq's PG* variables), throw-away databases
  (``Workspace``, ``throwaway``) and application roles;
* ``timing``: sides taking turns part by part, quartiles, progress logging,
  table rules and verdicts, the run's environment line;
* ``legacy_data``: building a big legacy Relay database inside the database;
* ``baselines``: the hand-written migrations ``migrate`` is measured against;
* ``checks``: row counts, tenants and end-state schemas after a migration;
* ``migration``: a migrating child process (its statements, steps and peak
  RSS) and where its time went;
* ``sampling``: the ``pg_locks`` sampler; ``app_load``: a pre-tenant
  application's load and the phases of ``lock_impact``.

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
