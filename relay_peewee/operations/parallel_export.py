"""Exporting a tenant's tables on several connections in one snapshot (``export_tenant(jobs=K)``).

Why: on PostgreSQL the server's ``json_build_array`` is nearly the whole cost
of an export (2-2.5x a raw COPY of the same rows), and no other way of
writing the lines is cheaper; the one lever left is reading several tables
at once, as ``pg_dump -j`` does. On SQLite the same, but a worker is a
process driven by its thread (``export_processes``): ``sqlite3`` takes the
GIL back at every row, so threads reading SQLite take as long as one.

How: the exporting thread (the main one) holds the snapshot; K - 1 worker
threads each open a connection of their own onto that same snapshot
(PostgreSQL: ``pg_export_snapshot()`` / ``SET TRANSACTION SNAPSHOT``, with
the main connection's role; SQLite: every reader starts its read transaction
while a write lock keeps commits out, ``SqliteSnapshot``; each worker
thread's is in a process of its own, which writes its spools). Every thread
takes the next table not yet started, in file order. The main thread writes
the file in its fixed order: a table it takes when that table is next to be
written goes straight to the output, any other into a spool file (an
unnamed temporary file, gone when closed), which the main thread copies
into the output once everything before it is written. So the bytes, and
the trailer's digest of them, are those of the serial export; memory stays
flat (bounded buffers, spools on disk); the spools need at most about the
file's size on disk.

A failure anywhere cancels the other threads' statements, joins every
thread, closes every worker connection and spool, and is raised in the
main thread as it would be by the serial export.
"""

from __future__ import annotations

import tempfile
import threading
import traceback
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import IO, Any

from peewee import Database

from .tenant_data import TableSpec

__all__ = ["Connections", "export_in_parallel"]

Write = Callable[[bytes], object]  # what it returns is ignored
# (database, table, tenant id, write): the table's row lines to write, on this
# thread's connection; their count.
TableLines = Callable[[Database, TableSpec, str, Write], int]
_SPOOL_BUFFER = 1 << 18
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class Connections:
    """How a worker opens a connection that reads the main connection's snapshot."""

    open: Callable[[], Any]  # a raw DB-API connection, its transaction begun on the snapshot
    close: Callable[[Any], None]  # ends that transaction and closes the connection
    cancel: Callable[[Any], None]  # from another thread: stop its running statement
    pinned: Callable[[], None] = lambda: None  # every worker has its snapshot (or gave up)
    # Set: a worker's connection is a process that reads a table into a spool
    # itself ((connection, table, tenant id) -> the spool, read from its start,
    # and its rows), not a connection this thread reads on.
    spool: Callable[[Any, TableSpec, str], tuple[IO[bytes], int]] | None = None
    # From the main thread once it is done: give up on workers still opening
    # (a process still starting, which no table needs any more).
    stop: Callable[[], None] = lambda: None


class _Cancelled(Exception):
    """Raised in a worker told to stop (another thread failed)."""


class _Run:
    """The shared state of one parallel export: who has which table, what failed."""

    def __init__(
        self, db: Database, tables: Sequence[TableSpec], tenant_id: str, lines: TableLines
    ) -> None:
        self.db, self.tables, self.tenant_id, self.lines = db, tables, tenant_id, lines
        self.cond = threading.Condition()
        self.next = 0  # the first table nobody has taken
        self.spools: dict[int, tuple[IO[bytes], int]] = {}  # finished, not yet copied; rows
        self.error: BaseException | None = None
        self.stopped = False
        self.conns: list[Any] = []  # the workers' open connections
        self.starting = 0  # workers yet to pin their snapshot

    def take(self) -> int | None:
        with self.cond:
            if self.stopped or self.next >= len(self.tables):
                return None
            self.next += 1
            return self.next - 1

    def fail(self, exc: BaseException) -> None:
        with self.cond:
            if not self.stopped:  # the first failure; later ones are its consequences
                self.error = exc
            self.stopped = True
            self.cond.notify_all()

    def spool(self, index: int) -> None:
        """Export table ``index`` into a spool file of its own (any thread)."""
        # Not a with block: the spool outlives this call, closed once copied.
        spool: IO[bytes] = tempfile.TemporaryFile(buffering=_SPOOL_BUFFER)  # noqa: SIM115
        try:
            # A failure elsewhere cancels the statement (``_finish``).
            count = self.read(index, spool.write)
            spool.flush()
            spool.seek(0)
        except BaseException:
            spool.close()
            raise
        self.put(index, spool, count)

    def put(self, index: int, spool: IO[bytes], count: int) -> None:
        """Table ``index``'s finished spool, for the main thread to copy."""
        with self.cond:
            if self.stopped:
                spool.close()
                raise _Cancelled
            self.spools[index] = (spool, count)
            self.cond.notify_all()

    def read(self, index: int, write: Write) -> int:
        """Table ``index``'s lines, read on this thread's connection; their count."""
        return self.lines(self.db, self.tables[index], self.tenant_id, write)

    def wait_for(self, index: int) -> tuple[IO[bytes], int] | None:
        """Table ``index``'s spool once it is finished; None while a table is nobody's
        yet (the caller reads one rather than wait)."""
        with self.cond:
            while True:
                if self.error is not None:
                    raise self.error
                if index in self.spools:
                    return self.spools.pop(index)
                if self.next < len(self.tables):
                    return None
                self.cond.wait(1.0)


