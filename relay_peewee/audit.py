"""The schema audit: does the live database really keep tenants apart?

Migrations can be half-applied, hand-edited, or outlived by a table someone
added later. ``audit_schema`` therefore reads the catalog (SQLite pragmas,
PostgreSQL ``pg_catalog``), never the models' idea of it, and compares it
with what every model declares:

* every model's table exists; the migration history is complete and names
  no migration this package does not have;
* each TenantModel's ``tenant_id`` is NOT NULL, has no default, has a
  (validated) foreign key to ``tenants(id)`` and leads a valid index;
* its per-tenant uniques exist, the global uniques they replaced are gone,
  and the uniques declared global (``users.email``) are still there;
* tables with no model are listed as information;
* ``audit_logs`` is append-only, and (0009) cannot be rewritten by REPLACE
  on SQLite, is isolated per tenant and timestamped by the database on
  PostgreSQL;
* no row breaks a foreign key (SQLite ``foreign_key_check``: rows written by a
  client with ``foreign_keys`` off) and no tenant-consistent key is NOT VALID;
* PostgreSQL: every tenant table's ``tenant_isolation`` policy is the one the
  migration wrote and no other permissive policy widens it; no view,
  materialized view, SECURITY DEFINER function or rule lets the application
  role read or write tenant tables with its owner's rights (except the
  project's own functions, ``migrator.known_objects``); the application role
  (``app_role``, default ``relay_app`` when it exists) is not superuser,
  BYPASSRLS, an owner, a member of such a role (the opt-in ``relay_admin``
  grant is a warning), nor able to write ``tenants``.

With ``citus=True`` it also reports what would stop the schema from being
distributed by ``tenant_id`` on Citus. Each finding is one line that ends
with its fix.
"""

from __future__ import annotations

import importlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Literal

from peewee import CompositeKey, Database, DatabaseProxy, Field, ForeignKeyField, Model
from playhouse.migrate import make_index_name

from .catalog import (
    ForeignKey,
    Index,
    PostgresCatalog,
    SqliteCatalog,
    catalog_for,
    columns,
    foreign_keys,
    indexes,
    primary_key,
    refused_operations,
)
from .db import is_postgres, unwrap
from .fields import TenantForeignKeyField
from .migrator import HISTORY_TABLE, MigrationRunner
from .migrator.backends import POLICY, POLICY_PREDICATE
from .migrator.known_objects import KNOWN_FUNCTIONS, matches
from .models import MODELS, AuditLog, Tenant
from .roles import APP_ROLE
from .tenancy import TENANT_COLUMN, TENANT_FIELD, TenantModel

__all__ = ["SEVERITIES", "Finding", "audit_schema", "count_by_severity", "report"]

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")
MIGRATE = "run `relay-peewee migrate`"


@dataclass(frozen=True)
class Finding:
    severity: Severity
    table: str
    check: str  # a stable name, e.g. "tenant-index", for tests and scripts
    message: str  # one line: what is wrong, then "; fix: ..."


