"""What tenant scoping costs: scoped queries against the same queries written by hand.

    python benchmarks/isolation_bench.py [--backend sqlite|postgres|both]
                                         [--skills N] [--rounds R] [--quick]

For each backend, in one run: migrate a fresh database, fill two tenants with
the same data (N skills each, same slugs, 5 ratings per skill), then time
each case twice - once through relay_peewee inside ``tenant_context`` (the
``scoped`` column) and once through plain peewee models mapped onto the same
tables, with the tenant written by hand: ``.where(Model.tenant == t)`` on
every table of the query, ``tenant=t`` on every row written (``by hand``).
The two alternate, R rounds each; the table shows the median round of each
and the median of the per-round ratios scoped / by hand (target <= 1.10).

Reads: get by id, a filtered list, a join of skills with ratings, a backref.
Writes: create (a skill; a rating given its skill and user rows), and a bulk
insert of 10,000 ratings (``insert_many`` with raw ids, so the scoped side
also proves every referenced skill and user belongs to the tenant). Writes
run in a transaction that is rolled back, so every round starts equal; that
measures the ORM's work, not the disk's fsync, which would hide any overhead.
Two informational cases (no target) price the foreign-key check on its own.

PostgreSQL is reached through libpq's variables (PGHOST, PGPORT, PGUSER,
PGDATABASE for the admin database), default root@127.0.0.1:5432/test; when
it cannot be reached only SQLite runs. Throw-away databases are removed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import peewee
from peewee import Database, ForeignKeyField

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import relay_peewee
from relay_peewee import tenant_context
from relay_peewee.commands import migrate
from relay_peewee.models import Rating, Skill, Tenant, User

PG_HOST = os.environ.get("PGHOST", "127.0.0.1")
PG_PORT = int(os.environ.get("PGPORT", "5432"))
PG_USER = os.environ.get("PGUSER", "root")
PG_ADMIN_DB = os.environ.get("PGDATABASE", "test")
TARGET = 1.10
RATINGS_PER_SKILL = 5
BULK_ROWS = 10_000


# --- databases ---------------------------------------------------------------


@contextmanager
def sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="isolation_bench_") as tmp:
        yield f"sqlite:///{tmp}/bench.db"


@contextmanager
def postgres_url() -> Iterator[str | None]:
    try:
        import psycopg2

        admin = psycopg2.connect(
            host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=PG_ADMIN_DB, connect_timeout=3
        )
    except Exception as exc:  # no driver or no server: SQLite still runs
        print(f"postgres: skipped ({' '.join(str(exc).split()) or type(exc).__name__})")
        yield None
        return
    admin.autocommit = True
    name = f"isolation_bench_{secrets.token_hex(4)}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


# --- the hand-written side: plain peewee models on the same tables -----------


def plain_model(model: Any, db: Database, related: dict[Any, Any]) -> Any:
    """A plain ``peewee.Model`` for ``model``'s table: no scoping, no checks, no events."""
    attrs: dict[str, Any] = {}
    for field in model._meta.sorted_fields:
        if isinstance(field, ForeignKeyField):
            target = related.get(field.rel_model, field.rel_model)
            attrs[field.name] = ForeignKeyField(
                target,
                field=target._meta.fields[field.rel_field.name],
                column_name=field.column_name,
                null=field.null,
                backref="+",
            )
        else:
            attrs[field.name] = deepcopy(field)
    meta = type("Meta", (), {"database": db, "table_name": model._meta.table_name})
    attrs["Meta"] = meta
    return type(f"Plain{model.__name__}", (peewee.Model,), attrs)


# --- data --------------------------------------------------------------------


@dataclass
class Data:
    tenant: Tenant
    skill_ids: list[str]
    user_ids: list[str]
    categories: list[str]


