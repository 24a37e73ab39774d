"""What a tenant context means to PostgreSQL's row-level security.

Migration 0008 makes every tenant table show only the rows of
``current_setting('app.current_tenant_id', true)``. On PostgreSQL,
``tenant_context`` therefore opens a transaction (a savepoint when one is
open) and sets that value with ``set_config(..., true)``: it lives exactly as
long as the transaction, so a pooled connection never carries a tenant into
the next request. On a database ``relay_peewee.connect()`` opened, the
outermost context's BEGIN and ``set_config`` are not sent on entry but with
its first statement (``deferred_begin``), so a request pays no round trip for
them. ``tenancy.aio`` runs the same SQL on peewee's asyncio databases.

``unscoped`` opens a transaction too; if the connected role is bound by the
policies it either runs the block on its own connection to the admin
database (``connect(url, admin_url=...)``, the recommended setup: the
application role has no way out of its tenant) or, where the application
role was granted ``relay_admin`` (an opt-in), switches to it with ``SET
LOCAL ROLE`` until it ends.

Consequences worth knowing:

* on PostgreSQL a tenant context is a transaction: leaving it with an
  exception rolls its writes back;
* an ``unscoped`` block on the admin connection is a transaction of its
  own: it commits when the block ends, and waiting there for a row lock the
  enclosing transaction holds would wait forever;
* the connection is the thread's (peewee's rule), so asyncio tasks that
  interleave sync contexts on one thread would share one transaction: that is
  refused (``RelayError``). Use ``async with tenant_context`` on a
  ``playhouse.pwasyncio`` database (a connection per task), or run each task's
  database work in a thread (``asyncio.to_thread``).

SQLite has no row-level security; nothing happens there.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext, suppress
from typing import Any, cast

from peewee import Database, PostgresqlDatabase

from ..database import admin_database, database_proxy, is_postgres
from ..database.citus import PROPAGATE_SQL, is_citus, known_citus, set_local_sql
from ..database.deferred_begin import (
    BLOCKS,
    DeferredBeginMixin,
    DeferredTransaction,
    discard_blocks,
)
from ..database.quoting import quote
from ..errors import AdminConnectionRequired, InvalidTenantId, RelayError

__all__ = [
    "ADMIN_ROLE",
    "TENANT_SETTING",
    "bypass_scope",
    "citus_setting_sql",
    "discard_thread_blocks",
    "separate_transaction",
    "tenant_scope",
    "tenant_setting_client_sql",
    "tenant_setting_literal_for",
    "tenant_setting_literal_sql",
    "tenant_setting_sql",
    "thread_blocks",
]

TENANT_SETTING = "app.current_tenant_id"
ADMIN_ROLE = "relay_admin"


def _bound_postgres(database: Database | None = None) -> Database | None:
    db = database if database is not None else database_proxy.obj
    return db if db is not None and is_postgres(db) else None


def tenant_setting_sql(tenant_id: str) -> tuple[str, tuple[str, str]]:
    """The statement that carries a tenant to the policies, for its transaction.

    One definition for the sync and the asyncio paths (``aio``).
    """
    return "SELECT set_config(%s, %s, true)", (TENANT_SETTING, tenant_id)


def tenant_setting_client_sql(tenant_id: str) -> tuple[str, tuple[str]]:
    """``tenant_setting_sql`` as ``SET LOCAL``, for a driver that binds
    parameters on the client (psycopg2: a utility statement takes no server
    parameters). The deferred path's form: it goes out in front of every
    read, and costs the server ~3 us less than ``SELECT set_config(...)``
    (nothing to plan, no row to send back). In the implicit transaction of
    a multi-statement query it lives exactly as long as ``set_config(...,
    true)`` would."""
    return f"SET LOCAL {TENANT_SETTING} = %s", (tenant_id,)


def tenant_setting_literal_sql(tenant_id: str) -> str:
    """``tenant_setting_sql`` with the id written as a literal.

    For a driver whose one-round-trip path takes no parameters (asyncpg's
    simple query protocol; its parameterised path is a prepare and an
    execute, two round trips). An E'' string: its escaping does not depend on
    ``standard_conforming_strings``.
    """
    if "\x00" in tenant_id:
        raise InvalidTenantId("a tenant id cannot contain NUL")
    literal = "E'" + tenant_id.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"SELECT set_config('{TENANT_SETTING}', {literal}, true)"


def citus_setting_sql(tenant_id: str) -> str:
    """The tenant setting on Citus, where ``set_config`` never reaches the
    workers: ``SET LOCAL`` with its propagation on, to be sent as a string
    of its own (or after a bare BEGIN) - Citus replays the whole string on
    each worker, and a query in it would run there twice (``database.citus``)."""
    return f"{PROPAGATE_SQL}; {set_local_sql(TENANT_SETTING, tenant_id)}"


def tenant_setting_literal_for(db: Database, tenant_id: str) -> str:
    """``tenant_setting_literal_sql``, or its Citus form on a database found to be Citus."""
    if known_citus(db):
        return citus_setting_sql(tenant_id)
    return tenant_setting_literal_sql(tenant_id)


def _set_tenant(db: Database, tenant_id: str) -> None:
    if is_citus(db):
        db.execute_sql(citus_setting_sql(tenant_id))
        return
    db.execute_sql(*tenant_setting_sql(tenant_id))


def tenant_scope(tenant_id: str, outer_tenant: str | None) -> AbstractContextManager[None]:
    """The database side of ``tenant_context`` (a no-op off PostgreSQL)."""
    db = _bound_postgres()
    if db is None:
        return nullcontext()
    if isinstance(db, DeferredBeginMixin) and db.defers_begin and not db.in_transaction():
        owners = _context_owners(db)
        if owners is not None:
            return _DeferredScope(db, tenant_id, owners)
    return _scope_in_transaction(db, tenant_id, outer_tenant)


class _DeferredScope:
    """The outermost context on a deferred-BEGIN database: BEGIN and the
    tenant setting (``tenant_setting_client_sql``) go out with the first
    statement (``deferred_begin``).

    The path of nearly every request, so a plain class rather than stacked
    generator context managers: it does what ``_owned_by_this_task`` and a
    ``DeferredTransaction`` block would, in one object.
    """

    __slots__ = ("db", "owners", "transaction")

    def __init__(self, db: Database, tenant_id: str, owners: list[object | None]) -> None:
        self.db = db
        self.owners = owners
        if is_citus(db):
            # BEGIN and the setting still go out together, but not with the query.
            setup = citus_setting_sql(tenant_id)
            self.transaction = DeferredTransaction(db, setup, (), setup_alone=True)
        else:
            self.transaction = DeferredTransaction(db, *tenant_setting_client_sql(tenant_id))

    def __enter__(self) -> None:
        _claim(self.owners)
        try:
            # Connected first: opening a connection resets peewee's
            # transaction stack, which would drop ours.
            if self.db.is_closed():
                self.db.connect()
            self.transaction.__enter__()
        except BaseException:
            self.owners.pop()
            raise

    def __exit__(self, *exc_info: Any) -> None:
        try:
            self.transaction.__exit__(*exc_info)
        finally:
            self.owners.pop()


@contextmanager
def _scope_in_transaction(db: Database, tenant_id: str, outer_tenant: str | None) -> Iterator[None]:
    """``tenant_scope`` inside a transaction, or on a database that cannot defer BEGIN."""
    with _owned_by_this_task(db):
        with db.atomic():
            _set_tenant(db, tenant_id)
            yield
        if db.in_transaction():
            # Still inside an enclosing context's transaction: a released
            # savepoint keeps our value, so put the enclosing tenant back.
            _set_tenant(db, outer_tenant or "")


def thread_blocks(database: Database | None = None) -> list[Any] | None:
    """This thread's open blocks on a sync PostgreSQL database (``deferred_begin.BLOCKS``);
    ``None`` off PostgreSQL and where connections are per asyncio task."""
    db = database if database is not None else database_proxy.obj
    # isinstance, not is_postgres(): ``obj`` is never a proxy, and this runs
    # on every context's entry.
    if not isinstance(db, PostgresqlDatabase):
        return None
    state: Any = cast(Any, db)._state
    if not isinstance(state, threading.local):  # pwasyncio: a connection per task
        return None
    blocks: list[Any] = state.__dict__.setdefault(BLOCKS, [])
    return blocks


def discard_thread_blocks(database: Database | None = None) -> None:
    """Roll back this thread's transaction and close its blocks
    (``deferred_begin.discard_blocks``)."""
    db = _bound_postgres(database)
    if db is not None and isinstance(cast(Any, db)._state, threading.local):
        discard_blocks(db)


def _current_task() -> object | None:
    # No running loop in this thread (the common, sync case): no task.
    return asyncio.current_task() if asyncio._get_running_loop() is not None else None


@contextmanager
def _owned_by_this_task(db: Database) -> Iterator[None]:
    """Refuse a sync context while another asyncio task holds one on this connection.

    A sync database has one connection (and so one transaction) per thread:
    two tasks interleaving contexts on it would run in each other's
    transaction, each under whichever tenant was set last.
    """
    if hasattr(db, "aexecute_sql"):
        _require_bridge(db)
    owners = _context_owners(db)
    if owners is None:  # a connection per task already
        yield
        return
    _claim(owners)
    try:
        yield
    finally:
        owners.pop()


def _require_bridge(db: Database) -> None:
    """Refuse a sync block on a pwasyncio database outside its greenlet bridge.

    There every statement would fail with pwasyncio's MissingGreenletBridge;
    inside ``await db.run(fn)`` the sync block works as on a sync database.
    The check lives here, not in ``aio``, so that ``aio`` (which builds on
    this module) is never imported back by it.
    """
    from greenlet import getcurrent  # the `async` extra: only pwasyncio databases get here

    if getcurrent().parent is None:
        raise RelayError(
            "`with tenant_context(...)` on an asyncio database: use "
            "`async with tenant_context(...)`, or run the sync code with `await db.run(fn)`"
        )


def _context_owners(db: Database) -> list[object | None] | None:
    """The asyncio tasks (or ``None``s) holding contexts open on this thread's
    connection, innermost last; ``None`` when the database has a connection
    per task."""
    state: Any = cast(Any, db)._state
    if not isinstance(state, threading.local):
        return None
    return state.__dict__.setdefault("relay_context_owners", [])


def _claim(owners: list[object | None]) -> None:
    task = _current_task()
    if owners and owners[-1] is not task:
        raise RelayError(
            "tenant_context/unscoped is already open on this thread's database "
            "connection in another asyncio task, and both would share its transaction: "
            "use `async with tenant_context(...)` on a playhouse.pwasyncio database, or "
            "run each task's database work in a thread (asyncio.to_thread)"
        )
    owners.append(task)


@contextmanager
def bypass_scope(database: Database | None = None) -> Iterator[None]:
    """The database side of ``unscoped``: see every tenant until it ends.

    Writes no audit row itself: ``unscoped`` does that before calling it.
    """
    db = _bound_postgres(database)
    if db is None:
        yield
        return
    admin = admin_database(db)
    if admin is not None and _needs_admin_role(db):
        with _on_admin_connection(db, admin):
            yield
        return
    with ExitStack() as stack:
        stack.enter_context(_owned_by_this_task(db))
        stack.enter_context(db.atomic())
        switched = _needs_admin_role(db)
        if switched:
            _set_admin_role(db)
        yield
        if switched and db.in_transaction():
            db.execute_sql("SET LOCAL ROLE NONE")


def _set_admin_role(db: Database) -> None:
    """The opt-in way around RLS: SET LOCAL ROLE to an admin role the app role was granted."""
    role = getattr(db, "relay_admin_role", ADMIN_ROLE)
    try:
        with db.atomic():  # a failed SET ROLE must not poison the transaction
            db.execute_sql(f"SET LOCAL ROLE {quote(role)}")
    except Exception as exc:
        reason = f"SET ROLE {role} failed ({str(exc).strip().splitlines()[0]})"
        raise AdminConnectionRequired(
            f"unscoped() cannot bypass row-level security: no admin connection and {reason}; "
            "pass relay_peewee.connect(url, admin_url=...) with a BYPASSRLS role (see "
            "`relay-peewee roles`), or connect as one",
            reason,
        ) from None


@contextmanager
def _on_admin_connection(db: Database, admin: Database) -> Iterator[None]:
    """Run the block's queries on a new connection to ``admin``, in one transaction.

    peewee's connection is the thread's (``db._state``); for the block this
    thread's state holds the admin connection, with no transaction of the
    caller's on it, and gets its own back afterwards, untouched. Other
    threads keep theirs.
    """
    state: Any = db._state  # type: ignore[attr-defined]
    saved = (state.conn, state.closed, state.ctx, state.transactions, state.commit_callbacks)
    conn = admin._connect()  # type: ignore[attr-defined]
    state.set_connection(conn)
    try:
        with db.atomic():
            yield
    finally:
        state.conn, state.closed, state.ctx, state.transactions, state.commit_callbacks = saved
        admin._close(conn)  # type: ignore[attr-defined]


@contextmanager
def separate_transaction(db: Database, tenant_id: str | None) -> Iterator[Any]:
    """A raw DB-API connection apart from the thread's, in a transaction committed on exit.

    For a write that must not share the fate of the caller's transaction
    (``unscoped()``'s audit row). PostgreSQL: on the admin database when one
    is configured; else as the connected role with ``tenant_id`` set for
    row-level security, or - for a row of no tenant - switched to the admin
    role where the opt-in grant allows it. SQLite: a second connection, which
    waits at most two seconds for a lock the caller's own transaction may hold.
    """
    pg = is_postgres(db)
    admin = admin_database(db) if pg else None
    source: Any = admin if admin is not None else db
    # peewee runs its connections in autocommit mode and sends BEGIN itself.
    conn = source._connect()
    cursor = conn.cursor()
    try:
        if pg:
            cursor.execute("BEGIN")
            # A lock the caller's own transaction holds must fail, not hang.
            cursor.execute("SET LOCAL lock_timeout = '2s'")
            if admin is None and tenant_id is not None and is_citus(db):
                cursor.execute(citus_setting_sql(tenant_id))
            elif admin is None and tenant_id is not None:
                cursor.execute("SELECT set_config(%s, %s, true)", (TENANT_SETTING, tenant_id))
            elif admin is None and _needs_admin_role(db, cursor):
                role = getattr(db, "relay_admin_role", ADMIN_ROLE)
                cursor.execute(f"SET LOCAL ROLE {quote(role)}")
        else:
            cursor.execute("PRAGMA busy_timeout = 2000")
            cursor.execute("BEGIN IMMEDIATE")
        yield cursor
        cursor.execute("COMMIT")
    except BaseException:
        with suppress(Exception):  # none left to roll back when BEGIN itself failed
            cursor.execute("ROLLBACK")
        raise
    finally:
        source._close(conn)


_BOUND_BY_RLS = (
    "SELECT NOT (r.rolsuper OR r.rolbypassrls) AND EXISTS ("
    " SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = current_schema() AND c.relforcerowsecurity)"
    " FROM pg_roles r WHERE r.rolname = current_user"
)


def _needs_admin_role(db: Database, cursor: Any = None) -> bool:
    """Whether this role is bound by forced row-level security right now."""
    if cursor is None:
        row = db.execute_sql(_BOUND_BY_RLS).fetchone()
    else:
        cursor.execute(_BOUND_BY_RLS)
        row = cursor.fetchone()
    return bool(row and row[0])
