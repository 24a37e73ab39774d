"""A tenant context's BEGIN and set_config ride on its first statement (PostgreSQL).

What goes over the wire is recorded at the driver (every ``cursor().execute``,
BEGIN and COMMIT included), and what the server holds afterwards is asked of
the server: no open transaction, no tenant left on the connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg2.extensions
import pytest
from peewee import Database, PostgresqlDatabase, ProgrammingError

import relay_peewee
from relay_peewee import tenant_context
from relay_peewee.database import is_postgres, postgres_driver
from relay_peewee.database.deferred_begin import _runs_alone, deferred_class
from relay_peewee.models import Rating, Skill
from relay_peewee.tenancy import activity
from relay_peewee.testing import (
    SAMPLE_SLUGS,
    TenantPair,
    assert_only_tenant,
    bound_by_row_level_security,
)

SETTING = "SELECT current_setting('app.current_tenant_id', true)"


class _Recording:
    def __init__(self, cursor: Any, sent: list[str]) -> None:
        self._cursor, self._sent = cursor, sent

    def execute(self, sql: str, params: Any = None) -> Any:
        self._sent.append(sql)
        return self._cursor.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


@pytest.fixture
def sent(
    relay_db: Database, two_tenants: TenantPair, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[str]]:
    """Every statement string the driver is handed, in order, in the steady
    state: both tenants were just read active (``activity``), as a tenant
    serving requests is nearly always; the read itself has its own test."""
    if not is_postgres(relay_db):
        pytest.skip("SQLite contexts send nothing")
    if postgres_driver(relay_db) != "psycopg2":
        pytest.skip("deferred BEGIN is psycopg2's: psycopg 3 sends BEGIN and set_config on entry")
    for tenant in (two_tenants.a, two_tenants.b):
        with tenant_context(tenant):
            pass
    log: list[str] = []
    real = relay_db.cursor
    monkeypatch.setattr(relay_db, "cursor", lambda *a, **k: _Recording(real(*a, **k), log))
    yield log


def _idle(db: Database) -> bool:
    status = db.connection().info.transaction_status
    return bool(status == psycopg2.extensions.TRANSACTION_STATUS_IDLE)


def _setting_outside(db: Database) -> Any:
    return db.execute_sql(SETTING).fetchone()[0]


def test_a_one_get_request_is_one_round_trip(
    two_tenants: TenantPair, relay_db: Database, sent: list[str]
) -> None:
    a = two_tenants.a
    with tenant_context(a):
        skill = Skill.get(Skill.slug == SAMPLE_SLUGS[0])
    assert skill.tenant_id == a.id
    assert len(sent) == 1  # no BEGIN, no COMMIT of their own
    assert sent[0].startswith("SET LOCAL app.current_tenant_id = %s; SELECT ")
    assert _idle(relay_db)
    assert _setting_outside(relay_db) in (None, "")


def test_a_tenants_first_context_reads_its_state_with_the_begin(
    two_tenants: TenantPair, relay_db: Database, sent: list[str]
) -> None:
    # Forgotten (as after SECONDS, or a write to tenants): the read is the
    # context's first statement, behind the setting; the get is the second.
    activity.forget()
    with tenant_context(two_tenants.a):
        Skill.get(Skill.slug == SAMPLE_SLUGS[0])
    assert len(sent) == 2
    assert sent[0].startswith("SET LOCAL app.current_tenant_id = %s; SELECT ")
    assert '"tenants"' in sent[0] and '"is_active"' in sent[0]
    with tenant_context(two_tenants.a):  # remembered now: one round trip again
        Skill.get(Skill.slug == SAMPLE_SLUGS[0])
    assert len(sent) == 3
    assert _idle(relay_db)


def test_three_reads_are_three_round_trips_each_with_its_tenant(
    two_tenants: TenantPair, relay_db: Database, sent: list[str]
) -> None:
    a = two_tenants.a
    with tenant_context(a):
        for slug in SAMPLE_SLUGS[:3]:
            assert Skill.get(Skill.slug == slug).tenant_id == a.id
        assert relay_db.execute_sql(SETTING).fetchone()[0] == a.id
    assert len(sent) == 4
    assert all(s.startswith("SET LOCAL app.current_tenant_id = %s; ") for s in sent)
    assert _idle(relay_db) and _setting_outside(relay_db) in (None, "")


def test_a_write_opens_the_transaction_with_its_first_statement(
    two_tenants: TenantPair, relay_db: Database, sent: list[str]
) -> None:
    a = two_tenants.a
    with tenant_context(a):
        Skill.get(Skill.slug == SAMPLE_SLUGS[0])
        Skill.update(name="renamed").where(Skill.slug == SAMPLE_SLUGS[0]).execute()
        assert not _idle(relay_db)  # the rest of the block runs in the transaction
        assert relay_db.execute_sql(SETTING).fetchone()[0] == a.id
    assert sent[1].startswith("BEGIN; SET LOCAL app.current_tenant_id = %s; UPDATE ")
    assert sent[2] == SETTING  # inside the transaction: nothing in front
    assert sent[-1] == "COMMIT"
    assert len(sent) == 4
    assert _idle(relay_db) and _setting_outside(relay_db) in (None, "")
    with tenant_context(a):
        assert Skill.get(Skill.slug == SAMPLE_SLUGS[0]).name == "renamed"


def test_an_exception_still_rolls_the_writes_back(
    two_tenants: TenantPair, relay_db: Database, sent: list[str]
) -> None:
    a = two_tenants.a
    with pytest.raises(ZeroDivisionError), tenant_context(a):
        Skill.create(name="n", slug="gone", description="d", category="c", content="x")
        1 / 0  # noqa: B018
    assert sent[-1] == "ROLLBACK"
    assert _idle(relay_db)
    with tenant_context(a):
        assert Skill.get_or_none(Skill.slug == "gone") is None


def test_a_locking_read_runs_in_the_transaction(
    two_tenants: TenantPair, relay_db: Database, sent: list[str]
) -> None:
    with tenant_context(two_tenants.a):
        list(Skill.select().where(Skill.slug == SAMPLE_SLUGS[0]).for_update())
        assert not _idle(relay_db)  # the row lock lasts until the block ends
    assert sent[0].startswith("BEGIN; ") and sent[-1] == "COMMIT"


def test_nested_contexts_and_atomic_inside_a_context_that_has_sent_nothing(
    two_tenants: TenantPair, relay_db: Database, sent: list[str]
) -> None:
    a, b = two_tenants.a, two_tenants.b
    with tenant_context(a):
        with tenant_context(b):
            assert_only_tenant(list(Skill.select()), b)
            assert relay_db.execute_sql(SETTING).fetchone()[0] == b.id
        assert relay_db.execute_sql(SETTING).fetchone()[0] == a.id
        assert_only_tenant(list(Skill.select()), a)
        with relay_db.atomic():
            Skill.create(name="n", slug="in-atomic", description="d", category="c", content="x")
    assert sent[0].startswith("BEGIN; SET LOCAL app.current_tenant_id = %s; SAVEPOINT")
    assert _idle(relay_db) and _setting_outside(relay_db) in (None, "")
    with tenant_context(a):
        assert Skill.get(Skill.slug == "in-atomic").tenant_id == a.id


def test_under_rls_nothing_is_visible_after_a_deferred_context(
    two_tenants: TenantPair, relay_db: Database, sent: list[str]
) -> None:
    if not bound_by_row_level_security(relay_db):
        pytest.skip("row-level security binds only the application role (postgres_rls)")
    with tenant_context(two_tenants.a):
        assert relay_db.execute_sql("SELECT count(*) FROM skills").fetchone()[0] > 0
    assert relay_db.execute_sql("SELECT count(*) FROM skills").fetchone()[0] == 0


def test_under_another_isolation_level_every_statement_opens_the_transaction(
    two_tenants: TenantPair, relay_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot must span the block: no read runs on its own there."""
    if not is_postgres(relay_db):
        pytest.skip("SQLite contexts send nothing")
    level = psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ
    db = deferred_class(PostgresqlDatabase)(
        relay_db.database, isolation_level=level, **relay_db.connect_params
    )
    log: list[str] = []
    real = db.cursor
    monkeypatch.setattr(db, "cursor", lambda *a, **k: _Recording(real(*a, **k), log))
    relay_peewee.connect(db)
    try:
        with tenant_context(two_tenants.a):
            assert Skill.get(Skill.slug == SAMPLE_SLUGS[0]).tenant_id == two_tenants.a.id
        assert log[0].startswith(
            "BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ; SET LOCAL app.current_tenant_id = "
        )
        assert log[-1] == "COMMIT"
    finally:
        db.close()
        relay_peewee.connect(relay_db)


