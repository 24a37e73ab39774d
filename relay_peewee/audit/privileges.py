"""PostgreSQL: no object or role gives the application role its owner's rights.

Views, materialized views, SECURITY DEFINER functions and rules that run
with a role bypassing row-level security, and the application role's own
attributes, memberships and grants.
"""

from __future__ import annotations

from peewee import Database

from ..database.catalog import (
    PostgresCatalog,
)
from ..database.quoting import quote
from ..migrator.known_objects import KNOWN_FUNCTIONS, matches
from ..models import AuditLog, Tenant
from ..operations.roles import APP_ROLE
from .findings import Finding
from .history import lookup_signatures


def application_role(catalog: PostgresCatalog, app_role: str | None) -> str | None:
    if app_role is not None:
        return app_role
    return APP_ROLE if catalog.role(APP_ROLE) is not None else None


def lookup_function_names(db: Database, relay_schema: bool = True) -> frozenset[tuple[str, str]]:
    """(schema, name) of the base set's lookups (0010's, or the core's host
    lookup), where ``check_lookup_functions`` looks for them."""
    schema = db.execute_sql("SELECT current_schema()").fetchone()[0]
    return frozenset(
        (schema, signature.split("(")[0]) for signature in lookup_signatures(relay_schema)
    )


def check_privileged_objects(
    catalog: PostgresCatalog,
    tables: tuple[str, ...],
    role: str | None,
    checked_elsewhere: frozenset[tuple[str, str]] = frozenset(),
) -> list[Finding]:
    """Objects that read or write tenant tables with their owner's rights (which bypass RLS).

    ``checked_elsewhere`` names functions another check compares in full
    (0010's lookups: ``check_lookup_functions`` checks body, settings, owner and
    grants), so they are not reported twice.
    """
    who = role or "PUBLIC"
    revoke_from = f"PUBLIC, {role}" if role else "PUBLIC"
    out = []
    for view in catalog.views_reading(tables, role):
        name = f"{view.schema}.{view.name}"
        sql_name = quote(view.schema, view.name)
        if view.kind == "view" and not view.hardened:
            msg = (
                f"view {name} reads tenant tables as its owner, who bypasses row-level "
                f"security, and {who} may select from it: every tenant's rows; fix: "
                f"ALTER VIEW {sql_name} SET (security_invoker = true)"
            )
            out.append(Finding("error", name, "privileged-view", msg))
        elif view.kind == "materialized view":
            msg = (
                f"materialized view {name} stores rows of every tenant, read as its owner, and "
                f"{who} may select from it; fix: REVOKE ALL ON {sql_name} FROM {revoke_from} "
                "(or drop it and query a security_invoker view)"
            )
            out.append(Finding("error", name, "privileged-matview", msg))
    for function in catalog.security_definers(role):
        if (function.schema, function.name) in checked_elsewhere:
            continue
        signature = f"{function.schema}.{function.name}({function.arguments})"
        known = KNOWN_FUNCTIONS.get(function.name)
        if known is not None and matches(known, function.arguments, function.body):
            if function.hardened and not function.public:
                continue
            msg = (
                f"relay_peewee's function {signature} must pin its search_path and not be "
                f"executable by PUBLIC; fix: ALTER FUNCTION {signature} SET search_path = "
                f"pg_catalog, public; REVOKE EXECUTE ON FUNCTION {signature} FROM PUBLIC"
            )
            out.append(Finding("error", signature, "security-definer", msg))
            continue
        what = (
            "differs from the definition relay_peewee created"
            if known is not None
            else "runs as its owner, who bypasses row-level security"
        )
        msg = (
            f"SECURITY DEFINER function {signature} {what}, and {who} may execute it: it can "
            f"read or write any tenant's rows; fix: ALTER FUNCTION {signature} SECURITY "
            f"INVOKER, or REVOKE EXECUTE ON FUNCTION {signature} FROM {revoke_from}"
        )
        out.append(Finding("error", signature, "security-definer", msg))
    for rule in catalog.rules_touching(tables):
        name, _on, table = rule.name.partition(" ON ")
        msg = (
            f"rule {name} on {rule.schema}.{table} runs its action with the table owner's "
            f"rights, past row-level security; fix: DROP RULE {quote(name)} ON "
            f"{quote(rule.schema, table)} "
            "(a trigger does the same work under the caller's rights)"
        )
        out.append(Finding("error", f"{rule.schema}.{table}", "privileged-rule", msg))
    return out


