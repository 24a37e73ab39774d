"""What the live database says about a table, on SQLite and PostgreSQL.

Migrations decide what to drop and rebuild from the catalog, not from what
they expect to find: a legacy database may name its unique constraint
``skills_slug_unique``, ``uniq_slug`` or nothing at all (an inline UNIQUE).
"""

from __future__ import annotations

from dataclasses import dataclass

from peewee import Database

from ..db import is_postgres

__all__ = [
    "Column",
    "ForeignKey",
    "Index",
    "columns",
    "foreign_keys",
    "indexes",
    "primary_key",
    "table_columns",
    "table_exists",
    "unique_on",
]


@dataclass(frozen=True)
class Index:
    name: str
    columns: tuple[str, ...]
    unique: bool
    # 'primary' or 'constraint' (dropped with ALTER TABLE / a SQLite rebuild)
    # or 'index' (dropped with DROP INDEX).
    origin: str
    valid: bool = True
    partial: bool = False


def table_exists(db: Database, table: str) -> bool:
    return table in db.get_tables()


def table_columns(db: Database, table: str) -> list[str]:
    return [c.name for c in db.get_columns(table)]


def indexes(db: Database, table: str) -> list[Index]:
    """Every index on ``table`` with the columns it covers, in order."""
    return _pg_indexes(db, table) if is_postgres(db) else _sqlite_indexes(db, table)


def unique_on(db: Database, table: str, columns: tuple[str, ...]) -> list[Index]:
    """The unique keys (constraints or indexes) over exactly ``columns``."""
    return [
        ix
        for ix in indexes(db, table)
        if ix.unique and not ix.partial and ix.columns == tuple(columns)
    ]


def primary_key(db: Database, table: str) -> tuple[str, ...]:
    if is_postgres(db):
        return next((ix.columns for ix in indexes(db, table) if ix.origin == "primary"), ())
    rows = db.execute_sql(f'PRAGMA table_info("{table}")').fetchall()
    return tuple(r[1] for r in sorted((r for r in rows if r[5]), key=lambda r: r[5]))


def _sqlite_indexes(db: Database, table: str) -> list[Index]:
    out = []
    for _seq, name, unique, origin, partial in db.execute_sql(
        f'PRAGMA index_list("{table}")'
    ).fetchall():
        cols = tuple(r[2] for r in db.execute_sql(f'PRAGMA index_info("{name}")').fetchall())
        kind = {"pk": "primary", "u": "constraint"}.get(origin, "index")
        out.append(Index(name, cols, bool(unique), kind, True, bool(partial)))
    return out


_PG_INDEXES = """
SELECT i.relname,
       array(SELECT a.attname::text
               FROM unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = k.attnum
              ORDER BY k.ord),
       ix.indisunique, ix.indisprimary, c.contype, ix.indisvalid,
       ix.indpred IS NOT NULL OR ix.indexprs IS NOT NULL
  FROM pg_index ix
  JOIN pg_class i ON i.oid = ix.indexrelid
  JOIN pg_class t ON t.oid = ix.indrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
  LEFT JOIN pg_constraint c ON c.conindid = ix.indexrelid AND c.conrelid = t.oid
 WHERE t.relname = %s AND n.nspname = current_schema()
 ORDER BY i.relname
"""


def _pg_indexes(db: Database, table: str) -> list[Index]:
    out = []
    for name, cols, unique, primary, contype, valid, partial in db.execute_sql(
        _PG_INDEXES, (table,)
    ).fetchall():
        if primary:
            kind = "primary"
        elif contype in ("u", "x"):
            kind = "constraint"
        else:
            kind = "index"
        out.append(Index(name, tuple(cols), unique, kind, valid, partial))
    return out


@dataclass(frozen=True)
class ForeignKey:
    # None on SQLite: its pragmas do not report constraint names.
    name: str | None
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    # False for a PostgreSQL constraint added NOT VALID and never validated:
    # new rows are checked, the rows that were already there never were.
    validated: bool = True
    on_delete: str = "NO ACTION"


def foreign_keys(db: Database, table: str) -> list[ForeignKey]:
    """Every foreign key of ``table``, composite ones as one entry."""
    return _pg_foreign_keys(db, table) if is_postgres(db) else _sqlite_foreign_keys(db, table)