def populate(db: Database, slug: str, skills: int) -> Data:
    tenant = Tenant.create(slug=slug, name=slug)
    categories = [f"cat-{i}" for i in range(10)]
    with db.atomic(), tenant_context(tenant):
        users = [User.create(email=f"u{i}@{slug}.example") for i in range(20)]
        Skill.insert_many(
            [
                {
                    "name": f"Skill {i}",
                    "slug": f"skill-{i}",  # the same slugs in both tenants
                    "description": "d",
                    "category": categories[i % len(categories)],
                    "content": "x" * 200,
                    "author": users[i % len(users)].id,
                }
                for i in range(skills)
            ]
        ).execute()
        skill_ids = [s.id for s in Skill.select(Skill.id).order_by(Skill.slug)]
        Rating.insert_many(
            [
                {"skill": sid, "user": users[(i + k) % len(users)].id, "rating": 1 + k}
                for i, sid in enumerate(skill_ids)
                for k in range(RATINGS_PER_SKILL)
            ]
        ).execute()
    return Data(tenant, skill_ids, [u.id for u in users], categories)


# --- the cases ---------------------------------------------------------------


@dataclass
class Case:
    name: str
    scoped: Callable[[], Any]
    by_hand: Callable[[], Any]
    writes: bool = False
    target: bool = True