@pytest.mark.parametrize(
    ("sql", "locks"),
    [
        ("SELECT 1 FOR UPDATE", True),
        ('SELECT "t1"."id" FROM "skills" AS "t1" FOR SHARE', True),
        ("select id from skills for\n  no key update", True),
        ("SELECT * FROM skills FOR KEY SHARE", True),
        ("FOR UPDATE", True),
        ("SELECT id FROM skills FOR/**/UPDATE", True),
        ("SELECT id FROM skills FOR--x\nUPDATE", True),
        ('SELECT "İ" FROM skills FOR UPDATE', True),  # "İ".lower() is 2 characters
        ('SELECT "t1"."forked_from_id", "t1"."updated_at" FROM "skills" AS "t1"', False),
        ("SELECT before_update FROM t", False),
        ("SELECT x_for update FROM t", False),
        ("SELECT 'a' AS forupdate", False),
    ],
)
def test_which_selects_take_row_locks(sql: str, locks: bool) -> None:
    """A locking read must open the transaction; a plain one may run alone.
    The test runs on every statement of a request, so it looks for the word
    rather than running a regex over the statement."""
    assert _runs_alone(sql) is not locks


@pytest.mark.parametrize(
    "sql",
    ["SELECT id INTO TEMP TABLE copied FROM skills", "select id\ninto copied from skills"],
)
def test_select_into_does_not_run_alone(sql: str) -> None:
    assert _runs_alone(sql) is False  # it makes a table: that rolls back with the block


