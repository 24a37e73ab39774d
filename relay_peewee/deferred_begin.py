"""A PostgreSQL transaction that costs no round trip of its own until it is needed.

A tenant context on PostgreSQL must carry its tenant to row-level security with
``set_config(..., true)``, which lives exactly as long as its transaction. Sent
the plain way that is ``BEGIN``, ``set_config``, the query and ``COMMIT``: four
round trips for a one-query request. ``DeferredTransaction`` sends nothing when
it is entered; its setup SQL goes out *with* the first statement, in the same
query string (psycopg2 sends a string of several statements in one round trip,
and PostgreSQL runs them as one transaction):

* a plain ``SELECT`` (no row locks) gets ``SET LOCAL ...; <query>`` (the
  setting as ``SET LOCAL``, ``rls.tenant_setting_client_sql``):
  one implicit transaction, so the setting is gone when the query is done and
  nothing needs committing;
* any other statement gets ``BEGIN; SET LOCAL ...; <statement>`` and
  the transaction stays open until the block ends (``COMMIT``, or ``ROLLBACK``
  on an exception), as ``db.atomic()`` would.

So a context that only reads pays no extra round trip at all, and one that
writes pays one (its ``COMMIT``). Under an isolation level other than the
default, every statement opens the transaction (a snapshot must span the block).

``DeferredBeginMixin`` is the database side: it puts the setup in front of the
statement. ``relay_peewee.connect()`` opens PostgreSQL with it; a database
without it gets the plain ``BEGIN`` + ``set_config`` (``tenancy.rls``).

Only statements sent through ``execute_sql`` carry the setup (every query
peewee runs); SQL sent on a raw ``db.cursor()`` inside the block does not.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from peewee import Database, PostgresqlDatabase, Psycopg3Adapter, _transaction

__all__ = ["DeferredBeginMixin", "DeferredTransaction", "deferred_class", "deferred_transaction"]

# A SELECT that takes row locks must run inside the block's transaction.
_guard_ids = itertools.count()
_LOCKING = re.compile(r"FOR\s+(UPDATE|SHARE|NO\s+KEY\s+UPDATE|KEY\s+SHARE)\b", re.IGNORECASE)


def _locks_rows(sql: str) -> bool:
    """Whether a SELECT takes row locks (``FOR UPDATE`` and the like).

    Runs on every statement of a request: searching the whole statement
    with the regex costs ~7 us for a 600-character SELECT; trying it only
    where a word starts with "for", ~1 us.
    """
    lowered = sql.lower()
    at = lowered.find("for")
    while at != -1:
        before = lowered[at - 1] if at else " "
        if not (before.isalnum() or before == "_") and _LOCKING.match(sql, at):
            return True
        at = lowered.find("for", at + 3)
    return False


class DeferredTransaction(_transaction):
    """``db.transaction()`` whose BEGIN (and setup) is sent with its first statement."""

    def __init__(self, db: Database, setup_sql: str, setup_params: tuple[Any, ...]) -> None:
        super().__init__(db)
        self.setup_sql = setup_sql
        self.setup_params = setup_params
        self.begun = False
        # Statements sent in front of the next one (a savepoint's RELEASE).
        self.before_next: list[str] = []
        # A read outside the transaction sees a fresh snapshot, as each
        # statement of a READ COMMITTED transaction would anyway.
        self._reads_alone = not getattr(db, "_isolation_level", None)

    def _begin(self) -> None:
        self.begun = False  # nothing is sent until the first statement

    def prepare(self, sql: str, params: Any) -> tuple[str, tuple[Any, ...]]:
        """The statement with what must run before it in front of it.

        Once begun: the statements queued by ``guarded``. Before: the setup,
        and BEGIN unless the statement is a plain read.
        """
        if self.before_next:
            sql = "; ".join([*self.before_next, sql])
            self.before_next.clear()
        if self.begun:
            return sql, params
        params = (*self.setup_params, *(params or ()))
        if self._reads_alone and sql[:6].upper() == "SELECT" and not _locks_rows(sql):
            return f"{self.setup_sql}; {sql}", params
        self.begun = True
        return f"{_begin_statement(self.db)}; {self.setup_sql}; {sql}", params

    @contextmanager
    def guarded(self) -> Iterator[None]:
        """Run the next statement in a savepoint that costs no round trip.

        ``SAVEPOINT`` goes out in front of the statement and its ``RELEASE``
        in front of the next one (a COMMIT or ROLLBACK releases it anyway).
        If the statement fails, the savepoint is rolled back, so the
        transaction stays usable, as it would after a failed lookup.
        """
        name = f'"relay_guard_{next(_guard_ids)}"'
        self.before_next.append(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            if f"SAVEPOINT {name}" in self.before_next:  # nothing was sent
                self.before_next.remove(f"SAVEPOINT {name}")
            else:
                self.db.execute_sql(f"ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}")
            raise
        self.before_next.append(f"RELEASE SAVEPOINT {name}")

    def commit(self, begin: bool = True) -> None:
        self.before_next.clear()
        if self.begun:
            self.db.commit()
        self.db._run_commit_callbacks()
        self._begin()

    def rollback(self, begin: bool = True) -> None:
        self.before_next.clear()
        if self.begun:
            self.db.rollback()
        self.db._clear_commit_callbacks()
        self._begin()


def _begin_statement(db: Any) -> str:
    """What ``PostgresqlDatabase.begin()`` would send."""
    level = getattr(db, "_isolation_level", None)
    if level:
        return f"BEGIN TRANSACTION ISOLATION LEVEL {db._adapter.isolation_level_str(level)}"
    return "BEGIN"


class DeferredBeginMixin:
    """Sends a pending ``DeferredTransaction``'s setup with the next statement."""

    __slots__ = ()  # no state: an opened database can take the mixin on
    _state: Any
    _adapter: Any

    @property
    def defers_begin(self) -> bool:
        # psycopg 3 binds parameters on the server: one statement per message.
        return not isinstance(self._adapter, Psycopg3Adapter)

    def execute_sql(self, sql: str, params: Any = None, **options: Any) -> Any:
        transactions = self._state.transactions
        if transactions:
            outermost = transactions[0]
            if type(outermost) is DeferredTransaction and (
                not outermost.begun or outermost.before_next
            ):
                sql, params = outermost.prepare(sql, params)
        return super().execute_sql(sql, params, **options)  # type: ignore[misc]


_classes: dict[type[Database], type[Database]] = {}


def deferred_class(db_class: type[Database]) -> type[Database]:
    """``db_class`` with deferred BEGIN, for a synchronous PostgreSQL database class."""
    if not issubclass(db_class, PostgresqlDatabase) or issubclass(db_class, DeferredBeginMixin):
        return db_class
    if hasattr(db_class, "aexecute_sql"):  # playhouse.pwasyncio: one statement per message
        return db_class
    cls = _classes.get(db_class)
    if cls is None:
        attrs = {"__slots__": ()}
        cls = _classes[db_class] = type(db_class.__name__, (DeferredBeginMixin, db_class), attrs)
    return cls


def deferred_transaction(db: Any) -> DeferredTransaction | None:
    """The relay context transaction this thread's connection is in, if any."""
    transactions: list[Any] = db._state.transactions
    if transactions and type(transactions[0]) is DeferredTransaction:
        return transactions[0]
    return None
