"""A migrating child process: what it ran, when, and where the time went.

The child migrates one database with ``relay_peewee.operations.migrate`` on
``open_database(url)`` and reports its own timing (connect to close, imports
excluded), every statement and every progress step. Wrapping the instance's
``execute_sql`` (and ``commit``) sees every statement peewee, the Runner and
the project's migrators issue, without touching their code.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peewee import Database

from . import ROOT
from .databases import Workspace

# (start, end, SQL) of one statement, on the child's clock.
Statement = tuple[float, float, str]


def record_statements(
    db: Database, clock: Callable[[], float], commits: bool = False
) -> list[Statement]:
    """Every statement ``db`` runs from now on (and its commits, with ``commits``)."""
    statements: list[Statement] = []
    inner_sql, inner_commit = db.execute_sql, db.commit

    def timed(sql: str, params: Any = None, *args: Any, **kwargs: Any) -> Any:
        t = clock()
        try:
            return inner_sql(sql, params, *args, **kwargs)
        finally:
            statements.append((t, clock(), " ".join(str(sql).split())))

    def timed_commit(*args: Any, **kwargs: Any) -> Any:
        t = clock()
        try:
            return inner_commit(*args, **kwargs)
        finally:
            statements.append((t, clock(), "COMMIT"))

    setattr(db, "execute_sql", timed)  # noqa: B010 - mypy refuses assigning to a method
    if commits:
        setattr(db, "commit", timed_commit)  # noqa: B010
    return statements


def migrate_here(
    url: str,
    to: str | None,
    clock: Callable[[], float],
    *,
    commits: bool = False,
    echo: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Migrate ``url`` in this process; its start, end, statements and steps.

    ``echo``: each progress step to stderr as '<clock> <label>' as it happens.
    """
    from relay_peewee.database import open_database
    from relay_peewee.operations import migrate

    steps: list[tuple[float, str]] = []

    def progress(label: str) -> None:
        t = clock()
        steps.append((t, label))
        if echo:
            print(f"{t:.4f} {label}", file=sys.stderr, flush=True)

    start = clock()
    db = open_database(url)
    statements = record_statements(db, clock, commits)
    result = migrate(db, to, progress, **options)
    db.close()
    end = clock()
    return {
        "start": start,
        "end": end,
        "applied": result.applied,
        "statements": statements,
        "steps": steps,
    }


@dataclass
class MigrateRun:
    """One migration run in a child, on the parent's (shared monotonic) clock."""

    mode: str
    launched: float = float("nan")
    start: float = float("nan")
    end: float = float("nan")
    applied: list[str] = field(default_factory=list)
    statements: list[Statement] = field(default_factory=list)
    steps: list[tuple[float, str]] = field(default_factory=list)
    error: str = ""

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def step_at(self, t: float) -> str:
        label = "(before the first step)"
        for ts, name in self.steps:
            if ts > t:
                break
            label = name
        return label

    def retries(self) -> list[str]:
        return [name for _t, name in self.steps if "retry" in name]

    def running_at(self, t: float) -> str:
        """The migration statement running at ``t`` (else the last one begun before)."""
        found: Statement | None = None
        for s, e, sql in self.statements:
            if s <= t and (found is None or s >= found[0]):
                found = (s, e, sql)
        if found is None:
            return f"(no statement yet); step '{self.step_at(t)}'"
        return self._describe(*found)

    def _describe(self, s: float, e: float, sql: str) -> str:
        short = sql if len(sql) <= 110 else sql[:107] + "..."
        return f"{short}  [{e - s:.2f} s, step '{self.step_at(s)}']"

    def blocker(self, start: float, end: float) -> str:
        """The migration statement that overlapped [start, end] the most."""
        best: tuple[float, float, float, str] | None = None
        for s, e, sql in self.statements:
            overlap = min(e, end) - max(s, start)
            if overlap > 0 and (best is None or overlap > best[0]):
                best = (overlap, s, e, sql)
        if best is None:
            return f"no migration statement overlapped; step '{self.step_at(start)}'"
        return self._describe(*best[1:])


