"""One migrator at a time.

PostgreSQL: a session-level advisory lock. A transaction-level one would be
released at the first commit, and the online path commits after every step.
The lock dies with the session, so a killed migrator never leaves it behind.
A waiter polls with pg_try_advisory_lock instead of blocking in
pg_advisory_lock: CREATE INDEX CONCURRENTLY in the lock holder waits for
every transaction older than its snapshot, and a waiter blocked inside one
long statement is such a transaction - a deadlock PostgreSQL resolves by
killing one of the two. The holder's session also checks for a vanished
client every second, so the backend of a killed migrator stops its statement
(and frees the lock) instead of running on as an orphan.

SQLite: ``flock`` on the database file. SQLite itself locks with POSIX
record locks, which on Linux and macOS are independent of ``flock``, so
this serialises migrators without touching SQLite's own locking. Like
SQLite's locking it needs a local file system.
"""

from __future__ import annotations

import fcntl
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from peewee import Database, SqliteDatabase

from ..database import is_postgres
from ..errors import MigrationError

__all__ = ["MIGRATION_LOCK_KEY", "migration_lock"]

# Any constant bigint will do; this one spells "relaypw" in ASCII.
MIGRATION_LOCK_KEY = 0x72656C61797077
BUSY = "another relay-peewee migrate or rollback is running on this database"


@contextmanager
def migration_lock(
    db: Database, wait: bool = True, notify: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the migration lock; wait for it (telling ``notify``) or refuse."""
    if is_postgres(db):
        with _advisory_lock(db, wait, notify):
            yield
    elif isinstance(db, SqliteDatabase) and db.database not in ("", ":memory:"):
        with _file_lock(str(db.database), wait, notify):
            yield
    else:
        yield


@contextmanager
def _advisory_lock(
    db: Database, wait: bool, notify: Callable[[str], None] | None
) -> Iterator[None]:
    def try_lock() -> bool:
        row = db.execute_sql("SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK_KEY,)).fetchone()
        return bool(row[0])

    if not try_lock():
        if not wait:
            raise MigrationError(f"{BUSY}; try again when it has finished")
        if notify is not None:
            notify(f"waiting: {BUSY}")
        while not try_lock():
            time.sleep(random.uniform(0.2, 0.4))
    if db.server_version >= 140000:
        db.execute_sql("SET client_connection_check_interval = '1s'")
    try:
        yield
    finally:
        db.execute_sql("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


@contextmanager
def _file_lock(path: str, wait: bool, notify: Callable[[str], None] | None) -> Iterator[None]:
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise MigrationError(f"{BUSY}; try again when it has finished") from None
            if notify is not None:
                notify(f"waiting: {BUSY}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
