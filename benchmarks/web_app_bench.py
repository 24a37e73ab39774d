"""What a page of a small web app costs with relay_peewee, against the same app untenanted.

    python benchmarks/web_app_bench.py [--backend sqlite|postgres|both]
                                       [--requests N] [--part P]

The app is the shape of peewee's own Flask example: a few models, the
``before_request: db.connect()`` / ``teardown_request: db.close()`` pattern,
pages of one to three queries. Two copies of it run on the same data:

* ``plain``: plain peewee, models reflected from the same tables
  (``playhouse.reflection``), the database opened the way a peewee app opens
  it (SQLite with ``foreign_keys`` and WAL; on PostgreSQL a
  ``PooledPostgresqlDatabase`` as the tables' owner), no tenancy;
* ``relay``: relay_peewee's models on ``relay_peewee.connect(url)`` (on
  PostgreSQL ``postgresql+pool://`` as the application role, so forced
  row-level security is in force), behind ``TenantMiddleware`` with
  ``by_host``: each request resolves its host to a tenant and runs in
  ``tenant_context``.

Pages: ``/skills/<id>`` (one get), ``/users/<id>`` (the user, their ten
latest skills, their ratings count: three queries). Each request is a WSGI
call of the Flask app with a prebuilt environ, its body read and closed, so
what is timed is the app and its database work, not an HTTP client. The
sides take turns part by part; the table shows each side's median request in
microseconds and the ratio relay / plain (target <= 1.10 on both backends).
"""

from __future__ import annotations

import argparse
import gc
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask
from peewee import Database, Model, SqliteDatabase, fn
from playhouse.pool import PooledPostgresqlDatabase
from playhouse.reflection import generate_models
from werkzeug.test import EnvironBuilder

import relay_peewee
from relay_peewee import tenant_context
from relay_peewee.database import open_database
from relay_peewee.models import Rating, Skill, Tenant, User
from relay_peewee.operations import create_roles, migrate
from relay_peewee.testing import throwaway_postgres_database
from relay_peewee.web import by_host
from relay_peewee.web.wsgi import TenantMiddleware

ROOT = "relay.test"
TARGET = 1.10
PAGES = ("one get", "three gets")


def populate(db: Database, users: int = 50, skills_each: int = 20) -> dict[str, list[str]]:
    """Two tenants, each with users, their skills and ratings; the first tenant's ids."""
    migrate(db)
    ids: dict[str, list[str]] = {}
    for slug in ("a", "b"):
        tenant = Tenant.create(slug=slug, name=slug)
        with db.atomic(), tenant_context(tenant):
            User.insert_many(
                [{"email": f"{slug}{i}@x.test", "name": f"user {i}"} for i in range(users)]
            ).execute()
            people = [u.id for u in User.select(User.id)]
            Skill.insert_many(
                [
                    {
                        "name": f"skill {i}",
                        "slug": f"skill-{i}",
                        "description": "d",
                        "category": f"cat-{i % 10}",
                        "content": "# x",
                        "author": people[i % users],
                    }
                    for i in range(users * skills_each)
                ]
            ).execute()
            skills = [s.id for s in Skill.select(Skill.id)]
            Rating.insert_many(
                [
                    {"skill": skills[i], "user": people[i % users], "rating": 1 + i % 5}
                    for i in range(len(skills))
                ]
            ).execute()
            if slug == "a":
                ids = {"users": people, "skills": skills}
    return ids


def make_app(db: Database, user: Any, skill: Any, rating: Any) -> Flask:
    """peewee's Flask pattern: connect before the request, close after it."""
    app = Flask(__name__)

    @app.before_request
    def _connect() -> None:
        db.connect(reuse_if_open=True)

    @app.teardown_request
    def _close(exc: BaseException | None) -> None:
        if not db.is_closed():
            db.close()

    @app.route("/skills/<id>")
    def one_skill(id: str) -> str:
        return str(skill.get_by_id(id).name)

    @app.route("/users/<id>")
    def one_user(id: str) -> str:
        person = user.get_by_id(id)
        latest = list(
            skill.select(skill.id, skill.name)
            .where(skill.author == id)
            .order_by(skill.created_at.desc())
            .limit(10)
        )
        rated = rating.select(fn.COUNT(rating.id)).where(rating.user == id).scalar()
        return f"{person.name}: {len(latest)} skills, {rated} ratings"

    return app


def plain_models(db: Database) -> tuple[type[Model], type[Model], type[Model]]:
    models = generate_models(db, table_names=["users", "skills", "ratings"])
    return models["users"], models["skills"], models["ratings"]


Times = list[float]


def timer(app: Any, environs: list[dict[str, Any]]) -> Callable[[], Times]:
    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        if not status.startswith("200"):
            raise SystemExit(f"a benchmark request failed: {status}")

    clock = time.perf_counter

    def run() -> Times:
        times = []
        for environ in environs:
            start = clock()
            body = app(dict(environ), start_response)
            b"".join(body)
            close = getattr(body, "close", None)
            if close is not None:
                close()
            times.append(clock() - start)
        return times

    return run


