"""A request on Citus through the coordinator against the same on one PostgreSQL.

    python benchmarks/citus_bench.py [--requests N] [--part P] [--skills S]

Two throw-away databases, each migrated with one tenant of S skills (among
three tenants): one on the single PostgreSQL (libpq's PG* variables), one on
the Citus cluster of ``shared/citus`` (``$RELAY_CITUS_URL``, default
root@127.0.0.1:5440), distributed with ``relay-peewee distribute``. Every
side runs as the application role (``relay-peewee roles``) under forced RLS;
each request is ``one get`` (one ``get_by_id``) or ``three gets``.

* ``postgres``: relay_peewee on the single PostgreSQL;
* ``citus``: relay_peewee on Citus through the coordinator;
* ``by hand``: hand-written peewee on Citus doing what a scoped request
  must there, in the fewest round trips: ``BEGIN; SET LOCAL <tenant>`` as
  one string, the get with ``tenant_id`` in its WHERE (a router query) on a
  model reflected from the table, ``COMMIT``.

Printed: each side's median request in microseconds, citus / postgres (what
moving to Citus costs a request; no target: a coordinator hop and, on Citus,
a BEGIN and COMMIT of its own), and citus / by hand, the scoped ORM's own
overhead there (target <= 1.10). The sides take turns part by part.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

from support.citus import citus_database
from support.databases import app_role, throwaway
from support.plain_models import reflected_model
from support.skill_rows import skill_rows
from support.timing import parser, quartiles, take_turns

import relay_peewee
from relay_peewee import tenant_context
from relay_peewee.database.citus import set_local_sql
from relay_peewee.models import Skill, Tenant
from relay_peewee.operations import migrate
from relay_peewee.operations.distribute import distribute
from relay_peewee.tenancy.rls import PROPAGATE_SQL, TENANT_SETTING

TARGET = 1.10
Times = list[float]


def populate(url: str, skills: int, citus: bool) -> tuple[str, list[str]]:
    db = relay_peewee.connect(url)
    migrate(db)
    tenants = [Tenant.create(slug=f"bench-{i}", name=f"bench {i}") for i in range(3)]
    for tenant in tenants:
        with db.atomic(), tenant_context(tenant):
            Skill.insert_many(skill_rows(skills)).execute()
    with tenant_context(tenants[0]):
        ids = [s.id for s in Skill.select(Skill.id)]
    if citus:
        distribute(db)
    db.close()
    return tenants[0].id, ids


def relay_side(
    url: str, tenant_id: str, ids: list[str], per: int, part: int
) -> Callable[[int], Times]:
    db = relay_peewee.connect(url)
    clock = time.perf_counter

    def run(n: int) -> Times:
        relay_peewee.database.database_proxy.initialize(db)
        chunk = ids[(n * part * per) % len(ids) :] + ids
        times = []
        for i in range(part):
            start = clock()
            with tenant_context(tenant_id):
                for j in range(per):
                    Skill.get_by_id(chunk[i * per + j])
            times.append(clock() - start)
        return times

    return run


def by_hand_side(
    url: str, tenant_id: str, ids: list[str], per: int, part: int
) -> Callable[[int], Times]:
    from relay_peewee.database import open_database

    db = open_database(url)
    skill: Any = reflected_model(db, "skills")
    begin = f"BEGIN; {PROPAGATE_SQL}; {set_local_sql(TENANT_SETTING, tenant_id)}"
    clock = time.perf_counter

    def run(n: int) -> Times:
        chunk = ids[(n * part * per) % len(ids) :] + ids
        times = []
        for i in range(part):
            start = clock()
            # The fewest round trips this can take on Citus: BEGIN and the
            # setting in one string, the gets, COMMIT (peewee's autocommit
            # mode sends nothing of its own).
            db.execute_sql(begin)
            for j in range(per):
                skill.get((skill.tenant_id == tenant_id) & (skill.id == chunk[i * per + j]))
            db.execute_sql("COMMIT")
            times.append(clock() - start)
        return times

    return run


def median(parts: list[Times]) -> float:
    return statistics.median(t for part in parts for t in part)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--requests", type=int, default=2000, help="requests per side and case")
    p.add_argument("--part", type=int, default=100, help="requests per timed part")
    p.add_argument("--skills", type=int, default=1000)
    args = p.parse_args(argv)
    ok = True
    with throwaway("citus_bench") as pg_owner, citus_database("citus_bench") as citus_owner:
        pg_tenant, pg_ids = populate(pg_owner, args.skills, citus=False)
        c_tenant, c_ids = populate(citus_owner, args.skills, citus=True)
        with app_role(pg_owner) as pg_app, app_role(citus_owner) as citus_app:
            print(f"{args.requests} requests per side and case, parts of {args.part}")
            print(
                "case         postgres µs  citus µs  by hand µs  citus/postgres  "
                "citus/by hand  part ratios (quartiles)"
            )
            for case, per in (("one get", 1), ("three gets", 3)):
                pg = relay_side(pg_app, pg_tenant, pg_ids, per, args.part)
                citus = relay_side(citus_app, c_tenant, c_ids, per, args.part)
                hand = by_hand_side(citus_app, c_tenant, c_ids, per, args.part)
                for side in (pg, citus, hand):
                    side(0)  # warm the connections and peewee's caches
                gc.collect()
                parts = max(1, args.requests // args.part)
                pairs = take_turns(citus, hand, parts)
                pg_parts = [pg(i) for i in range(parts)]
                c_parts, h_parts = [c for c, _ in pairs], [h for _, h in pairs]
                c_med, h_med, pg_med = median(c_parts), median(h_parts), median(pg_parts)
                overhead = c_med / h_med
                q = quartiles([sum(c) / sum(h) for c, h in pairs])
                met = overhead <= TARGET
                ok &= met
                print(
                    f"{case:<11} {pg_med * 1e6:>11.0f} {c_med * 1e6:>9.0f} {h_med * 1e6:>11.0f}"
                    f"  {c_med / pg_med:>14.2f}  {overhead:>13.2f}  [{q[0]:.2f}-{q[2]:.2f}]"
                    f"  (target <= {TARGET})  {'met' if met else 'MISSED'}"
                )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
