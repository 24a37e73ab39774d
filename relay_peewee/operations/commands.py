"""The operations behind every CLI command, as plain typed functions.

An application, a deploy script or a test calls these directly; the click
commands in ``cli.py`` only parse options, call one of them and print.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from peewee import Database, IntegrityError, SqliteDatabase

from ..database import sqlite_memory_copy
from ..errors import MigrationError, RelayError, UnrecognisedSchema
from ..migrator import (
    MigrationRunner,
    MigrationStatus,
    check_base_set,
    classify_schema,
    recorded_base_set,
)
from ..migrator.backends import Progress
from ..migrator.sources import CORE_MIGRATIONS, SEPARATOR
from ..models import Tenant
from ..tenancy.references import forget_database_checks
from .user_moves import UserMove, move_user

__all__ = [
    "MigrateResult",
    "UserMove",
    "applied_migrations",
    "create_tenant",
    "is_legacy",
    "list_tenants",
    "migrate",
    "migration_sql",
    "move_user",
    "rollback",
    "status",
]


@dataclass(frozen=True)
class MigrateResult:
    adopted_legacy: bool  # True: a legacy database's baseline was recorded, not run
    applied: list[str]


def migrate(
    db: Database,
    to: str | None = None,
    progress: Progress | None = None,
    *,
    online: bool = False,
    lock_timeout: float = 1.0,
    wait: bool = True,
    migrations: Sequence[str] = (),
    fake: bool = False,
    relay_schema: bool = True,
) -> MigrateResult:
    """Apply pending migrations (through ``to``, if given).

    ``fake``: record them in the history without running them (the schema
    change was made some other way); ``to`` is then required, so that a
    fake never reaches further than the caller named.

    ``online`` (PostgreSQL): short lock-bounded steps, concurrent index builds,
    foreign keys validated separately; resumable after a crash. ``wait``:
    wait for another migrator holding the migration lock, else refuse.
    ``migrations``: the application's migration packages, run after Relay's.
    ``relay_schema=False``: the tenancy core alone instead of Relay's schema
    (``[tool.relay_peewee] relay_schema = false``); a database whose history
    records the other set is refused.
    """
    if fake and to is None:
        raise MigrationError("--fake needs --to NAME: the last migration to record as applied")
    if fake and online:
        raise MigrationError("--fake runs nothing, so --online has nothing to do")
    runner = MigrationRunner(
        db,
        progress,
        online=online,
        lock_timeout=lock_timeout,
        wait=wait,
        migrations=migrations,
        relay_schema=relay_schema,
    )
    try:
        adopted, applied = runner.upgrade(to, fake=fake)
    finally:
        forget_database_checks(db)  # the keys writes rely on may have changed
    return MigrateResult(adopted, applied)


def migration_sql(
    db: Database,
    to: str | None = None,
    *,
    online: bool = False,
    lock_timeout: float = 1.0,
    migrations: Sequence[str] = (),
    relay_schema: bool = True,
) -> list[str]:
    """The SQL ``migrate`` would run; the database is left as it was.

    The transactional plan is found by running it and rolling back; the
    online plan's steps are recorded from the catalog without running them.
    On SQLite it runs on an in-memory copy, so a read-only file can be
    planned for (a rolled-back write still needs write access there).
    """
    # (Not a playhouse.pwasyncio database: its connection lives in its loop.)
    scratch = db
    if isinstance(db, SqliteDatabase) and not hasattr(db, "aexecute_sql"):
        scratch = sqlite_memory_copy(db)
    try:
        runner = MigrationRunner(
            scratch,
            online=online,
            lock_timeout=lock_timeout,
            migrations=migrations,
            relay_schema=relay_schema,
        )
        return runner.plan_sql(to)
    finally:
        if scratch is not db:
            scratch.close()


def status(
    db: Database, migrations: Sequence[str] = (), *, relay_schema: bool = True
) -> list[MigrationStatus]:
    """Every migration, applied or pending, plus history rows with no file."""
    runner = MigrationRunner(db, migrations=migrations, relay_schema=relay_schema)
    # Refuse, like migrate would, a database that cannot be adopted; a
    # legacy one shows its baseline pending until `migrate` records it.
    classify_schema(db, relay_schema)
    check_base_set(db, relay_schema)
    return runner.statuses()


def rollback(
    db: Database,
    to: str | None = None,
    progress: Progress | None = None,
    *,
    wait: bool = True,
    migrations: Sequence[str] = (),
    relay_schema: bool = True,
) -> list[str]:
    """Undo the last migration, or every migration back through ``to``."""
    runner = MigrationRunner(
        db, progress, wait=wait, migrations=migrations, relay_schema=relay_schema
    )
    try:
        return runner.downgrade(to)
    finally:
        forget_database_checks(db)


_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
MAX_NAME = 200
# A host name (RFC 1123): dot-separated labels of letters, digits and inner
# dashes, 253 characters at most; stored lower-case, as DNS compares them.
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
MAX_DOMAIN = 253


def _shown(value: str, limit: int = 80) -> str:
    """``value`` for an error message: quoted, and cut short if long."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value)} chars)"


