"""What a request pays for its tenant context: relay_peewee under RLS against plain peewee.

    python benchmarks/request_bench.py [--requests N] [--part P] [--skills S]
                                       [--mode sync|async|both]
                                       [--driver psycopg2|psycopg3] [--phases]

PostgreSQL only. One throw-away database, migrated, with one tenant of S
skills. Two sides, each a loop of "requests":

* ``relay``: connected as the application role (``relay-peewee roles``), so
  row-level security is in force; each request is ``with tenant_context(t):``
  around the work, through relay_peewee's ``Skill``;
* ``plain``: plain peewee - the driver's own ``peewee.PostgresqlDatabase``
  (``Psycopg3Database`` for psycopg 3), autocommit, no relay_peewee class in
  between - connected as the tables' owner, on a model reflected from the
  same table (``playhouse.reflection``) reading the same columns as
  relay_peewee's ``Skill``, the same work with no context.

The relay side is what an application gets: the database
``relay_peewee.connect(url)`` returns, as the application role. Where a
target is missed (or with ``--phases``) the run goes on to say where the
time went - the context's entry, the gets, the exit, against plain's gets -
and how many statements each side sent for one request (every
``cursor.execute`` counted: one round trip each).

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

import peewee
from support.databases import app_role, throwaway
from support.plain_models import reflected_model
from support.round_trips import counting_statements
from support.skill_rows import skill_rows
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
        Skill.insert_many(skill_rows(skills)).execute()
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


def plain_database(owner_url: str) -> Any:
    """Plain peewee, as an application without relay_peewee opens it: the
    driver's own ``PostgresqlDatabase`` class, autocommit (peewee's default),
    no relay class in between. The tables' owner: no row-level security."""
    from playhouse.postgres_ext import Psycopg3Database

    parsed = urlparse(owner_url)
    cls: Any = Psycopg3Database if parsed.scheme == "psycopg3" else peewee.PostgresqlDatabase
    return cls(
        parsed.path.lstrip("/"), user=parsed.username, host=parsed.hostname, port=parsed.port
    )


def same_columns(plain: Any, model: Any) -> Any:
    """``plain`` reading only ``model``'s columns: the table has more (the
    full-text ``search_vector``), which relay_peewee's ``Skill`` never reads."""
    wanted = {field.column_name for field in model._meta.sorted_fields}
    for field in list(plain._meta.sorted_fields):
        if field.column_name not in wanted:
            plain._meta.remove_field(field.name)
    return plain


def run_sync(app_url: str, owner_url: str, tenant_id: str, ids: list[str], args: Any) -> bool:
    # What an application gets: the database relay_peewee.connect(url) returns.
    app = relay_peewee.connect(app_url)
    owner = plain_database(owner_url)
    plain_skill = same_columns(reflected_model(owner, "skills"), Skill)
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
        met = report("sync", case, [r for r, _ in pairs], [p for _, p in pairs])
        if not met or args.phases:
            phases(app, owner, plain_skill, tenant_id, ids, per, args)
        ok &= met
    app.close()
    owner.close()
    return ok


def phases(
    app: Any, owner: Any, plain_skill: Any, tenant_id: str, ids: list[str], per: int, args: Any
) -> None:
    """Where a relay request's time goes: its context's entry, its gets, its
    exit (medians over ``--requests`` requests, a clock read between each,
    so their sum is a little above the request's), against plain's gets;
    and the statements each side sends for one request."""
    clock = time.perf_counter
    enter, gets, leave, plain_gets = [], [], [], []
    for i in range(args.requests):
        chunk = [ids[(i * per + j) % len(ids)] for j in range(per)]
        context = tenant_context(tenant_id)
        t0 = clock()
        context.__enter__()
        t1 = clock()
        for key in chunk:
            Skill.get_by_id(key)
        t2 = clock()
        context.__exit__(None, None, None)
        t3 = clock()
        for key in chunk:
            plain_skill.get_by_id(key)
        t4 = clock()
        enter.append(t1 - t0)
        gets.append(t2 - t1)
        leave.append(t3 - t2)
        plain_gets.append(t4 - t3)
    med = statistics.median
    print(
        f"       phases (µs, medians): relay enter {med(enter) * 1e6:.1f}, "
        f"gets {med(gets) * 1e6:.0f}, exit {med(leave) * 1e6:.1f}; "
        f"plain gets {med(plain_gets) * 1e6:.0f}"
    )
    with counting_statements(app) as relay_sent, tenant_context(tenant_id):
        for key in ids[:per]:
            Skill.get_by_id(key)
    with counting_statements(owner) as plain_sent:
        for key in ids[:per]:
            plain_skill.get_by_id(key)
    print(f"       round trips per request: relay {len(relay_sent())}, plain {len(plain_sent())}")
    for sql in relay_sent():
        print(f"         relay sends: {sql[:160]}")


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
    plain_skill = same_columns(reflected_model(sync_owner, "skills"), Skill)
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
    p.add_argument(
        "--phases", action="store_true", help="per-phase timings and round trips, met or not"
    )
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
