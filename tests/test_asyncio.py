"""``async with tenant_context`` on peewee's asyncio databases (playhouse.pwasyncio).

The same two populated tenants as the sync tests, read and written through
``await Model.aget(...)``, ``await db.list(query)``, ``await row.asave()`` on
an ``AsyncSqliteDatabase`` or an ``AsyncPostgresqlDatabase`` (as the
application role under row-level security on ``postgres_rls``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from peewee import Database
from playhouse.pwasyncio import AsyncPostgresqlDatabase, AsyncSqliteDatabase

import relay_peewee
from relay_peewee import (
    ConfigurationError,
    CrossTenantWrite,
    RelayError,
    TenantRequired,
    current_tenant,
    record_event,
    tenant_context,
)
from relay_peewee.database import is_postgres
from relay_peewee.database.statement_cache import CachedReadsMixin
from relay_peewee.models import Rating, Skill, User
from relay_peewee.tenancy import aio
from relay_peewee.tenancy.rls import tenant_setting_literal_sql
from relay_peewee.testing import (
    SAMPLE_SLUGS,
    TenantPair,
    assert_only_tenant,
    bound_by_row_level_security,
)


@pytest.fixture
def async_db(two_tenants: TenantPair, relay_db: Database) -> Iterator[Any]:
    """The same database opened through pwasyncio, every model bound to it."""
    under_rls = bound_by_row_level_security(relay_db)
    pool = {"pool_size": 20, "acquire_timeout": 60}
    if is_postgres(relay_db):
        db: Any = AsyncPostgresqlDatabase(relay_db.database, **pool, **relay_db.connect_params)
    else:
        pragmas = {"foreign_keys": 1, "busy_timeout": 10_000}
        db = AsyncSqliteDatabase(relay_db.database, pragmas=pragmas, **pool)
    relay_db.close()
    relay_peewee.connect(db)
    db.under_rls = under_rls
    try:
        yield db
    finally:
        relay_peewee.connect(relay_db)


SETTING = "SELECT current_setting('app.current_tenant_id', true)"


def run(db: Any, main: Callable[[], Awaitable[None]]) -> None:
    async def with_pool() -> None:
        try:
            await main()
        finally:
            await db.close_pool()

    asyncio.run(with_pool())


def test_reads_and_writes_through_the_async_api_are_scoped(
    async_db: Any, two_tenants: TenantPair
) -> None:
    a, b = two_tenants.a, two_tenants.b
    b_skill = two_tenants.rows_of(b).skills[0]

    async def main() -> None:
        async with tenant_context(a) as tenant_id:
            assert tenant_id == a.id == current_tenant()
            skills = await async_db.list(Skill.select())
            assert_only_tenant(skills, a)
            assert {s.slug for s in skills} == set(SAMPLE_SLUGS)
            mine = await Skill.aget(Skill.slug == SAMPLE_SLUGS[0])
            assert mine.tenant_id == a.id
            assert await Skill.aget_or_none(Skill.id == b_skill.id) is None
            assert await async_db.count(Skill.select()) == len(SAMPLE_SLUGS)
            new = Skill(name="n", slug="async-new", description="d", category="c", content="x")
            await new.asave()
            assert new.tenant_id == a.id
            rating = Rating(skill=b_skill.id, user=two_tenants.rows_of(a).users[0], rating=1)
            with pytest.raises(CrossTenantWrite):
                await rating.asave()
            with pytest.raises(CrossTenantWrite):
                await Skill.acreate(
                    name="n", slug="x2", description="d", category="c", content="x", tenant=b.id
                )
            updated = await async_db.aexecute(
                Skill.update(name="renamed").where(Skill.slug == SAMPLE_SLUGS[0])
            )
            assert updated == 1
        assert current_tenant() is None
        with pytest.raises(TenantRequired):
            await Skill.aget(Skill.slug == SAMPLE_SLUGS[0])
        async with tenant_context(b):
            theirs = await Skill.aget(Skill.slug == SAMPLE_SLUGS[0])
            assert theirs.name != "renamed"
            assert await Skill.aget_or_none(Skill.slug == "async-new") is None

    run(async_db, main)


def test_row_level_security_applies_to_raw_sql_in_an_async_context(
    async_db: Any, two_tenants: TenantPair
) -> None:
    if not async_db.under_rls:
        pytest.skip("row-level security binds only the application role (postgres_rls)")
    a, b = two_tenants.a, two_tenants.b

    async def main() -> None:
        async with tenant_context(a):
            cursor = await async_db.aexecute_sql("SELECT DISTINCT tenant_id FROM skills")
            assert [r[0] for r in cursor.fetchall()] == [a.id]
            async with tenant_context(b):  # nested: a savepoint, b's rows
                cursor = await async_db.aexecute_sql("SELECT DISTINCT tenant_id FROM skills")
                assert [r[0] for r in cursor.fetchall()] == [b.id]
            cursor = await async_db.aexecute_sql("SELECT DISTINCT tenant_id FROM skills")
            assert [r[0] for r in cursor.fetchall()] == [a.id]  # a is back
        # Outside any context the setting is gone with its transaction.
        cursor = await async_db.aexecute_sql("SELECT count(*) FROM skills")
        assert cursor.fetchall()[0][0] == 0

    run(async_db, main)


def test_an_exception_rolls_the_async_context_back_on_postgres(
    async_db: Any, two_tenants: TenantPair
) -> None:
    a = two_tenants.a

    async def main() -> None:
        with pytest.raises(ZeroDivisionError):
            async with tenant_context(a):
                await Skill.acreate(
                    name="n", slug="rolled-back", description="d", category="c", content="x"
                )
                1 / 0  # noqa: B018
        async with tenant_context(a):
            kept = await Skill.aget_or_none(Skill.slug == "rolled-back")
        assert kept is None if is_postgres(async_db) else kept is not None
        assert current_tenant() is None

    run(async_db, main)


def test_hundreds_of_interleaving_tasks_never_see_each_others_rows(
    async_db: Any, two_tenants: TenantPair
) -> None:
    tenants = [two_tenants.a, two_tenants.b]
    rng = random.Random(12)

    async def request(n: int) -> None:
        tenant = tenants[n % 2]
        async with tenant_context(tenant):
            for step in range(3):
                await asyncio.sleep(rng.random() / 1000)  # interleave at random points
                assert_only_tenant(await async_db.list(Skill.select()), tenant)
                assert current_tenant() == tenant.id
                await Skill.acreate(
                    name="n", slug=f"task{n}-{step}", description="d", category="c", content="x"
                )
                await asyncio.sleep(0)
                ratings = await async_db.list(Rating.select(Rating, Skill).join(Skill))
                assert_only_tenant(ratings, tenant)

    async def main() -> None:
        await asyncio.gather(*(request(n) for n in range(300)))
        assert current_tenant() is None

    run(async_db, main)

    async def check() -> None:
        for parity, tenant in enumerate(tenants):
            async with tenant_context(tenant):
                slugs = {s.slug for s in await async_db.list(Skill.select())}
            made = {f"task{n}-{i}" for n in range(300) if n % 2 == parity for i in range(3)}
            assert slugs - set(SAMPLE_SLUGS) == made

    run(async_db, check)


def test_a_sync_block_on_an_async_postgres_database_says_what_to_do(
    async_db: Any, two_tenants: TenantPair
) -> None:
    if not is_postgres(async_db):
        pytest.skip("SQLite contexts send nothing: a sync block works there")
    a = two_tenants.a

    def sync_work() -> list[str]:
        with tenant_context(a):
            return [s.tenant_id for s in Skill.select()]

    async def main() -> None:
        with pytest.raises(RelayError, match="async with tenant_context"):
            sync_work()
        # The bridge pwasyncio offers for sync code: the sync block works there.
        assert set(await async_db.run(sync_work)) == {a.id}

    run(async_db, main)


def test_reads_on_async_postgres_reuse_asyncpgs_cached_statements(
    async_db: Any, two_tenants: TenantPair
) -> None:
    """connect() gives pwasyncio's PostgreSQL database asyncpg's statement
    cache for reads: one statement, prepared once, serves every tenant, each
    execution seeing only the rows of the tenant in context then."""
    if not is_postgres(async_db):
        pytest.skip("asyncpg's statement cache: PostgreSQL only")
    assert isinstance(async_db, CachedReadsMixin)
    assert isinstance(async_db, AsyncPostgresqlDatabase)  # still what the caller built
    a, b = two_tenants.a, two_tenants.b
    query = Skill.select(Skill.slug, Skill.tenant).where(Skill.slug == SAMPLE_SLUGS[0])

    async def main() -> None:
        seen = []
        for tenant in (a, b, a, b):
            async with tenant_context(tenant):
                rows = await async_db.list(query.clone())
                seen.append([r.tenant_id for r in rows])
                cursor = await async_db.aexecute_sql("SELECT DISTINCT tenant_id FROM skills")
                if async_db.under_rls:  # raw SQL: only row-level security scopes it
                    assert [r[0] for r in cursor.fetchall()] == [tenant.id]
        assert seen == [[a.id], [b.id], [a.id], [b.id]]
        async with tenant_context(a):
            cursor = await async_db.aexecute_sql(
                "SELECT count(*) FROM pg_prepared_statements WHERE statement = %s",
                ("SELECT DISTINCT tenant_id FROM skills",),
            )
            # Prepared once on this connection and kept (pwasyncio's own path
            # prepares anew every time and lets each statement go).
            assert cursor.fetchall()[0][0] == 1
            # Writes keep pwasyncio's path: the row count comes from the status.
            updated = await async_db.aexecute(
                Skill.update(name="x").where(Skill.slug.in_(SAMPLE_SLUGS[:2]))
            )
            assert updated == 2
            if not async_db.under_rls:  # the owner may create a table
                made = await async_db.aexecute_sql(
                    "SELECT slug INTO TEMP TABLE copied FROM skills WHERE tenant_id = %s",
                    (a.id,),
                )
                assert made.rowcount == len(SAMPLE_SLUGS)

    run(async_db, main)


@pytest.mark.parametrize("combined", [True, False], ids=["one-message", "fallback"])
def test_the_async_context_begins_with_its_tenant_in_one_message(
    async_db: Any, two_tenants: TenantPair, monkeypatch: pytest.MonkeyPatch, combined: bool
) -> None:
    """BEGIN and the setting go out together (one round trip), and asyncpg
    still knows the transaction: savepoints, iterate() and the rollback of
    an exception work on top of it. Where asyncpg's
    internals are not what relay_peewee expects it sends them apart."""
    if not is_postgres(async_db):
        pytest.skip("SQLite contexts send nothing")
    if not combined:
        monkeypatch.setattr(aio, "_TransactionState", None)
    a, b = two_tenants.a, two_tenants.b
    sent: list[str] = []

    async def main() -> None:
        conn = (await async_db.aconnect()).conn
        conn.add_query_logger(lambda record: sent.append(record.query))
        async with tenant_context(a):
            setting = await async_db.aexecute_sql(SETTING)
            assert setting.fetchall()[0][0] == a.id
            with pytest.raises(CrossTenantWrite):  # refused inside a savepoint
                async with async_db.atomic():
                    await Skill.acreate(
                        name="n", slug="x", description="d", category="c", content="x", tenant=b.id
                    )
            async with async_db.atomic():  # a savepoint on asyncpg's transaction
                await Skill.acreate(
                    name="n", slug="kept", description="d", category="c", content="x"
                )
            slugs = [s.slug async for s in async_db.iterate(Skill.select())]
            assert "kept" in slugs and set(SAMPLE_SLUGS) <= set(slugs)
        with pytest.raises(ZeroDivisionError):
            async with tenant_context(a):
                await Skill.acreate(
                    name="n", slug="gone", description="d", category="c", content="x"
                )
                1 / 0  # noqa: B018
        assert not conn.is_in_transaction()
        setting = await async_db.aexecute_sql(SETTING)
        assert setting.fetchall()[0][0] in (None, "")  # gone with its transaction
        async with tenant_context(a):
            assert await Skill.aget_or_none(Skill.slug == "kept") is not None
            assert await Skill.aget_or_none(Skill.slug == "gone") is None

    run(async_db, main)
    begins = [q for q in sent if q.startswith("BEGIN")]
    if combined:
        assert begins and all(q.startswith("BEGIN; SELECT set_config(") for q in begins)
    else:
        assert begins and all(q.startswith("BEGIN") and "set_config" not in q for q in begins)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout() is Python 3.11+")
def test_a_timeout_during_the_contexts_begin_leaves_no_tenant_behind(
    async_db: Any, two_tenants: TenantPair
) -> None:
    """Cancelled while BEGIN and the setting are in flight, the context rolls
    back whatever reached the server: the task's connection, which it keeps,
    carries no tenant and no open transaction into its next statement."""
    if not is_postgres(async_db):
        pytest.skip("SQLite contexts send nothing")
    a, b = two_tenants.a, two_tenants.b
    left: list[tuple[Any, int]] = []

    async def request() -> None:
        await async_db.aexecute_sql("SELECT 1")  # the task's connection, open
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0), tenant_context(a):
                await async_db.aexecute_sql("SELECT 1")
        setting = (await async_db.aexecute_sql(SETTING)).fetchall()[0][0]
        visible = (await async_db.aexecute_sql("SELECT count(*) FROM skills")).fetchall()[0][0]
        left.append((setting, visible))
        async with tenant_context(b):  # and the next context starts cleanly
            assert_only_tenant(await async_db.list(Skill.select()), b)

    async def main() -> None:
        for _ in range(30):  # the timeout lands at different points each time
            await asyncio.create_task(request())

    run(async_db, main)
    assert all(setting in (None, "") for setting, _ in left), left
    if async_db.under_rls:
        assert all(visible == 0 for _, visible in left), left


def test_a_temp_table_made_in_one_async_context_shadows_nothing_for_the_next(
    async_db: Any, two_tenants: TenantPair, owner: Database
) -> None:
    """Issue 19, hole 1 on pwasyncio: asyncpg's pool reset keeps temporary
    tables, so one made by A's raw SQL would take B's next ``User.acreate``
    on that pooled connection. The application role may not make one."""
    if not async_db.under_rls:
        pytest.skip("the attack is the application role's (postgres_rls)")
    a, b = two_tenants.a, two_tenants.b
    refused: list[str] = []

    async def main() -> None:
        try:
            async with tenant_context(a):
                await async_db.aexecute_sql(
                    "CREATE TEMP TABLE users (LIKE public.users INCLUDING DEFAULTS)"
                )
        except Exception as exc:  # asyncpg's own error class, through peewee
            refused.append(str(exc))
        for n in range(20):  # every connection of the pool, most likely
            async with tenant_context(b):
                await User.acreate(email=f"b-async-{n}@example.com")

    run(async_db, main)
    assert refused and "permission denied" in refused[0]
    kept = owner.execute_sql(
        "SELECT count(*) FROM public.users WHERE tenant_id = %s AND email LIKE 'b-async-%%'",
        (b.id,),
    ).fetchone()[0]
    assert kept == 20


@pytest.mark.parametrize("tenant_id", ["plain-id", "it's", "back\\slash", "\\'; DROP TABLE x; --"])
def test_the_literal_form_of_the_setting_round_trips_any_id(
    relay_db: Database, tenant_id: str
) -> None:
    if not is_postgres(relay_db):
        pytest.skip("PostgreSQL only")
    sql = tenant_setting_literal_sql(tenant_id)
    assert relay_db.execute_sql(sql).fetchone()[0] == tenant_id
    with pytest.raises(ValueError):
        tenant_setting_literal_sql("nul\x00")


def test_the_async_model_methods_on_a_sync_database_say_so(two_tenants: TenantPair) -> None:
    async def main() -> None:
        async with tenant_context(two_tenants.a):
            with pytest.raises(ConfigurationError, match="asyncio database"):
                await Skill.aget(Skill.slug == SAMPLE_SLUGS[0])

    asyncio.run(main())


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout() is Python 3.11+")
def test_a_timeout_leaving_a_nested_context_never_leaves_the_inner_tenant_in_force(
    async_db: Any, two_tenants: TenantPair
) -> None:
    """Issue 19, hole 3: ``async with tenant_context(a)`` around ``async with
    tenant_context(b)``, a timeout landing anywhere in b's block, its exit
    included. Back in a's block, whatever b's exit got through, a's setting
    is in force again: raw SQL reads only a's rows, a raw UPDATE cannot reach
    b's, and a's ``record_event`` is written. Or, where the cancellation broke
    a's transaction, every statement of it fails: nothing reads b's rows."""
    if not is_postgres(async_db):
        pytest.skip("SQLite contexts send nothing")
    a, b = two_tenants.a, two_tenants.b
    b_skill = two_tenants.rows_of(b).skills[0]
    leaks: list[tuple[int, Any]] = []
    outcomes: Counter[str] = Counter()

    async def attempt(n: int, delay: float) -> None:
        async with tenant_context(a):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay), tenant_context(b):
                    await async_db.aexecute_sql("SELECT 1")
            assert current_tenant() == a.id
            try:
                setting = (await async_db.aexecute_sql(SETTING)).fetchall()[0][0]
                tenants = await async_db.aexecute_sql("SELECT DISTINCT tenant_id FROM skills")
                seen = {row[0] for row in tenants.fetchall()}
                await async_db.aexecute_sql(
                    "UPDATE skills SET name = 'hijacked' WHERE id = %s", (b_skill.id,)
                )
                event = await async_db.run(record_event, "probe.nested")
            except Exception as exc:  # a's transaction broken: loud, not leaking
                outcomes[type(exc).__name__] += 1
                raise _Broken from exc
            outcomes["restored"] += 1
            if setting != a.id or (async_db.under_rls and seen != {a.id}) or event is None:
                leaks.append((n, (setting, seen, event)))

    async def main() -> None:
        rng = random.Random(19)
        for n in range(300):
            # 0 to ~3 round trips: the timeout lands in b's entry, body or exit
            with contextlib.suppress(_Broken):
                await asyncio.create_task(attempt(n, rng.uniform(0, 0.002)))
        async with tenant_context(b):
            untouched = await async_db.aexecute_sql(
                "SELECT name FROM skills WHERE id = %s", (b_skill.id,)
            )
            names.append(untouched.fetchall()[0][0])

    names: list[str] = []
    run(async_db, main)
    assert leaks == [], (len(leaks), leaks[:5], outcomes)
    if async_db.under_rls:  # the owner's UPDATE reaches every row anyway
        assert names and names[0] != "hijacked"
    assert outcomes["restored"] > 0, outcomes
    print(f"nested exits cut short by a timeout: {dict(outcomes)}")


class _Broken(Exception):
    """a's transaction refused the probe: the attempt is over, nothing leaked."""


def test_an_async_generator_closed_from_another_task_leaks_nothing(
    async_db: Any, two_tenants: TenantPair
) -> None:
    """Issue 19: an async generator suspended inside ``async with
    tenant_context(a)`` and closed by another task (as asyncio finalizes an
    abandoned one) left ``a`` in force for the task that ran it: the
    ContextVar (the exit's reset failed on the other task's context) and,
    on PostgreSQL, the transaction with a's setting on the task's connection."""
    a = two_tenants.a

    async def names() -> Any:
        async with tenant_context(a):
            for skill in await async_db.list(Skill.select()):
                yield skill.name

    async def main() -> None:
        generator = names()
        await generator.__anext__()
        closing = asyncio.ensure_future(generator.aclose())  # another task
        with pytest.raises(RelayError, match="out of order"):
            await closing
        assert current_tenant() is None
        with pytest.raises(TenantRequired):
            await Skill.aget(Skill.slug == SAMPLE_SLUGS[0])
        if async_db.under_rls:
            try:
                cursor = await async_db.aexecute_sql("SELECT tenant_id FROM skills")
                seen = {row[0] for row in cursor.fetchall()}
            except Exception:  # the block's connection was closed under it
                seen = set()
            assert a.id not in seen

    run(async_db, main)
