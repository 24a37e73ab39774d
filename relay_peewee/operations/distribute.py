"""Distributing a migrated database by ``tenant_id`` on Citus (``relay-peewee distribute``).

A Citus coordinator holds the same schema as a single PostgreSQL until its
tables are distributed; ``distribute`` makes the changes Citus requires and
distributes them, in one transaction (it all happens or nothing does):

* ``tenants`` (and any table without ``tenant_id`` a tenant table points
  at) becomes a **reference table**, copied to every node;
* every table with ``tenant_id`` (``audit_logs`` included) is distributed
  by it, **co-located**, so one tenant's rows of every table sit on one node
  and a scoped query is a single-shard router query;
* each primary key gains ``tenant_id`` (Citus enforces a unique only within
  a shard): ``(id)`` becomes ``(tenant_id, id)``. ``id`` stays unique in
  practice (uuids, cuids), and the ORM still addresses rows by ``id``;
* the global uniques (``users.email``, ``api_keys.key_hash``) move to
  reference tables, ``relay_user_emails`` and ``relay_api_key_hashes``,
  whose primary key is the value: ``User`` and ``ApiKey`` register their
  values (``models._registry``), and a foreign key ``(tenant_id, value)``
  from the table to its registry makes a row that is not registered
  impossible, for the ORM and raw SQL alike;
* foreign keys are dropped and re-added around the distribution (Citus
  refuses to distribute a table whose keys point at a local table);
  ``ON DELETE SET NULL (col)``, which Citus refuses on a key that includes
  the distribution column, becomes ``NO ACTION`` plus a ``BEFORE DELETE``
  trigger on the referenced table doing the same;
* the triggers that query another distributed table run with
  ``citus.allow_nested_distributed_execution`` and name the tenant, so
  their queries stay on the shard's own node (0011's ``usage_events``
  trigger is replaced by one that asks its own tenant only: see
  ``_usage_events_trigger``);
* ``relay_find_api_key`` becomes PL/pgSQL (Citus cannot plan a SQL-language
  function with parameters over a distributed table) and finds the tenant
  in the registry first, so its UPDATE is a router query;
* ``audit_logs.tenant_id`` becomes NOT NULL: system events (no tenant) get
  ``SYSTEM_TENANT_ID`` instead of NULL, as the ORM writes them on Citus;
* the database gets ``citus.propagate_set_commands = 'local'`` (so ``SET
  LOCAL`` of the tenant reaches the workers) and
  ``citus.enable_unsafe_triggers = on`` (so later migrations may create
  triggers on distributed tables).

It is idempotent: run again, it distributes only tables added since (an
application's new tenant table), and says so when there is nothing left.
A database that is not Citus is refused with one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peewee import Database, DatabaseProxy

from ..database import is_postgres, unwrap
from ..database.citus import SYSTEM_TENANT_ID, is_citus
from ..database.quoting import quote
from ..errors import MigrationError, RelayError
from ..migrator import HISTORY_TABLE, MigrationRunner
from ..migrator.backends import POLICY_PREDICATE
from ..tenancy import TENANT_COLUMN

__all__ = [
    "FIND_API_KEY_BODY",
    "GLOBAL_REGISTRIES",
    "DistributePlan",
    "Registry",
    "distribute",
    "distribute_plan",
    "distributed_tables",
]


@dataclass(frozen=True)
class Registry:
    """A global unique kept in a reference table: ``registry (column)`` is the key."""

    table: str
    column: str
    registry: str


GLOBAL_REGISTRIES = (
    Registry("users", "email", "relay_user_emails"),
    Registry("api_keys", "key_hash", "relay_api_key_hashes"),
)
_REGISTRY_TABLES = {r.registry for r in GLOBAL_REGISTRIES}


@dataclass
class DistributePlan:
    reference: list[str] = field(default_factory=list)
    distributed: list[str] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)


def distributed_tables(db: Database) -> dict[str, str]:
    """Table -> what Citus made it: ``h`` distributed by hash, ``n`` a
    reference table, ``l`` a local table of the coordinator's it manages (a
    table created with a key to a reference table becomes one)."""
    rows = db.execute_sql(
        "SELECT c.relname, CASE WHEN p.partmethod = 'h' THEN 'h'"
        " WHEN p.repmodel = 't' THEN 'n' ELSE 'l' END FROM pg_dist_partition p"
        " JOIN pg_class c ON c.oid = p.logicalrelid"
        " WHERE c.relnamespace = current_schema()::regnamespace"
    ).fetchall()
    return {name: method for name, method in rows}


def _require_citus(db: Database) -> None:
    if not is_postgres(db) or not is_citus(db):
        raise RelayError(
            "distribute needs a Citus coordinator (CREATE EXTENSION citus); "
            "this database is not one"
        )
    if "tenants" not in db.get_tables():
        raise MigrationError("this database has no tenants table yet: run `relay-peewee migrate`")
    # Relay's own: distribution changes keys a pending migration may still alter.
    pending = [s.name for s in MigrationRunner(db).statuses() if s.applied is None]
    if pending:
        raise MigrationError(
            f"{len(pending)} migration(s) pending ({pending[0]} first): run `relay-peewee migrate`"
        )


def _tenant_tables(db: Database) -> list[str]:
    rows = db.execute_sql(
        "SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid"
        " WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')"
        " AND a.attname = %s AND NOT a.attisdropped ORDER BY c.relname",
        (TENANT_COLUMN,),
    ).fetchall()
    return [r[0] for r in rows if r[0] not in _REGISTRY_TABLES and r[0] != HISTORY_TABLE]


def _foreign_keys(db: Database, tables: list[str]) -> list[tuple[str, str, str, str]]:
    """(table, constraint, definition, referenced table) of the keys leaving ``tables``."""
    if not tables:
        return []
    return [
        (t, n, d, r)
        for t, n, d, r in db.execute_sql(
            "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid),"
            " c.confrelid::regclass::text FROM pg_constraint c WHERE c.contype = 'f'"
            " AND c.conrelid = ANY (%s::regclass[]) ORDER BY 1, 2",
            ([quote(t) for t in tables],),
        ).fetchall()
    ]


def _unique_keys(db: Database, table: str) -> list[tuple[str, str, list[str]]]:
    """(constraint or index name, 'p'/'u'/'i', columns) of the uniques of ``table``."""
    rows = db.execute_sql(
        "SELECT i.relname, COALESCE(con.contype::text, 'i'),"
        " ARRAY(SELECT a.attname FROM unnest(x.indkey) k JOIN pg_attribute a"
        "  ON a.attrelid = x.indrelid AND a.attnum = k)"
        " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
        " LEFT JOIN pg_constraint con ON con.conindid = x.indexrelid AND con.contype IN ('p', 'u')"
        " WHERE x.indrelid = %s::regclass AND x.indisunique ORDER BY 1",
        (quote(table),),
    ).fetchall()
    return [(name, kind, list(cols)) for name, kind, cols in rows]


def distribute_plan(db: Database | DatabaseProxy) -> DistributePlan:
    """What ``distribute`` would run (``statements`` empty: nothing left to do)."""
    database = unwrap(db)
    _require_citus(database)
    done = distributed_tables(database)
    tenant_tables = _tenant_tables(database)
    new = sorted((t for t in tenant_tables if done.get(t) != "h"), key=lambda t: (t != "users", t))
    plan = DistributePlan()
    fks = _foreign_keys(database, new)
    refs = sorted({r for _, _, _, r in fks if r not in tenant_tables} | {"tenants"})
    plan.reference = [t for t in refs if done.get(t) != "n"]
    plan.distributed = new
    if not new and not plan.reference:
        return plan
    out = plan.statements
    # Every statement of one transaction goes over the same connection to each
    # worker: DDL after a table was distributed in it needs that.
    out.append("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")
    out.append("SET LOCAL citus.enable_unsafe_triggers TO on")
    for table, name, _, _ in fks:
        out.append(f"ALTER TABLE {quote(table)} DROP CONSTRAINT {quote(name)}")
    registries = [r for r in GLOBAL_REGISTRIES if r.table in new]
    for table in new:
        out += _keys_with_tenant(database, table, registries)
    if "audit_logs" in new:
        out += _audit_log_tenant()
    for reg in registries:
        out += _registry_table(reg)
    # Copying the rows into the shards fires their triggers: audit_logs'
    # would restamp every created_at, usage_events' would query a shard not
    # committed yet. The rows were checked when written; off for the copy.
    triggers = _enabled_triggers(database, new)
    out += [f"ALTER TABLE {quote(t)} DISABLE TRIGGER {quote(n)}" for t, n in triggers]
    for table in plan.reference:
        out.append(f"SELECT create_reference_table('{quote(table)}')")
    for reg in registries:
        out.append(f"SELECT create_reference_table('{reg.registry}')")
    anchor = next((t for t, m in done.items() if m == "h"), None)
    for table in new:
        if anchor is None:
            out.append(f"SELECT create_distributed_table('{quote(table)}', '{TENANT_COLUMN}')")
            anchor = table
        else:
            out.append(
                f"SELECT create_distributed_table('{quote(table)}', '{TENANT_COLUMN}',"
                f" colocate_with => '{quote(anchor)}')"
            )
    out += [f"ALTER TABLE {quote(t)} ENABLE TRIGGER {quote(n)}" for t, n in triggers]
    for table, name, definition, ref in fks:
        out += _readd_foreign_key(table, name, definition, ref)
    for reg in registries:
        out += _registry_sync(reg)
    if "usage_events" in new:
        out += _usage_events_trigger(database)
    if "api_keys" in new:
        out.append(_FIND_API_KEY)
    dbname = database.execute_sql("SELECT quote_ident(current_database())").fetchone()[0]
    out.append(f"ALTER DATABASE {dbname} SET citus.propagate_set_commands = 'local'")
    out.append(f"ALTER DATABASE {dbname} SET citus.enable_unsafe_triggers = on")
    return plan


def _keys_with_tenant(db: Database, table: str, registries: list[Registry]) -> list[str]:
    """Primary key and uniques of ``table`` made to include tenant_id (or moved to a registry)."""
    out = []
    global_columns = {r.column for r in registries if r.table == table}
    for name, kind, cols in _unique_keys(db, table):
        if TENANT_COLUMN in cols:
            continue
        qt, qn = quote(table), quote(name)
        if kind == "p":
            keep = ", ".join(quote(c) for c in [TENANT_COLUMN, *cols])
            out.append(
                f"ALTER TABLE {qt} DROP CONSTRAINT {qn}, ADD CONSTRAINT {qn} PRIMARY KEY ({keep})"
            )
        elif cols and set(cols) <= global_columns:
            drop = f"DROP CONSTRAINT {qn}" if kind == "u" else None
            out.append(f"ALTER TABLE {qt} {drop}" if drop else f"DROP INDEX {qn}")
        else:
            shown = ", ".join(cols)
            raise RelayError(
                f"{table}: unique {name} ({shown}) lacks {TENANT_COLUMN} and Citus cannot enforce "
                f"it; make it ({TENANT_COLUMN}, {shown}) in a migration first"
            )
    return out


def _audit_log_tenant() -> list[str]:
    # audit_logs refuses UPDATE (0007's trigger); the superuser running this
    # turns user triggers off for the one statement that names system events.
    return [
        "SET LOCAL session_replication_role = replica",
        f"UPDATE audit_logs SET tenant_id = '{SYSTEM_TENANT_ID}' WHERE tenant_id IS NULL",
        "SET LOCAL session_replication_role = origin",
        "ALTER TABLE audit_logs ALTER COLUMN tenant_id SET NOT NULL",
    ]


def _registry_table(reg: Registry) -> list[str]:
    r, t, c = quote(reg.registry), quote(reg.table), quote(reg.column)
    return [
        f"CREATE TABLE {r} ({c} text PRIMARY KEY,"
        f" {TENANT_COLUMN} text NOT NULL, UNIQUE ({TENANT_COLUMN}, {c}))",
        f"REVOKE ALL ON {r} FROM PUBLIC",
        f"INSERT INTO {r} ({c}, {TENANT_COLUMN}) SELECT {c}, {TENANT_COLUMN} FROM {t}",
    ]


def _registry_sync(reg: Registry) -> list[str]:
    """The keys that make an unregistered value impossible, and the policy
    that shows the application role its own tenant's values only.

    ``User`` and ``ApiKey`` register their values (``models._registry``): a
    shard's trigger cannot write a reference table inside a transaction that
    set the tenant (Citus: "the backend has already been assigned a
    transaction id").
    """
    r, t, c = quote(reg.registry), quote(reg.table), quote(reg.column)
    return [
        # No key from the registry to tenants: checked on the workers as the
        # application role, it needs rights on tenants that role must not
        # have; the row it registers has that key already.
        f"ALTER TABLE {t} ADD CONSTRAINT {quote(reg.table + '_' + reg.column + '_registered')}"
        f" FOREIGN KEY ({TENANT_COLUMN}, {c}) REFERENCES {r} ({TENANT_COLUMN}, {c})",
        f"ALTER TABLE {r} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {r} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY tenant_isolation ON {r} USING ({POLICY_PREDICATE})"
        f" WITH CHECK ({POLICY_PREDICATE})",
    ]


def _readd_foreign_key(table: str, name: str, definition: str, ref: str) -> list[str]:
    """The key back as it was, or - for ``ON DELETE SET NULL (col)`` - as NO
    ACTION plus a trigger on the referenced table that nulls the column first."""
    qt, qn = quote(table), quote(name)
    marker = " ON DELETE SET NULL"
    if marker not in definition:
        return [f"ALTER TABLE {qt} ADD CONSTRAINT {qn} {definition}"]
    head, tail = definition.split(marker, 1)
    # FOREIGN KEY (tenant_id, col) REFERENCES ref(tenant_id, id)
    local = [c.strip() for c in head.split("(", 1)[1].split(")", 1)[0].split(",")]
    remote = [c.strip() for c in head.rsplit("(", 1)[1].split(")", 1)[0].split(",")]
    nulled = tail.strip()[1:-1].split(",") if tail.strip().startswith("(") else local
    nulled = [c.strip() for c in nulled]
    if TENANT_COLUMN in nulled:
        raise RelayError(f"{table}.{name}: ON DELETE SET NULL would null {TENANT_COLUMN}")
    fn = quote(f"relay_{name}"[:55] + "_setnull")
    sets = ", ".join(f"{c} = NULL" for c in nulled)
    match = " AND ".join(f"{lc} = OLD.{rc}" for lc, rc in zip(local, remote, strict=True))
    return [
        f"ALTER TABLE {qt} ADD CONSTRAINT {qn} {head.strip()}",
        f"CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER"
        f" SET search_path = pg_catalog, public, pg_temp"
        f" SET citus.allow_nested_distributed_execution = on AS $$\nBEGIN\n"
        f"  UPDATE {qt} SET {sets} WHERE {match};\n  RETURN OLD;\nEND $$",
        f"REVOKE ALL ON FUNCTION {fn}() FROM PUBLIC",
        f"CREATE TRIGGER {quote(name[:50] + '_setnull')} BEFORE DELETE ON {quote(ref)}"
        f" FOR EACH ROW EXECUTE FUNCTION {fn}()",
    ]


def _enabled_triggers(db: Database, tables: list[str]) -> list[tuple[str, str]]:
    if not tables:
        return []
    rows = db.execute_sql(
        "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal"
        " AND tgenabled <> 'D' AND tgrelid = ANY (%s::regclass[]) ORDER BY 1, 2",
        ([quote(t) for t in tables],),
    ).fetchall()
    return [(t, n) for t, n in rows]


def _usage_events_trigger(db: Database) -> list[str]:
    """0011's usage_events trigger, as a query Citus can run from a shard.

    0011's looks for the skill in every tenant (a multi-shard query), which a
    shard cannot run inside a transaction that set the tenant ("the backend
    has already been assigned a transaction id"). This one asks the row's own
    tenant's shard (a router query, on the same node): a new or changed
    usage event must name a skill of its own tenant that exists, or none -
    stricter than 0011, which let an id of no skill at all through. Rows
    already there keep their skill_id when the skill is deleted, as before.
    """
    exists = db.execute_sql(
        "SELECT 1 FROM pg_trigger WHERE tgname = 'usage_events_skill_tenant'"
        " AND tgrelid = to_regclass('usage_events')"
    ).fetchone()
    if not exists:
        return []
    fn = "relay_usage_events_skill_tenant_citus"
    return [
        f"CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER"
        " SET search_path = pg_catalog, public, pg_temp"
        " SET citus.allow_nested_distributed_execution = on AS $$\nBEGIN\n"
        "    IF NEW.skill_id IS NOT NULL AND NOT EXISTS (\n"
        "        SELECT 1 FROM skills s WHERE s.tenant_id = NEW.tenant_id AND s.id = NEW.skill_id\n"
        "    ) THEN\n"
        "        RAISE EXCEPTION USING ERRCODE = '23503',\n"
        "            MESSAGE = 'usage_events.skill_id names no skill of its tenant"
        " (a skill of another tenant?)';\n"
        "    END IF;\n    RETURN NEW;\nEND $$",
        f"REVOKE ALL ON FUNCTION {fn}() FROM PUBLIC",
        "DROP TRIGGER usage_events_skill_tenant ON usage_events",
        "CREATE TRIGGER usage_events_skill_tenant BEFORE INSERT OR UPDATE OF skill_id, tenant_id"
        f" ON usage_events FOR EACH ROW EXECUTE FUNCTION {fn}()",
    ]


# 0012's lookup as PL/pgSQL: the tenant from the reference table first, so
# the UPDATE names it (a router query); same signature, rights and settings.
_FIND_API_KEY = """CREATE OR REPLACE FUNCTION relay_find_api_key(p_key_hash text)
 RETURNS TABLE(tenant_id text, user_id text, key_id text)
 LANGUAGE plpgsql SECURITY DEFINER
 SET search_path = pg_catalog, public, pg_temp SET "TimeZone" = 'UTC' AS $$
#variable_conflict use_column
DECLARE
    v_tenant text;
    -- A value of the columns' own type, not now() in the UPDATE: Citus
    -- refuses a STABLE function (or timestamp-vs-timestamptz operator) next
    -- to column references in a distributed UPDATE. TimeZone is pinned to
    -- UTC, so this is what the SQL function compared with.
    v_now timestamp := now() AT TIME ZONE 'UTC';
BEGIN
    SELECT r.tenant_id INTO v_tenant FROM relay_api_key_hashes AS r
      JOIN tenants AS t ON t.id = r.tenant_id AND t.is_active
     WHERE r.key_hash = p_key_hash;
    IF v_tenant IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY UPDATE api_keys AS k SET last_used_at = v_now
     WHERE k.tenant_id = v_tenant AND k.key_hash = p_key_hash AND k.revoked_at IS NULL
       AND (k.expires_at IS NULL OR k.expires_at > v_now)
    RETURNING k.tenant_id, k.user_id, k.id::text;
END
$$"""


# What pg_proc.prosrc holds for it (the audit compares bodies).
FIND_API_KEY_BODY = _FIND_API_KEY.split("$$")[1]


def distribute(db: Database | DatabaseProxy) -> DistributePlan:
    """Make the schema Citus-ready and distribute it, in one transaction; see the module."""
    database = unwrap(db)
    plan = distribute_plan(database)
    if plan.statements:
        with database.atomic():
            for sql in plan.statements:
                database.execute_sql(sql)
    return plan