def audit_schema(
    db: Database | DatabaseProxy,
    models: Iterable[type[Model]] | None = None,
    *,
    citus: bool = False,
    strict: bool = False,
    app_role: str | None = None,
    admin_role: str = "relay_admin",
    migrations: Sequence[str] = (),
) -> list[Finding]:
    """Audit ``db`` against relay_peewee's models plus ``models``; errors first.

    ``models``: the application's own; ``migrations``: its migration
    packages, so their history rows count as known. ``strict`` turns
    warnings (the Citus rules, undeclared global uniques) into errors, for a
    CI job that must fail on them. ``app_role`` (PostgreSQL) is the role the
    application connects as; by default ``relay_app`` when that role exists,
    else its checks are skipped.
    """
    db = unwrap(db)
    audited: list[type[Model]] = [*MODELS, *(m for m in models or () if m not in MODELS)]
    # sqlite_sequence and sqlite_stat* belong to SQLite itself.
    tables = {t for t in db.get_tables() if not t.startswith("sqlite_")}
    catalog = catalog_for(db)
    findings = _history(db, tables, migrations) + _append_only(db, tables)
    findings += _audit_log(catalog, tables)
    findings += _lookup_functions(db, tables)
    for model in audited:
        findings += _model(db, model, tables)
    if isinstance(catalog, SqliteCatalog):
        findings += _foreign_key_violations(catalog)
    else:
        tenant_tables = tuple(
            m._meta.table_name
            for m in audited
            if issubclass(m, TenantModel) and m._meta.table_name in tables
        )
        rls_tables = (*tenant_tables, AuditLog._meta.table_name)
        role = _app_role(catalog, app_role)
        findings += _privileged_objects(catalog, rls_tables, role, _lookup_function_names(db))
        if role is not None:
            findings += _app_role_rights(catalog, role, admin_role, rls_tables)
    modelled = {m._meta.table_name for m in audited} | {HISTORY_TABLE}
    findings += [_unmodelled(db, t) for t in sorted(tables - modelled)]
    if citus:
        declared = {m._meta.table_name: _declared_uniques(m)[1] for m in audited}
        findings += _citus(db, sorted(tables - {HISTORY_TABLE}), declared)
    if strict:
        findings = [
            replace(f, severity="error") if f.severity == "warning" else f for f in findings
        ]
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


def count_by_severity(findings: Iterable[Finding]) -> dict[str, int]:
    counts = Counter(f.severity for f in findings)
    return {s: counts[s] for s in SEVERITIES}


def report(findings: list[Finding], *, as_json: bool = False) -> str:
    """The findings as an aligned table and a summary line, or as JSON."""
    counts = count_by_severity(findings)
    if as_json:
        return json.dumps({"findings": [asdict(f) for f in findings], "summary": counts}, indent=2)
    rows = [("SEVERITY", "TABLE", "CHECK", "MESSAGE")]
    rows += [(f.severity, f.table, f.check, f.message) for f in findings]
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        f"{sev:<{width[0]}}  {table:<{width[1]}}  {check:<{width[2]}}  {message}"
        for sev, table, check, message in rows
    ]
    plural = {"error": "errors", "warning": "warnings", "info": "info"}
    summary = ", ".join(f"{n} {s if n == 1 else plural[s]}" for s, n in counts.items())
    return "\n".join([*lines, summary] if findings else [summary])


def _history(db: Database, tables: set[str], migrations: Sequence[str]) -> list[Finding]:
    if HISTORY_TABLE not in tables:
        msg = f"no migration history; fix: {MIGRATE}"
        return [Finding("error", HISTORY_TABLE, "history-missing", msg)]
    statuses = MigrationRunner(db, migrations=migrations).statuses()
    out = []
    pending = [s.name for s in statuses if s.applied is None]
    if pending:
        msg = f"pending migrations: {', '.join(pending)}; fix: {MIGRATE}"
        out.append(Finding("error", HISTORY_TABLE, "migration-pending", msg))
    unknown = [s.name for s in statuses if not s.known]
    if unknown:
        msg = f"applied, but unknown to this relay_peewee: {', '.join(unknown)}; fix: upgrade "
        msg += "it, or name the application's migrations package"
        out.append(Finding("error", HISTORY_TABLE, "migration-unknown", msg))
    return out


# The migration that creates the lookup functions of relay_peewee.lookups;
# its text is what the live definitions must match.
_LOOKUPS_MIGRATION = "0010_relay_app_compat"


