"""``audit_logs``: append-only, isolated per tenant and timestamped by the database."""

from __future__ import annotations

from peewee import Database

from ..database.catalog import (
    PostgresCatalog,
    SqliteCatalog,
    refused_operations,
)
from ..models import AuditLog
from .findings import MIGRATE, Finding
from .tables import check_row_level_security


def check_audit_log(catalog: SqliteCatalog | PostgresCatalog, tables: set[str]) -> list[Finding]:
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
        out += check_row_level_security(catalog.db, table, MIGRATE)
    if "audit_logs_created_at" not in triggers:
        msg = "the writer of an audit event chooses its created_at (it can backdate it)"
        msg += f"; fix: {MIGRATE}"
        out.append(Finding("error", table, "audit-created-at", msg))
    return out


def check_append_only(db: Database, tables: set[str]) -> list[Finding]:
    """audit_logs must refuse UPDATE and DELETE in the database itself."""
    table = AuditLog._meta.table_name
    if table not in tables:
        return []
    missing = [op for op in ("UPDATE", "DELETE") if op not in refused_operations(db, table)]
    if not missing:
        return []
    msg = f"{' and '.join(missing)} of audit events are not refused by a trigger; fix: {MIGRATE}"
    return [Finding("error", table, "audit-append-only", msg)]
