"""The database refuses another tenant's id in the columns 0006 left to the ORM.

``skills.forked_from_id``, ``skills.published_version_id``,
``skills.draft_version_id`` and ``usage_events.skill_id`` had no foreign key
in Relay's schema, so 0006 gave them none, and only the ORM checked them: raw
SQL (the application role under row-level security included) could store
another tenant's id there.

PostgreSQL:

* the three ``skills`` columns get composite keys ``(tenant_id, col) ->
  parent (tenant_id, id) ON DELETE SET NULL (col)`` (PostgreSQL 15's column
  list: a fork outlives its origin, a skill its deleted version, and
  ``tenant_id`` is kept), after a unique index on ``skill_versions
  (tenant_id, id)``; added NOT VALID, then validated;
* ``usage_events.skill_id`` keeps no foreign key (usage history outlives a
  deleted skill): a BEFORE INSERT OR UPDATE trigger refuses, with SQLSTATE
  23503 like a key would, a ``skill_id`` that is a skill of another tenant.
  Its function must see other tenants' skills through row-level security, so
  it is SECURITY DEFINER with a pinned ``search_path``, EXECUTE revoked from
  PUBLIC (a trigger needs no EXECUTE of its caller), and registered in
  ``known_objects`` for ``relay-peewee audit``.

SQLite cannot null one column of a composite key, so it gets triggers
instead, one per column and event, that abort such a write.

An id that names no row stays allowed, as before (a dangling id leaks
nothing); rows already pointing into another tenant stop the migration before
it changes anything, naming each column and its count.
"""

from __future__ import annotations

from typing import Any

from playhouse.migrate import make_index_name

from relay_peewee.database import is_postgres
from relay_peewee.migrator.backends import TenantReference
from relay_peewee.migrator.known_objects import KNOWN_FUNCTIONS
from relay_peewee.migrator.sqlite_ddl import quote

# With `migrate --online` (PostgreSQL): the index is built concurrently, each
# key added NOT VALID and validated in its own short lock-bounded
# transaction, and every step asks the catalog whether it is done.
ONLINE = True
# SQLite: no table rebuild of its own, but it drops skill_versions' tenant
# index, which 0004 leaves waiting in the rebuild queue (built once, after
# the copy): the queue must run first, or the drop misses it and the queued
# build brings it back.
MERGES_REBUILDS = False


class NullingReference(TenantReference):
    """A tenant-consistent key whose parent's deletion nulls this column only."""

    def references_sql(self, on_delete: str) -> str:
        return super().references_sql(f"SET NULL ({quote(self.column)})")


KEYS = (
    NullingReference("skills", "forked_from_id", "skills"),
    NullingReference("skills", "published_version_id", "skill_versions"),
    NullingReference("skills", "draft_version_id", "skill_versions"),
)
USAGE = TenantReference("usage_events", "skill_id", "skills")
REFERENCES = (*KEYS, USAGE)

TRIGGER = "usage_events_skill_tenant"
# Declared in known_objects, where the audit reads it without importing this file.
FUNCTION = KNOWN_FUNCTIONS["relay_usage_events_skill_tenant"]


def _pg_trigger_sql(schema: str) -> list[str]:
    name = FUNCTION.name
    return [
        f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql"
        f" SECURITY DEFINER SET search_path = pg_catalog, {schema}, pg_temp"
        f" AS $fn${FUNCTION.body}$fn$",
        f"REVOKE ALL ON FUNCTION {name}() FROM PUBLIC",
        f"DROP TRIGGER IF EXISTS {TRIGGER} ON usage_events",
        f"CREATE TRIGGER {TRIGGER} BEFORE INSERT OR UPDATE OF skill_id, tenant_id"
        f" ON usage_events FOR EACH ROW EXECUTE FUNCTION {name}()",
    ]


