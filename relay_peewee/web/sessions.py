"""A login session belongs to one tenant: bind it at login, check it on every request.

A session cookie is signed by the app, not by the tenant: the same cookie sent
to another tenant's host is still valid there, and a view that loads the
session's user (``User.get_by_id(session["user_id"])``) finds no such user in
this tenant and fails with a 500. Stamp the session with its tenant at login
and treat any other session as logged out::

    from relay_peewee.web.sessions import bind_session, check_session

    @app.before_request
    def _tenant_session():
        check_session(flask.session)      # another tenant's session: cleared

    @app.post("/login")
    def login():
        ...
        flask.session["user_id"] = user.id
        bind_session(flask.session)       # this tenant's from now on

Works on any mutable mapping (Flask's ``session``, Starlette's
``request.session``). Both need a tenant in context (the middleware's).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from ..scope import require_tenant

__all__ = ["SESSION_KEY", "bind_session", "check_session"]

SESSION_KEY = "relay_tenant_id"


def bind_session(session: MutableMapping[str, Any]) -> None:
    """Mark ``session`` as the current tenant's (call it when the user logs in)."""
    session[SESSION_KEY] = require_tenant()


def check_session(session: MutableMapping[str, Any]) -> bool:
    """Whether ``session`` belongs to the current tenant; if not, it is cleared.

    A session stamped with another tenant, or holding data but no stamp (made
    before the app bound its sessions), is another tenant's as far as this
    request knows: cleared, so the user is logged out rather than looked up
    in the wrong tenant. An empty session is left alone.
    """
    tenant_id = require_tenant()
    if session.get(SESSION_KEY) == tenant_id:
        return True
    if session:
        session.clear()
    return False
