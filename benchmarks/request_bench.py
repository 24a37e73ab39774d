"""What a request pays for its tenant context: relay_peewee under RLS against plain peewee.

    python benchmarks/request_bench.py [--requests N] [--part P] [--skills S]
                                       [--mode sync|async|both]
                                       [--driver psycopg2|psycopg3]

PostgreSQL only. One throw-away database, migrated, with one tenant of S
skills. Two sides, each a loop of "requests":

* ``relay``: connected as the application role (``relay-peewee roles``), so
  row-level security is in force; each request is ``with tenant_context(t):``
  around the work, through relay_peewee's ``Skill``;
* ``plain``: plain peewee in autocommit, connected as the tables' owner, on a
  model reflected from the same table (``playhouse.reflection``: the same
  columns, no tenancy), the same work with no context.

Cases: ``one get`` (one ``get_by_id``) and ``three gets`` (three, by three
ids). The two sides take turns part by part (P requests each, the first side
alternating) until each has run N requests, every request timed on its own;
the table shows each side's median request in microseconds and their ratio
relay / plain (targets: <= 1.2 for one get, <= 1.1 for three), and the
quartiles of the ratios of parts run back to back, which say how noisy the
machine was. ``async`` runs the same on
``playhouse.pwasyncio`` (asyncpg; ``async with tenant_context``; both sides
through ``await db.run(Model.get_by_id, id)``). ``--driver`` picks the sync
side's driver for both sides (default psycopg2); on psycopg 3 a context sends
its BEGIN and ``set_config`` on entry (see the README's driver section).

PostgreSQL is reached through libpq's variables (PGHOST, PGPORT, PGUSER,
PGDATABASE for the admin database), default root@127.0.0.1:5432/test.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from typing import Any
from urllib.parse import urlparse

from support.databases import app_role, throwaway
from support.plain_models import reflected_model
from support.timing import parser, quartiles, take_turns, take_turns_async

import relay_peewee
from relay_peewee import tenant_context
from relay_peewee.database import open_database
from relay_peewee.models import Skill, Tenant
from relay_peewee.operations import migrate

TARGETS = {"one get": 1.2, "three gets": 1.1}


def populate(url: str, skills: int) -> tuple[str, list[str]]:
    db = relay_peewee.connect(url)
    migrate(db)
    tenant = Tenant.create(slug="bench", name="bench")
    with db.atomic(), tenant_context(tenant):
        Skill.insert_many(
            [
                {
                    "name": f"skill {i}",
                    "slug": f"skill-{i}",
                    "description": "d",
                    "category": f"cat-{i % 10}",
                    "content": "# x",
                }
                for i in range(skills)
            ]
        ).execute()
        ids = [s.id for s in Skill.select(Skill.id)]
    db.close()
    return tenant.id, ids


# --- timing --------------------------------------------------------------------

Times = list[float]  # one duration per request


def report(mode: str, case: str, relay_t: list[Times], plain_t: list[Times]) -> bool:
    """Median request of each side; their ratio; the spread of part-by-part ratios.

    The median request, not the mean: on a shared machine a burst of other
    work lands on a few requests of either side, and the median ignores it.
    """
    relay_med = statistics.median(t for part in relay_t for t in part)
    plain_med = statistics.median(t for part in plain_t for t in part)
    ratio = relay_med / plain_med
    q = quartiles([sum(r) / sum(p) for r, p in zip(relay_t, plain_t, strict=True)])
    target = TARGETS[case]
    met = ratio <= target
    print(
        f"{mode:<6} {case:<11} {plain_med * 1e6:>9.0f} {relay_med * 1e6:>9.0f} {ratio:>6.2f}  "
        f"[{q[0]:.2f}-{q[2]:.2f}]  (target <= {target})  {'met' if met else 'MISSED'}"
    )
    return met


def run_sync(app_url: str, owner_url: str, tenant_id: str, ids: list[str], args: Any) -> bool:
    app = relay_peewee.connect(app_url)
    owner = open_database(owner_url)
    plain_skill = reflected_model(owner, "skills")
    clock = time.perf_counter
    ok = True
    for case, per in (("one get", 1), ("three gets", 3)):

        def relay(n: int, per: int = per) -> Times:
            chunk = ids[(n * args.part * per) % len(ids) :] + ids
            times = []
            for i in range(args.part):
                start = clock()
                with tenant_context(tenant_id):
                    for j in range(per):
                        Skill.get_by_id(chunk[i * per + j])
                times.append(clock() - start)
            return times

        def plain(n: int, per: int = per) -> Times:
            chunk = ids[(n * args.part * per) % len(ids) :] + ids
            times = []
            for i in range(args.part):
                start = clock()
                for j in range(per):
                    plain_skill.get_by_id(chunk[i * per + j])
                times.append(clock() - start)
            return times

        relay(0), plain(0)  # warm both connections and peewee's caches
        gc.collect()
        pairs = take_turns(relay, plain, max(1, args.requests // args.part))
        ok &= report("sync", case, [r for r, _ in pairs], [p for _, p in pairs])
    app.close()
    owner.close()
    return ok


def run_async(app_url: str, owner_url: str, tenant_id: str, ids: list[str], args: Any) -> bool:
    from playhouse.pwasyncio import AsyncPostgresqlDatabase

    def opened(url: str) -> Any:
        parsed = urlparse(url)
        return AsyncPostgresqlDatabase(
            parsed.path.lstrip("/"), user=parsed.username, host=parsed.hostname, port=parsed.port
        )

    app, owner = opened(app_url), opened(owner_url)
    relay_peewee.connect(app)
    sync_owner = open_database(owner_url)
    plain_skill = reflected_model(sync_owner, "skills")
    sync_owner.close()
    plain_skill.bind(owner)
    clock = time.perf_counter

    async def main() -> bool:
        ok = True
        for case, per in (("one get", 1), ("three gets", 3)):

            async def relay(n: int, per: int = per) -> Times:
                chunk = ids[(n * args.part * per) % len(ids) :] + ids
                times = []
                for i in range(args.part):
                    start = clock()
                    async with tenant_context(tenant_id):
                        for j in range(per):
                            await app.run(Skill.get_by_id, chunk[i * per + j])
                    times.append(clock() - start)
                return times

            async def plain(n: int, per: int = per) -> Times:
                chunk = ids[(n * args.part * per) % len(ids) :] + ids
                times = []
                for i in range(args.part):
                    start = clock()
                    for j in range(per):
                        await owner.run(plain_skill.get_by_id, chunk[i * per + j])
                    times.append(clock() - start)
                return times

            await relay(0), await plain(0)
            gc.collect()
            pairs = await take_turns_async(relay, plain, max(1, args.requests // args.part))
            ok &= report("async", case, [r for r, _ in pairs], [p for _, p in pairs])
        await app.close_pool()
        await owner.close_pool()
        return ok

    return asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--requests", type=int, default=4000, help="requests per side and case")
    p.add_argument("--part", type=int, default=100, help="requests per timed part")
    p.add_argument("--skills", type=int, default=2000)
    p.add_argument("--mode", choices=["sync", "async", "both"], default="both")
    p.add_argument("--driver", choices=["psycopg2", "psycopg3"], default="psycopg2")
    args = p.parse_args(argv)
    scheme = "psycopg3" if args.driver == "psycopg3" else "postgresql"
    with throwaway("request_bench", scheme) as owner_url:
        tenant_id, ids = populate(owner_url, args.skills)
        with app_role(owner_url) as app_url:
            print(f"{args.requests} requests per side and case, parts of {args.part}")
            print("mode   case         plain µs  relay µs  ratio  part ratios (quartiles)")
            ok = True
            if args.mode in ("sync", "both"):
                ok &= run_sync(app_url, owner_url, tenant_id, ids, args)
            if args.mode in ("async", "both"):
                ok &= run_async(app_url, owner_url, tenant_id, ids, args)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
