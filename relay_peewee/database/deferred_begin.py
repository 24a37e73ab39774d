"""A PostgreSQL transaction that costs no round trip of its own until it is needed.

A tenant context on PostgreSQL must carry its tenant to row-level security with
``set_config(..., true)``, which lives exactly as long as its transaction. Sent
the plain way that is ``BEGIN``, ``set_config``, the query and ``COMMIT``: four
round trips for a one-query request. ``DeferredTransaction`` sends nothing when
it is entered; its setup SQL goes out *with* the first statement, in the same
query string (psycopg2 sends a string of several statements in one round trip,
and PostgreSQL runs them as one transaction):

* a plain ``SELECT`` (no row locks, no ``INTO``: ``_runs_alone``) gets
  ``SET LOCAL ...; <query>`` (the setting as ``SET LOCAL``,
  ``rls.tenant_setting_client_sql``): one implicit transaction, so the
  setting is gone when the query is done and nothing needs committing;
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
import string
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from peewee import Database, PostgresqlDatabase, Psycopg3Adapter, _transaction

from ..errors import ContextAbandoned

__all__ = [
    "BLOCKS",
    "DeferredBeginMixin",
    "DeferredTransaction",
    "deferred_class",
    "deferred_transaction",
    "discard_blocks",
]

_guard_ids = itertools.count()
# Lower-casing that keeps every character where it is: str.lower() makes
# some strings longer ("İ" becomes two characters), and the offsets found in
# the lowered text must be those of the statement.
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
# libpq's PQTRANS_INERROR, as psycopg2's and psycopg 3's connection.info report it.
_IN_FAILED_TRANSACTION = 3


# _runs_alone's answers by statement: an application sends the same few
# hundred statement texts over and over (peewee renders values as
# parameters), and a dict lookup costs a tenth of the scan. Bounded: an
# application rendering literals into its SQL cannot grow it for ever.
_alone: dict[str, bool] = {}
_ALONE_ENTRIES = 1024


def _runs_alone(sql: str) -> bool:
    found = _alone.get(sql)
    if found is None:
        if len(_alone) >= _ALONE_ENTRIES:
            _alone.clear()
        found = _alone[sql] = _scans_alone(sql)
    return found


def _scans_alone(sql: str) -> bool:
    """Whether a statement may run in an implicit transaction of its own.

    Only a ``SELECT`` with no word ``FOR`` (row locks - ``FOR UPDATE``,
    ``FOR NO KEY UPDATE``..., however spaced or commented - must last until
    the block ends) and no word ``INTO`` (``SELECT ... INTO t`` creates a
    table, which must roll back with the block). A ``FOR`` elsewhere (a
    string, ``substring(x FROM 1 FOR 2)``) errs the safe way: the statement
    opens the transaction. Runs on every read of a request, so it scans
    for the words rather than running a regex over the statement (~7 us
    for a 600-character SELECT).
    """
    if sql[:6].upper() != "SELECT":
        return False
    lowered = sql.lower() if sql.isascii() else sql.translate(_ASCII_LOWER)
    return not (_has_word(sql, lowered, "for") or _has_word(sql, lowered, "into"))


def _has_word(sql: str, lowered: str, word: str) -> bool:
    at = lowered.find(word)
    while at != -1:
        end = at + len(word)
        before = sql[at - 1] if at else " "
        after = sql[end] if end < len(sql) else " "
        if not (_in_identifier(before) or _in_identifier(after)):
            return True
        at = lowered.find(word, end)
    return False


def _in_identifier(char: str) -> bool:
    return char.isalnum() or char in "_$"


class DeferredTransaction(_transaction):
    """``db.transaction()`` whose BEGIN (and setup) is sent with its first statement."""

    def __init__(
        self,
        db: Database,
        setup_sql: str,
        setup_params: tuple[Any, ...],
        *,
        setup_alone: bool = False,
    ) -> None:
        super().__init__(db)
        self.setup_sql = setup_sql
        self.setup_params = setup_params
        # Citus: BEGIN and the setup are one string, the first statement the
        # next (``database.citus``): still no round trip until one is needed.
        self.setup_alone = setup_alone
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
        if self._reads_alone and _runs_alone(sql):
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
            # A loop, not any(<generator>): this runs before every statement
            # inside a context, and is nearly always one block, open.
            for block in self._state.__dict__.get(BLOCKS, ()):
                if block.scope.closed:
                    _discard_abandoned(self, self._state.__dict__[BLOCKS])
                    transactions = self._state.transactions
                    break
        if transactions:
            outermost = transactions[0]
            if type(outermost) is DeferredTransaction and (
                not outermost.begun or outermost.before_next
            ):
                if outermost.setup_alone and not outermost.begun:
                    setup = f"{_begin_statement(self)}; {outermost.setup_sql}"
                    super().execute_sql(setup, outermost.setup_params or None)  # type: ignore[misc]
                    outermost.begun = True
                    if not outermost.before_next:
                        return super().execute_sql(sql, params, **options)  # type: ignore[misc]
                begun, queued = outermost.begun, list(outermost.before_next)
                sql, params = outermost.prepare(sql, params)
                try:
                    return super().execute_sql(sql, params, **options)  # type: ignore[misc]
                except BaseException:
                    if not self._failed_on_server():
                        # It never reached the server (the driver refused a
                        # value, say): the BEGIN, the setting and the
                        # savepoints put in front of it go with the next one.
                        outermost.begun = begun
                        outermost.before_next[:0] = queued
                    raise
        return super().execute_sql(sql, params, **options)  # type: ignore[misc]

    def _failed_on_server(self) -> bool:
        # A statement that reached the server inside BEGIN and failed leaves
        # the transaction failed; one the driver refused leaves it as it was.
        info = getattr(self._state.conn, "info", None)
        return getattr(info, "transaction_status", None) == _IN_FAILED_TRANSACTION


# This thread's open tenant_context/unscoped blocks on a sync PostgreSQL
# database, outermost first (``tenancy.context`` keeps it: objects with
# ``scope.closed`` and ``unwind()``), in peewee's thread-local connection state.
BLOCKS = "relay_blocks"


def discard_blocks(db: Any) -> None:
    """Roll back this thread's transaction on ``db`` and close every block on it.

    What is left when a block ended out of order: its transaction is
    somewhere in the stack of those nested in it, so each block, innermost
    first, ends its own with a rollback; every scope is closed, so the ORM
    no longer reads as any of them, and the connection is back in autocommit
    with no tenant setting.
    """
    state = db._state
    blocks = state.__dict__.pop(BLOCKS, [])
    for block in reversed(blocks):
        block.unwind()
    state.__dict__.pop("relay_context_owners", None)
    state.transactions.clear()
    db._clear_commit_callbacks()
    if not db.is_closed():
        # Whatever an unwind could not end: a ROLLBACK with nothing open is
        # only a warning.
        db.cursor().execute("ROLLBACK")


def _discard_abandoned(db: Any, blocks: list[Any]) -> None:
    """A block of this thread's was ended on another thread: end it here too,
    before a statement runs in its transaction."""
    inside = [block for block in blocks if not block.scope.closed]
    discard_blocks(db)
    if inside:
        raise ContextAbandoned(
            "a tenant_context this block is nested in was ended on another thread "
            "(a generator suspended inside it?): the transaction was rolled back"
        )


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