def check_app_role_rights(
    catalog: PostgresCatalog, role: str, admin_role: str, tables: tuple[str, ...]
) -> list[Finding]:
    """The application role must be bound by row-level security and unable to leave it."""
    info = catalog.role(role)
    where = f"role {role}"
    if info is None:
        msg = f"no such role; fix: `relay-peewee roles --app-role {role} --apply`, or --app-role"
        return [Finding("error", where, "app-role-missing", msg)]
    out = []
    if info.superuser:
        msg = f"{role} is a superuser: row-level security does not bind it; "
        msg += f"fix: ALTER ROLE {role} NOSUPERUSER"
        out.append(Finding("error", where, "app-role-superuser", msg))
    if info.bypassrls:
        msg = f"{role} has BYPASSRLS: it sees every tenant; fix: ALTER ROLE {role} NOBYPASSRLS"
        out.append(Finding("error", where, "app-role-bypassrls", msg))
    owned = [t for t in (*tables, Tenant._meta.table_name) if t in info.owns]
    if owned:
        msg = (
            f"{role} owns {', '.join(owned)}: an owner can disable or drop row-level security; "
            f"fix: ALTER TABLE ... OWNER TO the migrating role, for each of them"
        )
        out.append(Finding("error", where, "app-role-owner", msg))
    for member_of in info.bypass_memberships:
        if member_of == admin_role:
            msg = (
                f"{role} may SET ROLE {admin_role} (the opt-in grant for unscoped()): any SQL "
                f"the application sends can leave its tenant; fix: REVOKE {admin_role} FROM "
                f"{role} and give unscoped() its own connection (connect(url, admin_url=...))"
            )
            out.append(Finding("warning", where, "app-role-set-role", msg))
        else:
            msg = (
                f"{role} is a member of {member_of}, which bypasses row-level security; "
                f"fix: REVOKE {member_of} FROM {role}"
            )
            out.append(Finding("error", where, "app-role-member", msg))
    out += _missing_write_rights(catalog, role, tables)
    tenants = Tenant._meta.table_name
    writes = sorted(catalog.table_privileges(role, tenants) - {"SELECT"})
    if writes:
        msg = (
            f"{role} may {', '.join(writes)} tenants: any tenant could rename, deactivate or "
            f"create tenants; fix: REVOKE {', '.join(writes)} ON {quote(tenants)} "
            f"FROM {quote(role)}"
        )
        out.append(Finding("error", tenants, "app-role-tenants", msg))
    if "TEMPORARY" in catalog.database_privileges(role):
        # pg_temp is searched before public and the ORM names tables
        # unqualified: a temporary table takes the next tenant's rows.
        msg = (
            f"{role} may create temporary tables, which shadow the ORM's tables for the next "
            f"tenant on the same connection; fix: `relay-peewee roles --app-role {role} --apply`, "
            "or "
            f'REVOKE TEMPORARY ON DATABASE "{catalog.db.database}" FROM PUBLIC, {role}'
        )
        out.append(Finding("error", where, "app-role-temp", msg))
    return out


def _missing_write_rights(
    catalog: PostgresCatalog, role: str, tables: tuple[str, ...]
) -> list[Finding]:
    """What ``roles`` grants on each tenant table, and the sequences its inserts call.

    Without them the application fails at its first write (``permission
    denied for sequence user_id_seq``), which no isolation check would see.
    ``audit_logs`` is append-only: SELECT and INSERT are all it gets.
    """
    out = []
    fix = f"`relay-peewee roles --app-role {role} --apply`"
    for table in tables:
        meant = {"SELECT", "INSERT"} if table == AuditLog._meta.table_name else _WRITES
        missing = sorted(meant - catalog.table_privileges(role, table))
        if missing:
            msg = (
                f"{role} may not {', '.join(missing)} {table}, which the application writes; "
                f"fix: {fix}, or GRANT {', '.join(missing)} ON {quote(table)} TO {quote(role)}"
            )
            out.append(Finding("error", table, "app-role-table-rights", msg))
        for sequence in catalog.column_sequences(table):
            if not catalog.sequence_usage(role, sequence):
                msg = (
                    f"{role} may not use sequence {sequence}, so every insert into {table} "
                    f"that takes its default key fails; fix: {fix}, or GRANT USAGE ON "
                    f"SEQUENCE {sequence} TO {quote(role)}"
                )
                out.append(Finding("error", table, "app-role-sequence", msg))
    return out


_WRITES = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"})
