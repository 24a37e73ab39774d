"""What a migrated database must show: its rows all there, in the default
tenant, and the same end-state schema whichever approach migrated it.
"""

from __future__ import annotations

from peewee import Database, PostgresqlDatabase

from .baselines import DEFAULT_TENANT_ID
from .legacy_data import LEGACY_TABLES, row_counts


def row_changes(db: Database, before: dict[str, int]) -> dict[str, tuple[int, int | None]]:
    """Tables whose row count is no longer ``before``'s: (before, after)."""
    after = row_counts(db)
    return {t: (before[t], after.get(t)) for t in before if before[t] != after.get(t)}


def tenant_strays(db: Database) -> int:
    """Rows of the nine tables whose tenant_id is not the default tenant."""
    p = db.param
    strays = 0
    for table in LEGACY_TABLES:
        (n,) = db.execute_sql(
            f'SELECT count(*) FROM "{table}" WHERE tenant_id IS NULL OR tenant_id <> {p}',
            (DEFAULT_TENANT_ID,),
        ).fetchone()
        strays += n
    return int(strays)


def fingerprint(db: Database) -> dict[str, list[str]]:
    """The end-state schema of the nine tenant tables, order-insensitive.

    Columns (type, NOT NULL, default), keys, indexes, foreign keys, plus the
    names of views and triggers. Compared between approaches, so names must
    be equal too.
    """
    out: dict[str, list[str]] = {}
    if isinstance(db, PostgresqlDatabase):
        for t in LEGACY_TABLES:
            rows = db.execute_sql(
                "SELECT 'column ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)"
                " || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END"
                " || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')"
                " FROM pg_attribute a LEFT JOIN pg_attrdef d"
                " ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
                " WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped"
                " UNION ALL SELECT 'index ' || pg_get_indexdef(indexrelid) FROM pg_index"
                " WHERE indrelid = %s::regclass"
                " UNION ALL SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(oid)"
                " FROM pg_constraint WHERE conrelid = %s::regclass",
                (t, t, t),
            ).fetchall()
            out[t] = sorted(r[0] for r in rows)
        rows = db.execute_sql(
            "SELECT 'view ' || viewname FROM pg_views WHERE schemaname = current_schema()"
            " UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger WHERE NOT tgisinternal"
        ).fetchall()
    else:
        for t in LEGACY_TABLES:
            items = [
                f"column {name} {kind.upper()}{' NOT NULL' if notnull else ''}"
                f"{'' if default is None else ' DEFAULT ' + default}{f' pk{pk}' if pk else ''}"
                for _cid, name, kind, notnull, default, pk in db.execute_sql(
                    f'PRAGMA table_info("{t}")'
                ).fetchall()
            ]
            for _seq, name, unique, origin, partial in db.execute_sql(
                f'PRAGMA index_list("{t}")'
            ).fetchall():
                cols = [r[2] for r in db.execute_sql(f'PRAGMA index_info("{name}")').fetchall()]
                # Automatic indexes are numbered by position in the DDL;
                # their columns and kind are what matters.
                label = "auto" if name.startswith("sqlite_autoindex_") else name
                items.append(f"index {label} {origin} unique={unique} partial={partial} {cols}")
            items += [
                f"fk {r[3]} -> {r[2]}.{r[4]} on delete {r[6]}"
                for r in db.execute_sql(f'PRAGMA foreign_key_list("{t}")').fetchall()
            ]
            out[t] = sorted(items)
        rows = db.execute_sql(
            "SELECT type || ' ' || name FROM sqlite_master WHERE type IN ('view', 'trigger')"
        ).fetchall()
    out["*"] = sorted(r[0] for r in rows)
    return out


def schema_diff(a: dict[str, list[str]], b: dict[str, list[str]]) -> list[str]:
    diff = []
    for table in sorted(set(a) | set(b)):
        left, right = set(a.get(table, [])), set(b.get(table, []))
        diff += [f"{table}: only here: {x}" for x in sorted(left - right)]
        diff += [f"{table}: only in project: {x}" for x in sorted(right - left)]
    return diff
