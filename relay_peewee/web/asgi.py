"""ASGI middleware: every HTTP request runs inside its tenant's context (Starlette, FastAPI).

    from starlette.middleware import Middleware
    from relay_peewee.web import by_host
    from relay_peewee.web.asgi import TenantMiddleware

    tenancy = Middleware(TenantMiddleware, resolve=by_host("relay.example"))
    app = Starlette(routes=..., middleware=[tenancy])

On a sync database the middleware owns the request's connection, as the
WSGI one does (``database.request_connection``): a clean one per request,
closed (back to the pool) when the response is done, the app's own
``db.connect()``/``db.close()`` no-ops in between. A pwasyncio database
keeps its connection per task itself. The tenant is resolved first
(``resolvers``; on a ``playhouse.pwasyncio`` database through ``await
db.run(...)``); a request naming no usable tenant
gets the resolver's status (404 or 401) and the application never runs.
Otherwise the application runs inside ``async with tenant_context(...)``:
``current_tenant()`` is the request's tenant and
``scope["state"]["relay_tenant"]`` (Starlette: ``request.state.relay_tenant``)
the ``ResolvedTenant``. The application's call spans the whole response,
streamed bodies included, so the context is left when it returns, when it
raises (its writes roll back on PostgreSQL) and when it is cancelled because
the client went away. Other scopes (``lifespan``, ``websocket``) pass through.

On PostgreSQL use a pwasyncio database (a connection per task): with a sync
database, two requests in flight at once on the event loop's thread would
share its connection, and the second is refused with ``RelayError``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..database import database_proxy
from ..database.request_connection import request_connection
from ..errors import TenantInactive
from ..tenancy.context import tenant_context
from .resolvers import (
    RequestInfo,
    ResolvedTenant,
    Resolver,
    TenantNotResolved,
    inactive_refused,
)

__all__ = ["TenantMiddleware"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def request_info(scope: Scope) -> RequestInfo:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    server = scope.get("server") or ("", None)
    return RequestInfo(
        host=headers.get("host", str(server[0] or "")), headers=headers, path=scope.get("path", "/")
    )


class TenantMiddleware:
    """Resolve the request's tenant, then run the app inside ``async with tenant_context``."""

    def __init__(self, app: ASGIApp, resolve: Resolver) -> None:
        self.app = app
        self.resolve = resolve

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        db: Any = database_proxy.obj
        with request_connection(db):  # a no-op on a pwasyncio database
            try:
                resolved = await self._resolve(db, request_info(scope))
            except TenantNotResolved as refused:
                await _refuse(send, refused)
                return
            scope.setdefault("state", {})["relay_tenant"] = resolved
            context = tenant_context(resolved.tenant_id)
            try:
                await context.__aenter__()
            except TenantInactive as exc:  # entering only: the app's own stays its own
                await _refuse(send, inactive_refused(exc))
                return
            try:
                await self.app(scope, receive, send)
            except BaseException as exc:
                await context.__aexit__(type(exc), exc, exc.__traceback__)
                raise
            await context.__aexit__(None, None, None)

    async def _resolve(self, db: Any, request: RequestInfo) -> ResolvedTenant:
        remembered = getattr(self.resolve, "remembered", None)  # by_host's cache
        if remembered is not None:
            hit: ResolvedTenant | None = remembered(request)
            if hit is not None:
                return hit
        if hasattr(db, "aexecute_sql"):  # pwasyncio: the lookups run through its bridge
            resolved: ResolvedTenant = await db.run(self.resolve, request)
            return resolved
        return self.resolve(request)


async def _refuse(send: Send, refused: TenantNotResolved) -> None:
    body = f"{refused.message}\n".encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    headers.append((b"content-length", str(len(body)).encode()))
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in refused.headers.items()]
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
