"""What the running Relay app needs from the schema it shares.

* ``tenants`` and ``audit_logs`` get the column defaults Relay's own schema
  has, so Relay's seed (``INSERT INTO tenants (id, name, slug, domain)``) and
  its ``writeAuditLog`` (``id`` and ``created_at`` left to the database) work
  in plain SQL. SQLite gets expressions with the same meaning.
* Relay's production pre-tenant schema, which the 0001 baseline only
  approximated: ``created_at timestamp with time zone`` on ratings,
  skill_versions and skill_reviews (PostgreSQL; the stored naive values are
  read as UTC; Relay's precision is (3), kept at (6) here so no stored
  microsecond is rounded away), ``skill_versions.description`` and
  ``skill_reviews.requested_by`` NOT NULL, and the indexes
  ``api_keys_key_hash_idx``, ``api_keys_user_id_idx``,
  ``skill_embeddings_skill_id_idx``. Each change is made only where the
  database differs, so a database Relay's own Drizzle schema made is left
  as it is. A NULL in a column that becomes NOT NULL is refused, naming the
  table, the count and the fix.
* PostgreSQL: the two lookups that run before the tenant is known
  (``relay_peewee.operations.lookups``) as narrow SECURITY DEFINER functions, with
  ``search_path`` and ``TimeZone`` pinned and EXECUTE revoked from PUBLIC;
  ``relay-peewee roles`` grants it to the application role.
"""

from __future__ import annotations

from typing import Any

from relay_peewee.errors import MigrationError

# SQLite: nothing here needs earlier migrations' queued rebuilds first.
MERGES_REBUILDS = True
# With `migrate --online` on PostgreSQL: one short lock-bounded transaction
# per step, indexes built concurrently, NOT NULL proven by a validated CHECK
# first; every step asks the catalog whether it is done.
ONLINE = True

TIMESTAMP_TABLES = ("ratings", "skill_versions", "skill_reviews")
NOT_NULL = (("skill_versions", "description", "''"), ("skill_reviews", "requested_by", None))
INDEXES = (
    ("api_keys_key_hash_idx", "api_keys", "key_hash"),
    ("api_keys_user_id_idx", "api_keys", "user_id"),
    ("skill_embeddings_skill_id_idx", "skill_embeddings", "skill_id"),
)

PG_DEFAULTS = (
    ("tenants", "id", "gen_random_uuid()::text"),
    ("tenants", "is_active", "true"),
    ("tenants", "plan", "'freemium'"),
    ("tenants", "created_at", "now()"),
    ("tenants", "updated_at", "now()"),
    ("audit_logs", "id", "gen_random_uuid()"),
    ("audit_logs", "created_at", "now()"),
)
# A version-4 UUID in lower-case text, like gen_random_uuid()::text; random()
# & 3 picks the variant digit without abs(), which overflows on INT64_MIN.
SQLITE_UUID = (
    "(lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || "
    "substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (random() & 3), 1) || "
    "substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))))"
)
SQLITE_DEFAULTS = {
    "tenants": {
        "id": SQLITE_UUID,
        "is_active": "1",
        "plan": "'freemium'",
        "created_at": "CURRENT_TIMESTAMP",
        "updated_at": "CURRENT_TIMESTAMP",
    },
    "audit_logs": {"id": SQLITE_UUID, "created_at": "CURRENT_TIMESTAMP"},
}

# The lookup functions. Their bodies are what `relay-peewee audit` expects
# to find (it reads them from this file): one statement each, returning ids
# only. {schema} is the schema the tables live in, pinned in search_path.
FUNCTIONS = {
    "relay_find_api_key(text)": (
        "relay_find_api_key(p_key_hash text)"
        " RETURNS TABLE (tenant_id text, user_id text, key_id text)"
        " LANGUAGE sql VOLATILE SECURITY DEFINER",
        """
UPDATE api_keys AS k SET last_used_at = now()
 WHERE k.key_hash = p_key_hash AND k.revoked_at IS NULL
   AND (k.expires_at IS NULL OR k.expires_at > now())
RETURNING k.tenant_id, k.user_id, k.id::text
""",
    ),
    "relay_find_tenant(text, text)": (
        "relay_find_tenant(p_slug text, p_domain text)"
        " RETURNS TABLE (tenant_id text, slug text)"
        " LANGUAGE sql STABLE SECURITY DEFINER",
        """
SELECT min(t.id), min(t.slug) FROM tenants AS t
 WHERE t.is_active AND ((p_slug IS NOT NULL AND t.slug = p_slug)
    OR (p_slug IS NULL AND p_domain IS NOT NULL AND lower(t.domain) = p_domain))
HAVING count(*) = 1
""",
    ),
}


