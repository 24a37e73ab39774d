"""What the live database says about a table, on SQLite and PostgreSQL.

Migrations decide what to drop and rebuild from the catalog, not from what
they expect to find: a legacy database may name its unique constraint
``skills_slug_unique``, ``uniq_slug`` or nothing at all (an inline UNIQUE).

Backend differences live in one class per backend (``SqliteCatalog``,
``PostgresCatalog``; ``catalog_for(db)`` picks it), as peewee keeps
``get_indexes`` on its database classes; the module-level functions are
shorthands for ``catalog_for(db).<read>``.

Below both the engine (``migrator``, which re-exports this module as
``migrator.catalog``) and ``tenancy``, which asks which foreign keys the
database enforces: it imports nothing of the package but ``db``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from peewee import Database

from .backend import is_postgres
from .quoting import quote

__all__ = [
    "Catalog",
    "Column",
    "ForeignKey",
    "Index",
    "Policy",
    "PostgresCatalog",
    "PrivilegedObject",
    "RoleInfo",
    "SqliteCatalog",
    "catalog_for",
    "column_names",
    "columns",
    "forced_rls_tables",
    "foreign_keys",
    "has_policy",
    "indexes",
    "postgres_catalog",
    "primary_key",
    "refused_operations",
    "row_security",
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


@dataclass(frozen=True)
class Column:
    name: str
    not_null: bool
    # The default's SQL text, None when there is none. Generated columns
    # report None: the database computes them, nothing is defaulted.
    default: str | None


@dataclass(frozen=True)
class Policy:
    """A PostgreSQL row-level security policy, as pg_policies shows it."""

    name: str
    permissive: bool
    command: str  # ALL, SELECT, INSERT, UPDATE or DELETE
    roles: tuple[str, ...]  # ("public",) for every role
    using: str | None
    with_check: str | None


@dataclass(frozen=True)
class PrivilegedObject:
    """A view, materialized view, function or rule that runs with its owner's rights."""

    kind: str  # "view", "materialized view", "function", "rule"
    schema: str
    name: str  # for a function: name(identity arguments); for a rule: "rule ON table"
    # view: security_invoker is on; function: search_path pinned.
    hardened: bool = False
    # function: source text, identity arguments, and whether PUBLIC may execute it.
    body: str = ""
    arguments: str = ""
    public: bool = False


@dataclass(frozen=True)
class RoleInfo:
    name: str
    superuser: bool
    bypassrls: bool
    owns: tuple[str, ...]  # tables of the current schema it owns
    # Roles it is a member of (directly or not) that are superuser or BYPASSRLS.
    bypass_memberships: tuple[str, ...]


def table_exists(db: Database, table: str) -> bool:
    return table in db.get_tables()


def table_columns(db: Database, table: str) -> list[str]:
    # The catalog class's read: on PostgreSQL one pg_attribute query, where
    # db.get_columns sends two information_schema ones.
    return [c.name for c in catalog_for(db).columns(table)]