def cases(db: Database, data: Data, plain: dict[str, Any], quick: bool) -> list[Case]:
    pskill, prating = plain["skill"], plain["rating"]
    t = data.tenant.id
    ids = data.skill_ids[:: max(1, len(data.skill_ids) // 200)][:200]
    cats = data.categories
    n_creates = 100 if quick else 300
    counter = iter(range(10**9))

    def get_by_id_scoped() -> None:
        for sid in ids:
            Skill.get_by_id(sid)

    def get_by_id_hand() -> None:
        for sid in ids:
            pskill.get((pskill.id == sid) & (pskill.tenant == t))

    def list_scoped() -> None:
        for cat in cats:
            for _ in range(5):
                list(Skill.select().where(Skill.category == cat).order_by(Skill.slug).limit(50))

    def list_hand() -> None:
        for cat in cats:
            for _ in range(5):
                query = pskill.select().where(pskill.category == cat, pskill.tenant == t)
                list(query.order_by(pskill.slug).limit(50))

    def join_scoped() -> None:
        for cat in cats:
            query = Rating.select(Rating, Skill).join(Skill).where(Skill.category == cat)
            list(query.limit(200))

    def join_hand() -> None:
        for cat in cats:
            query = (
                prating.select(prating, pskill)
                .join(pskill)
                .where(pskill.category == cat, prating.tenant == t, pskill.tenant == t)
            )
            list(query.limit(200))

    skills_scoped = list(Skill.select().where(Skill.id.in_(ids)))
    skills_hand = list(pskill.select().where(pskill.id.in_(ids), pskill.tenant == t))

    def backref_scoped() -> None:
        for skill in skills_scoped:
            list(skill.ratings)

    def backref_hand() -> None:
        for skill in skills_hand:
            list(prating.select().where(prating.skill == skill.id, prating.tenant == t))

    def skill_row() -> dict[str, Any]:
        n = next(counter)
        return {
            "name": "n",
            "slug": f"new-{n}",
            "description": "d",
            "category": "c",
            "content": "x",
        }

    def create_skill_scoped() -> None:
        for _ in range(n_creates):
            Skill.create(**skill_row())

    def create_skill_hand() -> None:
        for _ in range(n_creates):
            pskill.create(tenant=t, **skill_row())

    user = User.get_by_id(data.user_ids[0])
    skill = Skill.get_by_id(data.skill_ids[0])
    puser = plain["user"].get_by_id(data.user_ids[0])
    pskill_row = pskill.get_by_id(data.skill_ids[0])

    def create_rating_scoped() -> None:
        for _ in range(n_creates):
            Rating.create(skill=skill, user=user, rating=3)

    def create_rating_hand() -> None:
        for _ in range(n_creates):
            prating.create(tenant=t, skill=pskill_row, user=puser, rating=3)

    def create_rating_ids_scoped() -> None:
        for _ in range(n_creates):
            Rating.create(skill=skill.id, user=user.id, rating=3)

    bulk = [
        {
            "skill": data.skill_ids[i % len(data.skill_ids)],
            "user": data.user_ids[i % len(data.user_ids)],
            "rating": 1 + i % 5,
        }
        for i in range(BULK_ROWS)
    ]

    def bulk_scoped() -> None:
        for start in range(0, BULK_ROWS, 1000):
            Rating.insert_many(bulk[start : start + 1000]).execute()

    def bulk_hand() -> None:
        for start in range(0, BULK_ROWS, 1000):
            prating.insert_many([dict(r, tenant=t) for r in bulk[start : start + 1000]]).execute()

    return [
        Case("get by id (200)", get_by_id_scoped, get_by_id_hand),
        Case("filtered list (50 x 50 rows)", list_scoped, list_hand),
        Case("join skills+ratings (10 x 200)", join_scoped, join_hand),
        Case("backref skill.ratings (200)", backref_scoped, backref_hand),
        Case(f"create skill ({n_creates})", create_skill_scoped, create_skill_hand, True),
        Case(f"create rating, rows ({n_creates})", create_rating_scoped, create_rating_hand, True),
        Case(f"bulk insert {BULK_ROWS:,} ratings", bulk_scoped, bulk_hand, True),
        Case(
            f"create rating, raw ids ({n_creates})",
            create_rating_ids_scoped,
            create_rating_hand,
            True,
            target=False,
        ),
    ]


# --- timing ------------------------------------------------------------------


def timed(db: Database, fn: Callable[[], Any], writes: bool) -> float:
    if writes:
        with db.atomic() as transaction:
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            transaction.rollback()
        return elapsed
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_backend(
    name: str, url: str, skills: int, rounds: int, quick: bool
) -> list[tuple[Any, ...]]:
    db = relay_peewee.connect(url)
    try:
        migrate(db)
        data = populate(db, "bench-a", skills)
        populate(db, "bench-b", skills)  # the other tenant: same slugs, as many rows
        plain_user = plain_model(User, db, {})
        plain_skill = plain_model(Skill, db, {User: plain_user})
        plain_rating = plain_model(Rating, db, {User: plain_user, Skill: plain_skill})
        plain = {"user": plain_user, "skill": plain_skill, "rating": plain_rating}
        rows = []
        with tenant_context(data.tenant):
            for case in cases(db, data, plain, quick):
                timed(db, case.scoped, case.writes)  # warm-up: caches, plans
                timed(db, case.by_hand, case.writes)
                scoped, by_hand = [], []
                for i in range(rounds):
                    # Alternate which side goes first, so drift favours neither.
                    order = [(case.scoped, scoped), (case.by_hand, by_hand)]
                    for fn, out in order if i % 2 else reversed(order):
                        out.append(timed(db, fn, case.writes))
                # The ratio of each round's pair, taken seconds apart, then
                # the median: a burst of load elsewhere skews one pair only.
                ratio = statistics.median(s / h for s, h in zip(scoped, by_hand, strict=True))
                s, h = statistics.median(scoped), statistics.median(by_hand)
                rows.append((name, case.name, h, s, ratio, case.target))
        return rows
    finally:
        db.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--skills", type=int, default=2000, help="skills per tenant")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--quick", action="store_true", help="fewer rows and rounds")
    args = parser.parse_args(argv)
    skills, rounds = (500, 5) if args.quick else (args.skills, args.rounds)

    results: list[tuple[Any, ...]] = []
    if args.backend in ("sqlite", "both"):
        with sqlite_url() as url:
            results += run_backend("sqlite", url, skills, rounds, args.quick)
    if args.backend in ("postgres", "both"):
        with postgres_url() as url:
            if url is not None:
                results += run_backend("postgres", url, skills, rounds, args.quick)

    print(
        f"\n{skills:,} skills and {skills * RATINGS_PER_SKILL:,} ratings per tenant, "
        f"two tenants; medians of {rounds} rounds"
    )
    header = f"{'backend':<9} {'case':<34} {'by hand':>10} {'scoped':>10} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    missed = 0
    for backend, case, hand, scoped, ratio, has_target in results:
        mark = "" if not has_target else ("  ok" if ratio <= TARGET else "  MISSED")
        missed += bool(has_target and ratio > TARGET)
        note = "" if has_target else "  (informational)"
        print(
            f"{backend:<9} {case:<34} {hand * 1000:>8.1f}ms {scoped * 1000:>8.1f}ms "
            f"{ratio:>6.2f}x{mark}{note}"
        )
    print(f"\ntarget: scoped <= {TARGET:.2f}x by hand; {missed} case(s) missed it")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