def _lookup_functions(db: Database, tables: set[str]) -> list[Finding]:
    """PostgreSQL: the SECURITY DEFINER lookups are exactly what 0010 created.

    Each runs with its owner's rights across every tenant, so a changed body,
    a lost pinned search_path, EXECUTE for PUBLIC or an owner that row-level
    security binds (the lookups would find nothing) is an error.
    """
    if not is_postgres(db) or HISTORY_TABLE not in tables:
        return []
    applied = db.execute_sql(
        f"SELECT 1 FROM {HISTORY_TABLE} WHERE name = %s", (_LOOKUPS_MIGRATION,)
    ).fetchone()
    if applied is None:
        return []  # reported as a pending migration
    migration = importlib.import_module(f"relay_peewee.migrations.{_LOOKUPS_MIGRATION}")
    schema = db.execute_sql("SELECT quote_ident(current_schema())").fetchone()[0]
    config = [f"search_path=pg_catalog, {schema}, pg_temp", "TimeZone=UTC"]
    recreate = "`relay-peewee rollback --to 10`, then `relay-peewee migrate` (recreates it)"
    out = []
    for sig, (_head, body) in migration.FUNCTIONS.items():
        row = db.execute_sql(
            "SELECT p.prosecdef, p.proconfig, p.prosrc, r.rolsuper OR r.rolbypassrls,"
            " has_function_privilege('public', p.oid, 'EXECUTE')"
            " FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner"
            " WHERE p.oid = to_regprocedure(%s)",
            (sig,),
        ).fetchone()
        name = sig.split("(")[0]
        problems = []
        if row is None:
            problems.append("is missing")
        else:
            definer, proconfig, source, owner_bypasses, public = row
            if not definer:
                problems.append("is not SECURITY DEFINER")
            if list(proconfig or []) != config:
                problems.append(f"has settings {proconfig}, not {config}")
            if " ".join(str(source).split()) != " ".join(body.split()):
                problems.append("has a body other than the one migration 0010 created")
            if not owner_bypasses:
                problems.append("is owned by a role row-level security binds (it finds nothing)")
            if public:
                problems.append("is executable by PUBLIC")
        if problems:
            if problems == ["is executable by PUBLIC"]:
                fix = f"REVOKE ALL ON FUNCTION {sig} FROM PUBLIC"
            elif len(problems) == 1 and problems[0].startswith("is owned by"):
                fix = f"ALTER FUNCTION {sig} OWNER TO <the BYPASSRLS role that runs migrate>"
            else:
                fix = recreate
            message = f"lookup function {sig} {'; '.join(problems)}; fix: {fix}"
            out.append(Finding("error", name, "lookup-function", message))
    return out


def _model(db: Database, model: type[Model], tables: set[str]) -> list[Finding]:
    table = model._meta.table_name
    ours = model in MODELS
    if table not in tables:
        fix = MIGRATE if ours else f"create it ({model.__name__}.create_table())"
        return [Finding("error", table, "table-missing", f"no such table; fix: {fix}")]
    keys = indexes(db, table)
    per_tenant, global_ = _declared_uniques(model)
    out = []
    if issubclass(model, TenantModel):
        out += _tenant_column(db, table, keys, MIGRATE if ours else "add it in your migration")
        out += _tenant_primary_key(db, model, table, keys)
        for cols in per_tenant:
            if not any(_enforces(ix, cols) for ix in keys):
                msg = f"nothing enforces the per-tenant unique ({', '.join(cols)}); fix: "
                msg += _create_index(db, table, cols, unique=True)
                out.append(Finding("error", table, "tenant-unique", msg))
    for cols in global_:
        if not any(_enforces(ix, cols) for ix in keys):
            msg = f"the model declares ({', '.join(cols)}) unique across all tenants, but "
            msg += f"nothing enforces it; fix: {_create_index(db, table, cols, unique=True)}"
            out.append(Finding("error", table, "global-unique-missing", msg))
    if issubclass(model, TenantModel):
        out += _cross_tenant_uniques(db, table, keys, per_tenant, global_)
        out += _tenant_references(db, model, table, MIGRATE if ours else "add it in your migration")
        if is_postgres(db):
            # Required of Relay's nine tables; for an application's own
            # TenantModel, database-level isolation is recommended, not owed.
            rls = _row_level_security(db, table, MIGRATE if ours else "see migration 0008")
            out += rls if ours else [replace(f, severity="warning") for f in rls]
    return out


