"""What stops the schema from being distributed by ``tenant_id`` on Citus, or
- on a Citus coordinator - what Citus's own catalog says is wrong with it.

Before ``relay-peewee distribute`` (any PostgreSQL): the rules Citus will
enforce (uniques and keys with ``tenant_id``, no NULL tenant, no ``ON DELETE
SET NULL`` on a tenant key). On a database with the citus extension it reads
``pg_dist_partition`` and ``pg_dist_node``: tenant tables not distributed by
``tenant_id`` or not co-located, ``tenants`` not a reference table, no worker,
and the database setting that carries ``SET LOCAL`` to the workers.
"""

from __future__ import annotations

from peewee import Database

from ..database import is_postgres
from ..database.catalog import ForeignKey, columns, foreign_keys, indexes
from ..database.citus import is_citus
from ..operations.distribute import GLOBAL_REGISTRIES
from ..tenancy import TENANT_COLUMN
from .findings import Finding

__all__ = ["check_citus", "is_distributed", "registry_enforces"]

_DISTRIBUTE = "run `relay-peewee distribute`"


def is_distributed(db: Database, table: str) -> bool:
    """Whether ``table`` is a hash-distributed table of this Citus database."""
    if not is_postgres(db) or not is_citus(db):
        return False
    row = db.execute_sql(
        "SELECT 1 FROM pg_dist_partition WHERE logicalrelid = to_regclass(%s) AND partmethod = 'h'",
        (table,),
    ).fetchone()
    return row is not None


def registry_enforces(db: Database, table: str, cols: tuple[str, ...]) -> bool:
    """A distributed table's global unique kept by its registry (``distribute``):
    the registry is a reference table keyed by the value, and the table's key
    ``(tenant_id, value)`` points at it."""
    for reg in GLOBAL_REGISTRIES:
        if reg.table == table and cols == (reg.column,) and is_distributed(db, table):
            return any(
                fk.ref_table == reg.registry and set(fk.columns) == {TENANT_COLUMN, reg.column}
                for fk in foreign_keys(db, table)
            )
    return False


def check_citus(
    db: Database, tables: list[str], declared_global: dict[str, list[tuple[str, ...]]]
) -> list[Finding]:
    """The Citus findings for ``tables``: the catalog's on a Citus database
    that was distributed, else what would stop ``distribute``."""
    partitions = _partitions(db)
    if partitions:
        return _check_distributed(db, tables, partitions)
    return _check_distributable(db, tables, declared_global)


def _partitions(db: Database) -> dict[str, tuple[str, str | None, int]]:
    """Table -> (method, distribution column, colocation id) from pg_dist_partition."""
    if not is_postgres(db) or not is_citus(db):
        return {}
    rows = db.execute_sql(
        "SELECT c.relname, p.partmethod,"
        " CASE WHEN p.partkey IS NULL THEN NULL"
        "  ELSE column_to_column_name(p.logicalrelid, p.partkey) END, p.colocationid"
        " FROM pg_dist_partition p JOIN pg_class c ON c.oid = p.logicalrelid"
        " WHERE c.relnamespace = current_schema()::regnamespace"
    ).fetchall()
    return {name: (method, column, int(group)) for name, method, column, group in rows}


def _check_distributed(
    db: Database, tables: list[str], partitions: dict[str, tuple[str, str | None, int]]
) -> list[Finding]:
    out = []
    tenant_tables = [t for t in tables if any(c.name == TENANT_COLUMN for c in columns(db, t))]
    registries = {r.registry for r in GLOBAL_REGISTRIES}
    groups = set()
    for table in tenant_tables:
        if table in registries:
            continue
        method, column, group = partitions.get(table, ("", None, 0))
        if method != "h" or column != TENANT_COLUMN:
            msg = f"not distributed by {TENANT_COLUMN}: its rows stay on the coordinator"
            out.append(
                Finding("warning", table, "citus-not-distributed", f"{msg}; fix: {_DISTRIBUTE}")
            )
            continue
        groups.add(group)
    if len(groups) > 1:
        msg = f"the tenant tables sit in {len(groups)} colocation groups, so a tenant's rows "
        msg += "are on several nodes and joins between them are not router queries; "
        msg += "fix: SELECT update_distributed_table_colocation(...)"
        out.append(Finding("warning", "(schema)", "citus-colocation", msg))
    if partitions.get("tenants", ("",))[0] != "n":
        msg = f"not a reference table: every tenant table's key to it fails; fix: {_DISTRIBUTE}"
        out.append(Finding("warning", "tenants", "citus-reference-table", msg))
    workers = db.execute_sql(
        "SELECT count(*) FROM pg_dist_node WHERE isactive AND noderole = 'primary' AND groupid <> 0"
    ).fetchone()[0]
    if not workers:
        msg = "no active worker in pg_dist_node: every shard is on the coordinator; "
        msg += "fix: SELECT citus_add_node(host, port)"
        out.append(Finding("warning", "(cluster)", "citus-workers", msg))
    setting = db.execute_sql(
        "SELECT 1 FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase"
        " WHERE d.datname = current_database() AND s.setrole = 0"
        " AND 'citus.propagate_set_commands=local' = ANY (s.setconfig)"
    ).fetchone()
    if setting is None:
        msg = "citus.propagate_set_commands is not 'local' for the database: raw SQL that "
        msg += "sets the tenant with SET LOCAL reaches no worker (relay_peewee sends it itself); "
        msg += "fix: ALTER DATABASE ... SET citus.propagate_set_commands = 'local'"
        out.append(Finding("info", "(database)", "citus-set-propagation", msg))
    return out