class Catalog:
    """What the live database says; one subclass per backend."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def indexes(self, table: str) -> list[Index]:
        raise NotImplementedError

    def primary_key(self, table: str) -> tuple[str, ...]:
        raise NotImplementedError

    def foreign_keys(self, table: str) -> list[ForeignKey]:
        raise NotImplementedError

    def columns(self, table: str) -> list[Column]:
        raise NotImplementedError

    def column_names(self, tables: Iterable[str]) -> dict[str, set[str]]:
        """The column names of each of ``tables`` (a missing table maps to an empty set)."""
        return {table: {c.name for c in self.columns(table)} for table in tables}

    def refused_operations(self, table: str) -> set[str]:
        raise NotImplementedError

    def triggers(self, table: str) -> set[str]:
        raise NotImplementedError


class SqliteCatalog(Catalog):
    def indexes(self, table: str) -> list[Index]:
        out = []
        for _seq, name, unique, origin, partial in self.db.execute_sql(
            f'PRAGMA index_list("{table}")'
        ).fetchall():
            cols = tuple(
                r[2] for r in self.db.execute_sql(f'PRAGMA index_info("{name}")').fetchall()
            )
            kind = {"pk": "primary", "u": "constraint"}.get(origin, "index")
            out.append(Index(name, cols, bool(unique), kind, True, bool(partial)))
        return out

    def primary_key(self, table: str) -> tuple[str, ...]:
        rows = self.db.execute_sql(f'PRAGMA table_info("{table}")').fetchall()
        return tuple(r[1] for r in sorted((r for r in rows if r[5]), key=lambda r: r[5]))

    def foreign_keys(self, table: str) -> list[ForeignKey]:
        grouped: dict[int, list[tuple[str, str, str | None]]] = {}
        on_delete: dict[int, str] = {}
        for fk_id, _seq, parent, column, ref_column, _upd, delete, *_rest in self.db.execute_sql(
            f'PRAGMA foreign_key_list("{table}")'
        ).fetchall():
            grouped.setdefault(fk_id, []).append((parent, column, ref_column))
            on_delete[fk_id] = str(delete).upper()
        out = []
        for fk_id, rows in sorted(grouped.items()):
            parent = rows[0][0]
            named = [r[2] for r in rows]
            # `REFERENCES parent` without columns means the parent's primary key.
            ref_columns = self.primary_key(parent) if None in named else tuple(map(str, named))
            out.append(
                ForeignKey(
                    None, tuple(r[1] for r in rows), parent, ref_columns, True, on_delete[fk_id]
                )
            )
        return out

    def columns(self, table: str) -> list[Column]:
        return [
            Column(r[1], bool(r[3]), r[4])
            for r in self.db.execute_sql(f'PRAGMA table_info("{table}")')
        ]

    def refused_operations(self, table: str) -> set[str]:
        """Which of UPDATE/DELETE a BEFORE trigger on ``table`` refuses outright."""
        refused = set()
        for (sql,) in self.db.execute_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?", (table,)
        ).fetchall():
            text = " ".join(sql.upper().split())
            if "RAISE(ABORT" in text.replace(" (", "(") or "RAISE (ABORT" in text:
                refused |= {op for op in ("UPDATE", "DELETE") if f"BEFORE {op}" in text}
        return refused

    def triggers(self, table: str) -> set[str]:
        rows = self.db.execute_sql(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?", (table,)
        ).fetchall()
        return {r[0] for r in rows}

    def foreign_key_violations(self) -> list[tuple[str, int, str]]:
        """(table, rowid, parent) of each row ``PRAGMA foreign_key_check`` reports.

        Rows written by a client that left ``foreign_keys`` off (SQLite's
        default for every other tool) are only found this way.
        """
        rows = self.db.execute_sql("PRAGMA foreign_key_check").fetchall()
        return [(str(r[0]), int(r[1]) if r[1] is not None else -1, str(r[2])) for r in rows]


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

_PG_COLUMN_NAMES = """
SELECT t.relname, a.attname
  FROM pg_attribute a
  JOIN pg_class t ON t.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
 WHERE t.relname = ANY(%s) AND n.nspname = current_schema() AND a.attnum > 0
   AND NOT a.attisdropped
"""

# Every relation that reads the given tables of the current schema, however
# indirectly (a view over a view over skills), in the schemas of the search
# path: a view or rule depends on what its query reads through pg_rewrite.
_PG_READERS = """
WITH RECURSIVE readers(oid) AS (
    SELECT c.oid FROM pg_class c
     WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY(%s)
  UNION
    SELECT r.ev_class FROM pg_depend d
      JOIN pg_rewrite r ON r.oid = d.objid AND d.classid = 'pg_rewrite'::regclass
      JOIN readers ON d.refobjid = readers.oid AND d.refclassid = 'pg_class'::regclass
     WHERE r.ev_class <> d.refobjid
)
SELECT n.nspname, c.relname, c.relkind,
       coalesce(lower(array_to_string(c.reloptions, ',')) ~ 'security_invoker=(true|on|1|yes)',
                false)
  FROM readers JOIN pg_class c ON c.oid = readers.oid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_roles o ON o.oid = c.relowner
 WHERE c.relkind IN ('v', 'm') AND n.nspname = ANY(current_schemas(false))
   AND (o.rolsuper OR o.rolbypassrls)
   AND (%s::text IS NULL OR has_table_privilege(%s::text, c.oid, 'SELECT'))
 ORDER BY 1, 2
