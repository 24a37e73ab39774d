"""A small Flask app on the models, behind relay_peewee's tenant middleware.

The middleware reads the request's Host (``acme.tweepee.example``, or a
tenant's own domain) and runs the request inside that tenant's context, so
the views are written as for a single-tenant app: every query sees, and
every write lands in, the request's tenant only.

Run it (after ``relay-peewee migrate`` and ``relay-peewee tenants create``)::

    DATABASE_URL=sqlite:///tweepee.db flask --app tweepee.app run
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from flask import Flask, abort, request
from peewee import Database, IntegrityError

import relay_peewee
from relay_peewee.web import by_host
from relay_peewee.web.wsgi import TenantMiddleware

from .models import Message, Relationship, User

ROOT_DOMAIN = "tweepee.example"


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _user(username: str) -> User:
    user = User.get_or_none(User.username == username)
    if user is None:
        abort(404)
    return user


def create_app(database: str | Database | None = None, root_domain: str = ROOT_DOMAIN) -> Flask:
    """The app on ``database`` (a URL or an opened database; default $DATABASE_URL)."""
    db = relay_peewee.connect(database)
    app = Flask(__name__)

    @app.post("/users")
    def join() -> Any:
        form = request.get_json(force=True)
        try:
            with db.atomic():
                user = User.create(
                    username=form["username"],
                    password=form["password"],
                    email=form["email"],
                    join_date=_now(),
                )
        except IntegrityError:  # the username is taken in this tenant
            abort(409)
        return {"id": user.id, "username": user.username}, 201

    @app.post("/users/<username>/follow/<other>")
    def follow(username: str, other: str) -> Any:
        with db.atomic():
            Relationship.get_or_create(from_user=_user(username), to_user=_user(other))
        return {"following": other}

    @app.post("/users/<username>/messages")
    def post(username: str) -> Any:
        content = request.get_json(force=True)["content"]
        with db.atomic():
            message = Message.create(user=_user(username), content=content, pub_date=_now())
        return {"id": message.id}, 201

    @app.get("/users/<username>/timeline")
    def timeline(username: str) -> Any:
        """Messages of the users ``username`` follows, newest first."""
        following = Relationship.select(Relationship.to_user).where(
            Relationship.from_user == _user(username)
        )
        messages = (
            Message.select(Message, User)
            .join(User)
            .where(Message.user.in_(following))
            .order_by(Message.pub_date.desc(), Message.id.desc())
        )
        return {"messages": [{"user": m.user.username, "content": m.content} for m in messages]}

    @app.get("/users")
    def users() -> Any:
        return {"users": [u.username for u in User.select().order_by(User.username)]}

    app.wsgi_app = TenantMiddleware(app.wsgi_app, by_host(root_domain))  # type: ignore[method-assign]
    return app
