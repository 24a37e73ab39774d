"""WSGI middleware: every request runs inside its tenant's context (Flask, any WSGI app).

    from relay_peewee.web import by_host
    from relay_peewee.web.wsgi import TenantMiddleware

    app.wsgi_app = TenantMiddleware(app.wsgi_app, by_host("relay.example"))

The middleware owns the request's database connection
(``database.request_connection``): it connects first - a connection no
other request left state on - and closes it, back to the pool, when the
request is done; in between the app's own ``db.connect()``/``db.close()``
(peewee's Flask hooks, ``FlaskDB``) are no-ops. The tenant is resolved
next (``resolvers``); a request naming no usable tenant gets the
resolver's status (404 or 401) and the application never runs. Otherwise
the application runs - and its response body is iterated - inside
``tenant_context``: ``current_tenant()`` is the request's tenant and
``environ["relay.tenant"]`` the ``ResolvedTenant``. The context is left on
every path: the body read to its end (a server or test client need not
call ``close()`` before the next request), the application raising (its
writes roll back on PostgreSQL), the body raising while it streams, and the
server closing the body early because the client went away (PEP 3333
requires ``close()``), which ends it normally.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from http import HTTPStatus
from typing import Any

from ..database import database_proxy
from ..database.request_connection import request_connection
from ..errors import TenantInactive
from ..tenancy.context import tenant_context
from .resolvers import RequestInfo, Resolver, TenantNotResolved, inactive_refused

__all__ = ["TenantMiddleware"]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def request_info(environ: dict[str, Any]) -> RequestInfo:
    headers = {
        key[5:].replace("_", "-").lower(): value
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if key in environ:
            headers[key.replace("_", "-").lower()] = environ[key]
    host = headers.get("host") or environ.get("SERVER_NAME", "")
    return RequestInfo(host=host, headers=headers, path=environ.get("PATH_INFO", "/"))


class TenantMiddleware:
    """Resolve the request's tenant, then run the app inside ``tenant_context``."""

    def __init__(self, app: WSGIApp, resolve: Resolver) -> None:
        self.app = app
        self.resolve = resolve

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        request = ExitStack()
        request.enter_context(request_connection(database_proxy.obj))
        try:
            resolved = self.resolve(request_info(environ))
            environ["relay.tenant"] = resolved
            try:
                request.enter_context(tenant_context(resolved.tenant_id))
            except TenantInactive as exc:  # entering only: the app's own stays its own
                raise inactive_refused(exc) from None
            body = self.app(environ, start_response)
        except TenantNotResolved as refused:
            request.close()
            status = f"{refused.status} {HTTPStatus(refused.status).phrase}"
            message = f"{refused.message}\n".encode()
            headers = [("Content-Type", "text/plain; charset=utf-8")]
            headers += [("Content-Length", str(len(message))), *refused.headers.items()]
            start_response(status, headers)
            return [message]
        except BaseException:
            request.__exit__(*sys.exc_info())
            raise
        return _InContext(body, request)


class _InContext:
    """The app's body, iterated inside the request, which its end or ``close()`` leaves."""

    def __init__(self, body: Iterable[bytes], request: ExitStack) -> None:
        self._body = body
        self._request: ExitStack | None = request

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._body
        except GeneratorExit:  # the iteration was abandoned: close() leaves
            raise
        except BaseException:
            self._leave(*sys.exc_info())
            raise
        # Exhausted: nothing of the request runs after this but the body's
        # close(), so the context and the connection are done with now.
        self._leave(None, None, None)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        except BaseException:
            self._leave(*sys.exc_info())
            raise
        self._leave(None, None, None)

    def _leave(self, *exc_info: Any) -> None:
        request, self._request = self._request, None
        if request is not None:
            request.__exit__(*exc_info)