"""

# Rules on, or reading/writing, the given tables: a rule's action runs with
# the rights of the owner of the table it is on.
_PG_RULES = """
SELECT DISTINCT n.nspname, r.rulename, t.relname
  FROM pg_rewrite r
  JOIN pg_class t ON t.oid = r.ev_class
  JOIN pg_namespace n ON n.oid = t.relnamespace
  LEFT JOIN pg_depend d ON d.objid = r.oid AND d.classid = 'pg_rewrite'::regclass
       AND d.refclassid = 'pg_class'::regclass
  LEFT JOIN pg_class dep ON dep.oid = d.refobjid
 WHERE r.rulename <> '_RETURN' AND n.nspname = ANY(current_schemas(false))
   AND (t.relname = ANY(%s) OR (dep.relname = ANY(%s)
        AND dep.relnamespace = current_schema()::regnamespace))
 ORDER BY 1, 3, 2
"""

_PG_DEFINERS = """
SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), p.prosrc,
       coalesce(array_to_string(p.proconfig, ',') ~ 'search_path=', false),
       has_function_privilege('public', p.oid, 'EXECUTE')
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_roles o ON o.oid = p.proowner
 WHERE p.prosecdef AND n.nspname = ANY(current_schemas(false))
   AND (o.rolsuper OR o.rolbypassrls)
   AND (%s::text IS NULL OR has_function_privilege(%s::text, p.oid, 'EXECUTE'))
 ORDER BY 1, 2, 3
"""

_PG_ROLE = """
SELECT r.rolname, r.rolsuper, r.rolbypassrls,
       array(SELECT c.relname::text FROM pg_class c
              WHERE c.relowner = r.oid AND c.relkind IN ('r', 'p')
                AND c.relnamespace = current_schema()::regnamespace ORDER BY 1),
       array(SELECT b.rolname::text FROM pg_roles b
              WHERE b.oid <> r.oid AND (b.rolsuper OR b.rolbypassrls)
                AND pg_has_role(r.oid, b.oid, 'MEMBER') ORDER BY 1)
  FROM pg_roles r WHERE r.rolname = %s
