"""``by_host`` remembers resolved hosts for a bounded time, and forgets at once on change.

A write to ``tenants`` made with raw SQL stands for another process (the CLI,
another worker): the cache cannot see it, so it must wait out
``cache_seconds``. A write through the ``Tenant`` model stands for this
process changing a tenant, which must take effect on the next request.
"""

from __future__ import annotations

import math
import time

import pytest
from peewee import Database, SqliteDatabase

from relay_peewee.models import Tenant
from relay_peewee.tenancy.rls import bypass_scope
from relay_peewee.testing import TenantPair
from relay_peewee.web import RequestInfo, TenantNotResolved, by_host
from relay_peewee.web.host_cache import HostCache

ROOT = "relay.example"


def request(slug: str) -> RequestInfo:
    return RequestInfo(host=f"{slug}.{ROOT}", headers={})


def deactivate_elsewhere(db: Database, tenant_id: str) -> None:
    """Deactivate with raw SQL, as another process would: the cache is not told."""
    with bypass_scope(db):
        db.execute_sql(
            f'UPDATE "tenants" SET "is_active" = {db.param} WHERE "id" = {db.param}',
            (False, tenant_id),
        )


def test_a_tenant_deactivated_elsewhere_stops_resolving_within_cache_seconds(
    two_tenants: TenantPair, relay_db: Database
) -> None:
    a = two_tenants.a
    resolve = by_host(ROOT, cache_seconds=0.5)
    assert resolve(request(a.slug)).tenant_id == a.id
    deactivate_elsewhere(relay_db, a.id)
    # Remembered: the lookup is skipped, so the change is not seen yet ...
    assert resolve(request(a.slug)).tenant_id == a.id
    time.sleep(0.6)
    # ... and no longer than cache_seconds.
    with pytest.raises(TenantNotResolved) as refused:
        resolve(request(a.slug))
    assert refused.value.status == 404


def test_changing_a_tenant_in_this_process_takes_effect_on_the_next_request(
    two_tenants: TenantPair, relay_db: Database
) -> None:
    a = two_tenants.a
    resolve = by_host(ROOT, cache_seconds=3600)
    assert resolve(request(a.slug)).tenant_id == a.id
    with bypass_scope(relay_db):
        Tenant.update(is_active=False).where(Tenant.id == a.id).execute()
    with pytest.raises(TenantNotResolved):
        resolve(request(a.slug))


def test_cache_seconds_zero_looks_the_host_up_every_request(
    two_tenants: TenantPair, relay_db: Database
) -> None:
    a = two_tenants.a
    resolve = by_host(ROOT, cache_seconds=0)
    assert resolve(request(a.slug)).tenant_id == a.id
    deactivate_elsewhere(relay_db, a.id)
    with pytest.raises(TenantNotResolved):
        resolve(request(a.slug))


def test_an_unknown_host_is_not_remembered(two_tenants: TenantPair, relay_db: Database) -> None:
    resolve = by_host(ROOT, cache_seconds=3600)
    with pytest.raises(TenantNotResolved):
        resolve(request("newcomer"))
    # Created elsewhere (raw SQL): the cache is not told, yet it resolves at once.
    p = relay_db.param
    with bypass_scope(relay_db):
        relay_db.execute_sql(
            'INSERT INTO "tenants" ("id", "name", "slug", "is_active", "plan", "created_at",'
            f' "updated_at") VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})',
            ("t-new", "Newcomer", "newcomer", True, "freemium", "2026-01-01", "2026-01-01"),
        )
    assert resolve(request("newcomer")).tenant_id == "t-new"


def test_each_database_keeps_its_own_answers() -> None:
    one, other = SqliteDatabase(":memory:"), SqliteDatabase(":memory:")
    cache = HostCache(60)
    cache.put(one, "a.example", "tenant-a")
    assert cache.get(one, "a.example") == "tenant-a"
    assert cache.get(other, "a.example") is None


def test_the_cache_is_bounded() -> None:
    db = SqliteDatabase(":memory:")
    cache = HostCache(60, max_entries=3)
    for n in range(5):
        cache.put(db, f"h{n}", f"t{n}")
    assert [cache.get(db, f"h{n}") for n in range(5)] == [None, None, "t2", "t3", "t4"]


@pytest.mark.parametrize("seconds", [-1.0, math.nan])
def test_a_nonsense_cache_time_is_refused(seconds: float) -> None:
    with pytest.raises(ValueError, match="cache_seconds"):
        by_host(ROOT, cache_seconds=seconds)
