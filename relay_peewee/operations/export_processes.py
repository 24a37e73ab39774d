"""SQLite parallel export workers that are processes (``sqlite_export_worker``).

Threads do not pay on SQLite (sqlite3 takes the GIL back at every row); a
process has a GIL of its own. Each worker thread of ``parallel_export``
starts one process and hands it its tables: the process opens the same file
read-only, pins its snapshot while ``SqliteSnapshot``'s write lock is held
(the thread waits for its word, then the lock is released as for thread
workers), and writes each table's lines into a spool file in a folder of
its own; the thread opens the spool, unlinks it, and passes it on as a
thread's spool. Everything the process needs comes as plain data: the
file's name, the pragmas, per table its SQL (``task``).

A failure anywhere kills the processes (``cancel``); every process is waited
for (no zombie) and its folder removed (``close``).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

from peewee import SqliteDatabase

from ..errors import RelayError
from .parallel_export import Connections
from .tenant_data import TableSpec

__all__ = ["sqlite_processes"]

_WORKER = Path(__file__).with_name("sqlite_export_worker.py")
_SPOOL_BUFFER = 1 << 18
# A table's task as plain data ((table, tenant id) -> the worker's request
# but its path), and the error an answer other than rows means (raised).
Task = Callable[[TableSpec, str], dict[str, Any]]
Refuse = Callable[[TableSpec, str, dict[str, Any]], None]


def _target(db: SqliteDatabase) -> tuple[str, bool]:
    """The database's file as a URI opening it read-only (and whether it is a URI)."""
    name = str(db.database)
    if db.connect_params.get("uri", False):
        if "mode=" not in name:
            name += ("&" if "?" in name else "?") + "mode=ro"
        return name, True
    return "file:" + urllib.parse.quote(os.path.abspath(name)) + "?mode=ro", True


class _Process:
    """One worker process, driven by one worker thread (cancelled from any thread)."""

    def __init__(self, setup: dict[str, Any]) -> None:
        self.folder = tempfile.mkdtemp(prefix="relay-export-")
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(_WORKER)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        self.n = 0
        try:
            self.send(setup)
        except BaseException:  # it died at once: waited for, its folder gone
            self.kill()
            self.close()
            raise

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj).encode() + b"\n")
        self.proc.stdin.flush()

    def answer(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:  # killed (a failure elsewhere), or it crashed
            self.proc.wait()
            assert self.proc.stderr is not None
            err = self.proc.stderr.read().decode(errors="replace").strip().splitlines()
            why = err[-1] if err else f"exit status {self.proc.returncode}"
            raise RelayError(f"an export worker process ended: {why}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            kind, message = reply["error"]
            error = getattr(sqlite3, kind, None)
            if isinstance(error, type) and issubclass(error, sqlite3.Error):
                raise error(message)
            raise RelayError(f"an export worker process failed: {kind}: {message}")
        return reply

    def kill(self) -> None:
        with self.lock:
            if self.proc is not None and self.proc.poll() is None:
                with suppress(OSError):
                    self.proc.kill()

    def close(self) -> None:
        """The process ended (asked to, else killed) and waited for; its folder gone."""
        try:
            if self.proc is not None:
                with suppress(OSError):
                    assert self.proc.stdin is not None
                    self.proc.stdin.close()  # end of its tasks: it exits
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.kill()
                    self.proc.wait()
                for pipe in (self.proc.stdout, self.proc.stderr):
                    if pipe is not None:
                        pipe.close()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def sqlite_processes(
    db: SqliteDatabase, pinned: Callable[[], None], task: Task, refuse: Refuse
) -> Connections:
    """Workers that are processes, each pinning its snapshot under the write lock
    ``pinned`` releases."""
    database, uri = _target(db)
    setup = {
        "database": database,
        "uri": uri,
        "pragmas": [
            [str(k), v] for k, v in getattr(db, "_pragmas", ()) if str(k).lower() != "journal_mode"
        ],
        "timeout": float(db.connect_params.get("timeout", 5.0)),
    }
    starting: set[_Process] = set()
    guard = threading.Lock()

    def open_worker() -> _Process:
        child = _Process(setup)
        with guard:
            starting.add(child)
        try:
            child.answer()  # {"pinned": true}
        except BaseException:
            child.close()
            raise
        finally:
            with guard:
                starting.discard(child)
        return child

    def spool(child: _Process, spec: TableSpec, tenant_id: str) -> tuple[IO[bytes], int]:
        child.n += 1
        path = os.path.join(child.folder, f"{child.n}.jsonl")
        child.send({**task(spec, tenant_id), "path": path})
        reply = child.answer()
        if "rows" not in reply:
            with suppress(OSError):
                os.unlink(path)
            refuse(spec, tenant_id, reply)
            raise RelayError(f"cannot export {spec.name}")  # refuse raises
        # Unlinked once open: gone when closed, as a thread's unnamed spool.
        out = open(path, "rb", buffering=_SPOOL_BUFFER)  # noqa: SIM115
        os.unlink(path)
        return out, int(reply["rows"])

    def stop() -> None:
        with guard:
            children = list(starting)
        for child in children:
            child.kill()

    return Connections(
        open=open_worker,
        close=lambda child: child.close(),
        cancel=lambda child: child.kill(),
        pinned=pinned,
        spool=spool,
        stop=stop,
    )
