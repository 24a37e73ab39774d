"""Which tenant a request is for: from its host, its API key, or a trusted proxy header.

A resolver is any function ``(RequestInfo) -> ResolvedTenant``; it raises
``TenantNotResolved`` (with the HTTP status to answer) when the request names
no usable tenant, and the middleware then answers without running the
application. The built-in ones look tenants up with ``relay_peewee.operations.lookups``,
which work before any tenant is in context (on PostgreSQL through narrow
``SECURITY DEFINER`` functions, never ``unscoped``):

* ``by_host(root_domain, cache_seconds=2.0)`` - ``acme.<root_domain>`` (or
  ``acme.localhost``) names the tenant whose slug is ``acme``; any other host
  is matched against ``tenants.domain``. Unknown or inactive: 404. A host
  found is remembered for ``cache_seconds`` (``host_cache``), so a page pays
  no lookup; a tenant deactivated elsewhere stops resolving within that
  time, and at once after this process changes tenants.
* ``by_api_key(header)`` - ``Authorization: Bearer <key>`` (or the raw value of
  another header), looked up by its SHA-256. Missing, unknown, revoked or
  expired: 401.
* ``by_trusted_header(header)`` - the tenant id a proxy in front of the app put
  in a header (the proxy must strip it from clients' requests). Missing,
  unknown or inactive: 404.
* ``first_of(a, b, ...)`` - the first resolver whose input the request
  carries: ``first_of(by_api_key(), by_host(root))`` uses the key when there
  is one (and refuses a bad one), else the host.

An application replaces them with its own function of the same shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..database import database_proxy
from ..errors import RelayError, TenantInactive
from ..models import Tenant
from ..operations.lookups import ApiKeyMatch, find_api_key, find_tenant_by_host
from .host_cache import HostCache

__all__ = [
    "RequestInfo",
    "ResolvedTenant",
    "Resolver",
    "TenantNotResolved",
    "by_api_key",
    "by_host",
    "by_trusted_header",
    "first_of",
    "inactive_refused",
]


@dataclass(frozen=True)
class RequestInfo:
    """What a resolver sees of a request, the same for WSGI and ASGI."""

    host: str
    headers: Mapping[str, str]  # names lower-case; repeated headers joined with ", "
    path: str = "/"


@dataclass(frozen=True)
class ResolvedTenant:
    """The tenant a request acts for, and the API key that proved it, if any."""

    tenant_id: str
    api_key: ApiKeyMatch | None = None


@dataclass
class TenantNotResolved(RelayError):
    """The request names no usable tenant: answer ``status`` and do not run the app.

    ``absent`` means the request carried nothing this resolver reads (no key,
    no header), so ``first_of`` may try the next one.
    """

    status: int
    message: str
    absent: bool = False
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


Resolver = Callable[[RequestInfo], ResolvedTenant]


def inactive_refused(exc: TenantInactive) -> TenantNotResolved:
    """What the middleware answers when the resolved tenant turns out inactive.

    The resolvers' lookups skip inactive tenants themselves (404, or 401 for
    a key); this is the request that resolved from ``by_host``'s cache just
    after a deactivation, refused by ``tenant_context``. 404, as an inactive
    host is, with a message that says why.
    """
    return TenantNotResolved(404, "this tenant is inactive")


def by_host(root_domain: str | None = None, cache_seconds: float = 2.0) -> Resolver:
    """The active tenant the Host header names (slug subdomain, or its own domain).

    ``cache_seconds`` bounds how long a resolved host is trusted without a
    lookup (``0`` looks up every request). Only hosts that resolved are
    remembered: a new tenant resolves at once, and unknown hosts cannot
    fill the cache.
    """
    cache = HostCache(cache_seconds)

    def remembered(request: RequestInfo) -> ResolvedTenant | None:
        tenant_id = cache.get(database_proxy.obj, request.host)
        return None if tenant_id is None else ResolvedTenant(tenant_id)

    def resolve(request: RequestInfo) -> ResolvedTenant:
        db = database_proxy.obj
        tenant_id = cache.get(db, request.host)
        if tenant_id is None:
            match = find_tenant_by_host(database_proxy, request.host, root_domain)
            if match is None:
                raise TenantNotResolved(404, f"no tenant at {request.host or 'this host'}")
            tenant_id = match.tenant_id
            cache.put(db, request.host, tenant_id)
        return ResolvedTenant(tenant_id)

    # The ASGI middleware asks first, so a remembered host costs no trip
    # through an asyncio database's bridge.
    resolve.remembered = remembered  # type: ignore[attr-defined]
    return resolve


def by_api_key(header: str = "authorization") -> Resolver:
    """The tenant of the API key in ``header``: ``Bearer <key>`` for Authorization."""
    name = header.lower()
    challenge = {"www-authenticate": "Bearer"} if name == "authorization" else {}

    def resolve(request: RequestInfo) -> ResolvedTenant:
        value = request.headers.get(name, "").strip()
        if name == "authorization":
            scheme, _, value = value.partition(" ")
            if scheme.lower() != "bearer":
                value = ""
            value = value.strip()
        if not value:
            raise TenantNotResolved(401, "an API key is required", True, challenge)
        match = find_api_key(database_proxy, value)
        if match is None:
            raise TenantNotResolved(401, "invalid API key", False, challenge)
        return ResolvedTenant(match.tenant_id, match)

    return resolve


def by_trusted_header(header: str = "x-relay-tenant-id") -> Resolver:
    """The active tenant whose id a trusted proxy put in ``header``."""
    name = header.lower()

    def resolve(request: RequestInfo) -> ResolvedTenant:
        tenant_id = request.headers.get(name, "").strip()
        if not tenant_id:
            raise TenantNotResolved(404, f"no {name} header", absent=True)
        # tenants has no row-level security: readable before a tenant is known.
        active = Tenant.select(Tenant.id).where(Tenant.id == tenant_id, Tenant.is_active)
        if not active.exists():
            raise TenantNotResolved(404, "no such tenant")
        return ResolvedTenant(tenant_id)

    return resolve


def first_of(*resolvers: Resolver) -> Resolver:
    """The first resolver whose input the request carries; the last one's error otherwise."""
    if not resolvers:
        raise ValueError("first_of() needs at least one resolver")

    def resolve(request: RequestInfo) -> ResolvedTenant:
        error: TenantNotResolved | None = None
        for resolver in resolvers:
            try:
                return resolver(request)
            except TenantNotResolved as exc:
                if not exc.absent:
                    raise
                error = exc
        assert error is not None
        raise error

    return resolve
