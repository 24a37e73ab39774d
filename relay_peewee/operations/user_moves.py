"""Moving a user to another tenant, as Relay's sign-in callback does.

Relay files a first-time user under the default tenant and, once it knows
the tenant their sign-in resolves to, moves them (``UPDATE users SET
tenant_id = ...``). Every row that references a user does so through
``(tenant_id, user_id) -> users (tenant_id, id)``, so a user cannot change
tenant alone. ``move_user`` says exactly what happens to those rows:

* moved along, in the same statement: the user's **api keys** and their
  **usage events that name no skill** (they reference nothing else of the
  old tenant);
* refused, with one line naming the counts: **ratings**, **authored
  skills**, **skill versions** they created, **reviews** they requested and
  **usage events naming a skill** - each belongs to a skill of the old
  tenant, and moving it would make that tenant's data point into another.

It is one transaction, writes a ``user.move`` audit row in both tenants
(or nothing at all), and runs as the admin path: on PostgreSQL under forced
row-level security it switches to the admin role for its transaction, as
``unscoped()`` does, or runs as a superuser / BYPASSRLS role.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from peewee import Database, DatabaseProxy, IntegrityError

from ..database import is_postgres, unwrap
from ..errors import MigrationError, RelayError
from ..events import write_event
from ..migrator import recorded_base_set
from ..tenancy.rls import bypass_scope
from .citus_moves import find_user_for_move, move_rows

__all__ = ["MOVE_ACTION", "UserMove", "move_user"]

MOVE_ACTION = "user.move"

# (table, column, what a row is, extra condition): rows that keep a user in
# their tenant. The condition is SQL on the table's own columns.
_BLOCKERS: tuple[tuple[str, str, str, str], ...] = (
    ("ratings", "user_id", "rating(s)", ""),
    ("skills", "author_id", "authored skill(s)", ""),
    ("skill_versions", "created_by", "skill version(s) they created", ""),
    ("skill_reviews", "requested_by", "review(s) they requested", ""),
    ("usage_events", "user_id", "usage event(s) naming a skill", " AND skill_id IS NOT NULL"),
)
# Rows moved along with the user.
_MOVED: tuple[tuple[str, str], ...] = (
    ("api_keys", ""),
    ("usage_events", " AND skill_id IS NULL"),
)


@dataclass(frozen=True)
class UserMove:
    user_id: str
    email: str
    from_tenant: str
    to_tenant: str
    moved: dict[str, int] = field(default_factory=dict)  # table -> rows moved along


def move_user(
    db: Database | DatabaseProxy, email: str, to_slug: str, *, actor_id: str | None = None
) -> UserMove:
    """Move the user with ``email`` into the tenant ``to_slug``; see the module docstring."""
    database = unwrap(db)
    for what, value in (("email", email), ("tenant slug", to_slug)):
        if "\x00" in value:
            # Refused on entry, the same on both backends: PostgreSQL's
            # drivers would raise a plain ValueError when sending it.
            raise RelayError(f"invalid {what} {value!r}: it contains NUL")
    if "tenants" not in database.get_tables():
        raise MigrationError("this database has no tenants table yet: run `relay-peewee migrate`")
    if recorded_base_set(database) is False:
        # Whatever `users` table the application may have is not Relay's:
        # the rows that move along (api_keys, usage_events) do not exist.
        raise RelayError(
            "users move needs Relay's users table, and this database holds the tenancy "
            "core alone (relay_schema = false): move a user of your own tables with your "
            "own migration or code"
        )
    p = "%s" if is_postgres(database) else "?"
    try:
        with database.atomic(), bypass_scope(database):
            return _move(database, p, email, to_slug, actor_id)
    except IntegrityError as exc:  # a row referencing the user appeared meanwhile
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "integrity error"
        raise RelayError(f"cannot move {email}: {first}; nothing was changed") from None


def _move(db: Database, p: str, email: str, to_slug: str, actor_id: str | None) -> UserMove:
    citus = p == "%s" and "relay_user_emails" in db.get_tables()  # distributed (distribute)
    lock = " FOR UPDATE" if p == "%s" else ""
    if citus:
        found: Any = find_user_for_move(db, email)
    else:
        user = db.execute_sql(f"SELECT id, tenant_id FROM users WHERE email = {p}{lock}", (email,))
        found = user.fetchone()
    if found is None:
        raise RelayError(f"no user with email {email!r}")
    user_id, from_tenant = str(found[0]), str(found[1])
    target = db.execute_sql(
        f"SELECT id, is_active FROM tenants WHERE slug = {p}", (to_slug,)
    ).fetchone()
    if target is None:
        raise RelayError(f"no tenant with slug {to_slug!r}")
    to_tenant = str(target[0])
    if not target[1]:
        raise RelayError(f"tenant {to_slug!r} is inactive: activate it before moving users in")
    if to_tenant == from_tenant:
        raise RelayError(f"{email} is already in tenant {to_slug!r}")

    blocking = []
    for table, column, what, extra in _BLOCKERS:
        count = db.execute_sql(
            f"SELECT count(*) FROM {table} WHERE tenant_id = {p} AND {column} = {p}{extra}",
            (from_tenant, user_id),
        ).fetchone()[0]
        if count:
            blocking.append(f"{count} {what}")
    if blocking:
        from_slug = db.execute_sql(
            f"SELECT slug FROM tenants WHERE id = {p}", (from_tenant,)
        ).fetchone()
        raise RelayError(
            f"cannot move {email} to {to_slug!r}: {', '.join(blocking)} in tenant "
            f"{from_slug[0] if from_slug else from_tenant!r} belong to that tenant's skills; "
            "delete or reassign them first"
        )

    if citus:
        moved = move_rows(db, user_id, from_tenant, to_tenant, _MOVED)
    else:
        moved = _update(db, p, user_id, from_tenant, to_tenant)
    metadata: dict[str, Any] = {
        "email": email,
        "from_tenant": from_tenant,
        "to_tenant": to_tenant,
        "moved": moved,
    }
    for tenant in (from_tenant, to_tenant):
        write_event(
            db,
            {
                "action": MOVE_ACTION,
                "tenant_id": tenant,
                "resource_type": "user",
                "resource_id": user_id,
                "actor_id": actor_id,
                "metadata": metadata,
            },
            strict=True,
        )
    return UserMove(user_id, email, from_tenant, to_tenant, moved)


def _update(db: Database, p: str, user_id: str, old: str, new: str) -> dict[str, int]:
    """Re-tenant the user and the rows that move along, foreign keys checked at the end."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    if p == "%s":
        # One statement: PostgreSQL checks the composite foreign keys when it
        # ends, by which time the user and its rows agree again.
        ctes = [
            "moved_user AS (UPDATE users SET tenant_id = %s, updated_at = %s"
            " WHERE id = %s AND tenant_id = %s RETURNING id)"
        ]
        params: list[Any] = [new, now, user_id, old]
        for table, extra in _MOVED:
            ctes.append(
                f"moved_{table} AS (UPDATE {table} SET tenant_id = %s"
                f" WHERE user_id = %s AND tenant_id = %s{extra} RETURNING 1)"
            )
            params += [new, user_id, old]
        counts = ", ".join(f"(SELECT count(*) FROM moved_{t})" for t, _e in _MOVED)
        row = db.execute_sql(
            f"WITH {', '.join(ctes)} SELECT (SELECT count(*) FROM moved_user), {counts}", params
        ).fetchone()
        if row[0] != 1:
            raise RelayError("the user changed while being moved; nothing was changed")
        return {t: int(n) for (t, _e), n in zip(_MOVED, row[1:], strict=True)}
    # SQLite checks each statement unless told to wait for COMMIT (reset then).
    db.execute_sql("PRAGMA defer_foreign_keys = ON")
    db.execute_sql(
        "UPDATE users SET tenant_id = ?, updated_at = ? WHERE id = ? AND tenant_id = ?",
        (new, now, user_id, old),
    )
    moved = {}
    for table, extra in _MOVED:
        cursor = db.execute_sql(
            f"UPDATE {table} SET tenant_id = ? WHERE user_id = ? AND tenant_id = ?{extra}",
            (new, user_id, old),
        )
        moved[table] = cursor.rowcount
    return moved
