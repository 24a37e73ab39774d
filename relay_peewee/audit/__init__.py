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

One module per family of checks: ``history`` (the migration history),
``tables`` (columns, keys, uniques, policies of each model's table),
``audit_log`` (the append-only log), ``privileges`` (the application role
and the objects that could lend it rights), ``citus``; ``findings`` holds the
``Finding`` type they all return. This module runs them in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from peewee import Database, DatabaseProxy, Model

from ..config import read_config
from ..database import unwrap
from ..database.catalog import (
    SqliteCatalog,
    catalog_for,
)
from ..migrator import HISTORY_TABLE, check_base_set
from ..models import MODELS, AuditLog, Tenant
from ..tenancy import TenantModel
from .audit_log import check_append_only, check_audit_log
from .citus import check_citus
from .findings import SEVERITIES, Finding, count_by_severity, report
from .history import check_history, check_lookup_functions
from .privileges import (
    application_role,
    check_app_role_rights,
    check_privileged_objects,
    lookup_function_names,
)
from .tables import check_foreign_key_rows, check_model, declared_uniques, unmodelled_table

__all__ = ["SEVERITIES", "Finding", "audit_schema", "count_by_severity", "report"]


def audit_schema(
    db: Database | DatabaseProxy,
    models: Iterable[type[Model]] | None = None,
    *,
    citus: bool = False,
    strict: bool = False,
    app_role: str | None = None,
    admin_role: str = "relay_admin",
    migrations: Sequence[str] | None = None,
    relay_schema: bool | None = None,
) -> list[Finding]:
    """Audit ``db`` against relay_peewee's models plus ``models``; errors first.

    ``models``: the application's own; ``migrations``: its migration
    packages, so their history rows count as known - by default those of
    ``[tool.relay_peewee]`` in the nearest pyproject.toml, as the CLI reads
    them (``()``: none). ``strict`` turns
    warnings (the Citus rules, undeclared global uniques) into errors, for a
    CI job that must fail on them. ``app_role`` (PostgreSQL) is the role the
    application connects as; by default ``relay_app`` when that role exists,
    else its checks are skipped. ``relay_schema``: whether the database holds
    Relay's schema or the tenancy core alone (by default ``relay_schema`` of
    ``[tool.relay_peewee]``); a database whose history records the other is
    refused (``MigrationError``) rather than reported table by table.
    """
    db = unwrap(db)
    if migrations is None or relay_schema is None:
        # Without it an application's own history rows read as unknown
        # migrations: the README's audit_schema(db, models=[...]) failed
        # in every application that has migrations of its own.
        config = read_config()
        migrations = config.migrations if migrations is None else migrations
        relay_schema = config.relay_schema if relay_schema is None else relay_schema
    check_base_set(db, relay_schema)
    # The core alone has two of relay_peewee's tables; the rest are the application's.
    base = MODELS if relay_schema else (Tenant, AuditLog)
    audited: list[type[Model]] = [*base, *(m for m in models or () if m not in base)]
    # sqlite_sequence and sqlite_stat* belong to SQLite itself.
    tables = {t for t in db.get_tables() if not t.startswith("sqlite_")}
    catalog = catalog_for(db)
    findings = check_history(db, tables, migrations, relay_schema)
    findings += check_append_only(db, tables)
    findings += check_audit_log(catalog, tables)
    findings += check_lookup_functions(db, tables, relay_schema)
    for model in audited:
        findings += check_model(db, model, tables)
    if isinstance(catalog, SqliteCatalog):
        findings += check_foreign_key_rows(catalog)
    else:
        tenant_tables = tuple(
            m._meta.table_name
            for m in audited
            if issubclass(m, TenantModel) and m._meta.table_name in tables
        )
        rls_tables = (*tenant_tables, AuditLog._meta.table_name)
        role = application_role(catalog, app_role)
        findings += check_privileged_objects(
            catalog, rls_tables, role, lookup_function_names(db, relay_schema)
        )
        if role is not None:
            findings += check_app_role_rights(catalog, role, admin_role, rls_tables)
    modelled = {m._meta.table_name for m in audited} | {HISTORY_TABLE}
    findings += [unmodelled_table(db, t) for t in sorted(tables - modelled)]
    if citus:
        declared = {m._meta.table_name: declared_uniques(m)[1] for m in audited}
        findings += check_citus(db, sorted(tables - {HISTORY_TABLE}), declared)
    if strict:
        findings = [
            replace(f, severity="error") if f.severity == "warning" else f for f in findings
        ]
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))
