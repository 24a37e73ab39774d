"""The operations behind every CLI command, as plain typed functions.

An application, a deploy script or a test calls these directly; the click
commands in ``cli.py`` only parse options, call one of them and print.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from peewee import Database, IntegrityError

from .errors import MigrationError, RelayError
from .migrator import MigrationRunner, MigrationStatus, classify_schema
from .migrator.backends import Progress
from .models import Tenant
from .tenancy.references import forget_database_checks
from .user_moves import UserMove, move_user

__all__ = [
    "MigrateResult",
    "UserMove",
    "create_tenant",
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
) -> MigrateResult:
    """Apply pending migrations (through ``to``, if given).

    ``online`` (PostgreSQL): short lock-bounded steps, concurrent index builds,
    foreign keys validated separately; resumable after a crash. ``wait``:
    wait for another migrator holding the migration lock, else refuse.
    """
    runner = MigrationRunner(db, progress, online=online, lock_timeout=lock_timeout, wait=wait)
    try:
        adopted, applied = runner.upgrade(to)
    finally:
        forget_database_checks(db)  # the keys writes rely on may have changed
    return MigrateResult(adopted, applied)


def migration_sql(
    db: Database, to: str | None = None, *, online: bool = False, lock_timeout: float = 1.0
) -> list[str]:
    """The SQL ``migrate`` would run; the database is left as it was.

    The transactional plan is found by running it and rolling back; the
    online plan's steps are recorded from the catalog without running them.
    """
    return MigrationRunner(db, online=online, lock_timeout=lock_timeout).plan_sql(to)


def status(db: Database) -> list[MigrationStatus]:
    """Every migration, applied or pending, plus history rows with no file."""
    runner = MigrationRunner(db)
    # Refuse, like migrate would, a database that cannot be adopted; a
    # legacy one shows its baseline pending until `migrate` records it.
    classify_schema(db)
    return runner.statuses()


def rollback(
    db: Database, to: str | None = None, progress: Progress | None = None, *, wait: bool = True
) -> list[str]:
    """Undo the last migration, or every migration back through ``to``."""
    try:
        return MigrationRunner(db, progress, wait=wait).downgrade(to)
    finally:
        forget_database_checks(db)


_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


def create_tenant(db: Database, slug: str, name: str, domain: str | None = None) -> Tenant:
    """Create a tenant; the slug is lower-case letters, digits and dashes."""
    _require_schema(db)
    if not _SLUG.match(slug):
        raise RelayError(
            f"invalid slug {slug!r}: use 1-64 lower-case letters, digits and dashes, "
            "starting and ending with a letter or digit"
        )
    if not name.strip():
        raise RelayError("a tenant needs a non-empty name")
    domain = (domain or "").strip() or None
    with db.bind_ctx([Tenant]):
        if Tenant.select().where(Tenant.slug == slug).exists():
            raise RelayError(f"a tenant with slug {slug!r} already exists")
        try:
            with db.atomic():
                return Tenant.create(slug=slug, name=name.strip(), domain=domain)
        except IntegrityError:  # lost a race with another writer
            raise RelayError(f"a tenant with slug {slug!r} already exists") from None


def list_tenants(db: Database) -> list[Tenant]:
    _require_schema(db)
    with db.bind_ctx([Tenant]):
        return list(Tenant.select().order_by(Tenant.created_at, Tenant.slug))


def _require_schema(db: Database) -> None:
    if "tenants" not in db.get_tables():
        raise MigrationError("this database has no tenants table yet: run `relay-peewee migrate`")