def test_select_into_rolls_back_with_the_context(
    two_tenants: TenantPair, relay_db: Database, sent: list[str]
) -> None:
    # The application role may not create temporary tables (issue 19): the
    # statement is refused there, inside the transaction it opened.
    refused = bound_by_row_level_security(relay_db)
    expected = ProgrammingError if refused else ZeroDivisionError
    sent.clear()
    with pytest.raises(expected), tenant_context(two_tenants.a):
        relay_db.execute_sql("SELECT id INTO TEMP TABLE copied FROM skills")
        1 / 0  # noqa: B018
    assert sent[0].startswith("BEGIN; ")
    assert "copied" not in relay_db.get_tables()
    assert not relay_db.execute_sql(
        "SELECT 1 FROM pg_class WHERE relname = 'copied' AND relpersistence = 't'"
    ).fetchall()


def test_a_first_write_the_driver_refuses_leaves_the_context_whole(
    two_tenants: TenantPair, relay_db: Database, sent: list[str]
) -> None:
    """psycopg2 refuses a NUL before sending anything: the BEGIN and the
    setting that were to go with it go with the next statement instead, so the
    block stays one transaction in its tenant."""
    a = two_tenants.a
    with pytest.raises(ZeroDivisionError), tenant_context(a):
        with pytest.raises(ValueError):
            Skill.create(name="bad\x00", slug="nul", description="d", category="c", content="x")
        Skill.create(name="ok", slug="rolled-back", description="d", category="c", content="x")
        1 / 0  # noqa: B018
    assert sent[0].startswith("BEGIN; SET LOCAL app.current_tenant_id = %s; INSERT ")
    assert sent[-1] == "ROLLBACK"
    with tenant_context(a):
        assert Skill.get_or_none(Skill.slug == "rolled-back") is None


def test_a_guarded_write_the_driver_refuses_raises_its_own_error(
    two_tenants: TenantPair, relay_db: Database, sent: list[str]
) -> None:
    """The savepoint that was to go out with it was never sent, so nothing
    rolls back to it: the caller sees the driver's ValueError, not a missing
    savepoint, and the block goes on in its transaction."""
    a = two_tenants.a
    rows = two_tenants.rows_of(a)
    with tenant_context(a):
        Skill.get(Skill.slug == SAMPLE_SLUGS[0])  # a read first, alone
        Skill.update(name="renamed").where(Skill.slug == SAMPLE_SLUGS[0]).execute()  # begun
        with pytest.raises(ValueError):
            Rating.create(skill=rows.skills[1].id, user=rows.users[0], rating=1, comment="x\x00")
        assert relay_db.execute_sql(SETTING).fetchone()[0] == a.id
        assert Skill.get(Skill.slug == SAMPLE_SLUGS[0]).name == "renamed"
    assert not any("ROLLBACK TO SAVEPOINT" in s for s in sent)