def _tenant_references(db: Database, model: type[Model], table: str, fix: str) -> list[Finding]:
    """Each TenantForeignKeyField must be (tenant_id, col) -> parent (tenant_id, id)."""
    out = []
    live = foreign_keys(db, table)
    present = {(fk.columns, fk.ref_table, fk.ref_columns) for fk in live}
    for fk in live:
        if not fk.validated and TENANT_COLUMN in fk.columns and fk.columns != (TENANT_COLUMN,):
            msg = (
                f"foreign key {fk.name} is NOT VALID: rows older than it may point into "
                f"another tenant; fix: ALTER TABLE {table} VALIDATE CONSTRAINT {fk.name}"
            )
            out.append(Finding("error", table, "tenant-reference-not-valid", msg))
    for field in model._meta.sorted_fields:
        if not isinstance(field, TenantForeignKeyField):
            out += _plain_tenant_reference(model, field, table, live)
            continue
        parent = field.rel_model._meta.table_name
        want = (
            (TENANT_COLUMN, field.column_name),
            parent,
            (TENANT_COLUMN, field.rel_field.column_name),
        )
        if want not in present:
            msg = (
                f"{field.column_name} can reference another tenant's {parent} row: no foreign "
                f"key ({TENANT_COLUMN}, {field.column_name}) -> {parent} ({TENANT_COLUMN}, "
                f"{field.rel_field.column_name}); fix: {fix}"
            )
            out.append(Finding("error", table, "tenant-reference", msg))
    return out


def _plain_tenant_reference(
    model: type[Model], field: Field, table: str, live: list[ForeignKey]
) -> list[Finding]:
    """A plain ForeignKeyField between TenantModels whose key ignores the tenant."""
    if not isinstance(field, ForeignKeyField) or field.name == TENANT_FIELD:
        return []
    if not issubclass(field.rel_model, TenantModel):
        return []
    parent = field.rel_model._meta.table_name
    if not any(fk.columns == (field.column_name,) and fk.ref_table == parent for fk in live):
        return []  # no key at all (usage_events.skill_id): nothing to make consistent
    msg = (
        f"{field.column_name} -> {parent} ({field.rel_field.column_name}) can reference "
        f"another tenant's row; fix: declare {model.__name__}.{field.name} a "
        "TenantForeignKeyField and migrate (migrator.tenantize makes the key)"
    )
    return [Finding("error", table, "tenant-reference", msg)]


def _row_level_security(db: Database, table: str, fix: str) -> list[Finding]:
    catalog = PostgresCatalog(db)
    enabled, forced = catalog.row_security(table)
    policies = catalog.policies(table)
    if not any(p.name == POLICY for p in policies):
        msg = f"no row-level security policy {POLICY}; fix: {fix}"
        return [Finding("error", table, "rls-policy", msg)]
    out = []
    if not (enabled and forced):
        state = "forced" if enabled else "enabled"
        msg = f"row-level security is not {state}, so the policy binds nobody (or not the owner)"
        msg += f"; fix: ALTER TABLE {table} ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY"
        out.append(Finding("error", table, "rls-forced", msg))
    expected = _expression(POLICY_PREDICATE)
    for policy in policies:
        if policy.name == POLICY:
            if (
                policy.command != "ALL"
                or policy.roles != ("public",)
                or not policy.permissive
                or _expression(policy.using) != expected
                or _expression(policy.with_check) != expected
            ):
                msg = (
                    f"policy {POLICY} is not the one the migration wrote (FOR {policy.command} "
                    f"TO {', '.join(policy.roles)} USING {policy.using} WITH CHECK "
                    f"{policy.with_check}); fix: DROP POLICY {POLICY} ON {table}; CREATE POLICY "
                    f"{POLICY} ON {table} USING ({POLICY_PREDICATE}) WITH CHECK "
                    f"({POLICY_PREDICATE})"
                )
                out.append(Finding("error", table, "rls-policy-changed", msg))
        elif policy.permissive:
            # Permissive policies are OR-ed: any one of them lets a row through.
            msg = (
                f"permissive policy {policy.name} (USING {policy.using}) is OR-ed with "
                f"{POLICY} and widens what a tenant sees or writes; fix: DROP POLICY "
                f"{policy.name} ON {table}, or recreate it AS RESTRICTIVE"
            )
            out.append(Finding("error", table, "rls-extra-policy", msg))
    return out


def _expression(sql: str | None) -> str:
    """A policy expression without what PostgreSQL's deparser adds (casts, parentheses)."""
    return re.sub(r"::[a-z ]+|[\s()]", "", sql or "")


