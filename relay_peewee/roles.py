"""PostgreSQL roles for an application that runs under row-level security.

The application must connect as a role that is neither the tables' owner
nor a superuser nor BYPASSRLS - any of those is not bound by the policies.
``relay_admin`` is the one role that bypasses them; ``unscoped()`` switches
to it (``SET LOCAL ROLE``) for the length of its transaction, and only an
application role that was granted it can do that. Leave the grant out
(``allow_unscoped=False``) and ``unscoped()`` is impossible from the
application: maintenance then connects as relay_admin itself.
"""

from __future__ import annotations

import re

from peewee import Database

from .errors import RelayError
from .lookups import LOOKUP_FUNCTIONS
from .migrator import HISTORY_TABLE
from .models import MODELS, AuditLog

__all__ = ["ADMIN_ROLE", "APP_ROLE", "create_roles", "role_statements"]

APP_ROLE = "relay_app"
ADMIN_ROLE = "relay_admin"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _create_if_missing(role: str, options: str) -> str:
    return (
        f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') "
        f"THEN CREATE ROLE {role} {options}; END IF; END $$"
    )


def role_statements(
    app_role: str = APP_ROLE, admin_role: str = ADMIN_ROLE, *, allow_unscoped: bool = True
) -> list[str]:
    """The SQL that creates both roles and grants them what the ORM needs."""
    for role in (app_role, admin_role):
        if not _NAME.match(role):
            raise RelayError(f"invalid role name {role!r}: use lower-case letters, digits, _")
    if app_role == admin_role:
        raise RelayError("the application role and the admin role must differ")
    both = f"{app_role}, {admin_role}"
    data = ", ".join(m._meta.table_name for m in MODELS if m is not AuditLog)
    statements = [
        _create_if_missing(admin_role, "NOLOGIN BYPASSRLS"),
        _create_if_missing(app_role, "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"),
        f"GRANT USAGE ON SCHEMA public TO {both}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {data} TO {both}",
        # The append-only trigger refuses UPDATE/DELETE anyway; the grant
        # says the same thing one layer earlier.
        f"GRANT SELECT, INSERT ON {AuditLog._meta.table_name} TO {both}",
        f"GRANT SELECT ON {HISTORY_TABLE} TO {both}",
        # The lookups that run before the tenant is known (migration 0010);
        # skipped on a database not yet migrated that far.
        *(
            f"DO $$ BEGIN IF to_regprocedure('{fn}') IS NOT NULL "
            f"THEN GRANT EXECUTE ON FUNCTION {fn} TO {app_role}; END IF; END $$"
            for fn in LOOKUP_FUNCTIONS
        ),
    ]
    if allow_unscoped:
        statements.append(f"GRANT {admin_role} TO {app_role}")
    return statements


def create_roles(
    db: Database,
    app_role: str = APP_ROLE,
    admin_role: str = ADMIN_ROLE,
    *,
    allow_unscoped: bool = True,
) -> list[str]:
    """Run ``role_statements`` in one transaction; needs a superuser (BYPASSRLS)."""
    statements = role_statements(app_role, admin_role, allow_unscoped=allow_unscoped)
    if HISTORY_TABLE not in db.get_tables():
        raise RelayError("this database has no relay_peewee schema yet: run `relay-peewee migrate`")
    with db.atomic():
        for statement in statements:
            db.execute_sql(statement)
    return statements
