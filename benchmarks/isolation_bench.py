"""What tenant scoping costs: scoped queries against the same queries written by hand.

    python benchmarks/isolation_bench.py [--backend sqlite|postgres|both]
                                         [--skills N] [--rounds R] [--quick]

For each backend: migrate a fresh database, fill two tenants with the same
data (N skills each, same slugs, 5 ratings per skill), then time each case
through relay_peewee inside ``tenant_context`` (``scoped``) and through plain
peewee models on the same tables with the tenant written by hand (``by
hand``), the sides taking turns part by part, R rounds. Prints the median
ratio scoped / by hand over all pairs of parts (target <= 1.10; 1.2 for
"create rating, raw ids") and its quartiles; exits 1 on a miss. Without a
reachable PostgreSQL only SQLite runs. How and why, and the latest numbers:
benchmarks/README.md.
"""

from __future__ import annotations

import gc
import statistics
import sys
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from peewee import Database
from support.databases import sqlite_url, throwaway
from support.plain_models import plain_model
from support.timing import add_backend, parser, print_header, quartiles, take_turns, timed

import relay_peewee
from relay_peewee import tenant_context
from relay_peewee.models import Rating, Skill, Tenant, User
from relay_peewee.operations import migrate

TARGET = 1.10
RATINGS_PER_SKILL = 5
BULK_ROWS = 10_000


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
    """One comparison: ``scoped(i)`` and ``by_hand(i)`` each do part i of the work."""

    name: str
    scoped: Callable[[int], Any]
    by_hand: Callable[[int], Any]
    parts: int
    writes: bool = False
    target: float = TARGET