def _audit_log(catalog: SqliteCatalog | PostgresCatalog, tables: set[str]) -> list[Finding]:
    """audit_logs as migration 0009 leaves it: not rewritable, per tenant, the database's clock."""
    table = AuditLog._meta.table_name
    if table not in tables:
        return []
    triggers = catalog.triggers(table)
    out = []
    if isinstance(catalog, SqliteCatalog):
        if "audit_logs_no_replace" not in triggers:
            msg = "REPLACE can rewrite an audit event (it deletes without DELETE triggers)"
            msg += f"; fix: {MIGRATE}"
            out.append(Finding("error", table, "audit-replace", msg))
    else:
        out += _row_level_security(catalog.db, table, MIGRATE)
    if "audit_logs_created_at" not in triggers:
        msg = "the writer of an audit event chooses its created_at (it can backdate it)"
        msg += f"; fix: {MIGRATE}"
        out.append(Finding("error", table, "audit-created-at", msg))
    return out


def _foreign_key_violations(catalog: SqliteCatalog) -> list[Finding]:
    """Rows a client with foreign_keys off wrote: they may point into another tenant."""
    found: dict[tuple[str, str], list[int]] = {}
    for table, rowid, parent in catalog.foreign_key_violations():
        found.setdefault((table, parent), []).append(rowid)
    out = []
    for (table, parent), rowids in sorted(found.items()):
        shown = ", ".join(map(str, rowids[:5])) + (", ..." if len(rowids) > 5 else "")
        msg = (
            f"{len(rowids)} row(s) break the foreign key to {parent} (rowid {shown}), written "
            f"while foreign_keys was off: they may point at another tenant's row or at none; "
            f"fix: correct or delete them (PRAGMA foreign_key_check('{table}') lists them)"
        )
        out.append(Finding("error", table, "foreign-key-violation", msg))
    return out


def _app_role(catalog: PostgresCatalog, app_role: str | None) -> str | None:
    if app_role is not None:
        return app_role
    return APP_ROLE if catalog.role(APP_ROLE) is not None else None


def _lookup_function_names(db: Database) -> frozenset[tuple[str, str]]:
    """(schema, name) of 0010's lookups, where ``_lookup_functions`` looks for them."""
    migration = importlib.import_module(f"relay_peewee.migrations.{_LOOKUPS_MIGRATION}")
    schema = db.execute_sql("SELECT current_schema()").fetchone()[0]
    return frozenset((schema, signature.split("(")[0]) for signature in migration.FUNCTIONS)


def _privileged_objects(
    catalog: PostgresCatalog,
    tables: tuple[str, ...],
    role: str | None,
    checked_elsewhere: frozenset[tuple[str, str]] = frozenset(),
) -> list[Finding]:
    """Objects that read or write tenant tables with their owner's rights (which bypass RLS).

    ``checked_elsewhere`` names functions another check compares in full
    (0010's lookups: ``_lookup_functions`` checks body, settings, owner and
    grants), so they are not reported twice.
    """
    who = role or "PUBLIC"
    revoke_from = f"PUBLIC, {role}" if role else "PUBLIC"
    out = []
    for view in catalog.views_reading(tables, role):
        name = f"{view.schema}.{view.name}"
        if view.kind == "view" and not view.hardened:
            msg = (
                f"view {name} reads tenant tables as its owner, who bypasses row-level "
                f"security, and {who} may select from it: every tenant's rows; fix: "
                f"ALTER VIEW {name} SET (security_invoker = true)"
            )
            out.append(Finding("error", name, "privileged-view", msg))
        elif view.kind == "materialized view":
            msg = (
                f"materialized view {name} stores rows of every tenant, read as its owner, and "
                f"{who} may select from it; fix: REVOKE ALL ON {name} FROM {revoke_from} "
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
            f"rights, past row-level security; fix: DROP RULE {name} ON {rule.schema}.{table} "
            "(a trigger does the same work under the caller's rights)"
        )
        out.append(Finding("error", f"{rule.schema}.{table}", "privileged-rule", msg))
    return out