"""


class PostgresCatalog(Catalog):
    def indexes(self, table: str) -> list[Index]:
        out = []
        for name, cols, unique, primary, contype, valid, partial in self.db.execute_sql(
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

    def primary_key(self, table: str) -> tuple[str, ...]:
        return next((ix.columns for ix in self.indexes(table) if ix.origin == "primary"), ())

    def foreign_keys(self, table: str) -> list[ForeignKey]:
        return [
            ForeignKey(name, tuple(cols), parent, tuple(ref_cols), validated, on_delete)
            for name, cols, parent, ref_cols, validated, on_delete in self.db.execute_sql(
                _PG_FOREIGN_KEYS, (table,)
            ).fetchall()
        ]

    def columns(self, table: str) -> list[Column]:
        # pg_attribute: db.get_columns (information_schema) is several times slower.
        rows = self.db.execute_sql(_PG_COLUMNS, (table,)).fetchall()
        return [Column(name, bool(not_null), default) for name, not_null, default in rows]

    def column_names(self, tables: Iterable[str]) -> dict[str, set[str]]:
        # One round trip for every table: migrate reads nine tables before
        # taking any decision, and get_columns would cost two information_schema
        # queries per table (its columns, then its primary key).
        wanted = list(tables)
        out: dict[str, set[str]] = {table: set() for table in wanted}
        for table, name in self.db.execute_sql(_PG_COLUMN_NAMES, (wanted,)).fetchall():
            out[table].add(name)
        return out

    def refused_operations(self, table: str) -> set[str]:
        rows = self.db.execute_sql(
            "SELECT event_manipulation FROM information_schema.triggers"
            " WHERE event_object_schema = current_schema() AND event_object_table = %s"
            " AND action_timing = 'BEFORE' AND action_orientation = 'ROW'",
            (table,),
        ).fetchall()
        return {r[0] for r in rows} & {"UPDATE", "DELETE"}

    def triggers(self, table: str) -> set[str]:
        rows = self.db.execute_sql(
            "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace"
            " AND NOT t.tgisinternal AND t.tgenabled <> 'D'",
            (table,),
        ).fetchall()
        return {r[0] for r in rows}

    def has_policy(self, table: str, name: str) -> bool:
        return any(p.name == name for p in self.policies(table))

    def policies(self, table: str) -> list[Policy]:
        rows = self.db.execute_sql(
            "SELECT policyname, permissive = 'PERMISSIVE', cmd, roles::text[], qual, with_check"
            " FROM pg_policies WHERE schemaname = current_schema() AND tablename = %s"
            " ORDER BY policyname",
            (table,),
        ).fetchall()
        return [Policy(n, bool(p), c, tuple(r), q, w) for n, p, c, r, q, w in rows]

    def row_security(self, table: str) -> tuple[bool, bool]:
        """(row-level security enabled, forced) for ``table``."""
        row = self.db.execute_sql(
            "SELECT c.relrowsecurity, c.relforcerowsecurity FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relname = %s AND n.nspname = current_schema()",
            (table,),
        ).fetchone()
        return (bool(row[0]), bool(row[1])) if row else (False, False)

    def forced_rls_tables(self) -> list[str]:
        rows = self.db.execute_sql(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relforcerowsecurity"
            " ORDER BY 1"
        ).fetchall()
        return [r[0] for r in rows]

    def views_reading(
        self, tables: tuple[str, ...], role: str | None = None
    ) -> list[PrivilegedObject]:
        """Views and materialized views over ``tables`` whose owner bypasses RLS.

        Only those ``role`` may select from, when a role is given.
        """
        rows = self.db.execute_sql(_PG_READERS, (list(tables), role, role)).fetchall()
        return [
            PrivilegedObject("view" if kind == "v" else "materialized view", s, n, bool(inv))
            for s, n, kind, inv in rows
        ]

    def rules_touching(self, tables: tuple[str, ...]) -> list[PrivilegedObject]:
        rows = self.db.execute_sql(_PG_RULES, (list(tables), list(tables))).fetchall()
        return [PrivilegedObject("rule", s, f"{rule} ON {table}") for s, rule, table in rows]

    def security_definers(self, role: str | None = None) -> list[PrivilegedObject]:
        """SECURITY DEFINER functions owned by a role that bypasses RLS.

        Only those ``role`` may execute, when a role is given.
        """
        rows = self.db.execute_sql(_PG_DEFINERS, (role, role)).fetchall()
        return [
            PrivilegedObject("function", s, n, bool(pinned), src, args, bool(public))
            for s, n, args, src, pinned, public in rows
        ]

    def role(self, name: str) -> RoleInfo | None:
        row = self.db.execute_sql(_PG_ROLE, (name,)).fetchone()
        if row is None:
            return None
        return RoleInfo(row[0], bool(row[1]), bool(row[2]), tuple(row[3]), tuple(row[4]))

    def table_privileges(self, role: str, table: str) -> set[str]:
        wanted = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
        row = self.db.execute_sql(
            "SELECT " + ", ".join(f"has_table_privilege(%s, %s, '{p}')" for p in wanted),
            # Quoted: the text is read as an identifier, so "Order" would be order.
            tuple(x for _ in wanted for x in (role, quote(table))),
        ).fetchone()
        return {p for p, ok in zip(wanted, row, strict=True) if ok}

    def database_privileges(self, role: str) -> set[str]:
        """What ``role`` may do to the current database (through PUBLIC too)."""
        wanted = ("CREATE", "CONNECT", "TEMPORARY")
        row = self.db.execute_sql(
            "SELECT "
            + ", ".join(f"has_database_privilege(%s, current_database(), '{p}')" for p in wanted),
            tuple(role for _ in wanted),
        ).fetchone()
        return {p for p, ok in zip(wanted, row, strict=True) if ok}

    def column_sequences(self, table: str) -> list[str]:
        """The sequences behind ``table``'s serial and identity columns, as SQL names.

        An INSERT that takes a column's default calls nextval() on them, which
        needs USAGE on the sequence as well as INSERT on the table.
        """
        rows = self.db.execute_sql(
            "SELECT d.objid::regclass::text FROM pg_depend d"
            " JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'"
            " WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass"
            " AND d.refobjid = to_regclass(%s) AND d.deptype IN ('a', 'i')"
            " ORDER BY 1",
            (quote(table),),
        ).fetchall()
        return [r[0] for r in rows]

    def sequence_usage(self, role: str, sequence: str) -> bool:
        row = self.db.execute_sql(
            "SELECT has_sequence_privilege(%s, %s, 'USAGE')", (role, sequence)
        ).fetchone()
        return bool(row[0])


def catalog_for(db: Database) -> SqliteCatalog | PostgresCatalog:
    return PostgresCatalog(db) if is_postgres(db) else SqliteCatalog(db)


def postgres_catalog(db: Database) -> PostgresCatalog:
    """The PostgreSQL catalog; for reads that only PostgreSQL has (policies, roles)."""
    return PostgresCatalog(db)


def indexes(db: Database, table: str) -> list[Index]:
    """Every index on ``table`` with the columns it covers, in order."""
    return catalog_for(db).indexes(table)


def unique_on(db: Database, table: str, columns: tuple[str, ...]) -> list[Index]:
    """The unique keys (constraints or indexes) over exactly ``columns``."""
    return [
        ix
        for ix in indexes(db, table)
        if ix.unique and not ix.partial and ix.columns == tuple(columns)
    ]


def primary_key(db: Database, table: str) -> tuple[str, ...]:
    return catalog_for(db).primary_key(table)


def foreign_keys(db: Database, table: str) -> list[ForeignKey]:
    """Every foreign key of ``table``, composite ones as one entry."""
    return catalog_for(db).foreign_keys(table)


def columns(db: Database, table: str) -> list[Column]:
    """The columns of ``table`` in order, with nullability and default."""
    return catalog_for(db).columns(table)


def column_names(db: Database, tables: Iterable[str]) -> dict[str, set[str]]:
    """Table -> its column names, for several tables at once (one query on PostgreSQL)."""
    return catalog_for(db).column_names(tables)


def has_policy(db: Database, table: str, name: str) -> bool:
    """PostgreSQL: whether ``table`` has the row-level security policy ``name``."""
    return PostgresCatalog(db).has_policy(table, name)


def row_security(db: Database, table: str) -> tuple[bool, bool]:
    """PostgreSQL: (row-level security enabled, forced) for ``table``."""
    return PostgresCatalog(db).row_security(table)


def forced_rls_tables(db: Database) -> list[str]:
    """PostgreSQL: the tables of the current schema with FORCE ROW LEVEL SECURITY."""
    return PostgresCatalog(db).forced_rls_tables()


def refused_operations(db: Database, table: str) -> set[str]:
    """Which of UPDATE/DELETE a BEFORE trigger on ``table`` refuses outright."""
    return catalog_for(db).refused_operations(table)
