"""A worker process of a parallel SQLite export (``export_processes``): run as a script.

Why a process: sqlite3 takes the GIL back at every row, so threads reading
SQLite at once take as long as one; a process has a GIL of its own. Why a
script of the standard library alone, run by its path (``python -I -S``),
not ``-m relay_peewee...`` nor multiprocessing: importing relay_peewee and
peewee takes about 0.2-0.3 s, this starts in a few hundredths; and it must
not import the application (multiprocessing's spawn imports the parent's
``__main__``). The parent sends everything as plain data.

Protocol, one JSON object a line: stdin gets first ``{"database", "uri",
"pragmas", "timeout"}``; the worker opens the file read-only, begins a read
transaction, reads once (its snapshot, taken while the parent's write lock
keeps commits out) and answers ``{"pinned": true}``. Then per table
``{"name", "columns", "sql", "params", "probes", "probe_params", "path"}``:
it writes the table's row lines (exactly as ``tenant_export._sqlite_lines``)
to the file ``path`` and answers ``{"rows": n}``, or ``{"missing": [the
columns the table has]}``, ``{"bad": [probe index, repr(value)] or null}``
(a value json() refused: the first probe that finds one), ``{"error":
[class, message]}``. End of stdin (or its answers' pipe broken: the parent
is gone): it removes the spool it was last given unless the parent has,
and its folder if empty, and exits. SIGINT is the parent's to
handle: it kills its workers.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import sys
from typing import Any

_FETCH = 2000  # rows per fetchmany, as tenant_export's
_BUFFER = 1 << 18


def _reply(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _open(setup: dict[str, Any]) -> sqlite3.Connection:
    conn = sqlite3.connect(
        setup["database"], uri=setup["uri"], timeout=setup["timeout"], isolation_level=None
    )
    for key, value in setup["pragmas"]:
        with contextlib.suppress(sqlite3.Error):  # a pragma that writes, on a read-only file
            conn.execute(f"PRAGMA {key} = {value}")
    conn.execute("PRAGMA query_only = 1")
    conn.execute("BEGIN")
    # The first read starts the read transaction: its snapshot, under the parent's lock.
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return conn


def _table(conn: sqlite3.Connection, task: dict[str, Any]) -> dict[str, Any]:
    present = [r[0] for r in conn.execute("SELECT name FROM pragma_table_info(?)", (task["name"],))]
    if not present or any(c not in present for c in task["columns"]):
        return {"missing": present}
    count = 0
    try:
        cursor = conn.execute(task["sql"], task["params"])
        with open(task["path"], "wb", buffering=_BUFFER) as out:
            while batch := cursor.fetchmany(_FETCH):
                out.write(("\n".join([r[0] for r in batch]) + "\n").encode())
                count += len(batch)
    except sqlite3.OperationalError as exc:
        if "malformed JSON" not in str(exc):
            raise
        for i, probe in enumerate(task["probes"]):
            row = conn.execute(probe, task["probe_params"]).fetchone()
            if row is not None:
                return {"bad": [i, repr(row[0])]}
        return {"bad": None}
    return {"rows": count}


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        conn = _open(json.loads(sys.stdin.readline()))
    except Exception as exc:
        _reply({"error": [type(exc).__name__, str(exc)]})
        return
    path = None
    try:
        _reply({"pinned": True})
        for line in sys.stdin:
            task = json.loads(line)
            path = task["path"]
            try:
                answer = _table(conn, task)
            except Exception as exc:
                answer = {"error": [type(exc).__name__, str(exc)]}
            _reply(answer)
    finally:
        # The parent gone without cleaning up (killed: its end of the pipes
        # closed): nothing will read the spool in hand, nor the folder.
        if path is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(path))
        conn.close()


if __name__ == "__main__":
    main()