def function_sql(schema: str) -> list[str]:
    """CREATE and REVOKE statements for the lookup functions in ``schema``."""
    statements = []
    for signature, (head, body) in FUNCTIONS.items():
        # TimeZone UTC: naive timestamps hold UTC, so now() compares with them as such.
        statements.append(
            f"CREATE OR REPLACE FUNCTION {head}"
            f" SET search_path = pg_catalog, {schema}, pg_temp SET TimeZone = 'UTC'"
            f" AS $fn${body}$fn$"
        )
        statements.append(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
    return statements


def _scalar(db: Any, sql: str, params: tuple[Any, ...] = ()) -> Any:
    row = db.execute_sql(sql, params).fetchone()
    return row[0] if row else None


def _refuse_nulls(db: Any) -> None:
    for table, column, fill in NOT_NULL:
        count = _scalar(db, f'SELECT count(*) FROM "{table}" WHERE "{column}" IS NULL')
        if count:
            fix = (
                f"UPDATE {table} SET {column} = {fill} WHERE {column} IS NULL"
                if fill
                else f"set {table}.{column} on those rows (or delete them)"
            )
            raise MigrationError(
                f"{table}.{column} becomes NOT NULL, as in Relay's schema, but {count} row(s) "
                f"have none; fix: {fix}, then migrate again"
            )


def _pg_column(db: Any, table: str, column: str) -> tuple[str, bool]:
    row = db.execute_sql(
        "SELECT format_type(a.atttypid, a.atttypmod), a.attnotnull FROM pg_attribute a"
        " WHERE a.attrelid = to_regclass(%s) AND a.attname = %s AND NOT a.attisdropped",
        (table, column),
    ).fetchone()
    return str(row[0]), bool(row[1])


def _up_postgres(migrator: Any, db: Any) -> None:
    # With TimeZone UTC, timestamp -> timestamptz reads each stored value as
    # UTC (as peewee and CURRENT_TIMESTAMP wrote it) and PostgreSQL >= 12
    # does not rewrite the table. The precision stays (6): narrowing to
    # Relay's (3) would round the microseconds a row may hold.
    statements: list[str] = ["SET LOCAL TimeZone = 'UTC'"]
    for table in TIMESTAMP_TABLES:
        if not _pg_column(db, table, "created_at")[0].endswith("with time zone"):
            statements.append(
                f"ALTER TABLE {table} ALTER COLUMN created_at TYPE timestamp with time zone"
            )
    for table, column, _fill in NOT_NULL:
        if not _pg_column(db, table, column)[1]:
            statements.append(f"ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL")
    for name, table, column in INDEXES:
        statements.append(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({column})")
    for table, column, default in PG_DEFAULTS:
        statements.append(f"ALTER TABLE {table} ALTER COLUMN {column} SET DEFAULT {default}")
    schema = _scalar(db, "SELECT quote_ident(current_schema())")
    statements += function_sql(str(schema))
    migrator.step("Relay's column types, NOT NULLs, indexes and defaults; lookup functions")
    migrator.migrate(*[migrator.sql(s) for s in statements])


def _pg_has_constraint(db: Any, table: str, name: str) -> bool:
    return (
        _scalar(
            db,
            "SELECT count(*) FROM pg_constraint WHERE conrelid = to_regclass(%s) AND conname = %s",
            (table, name),
        )
        > 0
    )


def _up_postgres_online(migrator: Any, db: Any) -> None:
    for table in TIMESTAMP_TABLES:
        if _pg_column(db, table, "created_at")[0].endswith("with time zone"):
            continue
        migrator.step(f"{table}: created_at to timestamp with time zone (no rewrite)")
        migrator.locked(
            f"{table}: created_at type",
            "SET LOCAL TimeZone = 'UTC'",
            # For the linted --online --sql plan: under TimeZone UTC this
            # change is catalog-only (PostgreSQL >= 12), a brief lock, no rewrite.
            "-- squawk-ignore changing-column-type\n"
            f"ALTER TABLE {table} ALTER COLUMN created_at TYPE timestamp with time zone",
        )
    for table, column, _fill in NOT_NULL:
        if _pg_column(db, table, column)[1]:
            continue
        # A validated CHECK lets SET NOT NULL skip its scan under ACCESS
        # EXCLUSIVE; the scan runs in VALIDATE, which blocks no writes.
        check = f"{table}_{column}_not_null"
        migrator.step(f"{table}: {column} NOT NULL")
        if not _pg_has_constraint(db, table, check):
            migrator.locked(
                f"{table}: {column} check",
                f"ALTER TABLE {table} ADD CONSTRAINT {check} CHECK ({column} IS NOT NULL)"
                " NOT VALID",
            )
        migrator.locked(
            f"{table}: validate {column} check", f"ALTER TABLE {table} VALIDATE CONSTRAINT {check}"
        )
        migrator.locked(
            f"{table}: {column} NOT NULL",
            f"ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL",
            f"ALTER TABLE {table} DROP CONSTRAINT {check}",
        )
    for name, table, column in INDEXES:
        migrator.ensure_index(table, (column,), unique=False, name=name)
    for table in ("tenants", "audit_logs"):
        migrator.step(f"{table}: Relay's column defaults")
        migrator.locked(
            f"{table}: defaults",
            *(
                f"ALTER TABLE {t} ALTER COLUMN {column} SET DEFAULT {default}"
                for t, column, default in PG_DEFAULTS
                if t == table
            ),
        )
    migrator.step("lookup functions")
    schema = _scalar(db, "SELECT quote_ident(current_schema())")
    migrator.locked("lookup functions", *function_sql(str(schema)))


def _set_clause(item: list[str], word: str, value: str | None) -> list[str]:
    """A column definition with ``DEFAULT x`` replaced, or ``NOT NULL`` added."""
    upper = [t.upper() for t in item]
    if word == "DEFAULT" and value is not None:
        if "DEFAULT" in upper:
            pos = upper.index("DEFAULT")
            item = item[:pos] + item[pos + 2 :]
        return [*item, "DEFAULT", f"({value})" if not value.startswith("(") else value]
    if any(upper[i : i + 2] == ["NOT", "NULL"] for i in range(len(upper))):
        return item
    return [*item, "NOT", "NULL"]


def _sqlite_transform(table: str) -> Any:
    def transform(ddl: Any) -> None:
        for column, default in SQLITE_DEFAULTS.get(table, {}).items():
            item = ddl.column(column)
            ddl.replace_column(column, " ".join(_set_clause(item, "DEFAULT", default)))
        for t, column, _fill in NOT_NULL:
            if t == table:
                item = ddl.column(column)
                ddl.replace_column(column, " ".join(_set_clause(item, "NOT NULL", None)))

    return transform


def _up_sqlite(migrator: Any, db: Any) -> None:
    migrator.step("Relay's NOT NULLs, indexes and defaults (rebuilding tenants, audit_logs)")
    tables = [*SQLITE_DEFAULTS, *(t for t, _c, _f in NOT_NULL)]
    migrator.rebuild({t: _sqlite_transform(t) for t in tables})
    migrator.migrate(
        *[
            migrator.sql(f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" ("{column}")')
            for name, table, column in INDEXES
        ]
    )


def up(migrator: Any, db: Any) -> None:
    from relay_peewee.database import is_postgres

    _refuse_nulls(db)
    if is_postgres(db) and hasattr(migrator, "locked"):  # migrate --online
        _up_postgres_online(migrator, db)
    elif is_postgres(db):
        _up_postgres(migrator, db)
    else:
        _up_sqlite(migrator, db)


def down(migrator: Any, db: Any) -> None:
    from relay_peewee.database import is_postgres

    # The lookups and defaults go; Relay's types, NOT NULLs and indexes stay:
    # they are what Relay's own schema has, and undoing them loses nothing.
    if is_postgres(db):
        statements = [f"DROP FUNCTION IF EXISTS {sig}" for sig in FUNCTIONS]
        statements += [
            f"ALTER TABLE {table} ALTER COLUMN {column} DROP DEFAULT"
            for table, column, _default in PG_DEFAULTS
        ]
        migrator.migrate(*[migrator.sql(s) for s in statements])
        return

    def undefault(table: str) -> Any:
        def transform(ddl: Any) -> None:
            for column in SQLITE_DEFAULTS[table]:
                item = ddl.column(column)
                upper = [t.upper() for t in item]
                if "DEFAULT" in upper:
                    pos = upper.index("DEFAULT")
                    ddl.replace_column(column, " ".join(item[:pos] + item[pos + 2 :]))

        return transform

    migrator.rebuild({t: undefault(t) for t in SQLITE_DEFAULTS})
    # Now, not at the end of the run: rolling back further drops these tables.
    migrator.flush()