def _sqlite_foreign_keys(db: Database, table: str) -> list[ForeignKey]:
    grouped: dict[int, list[tuple[str, str, str | None]]] = {}
    on_delete: dict[int, str] = {}
    for fk_id, _seq, parent, column, ref_column, _upd, delete, *_rest in db.execute_sql(
        f'PRAGMA foreign_key_list("{table}")'
    ).fetchall():
        grouped.setdefault(fk_id, []).append((parent, column, ref_column))
        on_delete[fk_id] = str(delete).upper()
    out = []
    for fk_id, rows in sorted(grouped.items()):
        parent = rows[0][0]
        named = [r[2] for r in rows]
        # `REFERENCES parent` without columns means the parent's primary key.
        ref_columns = primary_key(db, parent) if None in named else tuple(map(str, named))
        out.append(
            ForeignKey(None, tuple(r[1] for r in rows), parent, ref_columns, True, on_delete[fk_id])
        )
    return out


_PG_FOREIGN_KEYS = """
SELECT c.conname,
       array(SELECT a.attname::text
               FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
              ORDER BY k.ord),
       r.relname,
       array(SELECT a.attname::text
               FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum
              ORDER BY k.ord),
       c.convalidated,
       CASE c.confdeltype WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL'
            WHEN 'd' THEN 'SET DEFAULT' WHEN 'r' THEN 'RESTRICT' ELSE 'NO ACTION' END
  FROM pg_constraint c
  JOIN pg_class t ON t.oid = c.conrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
  JOIN pg_class r ON r.oid = c.confrelid
 WHERE c.contype = 'f' AND t.relname = %s AND n.nspname = current_schema()
 ORDER BY c.conname
"""


def _pg_foreign_keys(db: Database, table: str) -> list[ForeignKey]:
    return [
        ForeignKey(name, tuple(cols), parent, tuple(ref_cols), validated, on_delete)
        for name, cols, parent, ref_cols, validated, on_delete in db.execute_sql(
            _PG_FOREIGN_KEYS, (table,)
        ).fetchall()
    ]


@dataclass(frozen=True)
class Column:
    name: str
    not_null: bool
    # The default's SQL text, None when there is none. Generated columns
    # report None: the database computes them, nothing is defaulted.
    default: str | None


def columns(db: Database, table: str) -> list[Column]:
    """The columns of ``table`` in order, with nullability and default.

    ``db.get_columns`` answers the same on PostgreSQL through
    information_schema, several times slower: this reads pg_attribute.
    """
    if is_postgres(db):
        rows = db.execute_sql(_PG_COLUMNS, (table,)).fetchall()
    else:
        rows = [(r[1], bool(r[3]), r[4]) for r in db.execute_sql(f'PRAGMA table_info("{table}")')]
    return [Column(name, bool(not_null), default) for name, not_null, default in rows]


_PG_COLUMNS = """
SELECT a.attname, a.attnotnull,
       CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END
  FROM pg_attribute a
  JOIN pg_class t ON t.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE t.relname = %s AND n.nspname = current_schema() AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum
"""


def has_policy(db: Database, table: str, name: str) -> bool:
    """PostgreSQL: whether ``table`` has the row-level security policy ``name``."""
    row = db.execute_sql(
        "SELECT 1 FROM pg_policies WHERE schemaname = current_schema()"
        " AND tablename = %s AND policyname = %s",
        (table, name),
    ).fetchone()
    return row is not None


def row_security(db: Database, table: str) -> tuple[bool, bool]:
    """PostgreSQL: (row-level security enabled, forced) for ``table``."""
    row = db.execute_sql(
        "SELECT c.relrowsecurity, c.relforcerowsecurity FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relname = %s AND n.nspname = current_schema()",
        (table,),
    ).fetchone()
    return (bool(row[0]), bool(row[1])) if row else (False, False)


def forced_rls_tables(db: Database) -> list[str]:
    """PostgreSQL: the tables of the current schema with FORCE ROW LEVEL SECURITY."""
    rows = db.execute_sql(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relforcerowsecurity"
        " ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def refused_operations(db: Database, table: str) -> set[str]:
    """Which of UPDATE/DELETE a BEFORE trigger on ``table`` refuses outright."""
    if is_postgres(db):
        rows = db.execute_sql(
            "SELECT event_manipulation FROM information_schema.triggers"
            " WHERE event_object_schema = current_schema() AND event_object_table = %s"
            " AND action_timing = 'BEFORE' AND action_orientation = 'ROW'",
            (table,),
        ).fetchall()
        return {r[0] for r in rows} & {"UPDATE", "DELETE"}
    refused = set()
    for (sql,) in db.execute_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?", (table,)
    ).fetchall():
        text = " ".join(sql.upper().split())
        if "RAISE(ABORT" in text.replace(" (", "(") or "RAISE (ABORT" in text:
            refused |= {op for op in ("UPDATE", "DELETE") if f"BEFORE {op}" in text}
    return refused
