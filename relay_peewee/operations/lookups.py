"""Lookups that run before the request's tenant is known.

An API or MCP request carries only a key; a browser request only a host.
Relay resolves both across all tenants (``validateApiKey``, its middleware's
subdomain / domain lookup) and only then knows the tenant. Under forced
row-level security the application role sees no row outside its tenant, and
``unscoped()`` would write an audit row per request and need the
``relay_admin`` grant. So on PostgreSQL each lookup is one narrow
``SECURITY DEFINER`` function (migration 0010): owned by the role that ran
the migrations (superuser or BYPASSRLS, so it sees every tenant), with its
``search_path`` and ``TimeZone`` pinned, ``EXECUTE`` revoked from ``PUBLIC``
and granted to the application role by ``relay-peewee roles``, returning
only the ids the caller needs. SQLite has no row-level security: there it is
a plain statement, which bypasses the ORM's tenant scoping on purpose.

Each lookup also has a ``*_statement`` function returning the SQL and
parameters it runs, so an asyncio driver can run the very same statement.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from peewee import Database, DatabaseProxy

from ..database import is_postgres, unwrap

__all__ = [
    "LOOKUP_FUNCTIONS",
    "ApiKeyMatch",
    "TenantMatch",
    "api_key_lookup_statement",
    "find_api_key",
    "find_tenant_by_host",
    "hash_api_key",
    "host_candidates",
    "tenant_host_lookup_statement",
]

# The PostgreSQL functions, by signature; `relay-peewee roles` grants EXECUTE
# on them and the audit checks their definitions.
LOOKUP_FUNCTIONS = ("relay_find_api_key(text)", "relay_find_tenant(text, text)")


@dataclass(frozen=True)
class ApiKeyMatch:
    tenant_id: str
    user_id: str
    key_id: str


@dataclass(frozen=True)
class TenantMatch:
    tenant_id: str
    slug: str


def hash_api_key(raw_key: str) -> str:
    """SHA-256 of the raw key, lower-case hex: Relay's ``hashApiKey``."""
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


# Relay's validateApiKey refuses a revoked key and (through its callers) an
# expired one, and stamps last_used_at on every key it accepts; one UPDATE
# ... RETURNING does the lookup and the stamp together. A key of a
# deactivated tenant is refused too, as that tenant's host is (PostgreSQL:
# migration 0012).
_SQLITE_API_KEY = (
    'UPDATE "api_keys" SET "last_used_at" = ? WHERE "key_hash" = ? AND "revoked_at" IS NULL'
    ' AND ("expires_at" IS NULL OR julianday("expires_at") > julianday(?))'
    ' AND "tenant_id" IN (SELECT "id" FROM "tenants" WHERE "is_active" = 1)'
    ' RETURNING "tenant_id", "user_id", "id"'
)
_POSTGRES_API_KEY = "SELECT tenant_id, user_id, key_id FROM relay_find_api_key(%s)"

# Exactly one active tenant, or nothing: a domain two tenants both claim
# resolves to neither rather than to whichever comes first.
_SQLITE_TENANT = (
    'SELECT min(t."id"), min(t."slug") FROM "tenants" AS t WHERE t."is_active" = 1 AND ('
    '(? IS NOT NULL AND t."slug" = ?) OR (? IS NULL AND ? IS NOT NULL AND lower(t."domain") = ?))'
    " HAVING count(*) = 1"
)
_POSTGRES_TENANT = "SELECT tenant_id, slug FROM relay_find_tenant(%s, %s)"


def api_key_lookup_statement(db: Database | DatabaseProxy, raw_key: str) -> tuple[str, list[Any]]:
    """The SQL and parameters ``find_api_key`` runs; rows are (tenant_id, user_id, key_id)."""
    key_hash = hash_api_key(raw_key)
    if is_postgres(db):
        return _POSTGRES_API_KEY, [key_hash]
    # Naive UTC, as peewee writes it; julianday() reads either separator and
    # an offset, and an unreadable expires_at compares as expired.
    now = str(datetime.now(timezone.utc).replace(tzinfo=None))
    return _SQLITE_API_KEY, [now, key_hash, now]


def find_api_key(db: Database | DatabaseProxy, raw_key: str) -> ApiKeyMatch | None:
    """The tenant, user and key a raw API key belongs to; None when unknown,
    revoked, expired, or its tenant is deactivated. An accepted key's
    ``last_used_at`` is set to now."""
    database = unwrap(db)
    sql, params = api_key_lookup_statement(database, raw_key)
    with database.atomic():
        rows = database.execute_sql(sql, params).fetchall()
    if len(rows) != 1:
        return None
    tenant_id, user_id, key_id = rows[0]
    return ApiKeyMatch(str(tenant_id), str(user_id), str(key_id))


def host_candidates(host: str, root_domain: str | None = None) -> tuple[str | None, str | None]:
    """(slug, domain) to look up for a request's Host header, as Relay's middleware reads it.

    ``acme.localhost`` and ``acme.<root_domain>`` name the slug ``acme``; the
    apex, ``www`` and ``localhost`` itself name nothing; any other host is
    matched against ``tenants.domain``.
    """
    hostname = host.strip().lower()
    if hostname.startswith("["):  # an IPv6 literal, [::1]:3000
        return None, None
    hostname = hostname.split(":", 1)[0].rstrip(".")
    if not hostname:
        return None, None
    root = (root_domain or "").strip().lower().rstrip(".") or None
    for suffix in ("localhost", root):
        if suffix is None:
            continue
        if hostname == suffix or hostname == f"www.{suffix}":
            return None, None
        if hostname.endswith(f".{suffix}"):
            sub = hostname[: -len(suffix) - 1]
            return (None if sub == "www" else sub), None
    return None, hostname


def tenant_host_lookup_statement(
    db: Database | DatabaseProxy, host: str, root_domain: str | None = None
) -> tuple[str, list[Any]]:
    """The SQL and parameters ``find_tenant_by_host`` runs; rows are (tenant_id, slug)."""
    slug, domain = host_candidates(host, root_domain)
    if is_postgres(db):
        return _POSTGRES_TENANT, [slug, domain]
    return _SQLITE_TENANT, [slug, slug, slug, domain, domain]


def find_tenant_by_host(
    db: Database | DatabaseProxy, host: str, root_domain: str | None = None
) -> TenantMatch | None:
    """The active tenant a request host names, or None (see ``host_candidates``)."""
    database = unwrap(db)
    sql, params = tenant_host_lookup_statement(database, host, root_domain)
    rows = database.execute_sql(sql, params).fetchall()
    if len(rows) != 1 or rows[0][0] is None:
        return None
    return TenantMatch(str(rows[0][0]), str(rows[0][1]))
