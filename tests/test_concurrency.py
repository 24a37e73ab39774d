"""Threads and asyncio tasks acting for different tenants at once see only their own.

The tenant context is a ContextVar: a new thread starts without one, an
asyncio task gets a copy of its creator's, and neither can change another's.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from peewee import Database

from relay_peewee import RelayError, TenantRequired, current_tenant, tenant_bound, tenant_context
from relay_peewee.database import is_postgres
from relay_peewee.models import Rating, Skill, Tenant
from relay_peewee.testing import SAMPLE_SLUGS, TenantPair, assert_only_tenant

ROUNDS = 15


def work_as(tenant: Tenant, label: str) -> list[str]:
    """One request's worth of reads and a write; returns what it saw, checked."""
    with tenant_context(tenant):
        skills = list(Skill.select())
        assert_only_tenant(skills, tenant)
        assert {s.slug for s in skills} >= set(SAMPLE_SLUGS)
        ratings = list(Rating.select(Rating, Skill).join(Skill))
        assert_only_tenant(ratings, tenant)
        created = Skill.create(name=label, slug=label, description="d", category="c", content="x")
        assert created.tenant_id == tenant.id
        assert current_tenant() == tenant.id
        return [s.tenant_id for s in skills]


def test_threads_for_different_tenants_see_only_their_own(
    two_tenants: TenantPair, relay_db: Database
) -> None:
    a, b = two_tenants.a, two_tenants.b
    workers = 6
    barrier = threading.Barrier(workers)

    def worker(n: int) -> None:
        tenant = a if n % 2 else b
        try:
            barrier.wait()  # start together, so the requests really overlap
            for i in range(ROUNDS):
                work_as(tenant, f"t{n}-{i}")
        finally:
            relay_db.close()  # this thread's connection

    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(worker, n) for n in range(workers)]:
            future.result()  # re-raises a worker's assertion

    for tenant, parity in ((a, 1), (b, 0)):
        with tenant_context(tenant):
            mine = {s.slug for s in Skill.select()} - set(SAMPLE_SLUGS)
        expected = {f"t{n}-{i}" for n in range(workers) if n % 2 == parity for i in range(ROUNDS)}
        assert mine == expected


def test_a_new_thread_does_not_inherit_the_tenant(two_tenants: TenantPair) -> None:
    seen: list[object] = []

    def body() -> None:
        seen.append(current_tenant())
        try:
            list(Skill.select())
        except TenantRequired as exc:
            seen.append(exc)

    with tenant_context(two_tenants.a):
        thread = threading.Thread(target=body)
        thread.start()
        thread.join()
    assert seen[0] is None and isinstance(seen[1], TenantRequired)


def test_asyncio_tasks_for_different_tenants_see_only_their_own(
    two_tenants: TenantPair, relay_db: Database
) -> None:
    a, b = two_tenants.a, two_tenants.b
    if is_postgres(relay_db):
        # On PostgreSQL a tenant context is a transaction on the thread's
        # connection (row-level security needs it); tasks interleaving on one
        # thread would share it. The supported pattern: each task does its
        # database work in a thread, entering the context there.
        async def in_thread(tenant: Tenant, n: int) -> None:
            for i in range(ROUNDS):
                await asyncio.to_thread(work_as, tenant, f"task{n}-{i}")

        async def gather_threads() -> None:
            await asyncio.gather(*(in_thread(a if n % 2 else b, n) for n in range(6)))
            assert current_tenant() is None

        asyncio.run(gather_threads())
        _check_created(a, b)
        return

    async def request(tenant: Tenant, n: int) -> None:
        with tenant_context(tenant):
            for i in range(ROUNDS):
                # Yield between queries so the tasks interleave on one thread.
                await asyncio.sleep(0)
                skills = list(Skill.select())
                assert_only_tenant(skills, tenant)
                await asyncio.sleep(0)
                assert current_tenant() == tenant.id
                Skill.create(
                    name="n", slug=f"task{n}-{i}", description="d", category="c", content="x"
                )

    async def to_thread_inherits(tenant: Tenant) -> None:
        with tenant_context(tenant):
            # asyncio.to_thread copies the context: the thread acts for tenant.
            seen = await asyncio.to_thread(lambda: [s.tenant_id for s in Skill.select()])
        assert set(seen) == {tenant.id}

    async def main() -> None:
        await asyncio.gather(
            *(request(a if n % 2 else b, n) for n in range(6)),
            to_thread_inherits(a),
            to_thread_inherits(b),
        )
        assert current_tenant() is None  # nothing leaked out of the tasks

    asyncio.run(main())
    relay_db.close()
    _check_created(a, b)