def export_in_parallel(
    db: Database,
    connections: Connections,
    tables: Sequence[TableSpec],
    tenant_id: str,
    jobs: int,
    lines: TableLines,
    write: Write,
    written: Callable[[int, int], None],
) -> None:
    """Every table's lines to ``write`` in order, read on ``jobs`` connections.

    ``written(i, rows)``: table ``i``'s ``rows`` are all in ``write``.
    """
    run = _Run(db, tables, tenant_id, lines)
    workers = [
        threading.Thread(target=_worker, args=(run, connections), daemon=True, name=f"export-{n}")
        for n in range(1, min(jobs, len(tables)))
    ]
    run.starting = len(workers)
    try:
        for thread in workers:
            thread.start()
        for index in range(len(tables)):
            written(index, _write_table(run, index, write))
    except _Cancelled:  # the main thread's spool, stopped by a worker's failure
        assert run.error is not None
        raise run.error from None
    except BaseException as exc:
        run.fail(exc)
        raise
    finally:
        _finish(run, connections, workers)


def _write_table(run: _Run, index: int, write: Write) -> int:
    """Table ``index`` into ``write``: read here if nobody took it, else from its spool."""
    while True:
        done = run.wait_for(index)
        if done is None:
            mine = run.take()
            if mine == index:
                return run.read(index, write)
            if mine is not None:  # a later table, while a worker reads this one
                run.spool(mine)
            continue
        spool, count = done
        with spool:
            while data := spool.read(_COPY_CHUNK):
                write(data)
        return count


def _worker(run: _Run, connections: Connections) -> None:
    conn = None
    try:
        conn = connections.open()
        with run.cond:
            run.conns.append(conn)
        _pinned(run, connections)
        if connections.spool is not None:  # a process reads, into spools of its own
            while (index := run.take()) is not None:
                run.put(index, *connections.spool(conn, run.tables[index], run.tenant_id))
            return
        # peewee's connection state is the thread's: this thread's queries go to conn.
        state: Any = run.db._state  # type: ignore[attr-defined]
        state.set_connection(conn)
        while (index := run.take()) is not None:
            run.spool(index)
    except _Cancelled:
        pass
    except BaseException as exc:
        _drop_locals(exc)
        run.fail(exc)
    finally:
        _pinned(run, connections)
        run.db._state.reset()  # type: ignore[attr-defined]
        if conn is not None:
            with run.cond:
                run.conns.remove(conn)
            with suppress(Exception):
                connections.close(conn)


def _drop_locals(exc: BaseException | None) -> None:
    """Free the variables of the frames a worker's error went through (and of the
    errors it was raised from): their cursors would keep the worker's SQLite
    connection open after close() until a garbage collection found the cycle
    through ``run.error``. The traceback keeps its lines."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        traceback.clear_frames(exc.__traceback__)
        exc = exc.__context__


def _pinned(run: _Run, connections: Connections) -> None:
    """This worker has its snapshot, or gave up: the last one tells ``connections``."""
    with run.cond:
        if run.starting == 0:
            return
        run.starting -= 1
        last = run.starting == 0
    if last:
        connections.pinned()


def _finish(run: _Run, connections: Connections, workers: list[threading.Thread]) -> None:
    """Every worker stopped and joined, every spool closed."""
    with run.cond:
        run.stopped = True
        open_conns = list(run.conns)
        run.cond.notify_all()
    with suppress(Exception):
        connections.stop()
    if run.error is not None:  # stop statements still running: nothing will read them
        for conn in open_conns:
            with suppress(Exception):
                connections.cancel(conn)
    for thread in workers:
        while thread.is_alive():
            thread.join(0.5)
    with run.cond:
        for spool, _count in run.spools.values():
            spool.close()
        run.spools.clear()
    if run.starting:  # no worker ever started
        run.starting = 0
        connections.pinned()