def cases(db: Database, data: Data, plain: dict[str, Any], quick: bool) -> list[Case]:
    pskill, prating = plain["skill"], plain["rating"]
    t = data.tenant.id
    ids = data.skill_ids[:: max(1, len(data.skill_ids) // 200)][:200]
    cats = data.categories
    n = 100 if quick else 300
    per_part = 10  # gets, backrefs and creates per part
    counter = iter(range(10**9))

    def part(seq: list[Any], i: int) -> list[Any]:
        return seq[i * per_part : (i + 1) * per_part]

    def get_by_id_scoped(i: int) -> None:
        for sid in part(ids, i):
            Skill.get_by_id(sid)

    def get_by_id_hand(i: int) -> None:
        for sid in part(ids, i):
            pskill.get((pskill.id == sid) & (pskill.tenant == t))

    def list_scoped(i: int) -> None:
        for _ in range(5):
            list(Skill.select().where(Skill.category == cats[i]).order_by(Skill.slug).limit(50))

    def list_hand(i: int) -> None:
        for _ in range(5):
            query = pskill.select().where(pskill.category == cats[i], pskill.tenant == t)
            list(query.order_by(pskill.slug).limit(50))

    def join_scoped(i: int) -> None:
        query = Rating.select(Rating, Skill).join(Skill).where(Skill.category == cats[i])
        list(query.limit(200))

    def join_hand(i: int) -> None:
        query = (
            prating.select(prating, pskill)
            .join(pskill)
            .where(pskill.category == cats[i], prating.tenant == t, pskill.tenant == t)
        )
        list(query.limit(200))

    skills_scoped = list(Skill.select().where(Skill.id.in_(ids)))
    skills_hand = list(pskill.select().where(pskill.id.in_(ids), pskill.tenant == t))

    def backref_scoped(i: int) -> None:
        for skill in part(skills_scoped, i):
            list(skill.ratings)

    def backref_hand(i: int) -> None:
        for skill in part(skills_hand, i):
            list(prating.select().where(prating.skill == skill.id, prating.tenant == t))

    def skill_row() -> dict[str, Any]:
        slug = f"new-{next(counter)}"
        return {"name": "n", "slug": slug, "description": "d", "category": "c", "content": "x"}

    def create_skill_scoped(i: int) -> None:
        for _ in range(per_part):
            Skill.create(**skill_row())

    def create_skill_hand(i: int) -> None:
        for _ in range(per_part):
            pskill.create(tenant=t, **skill_row())

    user = User.get_by_id(data.user_ids[0])
    skill = Skill.get_by_id(data.skill_ids[0])
    puser = plain["user"].get_by_id(data.user_ids[0])
    pskill_row = pskill.get_by_id(data.skill_ids[0])

    def create_rating_scoped(i: int) -> None:
        for _ in range(per_part):
            Rating.create(skill=skill, user=user, rating=3)

    def create_rating_hand(i: int) -> None:
        for _ in range(per_part):
            prating.create(tenant=t, skill=pskill_row, user=puser, rating=3)

    def create_ids_scoped(i: int) -> None:
        for _ in range(per_part):
            Rating.create(skill=skill.id, user=user.id, rating=3)

    bulk = [
        {
            "skill": data.skill_ids[i % len(data.skill_ids)],
            "user": data.user_ids[i % len(data.user_ids)],
            "rating": 1 + i % 5,
        }
        for i in range(BULK_ROWS)
    ]
    batch = 1000

    def bulk_scoped(i: int) -> None:
        Rating.insert_many(bulk[i * batch : (i + 1) * batch]).execute()

    def bulk_hand(i: int) -> None:
        rows = bulk[i * batch : (i + 1) * batch]
        prating.insert_many([dict(r, tenant=t) for r in rows]).execute()

    gets, creates = len(ids) // per_part, n // per_part
    return [
        Case(f"get by id ({len(ids)})", get_by_id_scoped, get_by_id_hand, gets),
        Case("filtered list (50 x 50 rows)", list_scoped, list_hand, len(cats)),
        Case("join skills+ratings (10 x 200)", join_scoped, join_hand, len(cats)),
        Case(f"backref skill.ratings ({len(ids)})", backref_scoped, backref_hand, gets),
        Case(f"create skill ({n})", create_skill_scoped, create_skill_hand, creates, True),
        Case(f"create rating, rows ({n})", create_rating_scoped, create_rating_hand, creates, True),
        Case(f"bulk insert {BULK_ROWS:,} ratings", bulk_scoped, bulk_hand, BULK_ROWS // 1000, True),
        # The database's composite keys check the ids (no lookup): issue 12.
        Case(
            f"create rating, raw ids ({n})",
            create_ids_scoped,
            create_rating_hand,
            creates,
            True,
            1.2,
        ),
    ]


# --- timing ------------------------------------------------------------------


def one_round(db: Database, case: Case, flip: bool) -> list[tuple[float, float]]:
    """Seconds (scoped, by hand) of each part, the sides taking turns part by part.

    Writes run in one transaction, rolled back afterwards, so every round
    starts equal and the measure is the ORM's work, not the disk's fsync.
    """
    # The same collector state at every start: a full collection set off by
    # one round's garbage must not land in the next.
    gc.collect()
    with db.atomic() if case.writes else nullcontext() as transaction:
        pairs = take_turns(timed(case.scoped), timed(case.by_hand), case.parts, flip)
        if transaction is not None:
            transaction.rollback()
    return pairs


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
                one_round(db, case, False)  # warm-up: caches, plans
                rounds_ = [one_round(db, case, bool(i % 2)) for i in range(rounds)]
                # The ratio: the median over every pair of parts, each pair
                # run back to back - a burst of load skews a pair, not the
                # result. The quartiles say how much the pairs scattered.
                q1, median, q3 = quartiles([s / h for pairs in rounds_ for s, h in pairs])
                scoped = statistics.median(sum(s for s, _ in pairs) for pairs in rounds_)
                by_hand = statistics.median(sum(h for _, h in pairs) for pairs in rounds_)
                rows.append((name, case.name, by_hand, scoped, median, (q1, q3), case.target))
        return rows
    finally:
        db.close()


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    add_backend(p)
    p.add_argument("--skills", type=int, default=2000, help="skills per tenant")
    p.add_argument("--rounds", type=int, default=11)
    p.add_argument("--quick", action="store_true", help="fewer rows and rounds")
    args = p.parse_args(argv)
    skills, rounds = (500, 5) if args.quick else (args.skills, args.rounds)

    results: list[tuple[Any, ...]] = []
    if args.backend in ("sqlite", "both"):
        with sqlite_url("isolation_bench_") as url:
            results += run_backend("sqlite", url, skills, rounds, args.quick)
    if args.backend in ("postgres", "both"):
        with throwaway("isolation_bench", optional=True) as url:
            if url is not None:
                results += run_backend("postgres", url, skills, rounds, args.quick)

    print(
        f"\n{skills:,} skills and {skills * RATINGS_PER_SKILL:,} ratings per tenant, "
        f"two tenants; {rounds} rounds"
    )
    header = (
        f"{'backend':<9} {'case':<34} {'by hand':>10} {'scoped':>10} {'ratio':>7} {'quartiles':>11}"
    )
    print_header(header)
    missed = 0
    for backend, case, hand, scoped, ratio, (q1, q3), target in results:
        met = ratio <= target
        missed += not met
        note = f"  (target <= {target:.2f})" if target != TARGET else ""
        print(
            f"{backend:<9} {case:<34} {hand * 1000:>8.1f}ms {scoped * 1000:>8.1f}ms "
            f"{ratio:>6.2f}x {q1:>5.2f}-{q3:<5.2f}{'  ok' if met else '  MISSED'}{note}"
        )
    print(f"\ntarget: scoped <= {TARGET:.2f}x by hand; {missed} case(s) missed it")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