def _valid_domain(domain: str | None) -> str | None:
    domain = (domain or "").strip().lower().rstrip(".") or None
    if domain is None:
        return None
    labels = domain.split(".")
    if len(domain) > MAX_DOMAIN or len(labels) < 2 or not all(map(_LABEL.match, labels)):
        raise RelayError(f"invalid domain {_shown(domain)}: a host name such as skills.example.com")
    return domain


def create_tenant(db: Database, slug: str, name: str, domain: str | None = None) -> Tenant:
    """Create a tenant; the slug is lower-case letters, digits and dashes.

    The name is one line of at most ``MAX_NAME`` characters; a domain is a
    host name no other tenant has. Nothing is written unless the database
    is fully migrated (the creation is an audited event).
    """
    if not _SLUG.match(slug):
        raise RelayError(
            f"invalid slug {_shown(slug)}: use 1-64 lower-case letters, digits and dashes, "
            "starting and ending with a letter or digit"
        )
    name = name.strip()
    if not name:
        raise RelayError("a tenant needs a non-empty name")
    if len(name) > MAX_NAME or not name.isprintable():
        raise RelayError(
            f"invalid name {_shown(name)}: one line of at most {MAX_NAME} printable characters"
        )
    domain = _valid_domain(domain)
    _require_migrated(db)
    with db.bind_ctx([Tenant]):
        if Tenant.select().where(Tenant.slug == slug).exists():
            raise RelayError(f"a tenant with slug {slug!r} already exists")
        try:
            with db.atomic():
                # Checked inside the transaction: a domain identifies one tenant.
                if domain is not None and Tenant.select().where(Tenant.domain == domain).exists():
                    raise RelayError(f"another tenant already has the domain {domain!r}")
                return Tenant.create(slug=slug, name=name, domain=domain)
        except IntegrityError:  # lost a race with another writer
            raise RelayError(f"a tenant with slug {slug!r} already exists") from None


def list_tenants(db: Database) -> list[Tenant]:
    _require_schema(db)
    with db.bind_ctx([Tenant]):
        return list(Tenant.select().order_by(Tenant.created_at, Tenant.slug))


def _require_migrated(db: Database) -> None:
    _require_schema(db)
    # Whichever base set the history records: tenants are the same table in
    # both, and these commands build nothing that could switch sets.
    relay_schema = recorded_base_set(db) is not False
    statuses = MigrationRunner(db, relay_schema=relay_schema).statuses()
    # A Relay migration this version lacks means a newer release changed the
    # schema, as migrate, status and audit refuse to; an application's rows
    # (package:name) are its own tables' business, not the tenants table's.
    newer = [
        s.name
        for s in statuses
        if not s.known
        and (SEPARATOR not in s.name or s.name.startswith(CORE_MIGRATIONS + SEPARATOR))
    ]
    if newer:
        raise MigrationError(
            "the history lists migration(s) this version of relay_peewee does not have: "
            f"{', '.join(newer)}; upgrade relay_peewee before changing tenants"
        )
    pending = [s.name for s in statuses if s.applied is None]
    if pending:
        raise MigrationError(
            f"this database is not fully migrated ({len(pending)} pending, from {pending[0]}): "
            "run `relay-peewee migrate` first"
        )


def is_legacy(db: Database, relay_schema: bool = True) -> bool:
    """True for a pre-tenancy Relay database, whose baseline ``migrate`` records
    rather than runs; False for any other, an unrecognisable one included."""
    try:
        return classify_schema(db, relay_schema) == "legacy"
    except UnrecognisedSchema:
        return False


def applied_migrations(
    db: Database, migrations: Sequence[str] = (), *, relay_schema: bool = True
) -> list[str]:
    """Names of the migrations applied to ``db`` (none on an empty database)."""
    try:
        if classify_schema(db, relay_schema) != "managed":
            return []
    except UnrecognisedSchema:
        # Read without the migration lock (migrate's Ctrl-C report), its
        # statements may straddle another migrator's commit: tables without
        # history, then columns with tenant_id. migrate itself decides,
        # under the lock, whether the schema is really unrecognised.
        return []
    if recorded_base_set(db) not in (None, relay_schema):
        return []  # the other set: migrate refuses it, under the lock
    runner = MigrationRunner(db, migrations=migrations, relay_schema=relay_schema)
    return [s.name for s in runner.statuses() if s.applied is not None]


def _require_schema(db: Database) -> None:
    if "tenants" not in db.get_tables():
        raise MigrationError("this database has no tenants table yet: run `relay-peewee migrate`")