def environs(page: str, ids: dict[str, list[str]], part: int, host: str) -> list[dict[str, Any]]:
    if page == "one get":
        paths = [f"/skills/{ids['skills'][i % len(ids['skills'])]}" for i in range(part)]
    else:
        paths = [f"/users/{ids['users'][i % len(ids['users'])]}" for i in range(part)]
    return [EnvironBuilder(path=p, headers=[("Host", host)]).get_environ() for p in paths]


def compare(
    backend: str, relay_app: Any, plain_app: Any, ids: dict[str, list[str]], args: Any
) -> bool:
    ok = True
    for page in PAGES:
        envs = environs(page, ids, args.part, f"a.{ROOT}")
        relay, plain = timer(relay_app, envs), timer(plain_app, envs)
        relay(), plain()  # warm connections, pools and peewee's caches
        gc.collect()
        relay_t: list[Times] = []
        plain_t: list[Times] = []
        for n in range(max(1, args.requests // args.part)):
            first, second = (relay, plain) if n % 2 == 0 else (plain, relay)
            a, b = first(), second()
            relay_t.append(a if first is relay else b)
            plain_t.append(b if first is relay else a)
        relay_med = statistics.median(t for part in relay_t for t in part)
        plain_med = statistics.median(t for part in plain_t for t in part)
        ratio = relay_med / plain_med
        parts = sorted(sum(r) / sum(p) for r, p in zip(relay_t, plain_t, strict=True))
        q = statistics.quantiles(parts, n=4) if len(parts) > 1 else [parts[0]] * 3
        met = ratio <= TARGET
        ok &= met
        print(
            f"{backend:<9} {page:<11} {plain_med * 1e6:>9.0f} {relay_med * 1e6:>9.0f} "
            f"{ratio:>6.2f}  [{q[0]:.2f}-{q[2]:.2f}]  (target <= {TARGET})  "
            f"{'met' if met else 'MISSED'}"
        )
    return ok


def run_sqlite(args: Any) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/app.db"
        db = relay_peewee.connect(url)
        ids = populate(db)
        db.close()
        relay_app = make_app(db, User, Skill, Rating)
        relay_app.wsgi_app = TenantMiddleware(relay_app.wsgi_app, by_host(ROOT))  # type: ignore[method-assign]
        plain_db = SqliteDatabase(
            f"{tmp}/app.db", pragmas={"foreign_keys": 1, "journal_mode": "wal"}
        )
        plain_app = make_app(plain_db, *plain_models(plain_db))
        plain_db.close()
        return compare("sqlite", relay_app, plain_app, ids, args)


@contextmanager
def app_role(owner_url: str) -> Iterator[str]:
    """A fresh application role on the database; its URL. Dropped afterwards."""
    suffix = secrets.token_hex(4)
    app, admin = f"relay_app_{suffix}", f"relay_admin_{suffix}"
    owner = open_database(owner_url)
    create_roles(owner, app, admin)
    rest = owner_url.split("@", 1)[1]
    try:
        yield f"postgresql+pool://{app}@{rest}"
    finally:
        owner.connect(reuse_if_open=True)
        owner.execute_sql(f"DROP OWNED BY {app}, {admin}")
        owner.execute_sql(f"DROP ROLE IF EXISTS {app}")
        owner.execute_sql(f"DROP ROLE IF EXISTS {admin}")
        owner.close()


def run_postgres(args: Any) -> bool:
    server = f"postgresql://{args.pg_user}@{args.pg_host}:{args.pg_port}/{args.pg_db}"
    with throwaway_postgres_database(server, prefix="web_app_bench") as owner_url:
        owner = relay_peewee.connect(owner_url)
        ids = populate(owner)
        owner.close()
        with app_role(owner_url) as app_url:
            db = relay_peewee.connect(app_url)
            relay_app = make_app(db, User, Skill, Rating)
            relay_app.wsgi_app = TenantMiddleware(relay_app.wsgi_app, by_host(ROOT))  # type: ignore[method-assign]
            name = owner_url.rsplit("/", 1)[1]
            plain_db = PooledPostgresqlDatabase(
                name, user=args.pg_user, host=args.pg_host, port=args.pg_port, max_connections=4
            )
            plain_app = make_app(plain_db, *plain_models(plain_db))
            plain_db.close()
            try:
                return compare("postgres", relay_app, plain_app, ids, args)
            finally:
                plain_db.close_all()
                db.close()
                pool_close = getattr(db, "close_all", None)
                if pool_close is not None:
                    pool_close()


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--requests", type=int, default=3000, help="requests per side and page")
    parser.add_argument("--part", type=int, default=100, help="requests per timed part")
    parser.add_argument("--pg-host", default=os.environ.get("PGHOST", "127.0.0.1"))
    parser.add_argument("--pg-port", type=int, default=int(os.environ.get("PGPORT", "5432")))
    parser.add_argument("--pg-user", default=os.environ.get("PGUSER", "root"))
    parser.add_argument("--pg-db", default=os.environ.get("PGDATABASE", "test"))
    args = parser.parse_args(argv)
    print(f"{args.requests} requests per side and page, parts of {args.part}")
    print("backend   page         plain µs  relay µs  ratio  part ratios (quartiles)")
    ok = True
    if args.backend in ("sqlite", "both"):
        ok &= run_sqlite(args)
    if args.backend in ("postgres", "both"):
        ok &= run_postgres(args)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