def _sqlite_triggers() -> list[tuple[str, str]]:
    """(name, CREATE TRIGGER) for each column and event."""
    out = []
    for ref in REFERENCES:
        t, c, p = ref.table, ref.column, ref.parent
        for event, when in (("insert", "INSERT"), ("update", f"UPDATE OF {c}, tenant_id")):
            name = f"{t}_{c}_tenant_{event}"
            out.append(
                (
                    name,
                    f"CREATE TRIGGER {name} BEFORE {when} ON {t}"
                    f" WHEN NEW.{c} IS NOT NULL AND EXISTS (SELECT 1 FROM {p}"
                    f" WHERE {p}.id = NEW.{c} AND {p}.tenant_id IS NOT NEW.tenant_id)"
                    f" BEGIN SELECT RAISE(ABORT, '{t}.{c} names a row of another tenant'); END",
                )
            )
    return out


def _scalar(db: Any, sql: str) -> Any:
    return db.execute_sql(sql).fetchone()[0]


PARENT_INDEX = make_index_name("skill_versions", ("tenant_id", "id"))
PARENT_INDEX_SQL = (
    f"CREATE UNIQUE INDEX IF NOT EXISTS {PARENT_INDEX} ON skill_versions (tenant_id, id)"
)
# skill_versions (tenant_id, id) serves every lookup (tenant_id) did, so that
# index goes, as 0006 dropped users'; SkillVersion.Meta declares the same.
REDUNDANT_INDEX = make_index_name("skill_versions", ("tenant_id",))
RESTORE_INDEX_SQL = f"CREATE INDEX IF NOT EXISTS {REDUNDANT_INDEX} ON skill_versions (tenant_id)"


def up(migrator: Any, db: Any) -> None:
    migrator.refuse_cross_tenant_references(REFERENCES)
    if not is_postgres(db):
        migrator.step("skills, usage_events: triggers refusing another tenant's id")
        # The unique key PostgreSQL's references need, here too: both
        # backends keep the same keys (and the triggers' lookups use it).
        statements = [PARENT_INDEX_SQL, f"DROP INDEX IF EXISTS {REDUNDANT_INDEX}"]
        statements += [sql for _name, sql in _sqlite_triggers()]
        migrator.migrate(*[migrator.sql(s) for s in statements])
        return
    schema = str(_scalar(db, "SELECT quote_ident(current_schema())"))
    if hasattr(migrator, "locked"):  # migrate --online
        migrator.enforce_tenant_references(KEYS, (("skill_versions", REDUNDANT_INDEX),))
        migrator.step("usage_events.skill_id: trigger refusing another tenant's skill")
        migrator.locked("usage_events: skill_id trigger", *_pg_trigger_sql(schema))
        return
    # skills (tenant_id, id) exists since 0006; skill_versions needs its own.
    statements = [PARENT_INDEX_SQL]
    for ref in KEYS:
        statements += [
            f"ALTER TABLE {ref.table} ADD CONSTRAINT {ref.constraint_name}"
            f" {ref.references_sql('')} NOT VALID",
            f"ALTER TABLE {ref.table} VALIDATE CONSTRAINT {ref.constraint_name}",
        ]
    statements += _pg_trigger_sql(schema)
    statements.append(f"DROP INDEX IF EXISTS {REDUNDANT_INDEX}")
    migrator.step("skills: tenant-consistent keys; usage_events.skill_id: tenant trigger")
    migrator.migrate(*[migrator.sql(s) for s in statements])


def down(migrator: Any, db: Any) -> None:
    statements = [RESTORE_INDEX_SQL]
    if not is_postgres(db):
        statements += [f"DROP TRIGGER IF EXISTS {name}" for name, _sql in _sqlite_triggers()]
    else:
        statements += [
            f"DROP TRIGGER IF EXISTS {TRIGGER} ON usage_events",
            f"DROP FUNCTION IF EXISTS {FUNCTION.name}()",
        ]
        statements += [
            f"ALTER TABLE {ref.table} DROP CONSTRAINT IF EXISTS {ref.constraint_name}"
            for ref in KEYS
        ]
    statements.append(f"DROP INDEX IF EXISTS {PARENT_INDEX}")
    migrator.migrate(*[migrator.sql(s) for s in statements])
