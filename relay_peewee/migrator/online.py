"""Online tenancy migration for PostgreSQL: short locks, resumable steps.

The transactional path (``backends.RelayPostgresqlMigrator``) is fast but
holds ACCESS EXCLUSIVE locks on every table until it commits. This one, for
databases with live traffic (docs/migrations.md, "Online migrations", has the
lock each step takes):

* every statement that needs ACCESS EXCLUSIVE runs alone in a short
  transaction with ``SET LOCAL lock_timeout``, retried with jittered backoff
  - a statement *waiting* for that lock would block every later query;
* foreign keys are added ``NOT VALID`` and validated separately, which lets
  reads and writes continue during the scan;
* indexes are built ``CONCURRENTLY``; an INVALID leftover of an earlier,
  interrupted attempt is dropped and rebuilt (``IF NOT EXISTS`` would
  wrongly accept it);
* the new composite unique exists before the old global one is dropped.

Each step first asks the catalog whether it is already done, so after a
crash (kill -9 included) running ``migrate --online`` again resumes where
the database really is, not where the history table says.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from peewee import Database, OperationalError
from playhouse.migrate import make_index_name

from ..database import catalog, sqlstate
from ..errors import MigrationError
from .backends import (
    PARENT_KEY,
    POLICY,
    TENANT_COLUMN,
    RelayPostgresqlMigrator,
    TenantReference,
    TenantTable,
    policy_sql,
)
from .sqlite_ddl import quote

__all__ = ["MAX_LOCK_TIMEOUT", "MIN_LOCK_TIMEOUT", "OnlinePostgresqlMigrator", "check_lock_timeout"]

LOCK_NOT_AVAILABLE = "55P03"
# PostgreSQL's lock_timeout is an int of milliseconds: INT_MAX ms is its
# ceiling; below 10 ms a step would rarely get a lock on a busy table.
MIN_LOCK_TIMEOUT = 0.01
MAX_LOCK_TIMEOUT = 2_147_483.0


def check_lock_timeout(seconds: float) -> float:
    """``seconds`` if it is a lock timeout PostgreSQL can take, else MigrationError.

    NaN passes every ``<``/``>`` check and infinity has no millisecond
    count, so both are refused by name rather than left to the SET."""
    if not (math.isfinite(seconds) and MIN_LOCK_TIMEOUT <= seconds <= MAX_LOCK_TIMEOUT):
        raise MigrationError(
            f"--lock-timeout must be a number of seconds from {MIN_LOCK_TIMEOUT} to "
            f"{MAX_LOCK_TIMEOUT:.0f}, not {seconds!r}"
        )
    return seconds


def _is_lock_timeout(exc: BaseException) -> bool:
    return sqlstate(exc) == LOCK_NOT_AVAILABLE


class OnlinePostgresqlMigrator(RelayPostgresqlMigrator):
    def __init__(
        self,
        database: Database,
        lock_timeout: float = 1.0,
        attempts: int = 10,
        record: list[str] | None = None,
    ) -> None:
        super().__init__(database)
        self.lock_timeout = check_lock_timeout(lock_timeout)
        self.attempts = attempts
        # When set, statements are recorded instead of executed (`--sql`).
        self.record = record

    # -- primitives ------------------------------------------------------
    @property
    def timeout_sql(self) -> str:
        return f"SET LOCAL lock_timeout = '{round(self.lock_timeout * 1000)}ms'"

    @contextmanager
    def migration_context(self, atomic: bool = True) -> Iterator[None]:
        # Migrations that stay one transaction (new tables, the history row)
        # are bounded by the same lock_timeout, without retries: they touch
        # only tables nobody else uses yet.
        with super().migration_context(atomic):
            if atomic:
                self.database.execute_sql(self.timeout_sql)
            yield

    def locked(self, label: str, *statements: str) -> None:
        """Run ``statements`` in one short transaction bounded by lock_timeout."""
        timeout = self.timeout_sql
        if self.record is not None:
            self.record += ["BEGIN;", f"{timeout};", *(f"{s};" for s in statements), "COMMIT;"]
            return
        for attempt in range(1, self.attempts + 1):
            try:
                with self.database.atomic():
                    self.database.execute_sql(timeout)
                    for statement in statements:
                        self.database.execute_sql(statement)
                return
            except OperationalError as exc:
                if not _is_lock_timeout(exc):
                    raise
                if attempt == self.attempts:
                    raise MigrationError(
                        f"{label}: no lock within {self.lock_timeout}s in {attempt} attempts; "
                        "a long transaction holds the table - end it and run migrate again"
                    ) from None
                # Exponential backoff with jitter, so several waiting
                # migrators (or retries) do not queue in lock-step.
                delay = min(5.0, 0.2 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
                self.step(f"{label}: table busy, retry {attempt} in {delay:.1f}s")
                time.sleep(delay)

    def outside_transaction(self, statement: str) -> None:
        """CONCURRENTLY statements refuse to run inside a transaction block."""
        if self.record is not None:
            self.record.append(f"{statement};")
            return
        self.database.execute_sql(statement)

    # -- tenancy operations ----------------------------------------------
    def add_tenant_column(self, table: str, tenant_id: str) -> None:
        # The caller announces "add tenant_id" (the transactional backends
        # say nothing here): saying it again printed every line twice.
        if TENANT_COLUMN in catalog.table_columns(self.database, table):
            self.step(f"{table}: tenant_id already there, skipped")
            return
        self.locked(
            f"{table}: add tenant_id",
            f"ALTER TABLE {quote(table)} ADD COLUMN IF NOT EXISTS {TENANT_COLUMN} text "
            f"NOT NULL DEFAULT '{tenant_id}'",
        )

    def enforce_tenant_keys(self, specs: Sequence[TenantTable]) -> None:
        for spec in specs:
            self._foreign_key(spec.table)
            for old, new in spec.unique_swaps:
                self.ensure_index(spec.table, new, unique=True)
                for ix in catalog.unique_on(self.database, spec.table, old):
                    self._drop_key_online(spec.table, ix)
            if spec.needs_tenant_index:
                self.ensure_index(spec.table, (TENANT_COLUMN,), unique=False)
            if spec.primary_key:
                self._primary_key(spec.table, spec.primary_key)
            self._drop_default(spec.table)

    def refuse_cross_tenant_references(self, refs: Sequence[TenantReference]) -> None:
        if self.record is not None:
            # A plan is recorded against the catalog as it is now, where the
            # tenant columns may not exist yet; the check runs at migrate time.
            self.record.append("-- at run time: stop if any row references another tenant")
            return
        super().refuse_cross_tenant_references(refs)

    def enforce_tenant_references(
        self, refs: Sequence[TenantReference], redundant_indexes: Sequence[tuple[str, str]]
    ) -> None:
        for parent in sorted({r.parent for r in refs}):
            if not self.has_parent_key(parent):
                self.ensure_index(parent, PARENT_KEY, unique=True)
        for ref in refs:
            table, name = quote(ref.table), quote(ref.constraint_name)
            new, old = self.composite_reference(ref), self.old_reference(ref)
            if new is None:
                self.step(f"{ref.table}.{ref.column}: tenant-consistent foreign key (NOT VALID)")
                on_delete = old.on_delete if old else "NO ACTION"
                self.locked(
                    f"{ref.table}: add {ref.constraint_name}",
                    f"ALTER TABLE {table} ADD CONSTRAINT {name} "
                    f"{ref.references_sql(on_delete)} NOT VALID",
                )
            if new is None or not new.validated:
                self.step(f"{ref.table}.{ref.column}: validating")
                self.locked(
                    f"{ref.table}: validate {ref.constraint_name}",
                    f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}",
                )
            if old is not None and old.name:
                self.locked(
                    f"{ref.table}: drop {old.name}",
                    f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {quote(old.name)}",
                )
        for table_name, index in redundant_indexes:
            present = any(ix.name == index for ix in catalog.indexes(self.database, table_name))
            if present or self.record is not None:
                self.outside_transaction(f"DROP INDEX CONCURRENTLY IF EXISTS {quote(index)}")

    def enable_row_level_security(self, tables: Sequence[str]) -> None:
        # One short lock-bounded transaction per table, policy first.
        for table in tables:
            if self.record is None and catalog.has_policy(self.database, table, POLICY):
                continue
            self.step(f"{table}: row-level security policy {POLICY}")
            self.locked(f"{table}: row-level security", *policy_sql(table))

    def secure_views(self, tables: Sequence[str]) -> None:
        for view in self.owner_views(tables):
            self.step(f"{view}: security_invoker, so row-level security binds its reader")
            self.locked(
                f"{view}: security_invoker", f"ALTER VIEW {view} SET (security_invoker = true)"
            )

    def ensure_index(
        self, table: str, columns: tuple[str, ...], *, unique: bool, name: str | None = None
    ) -> None:
        name = name or make_index_name(table, columns)
        found = next((ix for ix in catalog.indexes(self.database, table) if ix.name == name), None)
        if found is not None and found.valid:
            return
        if found is not None:
            self.step(f"{table}: dropping invalid index {name} left by an interrupted run")
            self.outside_transaction(f"DROP INDEX CONCURRENTLY IF EXISTS {quote(name)}")
        self.step(f"{table}: building index {name} concurrently")
        self._warn_about_open_transactions(table)
        cols = ", ".join(quote(c) for c in columns)
        kind = "UNIQUE INDEX" if unique else "INDEX"
        self.outside_transaction(
            f"CREATE {kind} CONCURRENTLY {quote(name)} ON {quote(table)} ({cols})"
        )

    def _warn_about_open_transactions(self, table: str) -> None:
        # CREATE INDEX CONCURRENTLY waits, with no timeout, for every
        # transaction older than its snapshot - a session left idle in one
        # makes it hang silently. Say who it will be waiting for.
        if self.record is not None:
            return
        rows = self.database.execute_sql(
            "SELECT pid, state, now() - xact_start FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND xact_start IS NOT NULL AND now() - xact_start > interval '1 second'"
            " ORDER BY xact_start LIMIT 5"
        ).fetchall()
        if rows:
            shown = ", ".join(f"pid {pid} ({state}, open {age})" for pid, state, age in rows)
            self.step(f"{table}: the concurrent build waits for transactions already open: {shown}")

    def _foreign_key(self, table: str) -> None:
        name = f"{table}_tenant_id_fkey"
        found = [fk for fk in catalog.foreign_keys(self.database, table) if fk.name == name]
        state = found[0].validated if found else None
        if state is None:
            self.step(f"{table}: tenant foreign key (NOT VALID)")
            self.locked(
                f"{table}: add tenant foreign key",
                f"ALTER TABLE {quote(table)} ADD CONSTRAINT {quote(name)} FOREIGN KEY "
                f'({TENANT_COLUMN}) REFERENCES "tenants" ("id") NOT VALID',
            )
        if not state:
            # SHARE UPDATE EXCLUSIVE: reads and writes go on during the scan.
            self.step(f"{table}: validating tenant foreign key")
            self.locked(
                f"{table}: validate tenant foreign key",
                f"ALTER TABLE {quote(table)} VALIDATE CONSTRAINT {quote(name)}",
            )

    def _drop_key_online(self, table: str, ix: catalog.Index) -> None:
        self.step(f"{table}: dropping global unique {ix.name}")
        if ix.origin == "index":
            self.outside_transaction(f"DROP INDEX CONCURRENTLY IF EXISTS {quote(ix.name)}")
        else:
            self.locked(
                f"{table}: drop {ix.name}",
                f"ALTER TABLE {quote(table)} DROP CONSTRAINT IF EXISTS {quote(ix.name)}",
            )

    def _primary_key(self, table: str, columns: tuple[str, ...]) -> None:
        if catalog.primary_key(self.database, table) == columns:
            return
        staging = make_index_name(table, columns)
        self.ensure_index(table, columns, unique=True, name=staging)
        old = [ix.name for ix in catalog.indexes(self.database, table) if ix.origin == "primary"]
        self.step(f"{table}: primary key ({', '.join(columns)})")
        # USING INDEX turns the index built above into the key (renaming it
        # to the constraint's name) without another scan.
        self.locked(
            f"{table}: replace primary key",
            *[f"ALTER TABLE {quote(table)} DROP CONSTRAINT {quote(name)}" for name in old],
            f"ALTER TABLE {quote(table)} ADD CONSTRAINT {quote(table + '_pkey')} "
            f"PRIMARY KEY USING INDEX {quote(staging)}",
        )

    def _drop_default(self, table: str) -> None:
        if self.record is None:
            column = next(
                c for c in catalog.columns(self.database, table) if c.name == TENANT_COLUMN
            )
            if column.default is None:
                return
        self.step(f"{table}: drop the tenant_id default")
        self.locked(
            f"{table}: drop tenant_id default",
            f"ALTER TABLE {quote(table)} ALTER COLUMN {TENANT_COLUMN} DROP DEFAULT",
        )
