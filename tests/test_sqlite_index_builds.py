"""SQLite: each index of a migrate is built once, after the table copies.

An index created before a queued table rebuild is created again when the
rebuild recreates the table's indexes: on usage_events, ratings and
skill_versions at 100k skills that was ~0.6 s of a 5.4 s migrate.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from helpers import build_legacy

from relay_peewee.operations.commands import migration_sql

CREATE_INDEX = re.compile(r'^CREATE (?:UNIQUE )?INDEX (?:IF NOT EXISTS )?"?(\w+)"?')


@pytest.mark.sqlite_only
@pytest.mark.parametrize("style", ["inline", "drizzle"])
def test_migrate_builds_every_index_once(tmp_path: Path, style: str) -> None:
    legacy = build_legacy(f"sqlite:///{tmp_path / 'idx.db'}", "sqlite", style)
    plan = migration_sql(legacy.db)
    built = Counter(m.group(1) for s in plan if (m := CREATE_INDEX.match(s)))
    # The tenant indexes and parent keys 0004 and 0006 add to the tables
    # they rebuild. (Indexes of tables a later migration rebuilds again, as
    # 0010 does tenants and audit_logs, are not this test's subject.)
    tenant_indexes = {n: c for n, c in built.items() if "_tenant_id" in n and "audit" not in n}
    # 9, and 0011's parent key skill_versions (tenant_id, id): built after
    # the queued rebuilds ran, so once too; and 0014's ten under the keys.
    assert len(tenant_indexes) == 20
    assert {name: n for name, n in tenant_indexes.items() if n > 1} == {}
    for name in ("ratings_tenant_id", "usage_events_tenant_id", "skill_versions_tenant_id"):
        assert built[name] == 1
    # users (tenant_id, id) serves every lookup users(tenant_id) would: never built.
    assert "users_tenant_id" not in built
    legacy.db.close()
