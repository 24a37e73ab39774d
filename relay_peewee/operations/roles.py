"""PostgreSQL roles for an application that runs under row-level security.

The application must connect as a role that is neither the tables' owner
nor a superuser nor BYPASSRLS - any of those is not bound by the policies.
``relay_admin`` (``LOGIN BYPASSRLS``) is the one role that bypasses them.

The recommended setup gives the application role no way out of its tenant
by any SQL it sends: it is not a member of ``relay_admin``, and
``unscoped()`` opens its own connection as relay_admin
(``relay_peewee.connect(url, admin_url=...)``). ``allow_set_role=True`` is
the opt-in alternative of earlier releases: the application role is
granted relay_admin and ``unscoped()`` switches to it with ``SET LOCAL
ROLE`` - which any SQL the application sends could do too.

The application role may read ``tenants`` but not write it: creating,
renaming, deactivating or deleting a tenant is an admin operation (the CLI,
or ``unscoped``). It may only append to ``audit_logs``.

No role but the database's owner may create temporary tables: ``pg_temp``
is searched before ``public``, and the ORM names its tables unqualified, so
a temporary ``users`` made by one tenant's raw SQL would receive the next
tenant's rows on that connection (asyncpg's pool reset keeps temporary
tables). PostgreSQL grants TEMPORARY on every database to PUBLIC by default;
the roles take it back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from peewee import Database, Model

from ..database.citus import is_citus
from ..database.quoting import quote, quote_list
from ..errors import RelayError
from ..migrator import HISTORY_TABLE, check_base_set, recorded_base_set
from ..models import MODELS, AuditLog, Tenant
from ..models._registry import REGISTRIES
from .lookups import LOOKUP_FUNCTIONS

CITUS_REGISTRIES = tuple(registry for _, registry in REGISTRIES.values())

__all__ = ["ADMIN_ROLE", "APP_ROLE", "create_roles", "role_statements"]

APP_ROLE = "relay_app"
ADMIN_ROLE = "relay_admin"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _create_if_missing(role: str, options: str) -> str:
    return (
        f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') "
        f"THEN CREATE ROLE {quote(role)} {options}; END IF; END $$"
    )


def _grant_sequences(tables: list[str], grantees: str) -> str:
    """USAGE on the sequences owned by ``tables``' columns (serial: 'a', identity: 'i')."""
    # to_regclass: NULL for a table not created yet, where a cast would fail.
    names = ", ".join("to_regclass('" + quote(t).replace("'", "''") + "')" for t in tables)
    return (
        "DO $$ DECLARE seq regclass; BEGIN FOR seq IN SELECT DISTINCT d.objid::regclass "
        "FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
        "WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass "
        f"AND d.deptype IN ('a', 'i') AND d.refobjid = ANY (ARRAY[{names}]) "
        # No format('%s'): a driver would read it as a parameter.
        f"LOOP EXECUTE 'GRANT USAGE ON SEQUENCE ' || seq::text || ' TO {grantees}'; "
        "END LOOP; END $$"
    )