def _check_distributable(
    db: Database, tables: list[str], declared_global: dict[str, list[tuple[str, ...]]]
) -> list[Finding]:
    """What stops ``create_distributed_table(table, 'tenant_id')``.

    Tables with tenant_id would be distributed: Citus enforces a unique or
    a foreign key only within one shard, so each must include tenant_id,
    and it refuses NULL in the distribution column. Tables without it are
    reference tables (copied to every node), which may not point into a
    distributed table. ``relay-peewee distribute`` fixes Relay's own tables.
    """
    # The tables that would be distributed, with their tenant_id column.
    distributed = {t: c for t in tables for c in columns(db, t) if c.name == TENANT_COLUMN}
    out = []
    for table in tables:
        fks = foreign_keys(db, table)
        if table not in distributed:
            targets = sorted({fk.ref_table for fk in fks if fk.ref_table in distributed})
            if targets:
                msg = f"references distributed {', '.join(targets)}, which a reference table "
                msg += f"cannot; fix: add {TENANT_COLUMN} and distribute it too"
                out.append(Finding("warning", table, "citus-foreign-key", msg))
            else:
                msg = f"no {TENANT_COLUMN}: a reference-table candidate; "
                msg += f"fix: SELECT create_reference_table('{table}')"
                out.append(Finding("info", table, "citus-reference-table", msg))
            continue
        if not distributed[table].not_null:
            msg = f"{TENANT_COLUMN} accepts NULL, which Citus refuses in a distribution column; "
            msg += "fix: make it NOT NULL, or keep the table local"
            out.append(Finding("warning", table, "citus-null-tenant", msg))
        declared = {frozenset(cols) for cols in declared_global.get(table, ())}
        for ix in indexes(db, table):
            if not ix.unique or TENANT_COLUMN in ix.columns:
                continue
            cols = ", ".join(ix.columns)
            kind = "primary key" if ix.origin == "primary" else f"unique {ix.name}"
            # A unique that is global on purpose (a login) cannot just gain tenant_id.
            fix = (
                f"keep ({cols}) unique in a reference table that maps it to its tenant"
                if frozenset(ix.columns) in declared
                else f"make it ({TENANT_COLUMN}, {cols})"
            )
            msg = f"{kind} ({cols}) lacks {TENANT_COLUMN}, so Citus cannot enforce it; fix: {fix}"
            out.append(Finding("warning", table, "citus-unique", msg))
        for fk in fks:
            if fk.ref_table in distributed and not _tenant_aligned(fk):
                src, dst = ", ".join(fk.columns), f"{fk.ref_table} ({', '.join(fk.ref_columns)})"
                msg = f"foreign key ({src}) -> {dst} lacks {TENANT_COLUMN}; fix: make it "
                msg += f"({TENANT_COLUMN}, {src}) -> {fk.ref_table} ({TENANT_COLUMN}, "
                msg += f"{', '.join(fk.ref_columns)})"
                out.append(Finding("warning", table, "citus-foreign-key", msg))
            elif fk.ref_table in distributed and fk.on_delete == "SET NULL":
                msg = f"foreign key ({', '.join(fk.columns)}) -> {fk.ref_table} is ON DELETE "
                msg += "SET NULL, which Citus refuses on a key with the distribution column; "
                msg += f"fix: {_DISTRIBUTE} (it becomes NO ACTION plus a trigger)"
                out.append(Finding("warning", table, "citus-set-null", msg))
    return out


def _tenant_aligned(fk: ForeignKey) -> bool:
    if TENANT_COLUMN not in fk.columns or TENANT_COLUMN not in fk.ref_columns:
        return False
    return fk.columns.index(TENANT_COLUMN) == fk.ref_columns.index(TENANT_COLUMN)