def _app_role_rights(
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
    tenants = Tenant._meta.table_name
    writes = sorted(catalog.table_privileges(role, tenants) - {"SELECT"})
    if writes:
        msg = (
            f"{role} may {', '.join(writes)} tenants: any tenant could rename, deactivate or "
            f"create tenants; fix: REVOKE {', '.join(writes)} ON {tenants} FROM {role}"
        )
        out.append(Finding("error", tenants, "app-role-tenants", msg))
    return out


def _append_only(db: Database, tables: set[str]) -> list[Finding]:
    """audit_logs must refuse UPDATE and DELETE in the database itself."""
    table = AuditLog._meta.table_name
    if table not in tables:
        return []
    missing = [op for op in ("UPDATE", "DELETE") if op not in refused_operations(db, table)]
    if not missing:
        return []
    msg = f"{' and '.join(missing)} of audit events are not refused by a trigger; fix: {MIGRATE}"
    return [Finding("error", table, "audit-append-only", msg)]


def _tenant_column(db: Database, table: str, keys: list[Index], add_fix: str) -> list[Finding]:
    column = next((c for c in columns(db, table) if c.name == TENANT_COLUMN), None)
    if column is None:
        return [Finding("error", table, "tenant-column", f"no {TENANT_COLUMN}; fix: {add_fix}")]
    pg, alter = is_postgres(db), f"ALTER TABLE {table} ALTER COLUMN {TENANT_COLUMN}"
    out = []
    if not column.not_null:
        fix = f"{alter} SET NOT NULL" if pg else _rebuild(table, f"with {TENANT_COLUMN} NOT NULL")
        msg = f"{TENANT_COLUMN} accepts NULL; fix: {fix}"
        out.append(Finding("error", table, "tenant-not-null", msg))
    # PostgreSQL spells an explicit DEFAULT NULL as 'NULL::text': no default at all.
    if column.default is not None and not str(column.default).upper().startswith("NULL"):
        fix = f"{alter} DROP DEFAULT" if pg else _rebuild(table, "without that default")
        msg = f"{TENANT_COLUMN} defaults to {column.default}, so a row that names no tenant "
        msg += f"is filed under that one; fix: {fix}"
        out.append(Finding("error", table, "tenant-default", msg))
    out += _tenant_foreign_key(db, table)
    leading = [ix for ix in keys if ix.columns[:1] == (TENANT_COLUMN,) and not ix.partial]
    if not any(ix.valid for ix in leading):
        create = _create_index(db, table, (TENANT_COLUMN,))
        if leading:  # only INVALID ones: what a failed CREATE INDEX CONCURRENTLY leaves
            names = ", ".join(ix.name for ix in leading)
            msg = f"index {names} is INVALID; fix: DROP INDEX {names}, then {create}"
        else:
            msg = f"no index starts with {TENANT_COLUMN}; fix: {create}"
        out.append(Finding("error", table, "tenant-index", msg))
    return out


def _tenant_foreign_key(db: Database, table: str) -> list[Finding]:
    target = (Tenant._meta.table_name, (Tenant.id.column_name,))
    fks = [
        fk
        for fk in foreign_keys(db, table)
        if fk.columns == (TENANT_COLUMN,) and (fk.ref_table, fk.ref_columns) == target
    ]
    references = f"REFERENCES {target[0]} ({target[1][0]})"
    if not fks:
        name = f"{table}_{TENANT_COLUMN}_fkey"
        fix = (
            f"ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY ({TENANT_COLUMN}) "
            f"{references} NOT VALID, then VALIDATE CONSTRAINT {name}"
            if is_postgres(db)
            else _rebuild(table, f"with {TENANT_COLUMN} {references}")
        )
        msg = f"{TENANT_COLUMN} has no foreign key {references}; fix: {fix}"
        return [Finding("error", table, "tenant-fk", msg)]
    if not any(fk.validated for fk in fks):
        name = str(fks[0].name)
        msg = f"foreign key {name} is NOT VALID: rows older than it were never checked; "
        msg += f"fix: ALTER TABLE {table} VALIDATE CONSTRAINT {name}"
        return [Finding("error", table, "tenant-fk-not-valid", msg)]
    return []


def _tenant_primary_key(
    db: Database, model: type[Model], table: str, keys: list[Index]
) -> list[Finding]:
    pk = model._meta.primary_key
    if not isinstance(pk, CompositeKey):
        return []
    expected = tuple(_column(model, name) for name in pk.field_names)
    actual = primary_key(db, table)
    if expected[0] != TENANT_COLUMN or actual == expected:
        return []
    cols = ", ".join(expected)
    if is_postgres(db):
        drop = "".join(f"DROP CONSTRAINT {ix.name}, " for ix in keys if ix.origin == "primary")
        fix = f"ALTER TABLE {table} {drop}ADD PRIMARY KEY ({cols})"
    else:
        fix = _rebuild(table, f"with PRIMARY KEY ({cols})")
    msg = f"primary key is ({', '.join(actual)}), the model declares ({cols}); fix: {fix}"
    return [Finding("error", table, "tenant-primary-key", msg)]


def _cross_tenant_uniques(
    db: Database,
    table: str,
    keys: list[Index],
    per_tenant: list[tuple[str, ...]],
    global_: list[tuple[str, ...]],
) -> list[Finding]:
    """Uniques on a tenant table that span every tenant.

    One replaced by a per-tenant unique (``skills(slug)``) is an error: one
    tenant's value blocks all others (and reveals that it exists). One no
    model declares is a warning. Declared ones (``users.email``) are fine.
    """
    replaced = {frozenset(cols) - {TENANT_COLUMN} for cols in per_tenant}
    declared = {frozenset(cols) for cols in global_}
    out = []
    for ix in keys:
        cols = frozenset(ix.columns)
        if not ix.unique or ix.origin == "primary" or TENANT_COLUMN in cols or cols in declared:
            continue
        spans = f"{ix.name} makes ({', '.join(ix.columns)}) unique across all tenants"
        if cols in replaced:
            msg = f"{spans}; fix: {_drop_key(db, table, ix)}"
            out.append(Finding("error", table, "global-unique-left", msg))
        else:
            msg = f"{spans}, which the model does not declare; fix: declare it unique=True "
            msg += f"if meant, else {_drop_key(db, table, ix)}"
            out.append(Finding("warning", table, "global-unique-undeclared", msg))
    return out


def _unmodelled(db: Database, table: str) -> Finding:
    has_tenant = any(c.name == TENANT_COLUMN for c in columns(db, table))
    why = f"no model, {'has' if has_tenant else 'no'} {TENANT_COLUMN}"
    msg = f"not audited ({why}); fix: none if all tenants share it, "
    msg += "else pass its TenantModel to audit_schema"
    return Finding("info", table, "unmodelled-table", msg)


# -- Citus ---------------------------------------------------------------


def _citus(
    db: Database, tables: list[str], declared_global: dict[str, list[tuple[str, ...]]]
) -> list[Finding]:
    """What stops ``create_distributed_table(table, 'tenant_id')`` on Citus.

    Tables with tenant_id would be distributed: Citus enforces a unique or
    a foreign key only within one shard, so each must include tenant_id,
    and it refuses NULL in the distribution column. Tables without it are
    reference tables (copied to every node), which may not point into a
    distributed table.
    """
    # The tables that would be distributed, with their tenant_id column.
    distributed = {t: c for t in tables for c in columns(db, t) if c.name == TENANT_COLUMN}
    out = []
    for table in tables:
        fks = foreign_keys(db, table)
        if table not in distributed:
            targets = sorted({fk.ref_table for fk in fks if fk.ref_table in distributed})
            if targets:
                msg = f"references distributed {', '.join(targets)}, which a reference table "
                msg += f"cannot; fix: add {TENANT_COLUMN} and distribute it too"
                out.append(Finding("warning", table, "citus-foreign-key", msg))
            else:
                msg = f"no {TENANT_COLUMN}: a reference-table candidate; "
                msg += f"fix: SELECT create_reference_table('{table}')"
                out.append(Finding("info", table, "citus-reference-table", msg))
            continue
        if not distributed[table].not_null:
            msg = f"{TENANT_COLUMN} accepts NULL, which Citus refuses in a distribution column; "
            msg += "fix: make it NOT NULL, or keep the table local"
            out.append(Finding("warning", table, "citus-null-tenant", msg))
        declared = {frozenset(cols) for cols in declared_global.get(table, ())}
        for ix in indexes(db, table):
            if not ix.unique or TENANT_COLUMN in ix.columns:
                continue
            cols = ", ".join(ix.columns)
            kind = "primary key" if ix.origin == "primary" else f"unique {ix.name}"
            # A unique that is global on purpose (a login) cannot just gain tenant_id.
            fix = (
                f"keep ({cols}) unique in a reference table that maps it to its tenant"
                if frozenset(ix.columns) in declared
                else f"make it ({TENANT_COLUMN}, {cols})"
            )
            msg = f"{kind} ({cols}) lacks {TENANT_COLUMN}, so Citus cannot enforce it; fix: {fix}"
            out.append(Finding("warning", table, "citus-unique", msg))
        for fk in fks:
            if fk.ref_table in distributed and not _tenant_aligned(fk):
                src, dst = ", ".join(fk.columns), f"{fk.ref_table} ({', '.join(fk.ref_columns)})"
                msg = f"foreign key ({src}) -> {dst} lacks {TENANT_COLUMN}; fix: make it "
                msg += f"({TENANT_COLUMN}, {src}) -> {fk.ref_table} ({TENANT_COLUMN}, "
                msg += f"{', '.join(fk.ref_columns)})"
                out.append(Finding("warning", table, "citus-foreign-key", msg))
    return out


# -- helpers -------------------------------------------------------------


def _declared_uniques(
    model: type[Model],
) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """(per-tenant, global) uniques the model declares, as column names.

    Per-tenant ones are the ``Meta.indexes`` entries that start with the
    tenant (``TenantModel`` turns ``Meta.tenant_unique`` into those).
    """
    per_tenant: list[tuple[str, ...]] = []
    global_: list[tuple[str, ...]] = []
    for entry in model._meta.indexes or ():
        if isinstance(entry, (tuple, list)) and len(entry) == 2 and entry[1]:
            cols = tuple(_column(model, name) for name in entry[0])
            (per_tenant if cols[0] == TENANT_COLUMN else global_).append(cols)
    global_ += [(f.column_name,) for f in model._meta.sorted_fields if f.unique]
    return per_tenant, global_


def _column(model: type[Model], name: str) -> str:
    field = model._meta.fields.get(name)
    return field.column_name if field is not None else name


def _enforces(ix: Index, cols: tuple[str, ...]) -> bool:
    # Column order does not change what a unique forbids; a partial one
    # forbids less, and an invalid (half-built) one cannot be relied on.
    return ix.unique and ix.valid and not ix.partial and set(ix.columns) == set(cols)


def _tenant_aligned(fk: ForeignKey) -> bool:
    if TENANT_COLUMN not in fk.columns or TENANT_COLUMN not in fk.ref_columns:
        return False
    return fk.columns.index(TENANT_COLUMN) == fk.ref_columns.index(TENANT_COLUMN)


def _create_index(db: Database, table: str, cols: tuple[str, ...], unique: bool = False) -> str:
    # CONCURRENTLY: the fix runs on a live database, where a plain CREATE
    # INDEX would block every write to the table until it finishes.
    how = " CONCURRENTLY" if is_postgres(db) else ""
    kind = "UNIQUE INDEX" if unique else "INDEX"
    return f"CREATE {kind}{how} {make_index_name(table, cols)} ON {table} ({', '.join(cols)})"


def _drop_key(db: Database, table: str, ix: Index) -> str:
    if ix.origin == "index":
        return f"DROP INDEX {ix.name}"
    if is_postgres(db):
        return f"ALTER TABLE {table} DROP CONSTRAINT {ix.name}"
    return _rebuild(table, f"without UNIQUE ({', '.join(ix.columns)})")


def _rebuild(table: str, change: str) -> str:
    return f"rebuild {table} {change} (SQLite cannot alter a column or constraint in place)"