def run_migration(
    run: MigrateRun,
    script: str,
    url: str,
    options: list[str],
    timeout: float,
    ws: Workspace,
    log: Callable[[str], None],
) -> None:
    """Run ``script --child MODE URL OUT *options``, echo its progress steps
    through ``log``, kill it after ``timeout``; fill ``run`` from OUT."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out_path = fh.name
    cmd = [sys.executable, str(Path(script).resolve()), "--child", run.mode, url, out_path]
    cmd += options
    run.launched = time.monotonic()
    ws.child = proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    tail: list[str] = []

    def echo() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            line = line.rstrip()
            stamp, _, label = line.partition(" ")
            try:
                log(f"  {run.mode} migrate +{float(stamp) - run.launched:6.2f} s  {label}")
            except ValueError:
                log(f"  {run.mode} migrate: {line}")
                tail.append(line)

    reader = threading.Thread(target=echo, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        run.error = f"killed after {timeout:.0f} s"
    reader.join(timeout=10)
    ws.child = None
    try:
        if proc.returncode == 0:
            with open(out_path) as result_file:
                data = json.load(result_file)
            run.start, run.end, run.applied = data["start"], data["end"], data["applied"]
            run.statements = [(float(a), float(b), str(c)) for a, b, c in data["statements"]]
            run.steps = [(float(t), str(label)) for t, label in data["steps"]]
        elif not run.error:
            run.error = " | ".join(tail[-3:]) or f"exit status {proc.returncode}"
    finally:
        os.unlink(out_path)
    if run.error:
        run.end = time.monotonic()
        run.start = run.launched


# --- where the time goes --------------------------------------------------------

_KINDS = (
    (r"^PRAGMA FOREIGN_KEY_CHECK", "PRAGMA foreign_key_check"),
    (r"^PRAGMA", "other PRAGMA"),
    (r"^INSERT INTO \S*_NEW_|^INSERT INTO \"_RELAY_NEW_", "rebuild: copy rows"),
    (r"^DROP TABLE", "rebuild: DROP TABLE"),
    (r"RENAME TO", "rebuild: RENAME"),
    (r"^CREATE TABLE", "CREATE TABLE"),
    (r"^CREATE UNIQUE INDEX", "CREATE UNIQUE INDEX"),
    (r"^CREATE INDEX", "CREATE INDEX"),
    (r"^UPDATE", "UPDATE (backfill)"),
    (r"ADD CONSTRAINT .* FOREIGN KEY|ADD COLUMN .* REFERENCES", "add FK (validating scan)"),
    (r"PRIMARY KEY", "primary key swap"),
    (r"SET NOT NULL", "SET NOT NULL (scan)"),
    (r"^ALTER TABLE", "other ALTER TABLE"),
    (r"^SELECT|^WITH", "catalog/other SELECT"),
    (r"^COMMIT", "COMMIT"),
)


def statement_kind(sql: str) -> str:
    """Group statements by what they do, not by which table they touch."""
    s = sql.upper()
    return next((label for pattern, label in _KINDS if re.search(pattern, s)), "other")


def breakdown(
    title: str, seconds: float, statements: list[tuple[float, str]], top: int = 8
) -> list[str]:
    """Lines: the time in statements by kind, then the slowest statements."""
    total_sql = sum(s for s, _ in statements)
    groups: dict[str, list[float]] = defaultdict(list)
    for took, sql in statements:
        groups[statement_kind(sql)].append(took)
    lines = [
        f"  {title}: {seconds:.2f} s total, "
        f"{total_sql:.2f} s in {len(statements)} statements, "
        f"{seconds - total_sql:.2f} s outside them (Python, commits, connect)"
    ]
    for kind, times in sorted(groups.items(), key=lambda kv: -sum(kv[1]))[:top]:
        lines.append(f"    {sum(times):7.2f} s  {len(times):3d}x  {kind}")
    lines.append("    slowest statements:")
    for took, sql in sorted(statements, key=lambda s: -s[0])[:top]:
        lines.append(f"    {took:7.2f} s  {sql[:100]}")
    return lines
