"""Deactivating and activating a tenant: ``tenants.is_active``, audited.

A deactivated tenant is refused wherever a tenant is resolved: its host and
its trusted-header id find nothing (404), its API keys stop resolving (401,
migration 0012), and ``tenant_context`` refuses it with ``TenantInactive``
(which ``tenant_bound`` and the middleware inherit). Requests already inside
its context finish. A process other than the one that deactivated it
notices within ``tenancy.activity.SECONDS`` (and ``by_host``'s
``cache_seconds``): 2 s by default.

Each change is one transaction: the row and its ``tenant.deactivate`` /
``tenant.activate`` audit row commit together or not at all. Asking for the
state the tenant is already in changes nothing and writes no event (so a
rerun of a crashed move is harmless). The default tenant cannot be
deactivated: Relay files every first-time user under it. An erased tenant
(``tenant_erase``) cannot be activated: it is a tombstone.

It runs as the admin path, as ``users move`` does: on PostgreSQL under
forced row-level security through ``bypass_scope`` (the application role
holds only SELECT on ``tenants``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from peewee import Database, DatabaseProxy

from ..database import is_postgres, unwrap
from ..errors import MigrationError, RelayError
from ..events import write_event
from ..models.audit_log import AuditLog
from ..models.tenant import DEFAULT_TENANT_ID, tenants_changed
from ..tenancy.rls import bypass_scope

__all__ = [
    "ACTIVATE_ACTION",
    "DEACTIVATE_ACTION",
    "ERASED_SLUG_PREFIX",
    "TenantRow",
    "TenantState",
    "activate_tenant",
    "deactivate_tenant",
    "find_tenant",
    "placeholder",
    "record",
]

DEACTIVATE_ACTION = "tenant.deactivate"
ACTIVATE_ACTION = "tenant.activate"
# An erased tenant's slug becomes this plus its id: the slug is free again,
# and a ':' is a character no slug `tenants create` accepts can hold.
ERASED_SLUG_PREFIX = "erased:"


@dataclass(frozen=True)
class TenantRow:
    id: str
    slug: str
    is_active: bool

    @property
    def erased(self) -> bool:
        return self.slug.startswith(ERASED_SLUG_PREFIX)


@dataclass(frozen=True)
class TenantState:
    tenant_id: str
    slug: str
    active: bool
    changed: bool  # False: it already was in that state, nothing was written


def record(db: Database, row: dict[str, Any]) -> None:
    """``write_event`` on ``db``, strict: the row commits with the change or neither does.

    AuditLog is bound for the write when its proxy names another database
    (a move's target): an insert built for one backend's dialect (RETURNING,
    last row id) would fail on the other's connection.
    """
    bound: Any = AuditLog._meta.database
    if getattr(bound, "obj", bound) is db:
        write_event(db, row, strict=True)
        return
    with db.bind_ctx([AuditLog]):
        write_event(db, row, strict=True)


def placeholder(db: Database) -> str:
    return "%s" if is_postgres(db) else "?"


def find_tenant(db: Database, slug: str, *, lock: bool = False) -> TenantRow:
    """The tenant with ``slug`` (``RelayError`` when there is none)."""
    if "\x00" in slug:
        raise RelayError(f"invalid tenant slug {slug!r}: it contains NUL")
    if "tenants" not in db.get_tables():
        raise MigrationError("this database has no tenants table yet: run `relay-peewee migrate`")
    p = placeholder(db)
    for_update = " FOR UPDATE" if lock and p == "%s" else ""
    # fetchall: a SQLite statement left unfinished would make a later COMMIT fail.
    rows = db.execute_sql(
        f"SELECT id, slug, is_active FROM tenants WHERE slug = {p}{for_update}", (slug,)
    ).fetchall()
    if not rows:
        raise RelayError(f"no tenant with slug {slug!r}")
    row = rows[0]
    return TenantRow(str(row[0]), str(row[1]), bool(row[2]))


def deactivate_tenant(
    db: Database | DatabaseProxy, slug: str, *, actor_id: str | None = None
) -> TenantState:
    """Mark the tenant inactive: no new request or context gets into it."""
    return _set_active(unwrap(db), slug, False, actor_id)


def activate_tenant(
    db: Database | DatabaseProxy, slug: str, *, actor_id: str | None = None
) -> TenantState:
    """Mark the tenant active again."""
    return _set_active(unwrap(db), slug, True, actor_id)


def _set_active(db: Database, slug: str, active: bool, actor_id: str | None) -> TenantState:
    try:
        with db.atomic(), bypass_scope(db):
            tenant = find_tenant(db, slug, lock=True)
            if tenant.erased:
                raise RelayError(f"tenant {tenant.id} was erased; it cannot be activated")
            if not active and tenant.id == DEFAULT_TENANT_ID:
                raise RelayError(
                    "the default tenant cannot be deactivated: Relay files first-time users "
                    "under it"
                )
            if tenant.is_active == active:
                return TenantState(tenant.id, tenant.slug, active, False)
            p = placeholder(db)
            now = datetime.now(timezone.utc).replace(tzinfo=None)
            db.execute_sql(
                f"UPDATE tenants SET is_active = {p}, updated_at = {p} WHERE id = {p}",
                (active, now, tenant.id),
            )
            record(
                db,
                {
                    "action": ACTIVATE_ACTION if active else DEACTIVATE_ACTION,
                    "tenant_id": tenant.id,
                    "resource_type": "tenant",
                    "resource_id": tenant.id,
                    "actor_id": actor_id,
                    "metadata": {"slug": tenant.slug},
                },
            )
    finally:
        # Also on failure: a write may have reached tenants before the error.
        tenants_changed()
    return TenantState(tenant.id, tenant.slug, active, True)
