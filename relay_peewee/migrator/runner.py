"""The migration engine: history, legacy adoption, dry runs.

Built on ``playhouse.migrations.Runner`` (numbered files, a history table,
one transaction per migration). What it adds:

* the backend migrators of ``backends.py``, whose SQLite context turns
  ``foreign_keys`` off before the transaction opens - the Runner's own
  transaction would otherwise make that pragma a silent no-op;
* on SQLite, one transaction for the whole run, with the table rebuilds of
  all its migrations merged (``RelaySqliteMigrator.run_context``);
* ``--online`` on PostgreSQL (``online.py``), and the migration lock
  (``locking.py``), taken before the history is read;
* an application's migration packages after Relay's, in the same history
  (``sources.py``);
* the base set: Relay's schema, or (``relay_schema=False``) the tenancy
  core alone for an application that is not Relay - chosen by the caller,
  checked against what the history records (``check_base_set``);
* adoption of a legacy Relay database that has no history table;
* refusal to run against a history that names migrations this package
  does not have (a newer release migrated this database);
* ``plan_sql``: run the plan inside a transaction, record every statement,
  roll back.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from peewee import Database
from playhouse.migrations import Migration, Runner
from playhouse.migrations import MigrationError as PlayhouseMigrationError

from ..database import catalog, is_postgres, mogrify
from ..errors import MigrationError, UnrecognisedSchema
from .backends import Progress, migrator_for
from .locking import migration_lock
from .online import OnlinePostgresqlMigrator, check_lock_timeout
from .sources import CORE_MIGRATIONS, SEPARATOR, MigrationSource, migration_sources

__all__ = [
    "HISTORY_TABLE",
    "MigrationRunner",
    "MigrationStatus",
    "check_base_set",
    "classify_schema",
    "recorded_base_set",
]

logger = logging.getLogger(__name__)

HISTORY_TABLE = "relay_peewee_migrations"
MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations")
BASELINE = "0001_baseline"

# The pre-tenancy schema, as a legacy database must have it to be adopted.
LEGACY_COLUMNS: dict[str, set[str]] = {
    "users": {"id", "email", "name", "email_verified", "image", "created_at", "updated_at"},
    "skills": {
        "id",
        "name",
        "slug",
        "description",
        "category",
        "tags",
        "published_version_id",
        "draft_version_id",
        "total_uses",
        "average_rating",
        "content",
        "hours_saved",
        "forked_from_id",
        "author_id",
        "created_at",
        "updated_at",
    },
    "skill_versions": {
        "id",
        "skill_id",
        "version",
        "content_url",
        "content_hash",
        "content_type",
        "name",
        "description",
        "metadata",
        "created_by",
        "created_at",
    },
    "ratings": {
        "id",
        "skill_id",
        "user_id",
        "rating",
        "comment",
        "hours_saved_estimate",
        "created_at",
    },
    "usage_events": {"id", "tool_name", "skill_id", "user_id", "metadata", "created_at"},
    "skill_embeddings": {
        "id",
        "skill_id",
        "embedding",
        "model_name",
        "dimensions",
        "input_hash",
        "created_at",
        "updated_at",
    },
    "skill_reviews": {
        "id",
        "skill_id",
        "requested_by",
        "categories",
        "summary",
        "reviewed_content_hash",
        "model_name",
        "is_visible",
        "created_at",
    },
    "api_keys": {
        "id",
        "user_id",
        "key_hash",
        "key_prefix",
        "name",
        "last_used_at",
        "created_at",
        "revoked_at",
        "expires_at",
    },
    "site_settings": {
        "id",
        "semantic_similarity_enabled",
        "ollama_url",
        "ollama_model",
        "embedding_dimensions",
        "last_successful_connection",
        "updated_at",
    },
}
NEW_TABLES = ("tenants", "audit_logs")


@dataclass(frozen=True)
class MigrationStatus:
    name: str
    applied: datetime | None
    known: bool  # False: in the history, but this package has no such file


def classify_schema(db: Database, relay_schema: bool = True) -> str:
    """'managed' (has history), 'empty' or 'legacy'; raises if unrecognisable.

    With ``relay_schema=False`` (the tenancy core alone) there is no legacy
    schema to recognise: the application's own tables, whatever they are,
    are what its migrations adopt, so a database without history is
    'empty' for the core - unless it holds a ``tenants`` or ``audit_logs``
    that relay_peewee did not make.
    """
    tables = set(db.get_tables())
    if HISTORY_TABLE in tables:
        return "managed"
    if not relay_schema:
        clash = sorted(tables & set(NEW_TABLES))
        if clash:
            raise UnrecognisedSchema(
                f"{' and '.join(clash)} already exist{'s' if len(clash) == 1 else ''} but "
                f"there is no {HISTORY_TABLE}: relay_peewee did not make "
                f"{'it' if len(clash) == 1 else 'them'}, and the tenancy core creates "
                f"{'it' if len(clash) == 1 else 'them'}; rename "
                f"{'it' if len(clash) == 1 else 'them'} first; nothing was changed"
            )
        return "empty"
    present = tables & (set(LEGACY_COLUMNS) | set(NEW_TABLES))
    if not present:
        # Tables, but none of Relay's: some other application's database
        # (a wrong URL, most likely). Building Relay's schema beside its
        # tables would be a change nobody asked for.
        foreign = sorted(t for t in tables if not t.startswith("sqlite_"))
        if foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise UnrecognisedSchema(
                f"not a Relay database: it holds {shown} and none of Relay's tables "
                f"(no {HISTORY_TABLE}, no users); nothing was changed (an application "
                "that is not Relay: set relay_schema = false in [tool.relay_peewee])"
            )
        return "empty"
    problems = []
    missing = sorted(set(LEGACY_COLUMNS) - tables)
    if missing:
        problems.append("missing tables " + ", ".join(missing))
    for table in sorted(present & set(NEW_TABLES)):
        problems.append(f"{table} already exists")
    legacy = sorted(present & set(LEGACY_COLUMNS))
    for table, columns in catalog.column_names(db, legacy).items():
        lacking = sorted(LEGACY_COLUMNS[table] - columns)
        if lacking:
            problems.append(f"{table} lacks column(s) {', '.join(lacking)}")
        if "tenant_id" in columns:
            problems.append(f"{table} already has tenant_id")
    if problems:
        raise UnrecognisedSchema(
            "not a Relay database relay_peewee can adopt (no "
            f"{HISTORY_TABLE} table, and: {'; '.join(problems)}); nothing was changed"
        )
    return "legacy"


def recorded_base_set(db: Database) -> bool | None:
    """Which base set the history records: True for Relay's schema, False for
    the tenancy core alone, None while it records neither (no history yet)."""
    if HISTORY_TABLE not in db.get_tables():
        return None
    names = [r[0] for r in db.execute_sql(f'SELECT "name" FROM "{HISTORY_TABLE}"').fetchall()]
    if any(SEPARATOR not in n for n in names):
        return True
    if any(n.startswith(CORE_MIGRATIONS + SEPARATOR) for n in names):
        return False
    return None


def _first_row(db: Database, relay: bool) -> str:
    """The first history row of Relay's set (bare names) or of the core's."""
    rows = db.execute_sql(f'SELECT "name" FROM "{HISTORY_TABLE}" ORDER BY "id"').fetchall()
    core = CORE_MIGRATIONS + SEPARATOR
    return next(r[0] for r in rows if (SEPARATOR not in r[0] if relay else r[0].startswith(core)))


def check_base_set(db: Database, relay_schema: bool) -> None:
    """Refuse a database whose history records the other base set.

    A database never changes sets silently: the core's migrations on a Relay
    database would leave Relay's tables unmanaged, Relay's on a core database
    would build nine tables next to the application's.
    """
    recorded = recorded_base_set(db)
    if recorded is None or recorded == relay_schema:
        return
    if recorded:
        raise MigrationError(
            f"this database holds Relay's schema (its history lists {_first_row(db, True)}), but "
            "relay_schema = false asks for the tenancy core alone; a database does not "
            "change sets: drop relay_schema = false (or --no-relay-schema), or use another "
            "database; nothing was changed"
        )
    raise MigrationError(
        "this database holds the tenancy core without Relay's tables (its history lists "
        f"{_first_row(db, False)}), but relay_schema is true: set relay_schema = "
        "false in [tool.relay_peewee] (or pass --no-relay-schema); nothing was changed"
    )


class MigrationRunner(Runner):
    """playhouse's Runner on relay_peewee's migrations and backend migrators.

    ``migrations``: an application's migration packages, run after the base
    set (see ``sources.py``) and treated exactly like it. ``relay_schema``:
    the base set is Relay's schema (True) or the tenancy core alone (False).
    """

    def __init__(
        self,
        database: Database,
        progress: Progress | None = None,
        *,
        online: bool = False,
        lock_timeout: float = 1.0,
        wait: bool = True,
        migrations: Sequence[str] = (),
        relay_schema: bool = True,
    ) -> None:
        self.relay_schema = relay_schema
        self.sources: list[MigrationSource] = migration_sources(
            migrations, relay_schema=relay_schema
        )
        super().__init__(database, directory=self.sources[0].directory, table_name=HISTORY_TABLE)
        # Checked on every backend, online or not: a value that would fail
        # on PostgreSQL --online must not pass silently elsewhere.
        check_lock_timeout(lock_timeout)
        if online and not is_postgres(database):
            raise MigrationError(
                "--online is for PostgreSQL; on SQLite a whole migrate is one short "
                "transaction (SQLite has one writer at a time anyway)"
            )
        self.online = online
        self.migrator: Any = (
            OnlinePostgresqlMigrator(database, lock_timeout) if online else migrator_for(database)
        )
        self.migrator.progress = progress
        self.progress = progress
        self.wait = wait
        self._capture: list[str] | None = None

    # -- reading ---------------------------------------------------------
    def migrations(self) -> list[Migration]:
        # Every source in order, each in its own numeric order; idx is the
        # position in that one sequence, which playhouse sorts by.
        found = []
        for source in self.sources:
            for m in Migration.load_directory(source.directory):
                found.append(m._replace(name=source.history_name(m.name)))
        return [m._replace(idx=i) for i, m in enumerate(found)]

    def status(self) -> list[Migration]:
        applied = self.applied()
        rows = [m._replace(applied=applied.get(m.name)) for m in self.migrations()]
        known = {m.name for m in rows}
        # History rows with no file come last, in the order they were applied.
        gone = sorted((n for n in applied if n not in known), key=lambda n: applied[n])
        rows += [Migration(len(rows) + i, n, None, applied[n]) for i, n in enumerate(gone)]
        return rows

    def statuses(self) -> list[MigrationStatus]:
        return [MigrationStatus(m.name, m.applied, m.path is not None) for m in self.status()]

    def resolve(self, target: str | None) -> str | None:
        """Accept a full name (0003_tenant_columns) or its number (3, 0003)."""
        if target is None:
            return None
        names = [m.name for m in self.status()]
        if target in names:
            return target
        package, _, number = target.rpartition(":")
        if not package and not self.sources[0].is_relay:
            package = self.sources[0].package  # a bare number names the base set's
        if number.isdigit():
            hits = [
                n
                for n in names
                if n.rpartition(":")[0] == package
                and n.rpartition(":")[2].split("_", 1)[0].lstrip("0") == number.lstrip("0")
            ]
            if len(hits) == 1:
                return hits[0]
        raise MigrationError(f"unknown migration {target!r}; known: {', '.join(names)}")

    def _create_history_table(self) -> None:
        # In a transaction of its own, so the table and its unique index
        # appear together (the Runner's later create_table is then a no-op).
        if self.History.table_exists():
            return
        if self._capture is not None:
            self._capture.append("BEGIN;")
        with self.migrator.migration_context():
            self.History.create_table()
        if self._capture is not None:
            self._capture.append("COMMIT;")

    def check_base_set(self) -> None:
        check_base_set(self.database, self.relay_schema)

    def _refuse_unknown_history(self) -> None:
        unknown = [s.name for s in self.statuses() if not s.known]
        if unknown:
            # An application's rows name their package: the fix is to name it.
            fix = (
                "name the application's migrations package (--migrations)"
                if any(
                    SEPARATOR in name and not name.startswith(CORE_MIGRATIONS + SEPARATOR)
                    for name in unknown
                )
                else "upgrade relay_peewee"
            )
            raise MigrationError(
                "the history lists migration(s) this version of relay_peewee does not have: "
                + ", ".join(unknown)
                + f"; {fix} before migrating"
            )

    # -- writing ---------------------------------------------------------
    def upgrade(self, target: str | None = None, *, fake: bool = False) -> tuple[bool, list[str]]:
        """Apply pending migrations through ``target``; ``fake``: record them
        as applied without running them (Django's ``--fake``, alembic's
        ``stamp``), for changes that were made by hand."""
        with migration_lock(self.database, self.wait, self.progress):
            # Everything is decided after the lock is held: another migrator
            # may have applied (or adopted) while this one waited.
            return self._upgrade(target, fake=fake)

    def _upgrade(self, target: str | None, *, fake: bool = False) -> tuple[bool, list[str]]:
        kind = classify_schema(self.database, self.relay_schema)
        if kind == "managed":
            self.check_base_set()
            self._refuse_unknown_history()
        target = self.resolve(target)
        # SQLite runs everything below as one transaction ending in one
        # foreign_key_check: dangling references an old database collected
        # while foreign keys were off are reported and nothing is kept, not
        # even the history table.
        with self.migrator.run_context():
            self._create_history_table()
            adopted = kind == "legacy"
            if adopted:
                # Adoption: the legacy tables are the baseline; record, don't run.
                self.fake(BASELINE)
            return adopted, self._wrap(self.fake if fake else self.up, target)

    def downgrade(self, target: str | None = None) -> list[str]:
        with migration_lock(self.database, self.wait, self.progress):
            return self._downgrade(target)

    def _downgrade(self, target: str | None) -> list[str]:
        if classify_schema(self.database, self.relay_schema) != "managed":
            raise MigrationError("nothing to roll back: this database has no migration history")
        self.check_base_set()
        target = self.resolve(target)
        if target is not None and not any(s.name == target and s.applied for s in self.statuses()):
            raise MigrationError(f"{target} is not applied; nothing to roll back to it")
        # Ask every migration in the plan first: a rollback of several
        # migrations must not undo some and then stop at a refusal.
        for migration in self._down_plan(target):
            check = getattr(migration.load(), "check_down", None)
            if check is not None:
                check(self.migrator, self.database)
        with self.migrator.run_context():
            return self._wrap(self.down, target)

    def _down_plan(self, target: str | None) -> list[Any]:
        applied = [m for m in self.status() if m.applied]
        plan = []
        for migration in reversed(applied):
            if migration.path is None:
                raise MigrationError(f"cannot roll back {migration.name}: its file is missing")
            plan.append(migration)
            if target is None or migration.name == target:
                break
        return plan

    def plan_sql(self, target: str | None = None) -> list[str]:
        """The statements ``upgrade(target)`` would run; the database is left as it was."""
        captured: list[str] = []
        self._capture = captured
        if self.online:
            self.migrator.record = captured
        db = self.database
        sqlite_fk = not is_postgres(db) and bool(db.pragma("foreign_keys"))
        if sqlite_fk:
            db.pragma("foreign_keys", 0)
        try:
            with _recording(db, captured), db.atomic() as txn:
                adopted, _names = self._upgrade(target)
                if adopted:
                    captured.insert(0, "-- recognised a legacy Relay database")
                txn.rollback()
        finally:
            self._capture = None
            if self.online:
                self.migrator.record = None
            if sqlite_fk:
                db.pragma("foreign_keys", 1)
        if not any(line.startswith("-- up:") for line in captured):
            return []  # history bookkeeping alone is no plan: nothing to do
        return captured

    def _run(self, name: str, module: Any, direction: str, fake: bool = False) -> None:
        if self._capture is not None:
            done = "recorded as applied, not run" if fake else direction
            self._capture.append(f"-- {done}: {name}")
        if getattr(self.migrator, "deferring", False) and not getattr(
            module, "MERGES_REBUILDS", False
        ):
            self.migrator.flush()  # this migration needs the rebuilt tables
        if fake or not (self.online and direction == "up" and getattr(module, "ONLINE", False)):
            # Shown as the one transaction it runs in (peewee's savepoints
            # are left out of the printed plan).
            if self._capture is not None:
                self._capture.append("BEGIN;")
            super()._run(name, module, direction, fake=fake)
            if self._capture is not None:
                self._capture.append("COMMIT;")
            return
        # Online: the migration's steps commit one by one, each resumable
        # from the catalog; the history row is written after the last one.
        logger.info("%s: %s (online)", direction, name)
        module.up(self.migrator, self.database)
        self.History.create(name=name)

    def _wrap(self, fn: Any, target: str | None) -> list[str]:
        try:
            return list(fn(target))
        except PlayhouseMigrationError as exc:
            raise MigrationError(str(exc)) from None


_SKIP = (
    "SELECT",
    "PRAGMA TABLE",
    "PRAGMA INDEX",
    "PRAGMA FOREIGN_KEY_CHECK",
    "SAVEPOINT",
    "RELEASE",
    "ROLLBACK",
    "BEGIN",
    "COMMIT",
    "WITH ",
)


class _Recorder(logging.Handler):
    def __init__(self, db: Database, out: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.db, self.out = db, out

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.msg
        if not (isinstance(msg, tuple) and len(msg) == 2):
            return
        sql, params = msg
        head = " ".join(str(sql).split()).upper()
        if head.startswith(_SKIP) or (head.startswith("PRAGMA") and "=" not in head):
            return
        statement = _render(self.db, str(sql), params) + ";"
        if "IF NOT EXISTS" in head and statement in self.out:
            return  # a repeated no-op, e.g. the Runner re-checking its history table
        self.out.append(statement)


@contextmanager
def _recording(db: Database, out: list[str]) -> Iterator[None]:
    logger = logging.getLogger("peewee")
    handler = _Recorder(db, out)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def _render(db: Database, sql: str, params: Any) -> str:
    if not params:
        # psycopg2 formats even parameterless statements: %% stands for %.
        return sql.replace("%%", "%") if is_postgres(db) else sql
    if is_postgres(db):
        return mogrify(db, sql, params)
    parts = sql.split("?")
    out = parts[0]
    for value, part in zip(params, parts[1:], strict=False):
        out += _literal(value) + part
    return out


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"
