"""Request handling: find a request's tenant and run the request inside its context.

``resolvers`` say which tenant a request is for; ``wsgi.TenantMiddleware``
(Flask, any WSGI app) and ``asgi.TenantMiddleware`` (Starlette, FastAPI, any
ASGI app) run each request inside ``tenant_context``. Nothing in the core
imports this package.
"""

from __future__ import annotations

from .resolvers import (
    RequestInfo,
    ResolvedTenant,
    Resolver,
    TenantNotResolved,
    by_api_key,
    by_host,
    by_trusted_header,
    first_of,
)

__all__ = [
    "RequestInfo",
    "ResolvedTenant",
    "Resolver",
    "TenantNotResolved",
    "by_api_key",
    "by_host",
    "by_trusted_header",
    "first_of",
]