def _check_created(a: Tenant, b: Tenant) -> None:
    for tenant, parity in ((a, 1), (b, 0)):
        with tenant_context(tenant):
            created = {s.slug for s in Skill.select()} - set(SAMPLE_SLUGS)
        assert created == {
            f"task{n}-{i}" for n in range(6) if n % 2 == parity for i in range(ROUNDS)
        }


def test_a_task_inherits_its_creators_tenant_but_cannot_change_it(
    two_tenants: TenantPair, relay_db: Database
) -> None:
    a, b = two_tenants.a, two_tenants.b

    async def child() -> str | None:
        inherited = current_tenant()
        if is_postgres(relay_db):
            # The creator's context holds this thread's connection in a
            # transaction: a second task may not open one inside it.
            with pytest.raises(RelayError, match="another asyncio task"):
                tenant_context(b).__enter__()
            assert current_tenant() == inherited
            return inherited
        with tenant_context(b):
            await asyncio.sleep(0)
        return inherited

    async def main() -> None:
        with tenant_context(a):
            task = asyncio.create_task(child())
            await asyncio.sleep(0)
            assert current_tenant() == a.id  # the child's block did not leak here
            assert await task == a.id
            assert_only_tenant(list(Skill.select()), a)

    asyncio.run(main())


def test_consecutive_requests_on_one_thread_do_not_leak(two_tenants: TenantPair) -> None:
    for n in range(20):
        tenant = two_tenants.a if n % 2 else two_tenants.b
        with tenant_context(tenant):
            assert_only_tenant(list(Skill.select()), tenant)
        assert current_tenant() is None
        with pytest.raises(TenantRequired):
            Skill.select().count()


def test_two_tasks_interleaving_sync_contexts_on_one_connection_are_refused(
    two_tenants: TenantPair, relay_db: Database
) -> None:
    """Not a driver error halfway through: a RelayError saying what to do, at once."""
    if not is_postgres(relay_db):
        pytest.skip("SQLite contexts hold no transaction: interleaving is fine there")
    a, b = two_tenants.a, two_tenants.b
    entered = asyncio.Event()
    outcome: dict[str, object] = {}

    async def first() -> None:
        with tenant_context(a):
            assert_only_tenant(list(Skill.select()), a)
            entered.set()
            await asyncio.sleep(0.01)  # the second task runs now
            assert_only_tenant(list(Skill.select()), a)  # still a, still usable
            Skill.create(name="n", slug="first-task", description="d", category="c", content="x")

    async def second() -> None:
        await entered.wait()
        try:
            with tenant_context(b):
                list(Skill.select())
        except RelayError as exc:
            outcome["error"] = exc

    async def main() -> None:
        await asyncio.gather(first(), second())

    asyncio.run(main())
    assert "asyncio.to_thread" in str(outcome["error"])
    with tenant_context(a):
        assert Skill.select().where(Skill.slug == "first-task").count() == 1
    with tenant_context(b):
        assert_only_tenant(list(Skill.select()), b)
        assert Skill.select().where(Skill.slug == "first-task").count() == 0


def test_tenant_bound_runs_a_function_in_the_tenant_on_another_thread(
    two_tenants: TenantPair, relay_db: Database
) -> None:
    a, b = two_tenants.a, two_tenants.b

    def listing(label: str) -> tuple[str | None, list[str]]:
        Skill.create(name="n", slug=label, description="d", category="c", content="x")
        return current_tenant(), [s.tenant_id for s in Skill.select()]

    with ThreadPoolExecutor(max_workers=2) as pool:
        with tenant_context(a):
            for_a = pool.submit(tenant_bound(listing, "bg-a"))
        with tenant_context(b):
            for_b = pool.submit(tenant_bound(listing, label="bg-b"))
        # A worker thread has its own connection: under row-level security the
        # bound call's own context is what makes its rows visible at all.
        for tenant, future in ((a, for_a), (b, for_b)):
            seen_tenant, owners = future.result()
            assert seen_tenant == tenant.id
            assert owners and set(owners) == {tenant.id}

    async def in_task() -> list[str]:
        with tenant_context(a):
            return (await asyncio.to_thread(tenant_bound(listing, "bg-thread")))[1]

    assert set(asyncio.run(in_task())) == {a.id}
    with pytest.raises(TenantRequired):
        tenant_bound(listing, "no-tenant")
    with tenant_context(a):
        assert Skill.select().where(Skill.slug.in_(["bg-a", "bg-thread"])).count() == 2
    with tenant_context(b):
        assert Skill.select().where(Skill.slug == "bg-b").count() == 1
