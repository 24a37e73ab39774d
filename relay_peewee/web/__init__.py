"""Request handling: find a request's tenant and run the request inside its context.

``resolvers`` say which tenant a request is for; ``wsgi.TenantMiddleware``
(Flask, any WSGI app) and ``asgi.TenantMiddleware`` (Starlette, FastAPI, any
ASGI app) run each request inside ``tenant_context``; ``sessions`` binds a
login session to its tenant. Nothing in the core imports this package.
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
from .sessions import bind_session, check_session

__all__ = [
    "RequestInfo",
    "ResolvedTenant",
    "Resolver",
    "TenantNotResolved",
    "bind_session",
    "by_api_key",
    "by_host",
    "by_trusted_header",
    "check_session",
    "first_of",
]