def role_statements(
    app_role: str = APP_ROLE,
    admin_role: str = ADMIN_ROLE,
    *,
    allow_set_role: bool = False,
    models: Iterable[type[Model]] = (),
    tables: Iterable[str] = (),
    relay_schema: bool = True,
) -> list[str]:
    """The SQL that creates both roles and grants them what the ORM needs.

    ``models``: the application's own, whose tables get the same grants;
    ``tables``: more of its tables, by name (the pytest plugin's, built by a
    hook that names no models). ``relay_schema=False``: the database holds
    the tenancy core alone, so Relay's nine tables get no grants.

    Re-running it on roles made by an earlier release also takes back what
    that release granted and this one does not (writes on ``tenants``, the
    membership in the admin role unless ``allow_set_role``).
    """
    for role in (app_role, admin_role):
        if not _NAME.match(role):
            raise RelayError(f"invalid role name {role!r}: use lower-case letters, digits, _")
    if app_role == admin_role:
        raise RelayError("the application role and the admin role must differ")
    # Role names are checked above, and quoted all the same: `user` passes
    # the check and is a reserved word.
    admin, app = quote(admin_role), quote(app_role)
    both = f"{app}, {admin}"
    tenants_table = Tenant._meta.table_name
    tenants = quote(tenants_table)
    extra = [*(m._meta.table_name for m in models), *tables]
    granted = [m._meta.table_name for m in MODELS if relay_schema and m not in (AuditLog, Tenant)]
    # tenants and audit_logs keep their narrower grants below, whatever a
    # caller names (the core's plugin roles list every table but the history).
    granted += [
        t
        for t in dict.fromkeys(extra)
        if t not in granted and t not in (tenants_table, AuditLog._meta.table_name)
    ]
    data = quote_list(granted)
    app_options = "NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
    statements = [
        _create_if_missing(admin_role, "LOGIN BYPASSRLS"),
        _create_if_missing(app_role, f"LOGIN {app_options}"),
        # A role that existed already keeps its options otherwise.
        f"ALTER ROLE {admin} LOGIN BYPASSRLS",
        f"ALTER ROLE {app} {app_options}",
        f"GRANT USAGE ON SCHEMA public TO {both}",
        *([f"GRANT SELECT, INSERT, UPDATE, DELETE ON {data} TO {both}"] if granted else []),
        f"GRANT SELECT ON {tenants} TO {app}",
        f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {tenants} FROM {app}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {tenants} TO {admin}",
        # The append-only trigger refuses UPDATE/DELETE anyway; the grant
        # says the same thing one layer earlier.
        f"GRANT SELECT, INSERT ON {quote(AuditLog._meta.table_name)} TO {both}",
        f"GRANT SELECT ON {quote(HISTORY_TABLE)} TO {both}",
        # The database's name is only known on the server; REVOKE takes no
        # expression, hence the DO block (and no % a driver would read).
        "DO $$ BEGIN EXECUTE 'REVOKE TEMPORARY ON DATABASE ' "
        f"|| quote_ident(current_database()) || ' FROM PUBLIC, {both}'; END $$",
        # The lookups that run before the tenant is known (migration 0010);
        # skipped on a database not yet migrated that far.
        *(
            f"DO $$ BEGIN IF to_regprocedure('{fn}') IS NOT NULL "
            f"THEN GRANT EXECUTE ON FUNCTION {fn} TO {app}; END IF; END $$"
            for fn in LOOKUP_FUNCTIONS
        ),
    ]
    # An INSERT that takes a serial or identity default calls nextval(),
    # which needs USAGE on the column's sequence besides INSERT on the table.
    statements.append(_grant_sequences([*granted, AuditLog._meta.table_name], both))
    statements.append(_grant_sequences([Tenant._meta.table_name], admin))
    if allow_set_role:
        statements.append(f"GRANT {admin} TO {app}")
    else:
        statements.append(f"REVOKE {admin} FROM {app}")
    return statements


def create_roles(
    db: Database,
    app_role: str = APP_ROLE,
    admin_role: str = ADMIN_ROLE,
    *,
    allow_set_role: bool = False,
    models: Iterable[type[Model]] = (),
    tables: Iterable[str] = (),
    relay_schema: bool | None = None,
) -> list[str]:
    """Run ``role_statements`` in one transaction; needs a superuser.

    ``relay_schema``: None follows the base set the history records; a
    value the history contradicts is refused, as ``migrate`` refuses it.
    """
    if HISTORY_TABLE not in db.get_tables():
        raise RelayError("this database has no relay_peewee schema yet: run `relay-peewee migrate`")
    if relay_schema is None:
        relay_schema = recorded_base_set(db) is not False
    check_base_set(db, relay_schema)
    if is_citus(db):
        # The global uniques' registries `distribute` made (models._registry).
        tables = list(tables)
        tables += [t for t in CITUS_REGISTRIES if t in db.get_tables() and t not in tables]
    statements = role_statements(
        app_role,
        admin_role,
        allow_set_role=allow_set_role,
        models=models,
        tables=tables,
        relay_schema=relay_schema,
    )
    with db.atomic():
        if is_citus(db):
            # Citus: GRANTs on distributed tables after other statements of
            # the transaction must use one connection per worker.
            db.execute_sql("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")
        for statement in statements:
            db.execute_sql(statement)
    return statements
