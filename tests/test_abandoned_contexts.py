"""Issue 19, "also seen": a generator suspended inside a tenant context and
closed out of order leaked its tenant to later code on the thread.

A generator that yields inside ``with tenant_context(A)`` runs its block's
exit when it is closed - by ``close()``, or when it is collected - wherever
that happens. Closed while a block entered after it is open, or on another
thread, the exit used to reset the ContextVar under the later block (which
then gave A back on its own exit), or fail on a token of another context and
leave A's transaction, with its tenant setting, on the thread's connection.
Each test closes such a generator and checks, through the application role
on PostgreSQL (``postgres_rls``) with raw SQL as well as the ORM, that later
code runs as nobody.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from peewee import Database

from relay_peewee import current_tenant, tenant_context
from relay_peewee.errors import ContextAbandoned, TenantRequired
from relay_peewee.models import Skill
from relay_peewee.testing import TenantPair, bound_by_row_level_security

SETTING = "SELECT current_setting('app.current_tenant_id', true)"


def _suspended_in(tenant: object) -> Iterator[str]:
    """A generator paused inside ``tenant_context(tenant)``, after one read."""

    def names() -> Iterator[str]:
        with tenant_context(tenant):
            for skill in Skill.select():
                yield skill.name

    generator = names()
    next(generator)
    return generator


def _runs_as_nobody(db: Database) -> None:
    """Later code: no tenant for the ORM, none for the database either."""
    assert current_tenant() is None
    with pytest.raises(TenantRequired):
        list(Skill.select())
    if bound_by_row_level_security(db):
        # Raw SQL, as the application role: the policies see no tenant.
        assert db.execute_sql("SELECT tenant_id FROM skills").fetchall() == []
        assert db.execute_sql(SETTING).fetchone()[0] in (None, "")


def test_a_generator_closed_inside_a_later_block_leaks_nothing(
    relay_db: Database, two_tenants: TenantPair
) -> None:
    a, b = two_tenants.a, two_tenants.b
    generator = _suspended_in(a)
    with pytest.raises(ContextAbandoned, match="rolled back"), tenant_context(b):
        with pytest.raises(ContextAbandoned, match="out of order"):
            generator.close()
        # B ran inside A's transaction (on PostgreSQL), which is gone: B is
        # closed too rather than running on without its tenant setting.
        with pytest.raises(TenantRequired):
            list(Skill.select())
    _runs_as_nobody(relay_db)
    # And the thread is usable again, in order.
    with tenant_context(b):
        assert {s.tenant_id for s in Skill.select()} == {b.id}


def test_a_generator_closed_on_another_thread_leaks_nothing_here(
    relay_db: Database, two_tenants: TenantPair
) -> None:
    generator = _suspended_in(two_tenants.a)
    raised: list[BaseException] = []

    def close() -> None:
        try:
            generator.close()
        except BaseException as exc:
            raised.append(exc)

    closer = threading.Thread(target=close)
    closer.start()
    closer.join()
    _runs_as_nobody(relay_db)
    assert [type(exc) for exc in raised] == [ContextAbandoned]  # and it said so there
    with tenant_context(two_tenants.b):
        assert {s.tenant_id for s in Skill.select()} == {two_tenants.b.id}


def test_a_generator_closed_in_order_is_an_ordinary_exit(
    relay_db: Database, two_tenants: TenantPair
) -> None:
    generator = _suspended_in(two_tenants.a)
    assert current_tenant() == two_tenants.a.id  # suspended, the block is open
    generator.close()  # no block began since: nothing to report
    _runs_as_nobody(relay_db)
