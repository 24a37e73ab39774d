"""Lock impact of ``relay-peewee migrate --online`` on a live PostgreSQL database (issue 5).

    python benchmarks/lock_impact.py [--skills N] [--lock-timeout S] [--duration S]
                                     [--to MIGRATION] [--readers R] [--writers W]
                                     [--pause-ms MS] [--compete-seconds S]

One run, on PostgreSQL (PGHOST/PGPORT/PGUSER/PGDATABASE, default
root@127.0.0.1:5432/test): build a legacy Relay database of N skills once
(``legacy_data.build_legacy_database``, a template), then four phases, each
under the same application load:

* ``baseline``: the load alone for ``--duration`` seconds, no migration;
* ``online``: ``relay_peewee.operations.migrate(db, online=True)`` in a child
  process on the same database, the load running until it returns;
* ``transactional``: the default ``migrate(db)`` on a fresh copy, for comparison;
* ``competing``: ``migrate --online`` on another fresh copy while a separate
  connection holds ``LOCK TABLE skills IN ACCESS SHARE MODE`` in an open
  transaction for ``--compete-seconds`` (from just before the migration starts).

The load is what a pre-tenant application issues, from ``--readers``
reader and ``--writers`` writer processes with a connection each (default
2 + 2, a ``--pause-ms`` pause after every statement: a busy application, not
a saturation test):

* readers: ``SELECT ... FROM skills WHERE id = %s``;
* writers, alternately: ``UPDATE skills SET total_uses = total_uses + 1 WHERE
  id = %s`` and ``INSERT INTO usage_events (id, tool_name, skill_id, user_id,
  metadata, created_at) VALUES (...)`` - without tenant_id.

How a tenant-unaware insert gets its tenant: 0003 adds tenant_id NOT NULL
with the default tenant as a catalog DEFAULT, so during the migration such
an insert lands in the default tenant. 0004 drops that default table by
table (on purpose: afterwards a row that omits its tenant must be refused),
and from ``usage_events: drop the tenant_id default`` on, the tenant-unaware
insert fails with a NOT NULL violation on tenant_id. ``--to 0005_audit_logs``
would not avoid that (0004 comes before 0005), and stopping the measurement
there would leave 0006 (composite foreign keys) and 0008 (row-level
security) unmeasured. So the whole migration is measured, and the load
keeps issuing the tenant-unaware insert throughout: a NOT NULL violation on
tenant_id is counted as ``refused`` (by design; it still probes the table's
locks, so its latency is kept), any other error as ``failed``. The target
"no statement fails" is about ``failed``.

Row-level security (0008): once enabled and forced, a tenant-unaware SELECT
or UPDATE by an ordinary role would see no rows. The load connects as the
superuser (``root``), which bypasses RLS, so its statements keep finding
their rows; ``saw no row`` counts any that did not.

Every statement's latency is recorded (time.monotonic(), a clock all
processes share on Linux); per phase the report prints statements run,
failed, refused, p50, p99, max and the longest single statement, plus the
migration's wall time. A sampler on its own connection reads ``pg_locks``
every ~20 ms for granted ACCESS EXCLUSIVE locks on the nine relay tables and
reports the longest hold. The migrating child records the start and end of
every statement and every progress step (echoed to stderr), so the longest
application statement and the longest lock hold are attributed to the
migration statement and step that overlapped them.

After each phase the writes are checked: usage_events grew by exactly the
inserts that succeeded, sum(skills.total_uses) by exactly the updates, and
(once tenant_id exists) every row is in the default tenant. Worker loops,
the sampler and the competing transaction all stop by themselves at a
deadline; throw-away databases are dropped at the end, also on error.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.queues import Queue as MpQueue
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

from baselines import DEFAULT_TENANT_ID
from legacy_data import LEGACY_TABLES, build_legacy_database, migrated_rows
from migrate_bench import ROOT, Workspace, _environment, _opened, clean_up_on_signals, log

# Issue 5's online-path targets.
MAX_BLOCKED_SECONDS = 0.25
SAMPLE_INTERVAL = 0.02  # pg_locks sampling period
WARMUP_SECONDS = 0.5  # load runs this long before a window opens
# Bounds that make every loop stop by itself even if the migration hangs.
STATEMENT_TIMEOUT_S = 120
NOT_NULL_VIOLATION = "23502"

SELECT_SQL = "SELECT id, name, slug, category, total_uses, average_rating FROM skills WHERE id = %s"
UPDATE_SQL = "UPDATE skills SET total_uses = total_uses + 1 WHERE id = %s"
INSERT_SQL = (
    "INSERT INTO usage_events (id, tool_name, skill_id, user_id, metadata, created_at) "
    "VALUES (%s, %s, %s, %s, %s, %s)"
)
TOOLS = ("search_skills", "get_skill", "list_skills", "rate_skill")

# (start, seconds, kind, error, backend pid) - error "" when the statement succeeded.
Record = tuple[float, float, str, str, int]


# --- load workers (separate processes, one connection each) --------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_worker(
    role: str,
    url: str,
    skill_ids: list[str],
    user_ids: list[str],
    pause: float,
    deadline: float,
    seed: int,
    stop: MpEvent,
    ready: MpQueue[str],
    out: MpQueue[dict[str, Any]],
) -> None:
    """Issue statements until ``stop`` is set or ``deadline`` passes; report them."""
    import psycopg2

    rng = random.Random(seed)
    records: list[Record] = []
    counts = {"inserted": 0, "updated": 0, "no_row": 0, "reconnects": 0}
    conn: Any = None

    def connect() -> Any:
        c = psycopg2.connect(url, connect_timeout=5, application_name=f"relay_load_{role}")
        c.autocommit = True  # every statement its own transaction, as an ORM in autocommit
        with c.cursor() as cur:
            cur.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT_S}s'")
        return c

    try:
        conn = connect()
        pid = conn.get_backend_pid()
        ready.put(role)
        turn = 0
        while not stop.is_set() and time.monotonic() < deadline:
            kind = "select" if role == "reader" else ("update", "insert")[turn % 2]
            turn += 1
            error = ""
            start = time.monotonic()
            try:
                if conn.closed:
                    counts["reconnects"] += 1
                    conn = connect()
                    pid = conn.get_backend_pid()
                with conn.cursor() as cur:
                    if kind == "select":
                        cur.execute(SELECT_SQL, (rng.choice(skill_ids),))
                        if cur.fetchone() is None:
                            counts["no_row"] += 1
                    elif kind == "update":
                        cur.execute(UPDATE_SQL, (rng.choice(skill_ids),))
                        if cur.rowcount == 1:
                            counts["updated"] += 1
                        else:
                            counts["no_row"] += 1
                    else:
                        cur.execute(
                            INSERT_SQL,
                            (
                                str(uuid.uuid4()),
                                rng.choice(TOOLS),
                                rng.choice(skill_ids),
                                rng.choice(user_ids) if rng.random() < 0.7 else None,
                                json.dumps({"client": "lock_impact", "n": turn}),
                                datetime.now(),
                            ),
                        )
                        counts["inserted"] += 1
            except psycopg2.Error as exc:
                error = f"{exc.pgcode or '-'} {_first_line(exc)}"
            records.append((start, time.monotonic() - start, kind, error, pid))
            if pause:
                time.sleep(pause)
    except Exception as exc:  # report, never hang the parent
        records.append((time.monotonic(), 0.0, "connect", f"- {_first_line(exc)}", 0))
        ready.put(role)
    finally:
        out.put({"role": role, "records": records, "counts": counts})
        if conn is not None and not conn.closed:
            conn.close()


# --- pg_locks sampler ----------------------------------------------------------


@dataclass
class Hold:
    table: str
    first: float
    last: float
    samples: int

    @property
    def seconds(self) -> float:
        # Seen from `first` to `last`; the true hold is at most one sampling
        # period longer on each side.
        return self.last - self.first

    def label(self) -> str:
        if self.samples == 1:
            return f"{self.table} <{SAMPLE_INTERVAL * 1000:.0f} ms"
        return f"{self.table} {self.seconds * 1000:.0f} ms"


# Granted ACCESS EXCLUSIVE locks on the relay tables, and every lock request
# still waiting, of the sessions connected to this database.
LOCKS_SQL = """
SELECT l.pid, coalesce(c.relname, l.locktype), l.mode, l.granted, l.virtualtransaction
FROM pg_locks l LEFT JOIN pg_class c ON c.oid = l.relation
WHERE l.pid <> pg_backend_pid()
  AND l.pid IN (SELECT pid FROM pg_stat_activity WHERE datname = current_database())
  AND (NOT l.granted OR (l.mode = 'AccessExclusiveLock' AND c.relname = ANY(%s)))
"""
# (pid, relation or lock type, mode) of a waiting lock request.
Waiter = tuple[int, str, str]


class LockSampler(threading.Thread):
    """Reads pg_locks every SAMPLE_INTERVAL from its own connection until stopped."""

    def __init__(self, url: str, tables: Sequence[str], deadline: float) -> None:
        super().__init__(daemon=True)
        self.url, self.tables, self.deadline = url, list(tables), deadline
        self.halt = threading.Event()
        # (time, [(table, virtualtransaction)] granted AE, waiting requests)
        self.samples: list[tuple[float, list[tuple[str, str]], list[Waiter]]] = []
        self.error = ""

    def run(self) -> None:
        import psycopg2

        try:
            conn = psycopg2.connect(self.url, connect_timeout=5, application_name="relay_locks")
            conn.autocommit = True
            # Not `with conn:` - psycopg2 >= 2.9 opens a transaction there even
            # in autocommit, and an open transaction in this database makes
            # every CREATE INDEX CONCURRENTLY of the migration wait for it.
            try:
                cur = conn.cursor()
                while not self.halt.is_set() and time.monotonic() < self.deadline:
                    t = time.monotonic()
                    cur.execute(LOCKS_SQL, (self.tables,))
                    held: list[tuple[str, str]] = []
                    waiting: list[Waiter] = []
                    for pid, what, mode, granted, vxid in cur.fetchall():
                        if granted:
                            held.append((what, vxid))
                        else:
                            waiting.append((pid, what, mode))
                    self.samples.append((t, held, waiting))
                    self.halt.wait(max(0.0, SAMPLE_INTERVAL - (time.monotonic() - t)))
            finally:
                conn.close()
        except Exception as exc:
            self.error = _first_line(exc)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=10)

    def holds(self) -> list[Hold]:
        """Continuous runs of one transaction holding ACCESS EXCLUSIVE on one table."""
        done: list[Hold] = []
        open_: dict[tuple[str, str], Hold] = {}
        for t, held, _waiting in self.samples:
            now = set(held)
            for key in list(open_):
                if key not in now:
                    done.append(open_.pop(key))
            for key in now:
                if key in open_:
                    open_[key].last = t
                    open_[key].samples += 1
                else:
                    open_[key] = Hold(key[0], t, t, 1)
        return done + list(open_.values())

    def max_waiting(self) -> int:
        return max((len(w) for _t, _h, w in self.samples), default=0)


# --- the migrating child -------------------------------------------------------


def child_main(mode: str, url: str, out_path: str, to: str | None, lock_timeout: float) -> None:
    """Migrate ``url``; progress to stderr as '<monotonic> <label>'; JSON to ``out_path``."""
    from relay_peewee.database import open_database
    from relay_peewee.operations.commands import migrate

    statements: list[tuple[float, float, str]] = []
    steps: list[tuple[float, str]] = []
    start = time.monotonic()
    db = open_database(url)
    inner_sql, inner_commit = db.execute_sql, db.commit

    # Wrapping the instance's methods sees every statement (and commit) the
    # Runner and the migrators issue, without touching their code.
    def timed(sql: str, params: Any = None, *args: Any, **kwargs: Any) -> Any:
        t = time.monotonic()
        try:
            return inner_sql(sql, params, *args, **kwargs)
        finally:
            statements.append((t, time.monotonic(), " ".join(str(sql).split())))

    def timed_commit(*args: Any, **kwargs: Any) -> Any:
        t = time.monotonic()
        try:
            return inner_commit(*args, **kwargs)
        finally:
            statements.append((t, time.monotonic(), "COMMIT"))

    def progress(label: str) -> None:
        t = time.monotonic()
        steps.append((t, label))
        print(f"{t:.4f} {label}", file=sys.stderr, flush=True)

    setattr(db, "execute_sql", timed)  # noqa: B010 - mypy refuses assigning to a method
    setattr(db, "commit", timed_commit)  # noqa: B010
    result = migrate(db, to, progress, online=mode == "online", lock_timeout=lock_timeout)
    db.close()
    end = time.monotonic()
    with open(out_path, "w") as fh:
        json.dump(
            {
                "start": start,
                "end": end,
                "applied": result.applied,
                "statements": statements,
                "steps": steps,
            },
            fh,
        )


@dataclass
class MigrateRun:
    mode: str
    launched: float = float("nan")
    start: float = float("nan")
    end: float = float("nan")
    applied: list[str] = field(default_factory=list)
    statements: list[tuple[float, float, str]] = field(default_factory=list)
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
        found: tuple[float, float, str] | None = None
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
    url: str,
    to: str | None,
    lock_timeout: float,
    timeout: float,
    ws: Workspace,
    log: Callable[[str], None],
) -> None:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out_path = fh.name
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", run.mode, url, out_path]
    cmd += ["--lock-timeout", str(lock_timeout)] + (["--to", to] if to else [])
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


# --- one phase -----------------------------------------------------------------


@dataclass
class Phase:
    name: str
    window: tuple[float, float] = (0.0, 0.0)
    records: list[Record] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    migration: MigrateRun | None = None
    holds: list[Hold] = field(default_factory=list)
    lock_samples: list[tuple[float, list[Waiter]]] = field(default_factory=list)
    max_waiting: int = 0
    sampler_error: str = ""
    competitor: tuple[float, float] | None = None
    writes: str = ""
    writes_ok: bool = True

    @property
    def in_window(self) -> list[Record]:
        lo, hi = self.window
        return [r for r in self.records if r[0] < hi and r[0] + r[1] >= lo]

    @property
    def origin(self) -> float:
        """Times are printed relative to the migration's launch (or the window)."""
        return self.migration.launched if self.migration else self.window[0]

    def failed(self) -> list[Record]:
        return [r for r in self.in_window if r[3] and not _refused(r)]

    def refused(self) -> list[Record]:
        return [r for r in self.in_window if _refused(r)]

    def longest(self) -> Record | None:
        return max(self.in_window, key=lambda r: r[1], default=None)

    def longest_hold(self) -> Hold | None:
        return max(self.holds, key=lambda h: (h.seconds, h.samples), default=None)

    def lock_wait(self, r: Record) -> str:
        """What pg_locks showed this statement's session waiting for while it ran."""
        start, secs, _kind, _err, pid = r
        during = [w for t, w in self.lock_samples if start <= t <= start + secs]
        seen = sorted({f"{what} {mode}" for w in during for p, what, mode in w if p == pid})
        waited = sum(1 for w in during if any(p == pid for p, _w, _m in w))
        if not during:
            return "no pg_locks sample fell inside it"
        if not waited:
            return f"not waiting for a lock in any of {len(during)} samples"
        return f"waiting for {', '.join(seen)} in {waited}/{len(during)} samples"


def _refused(r: Record) -> bool:
    # The tenant-unaware insert after 0004 dropped usage_events' default.
    return r[2] == "insert" and r[3].startswith(NOT_NULL_VIOLATION) and "tenant_id" in r[3]


def _write_state(url: str) -> tuple[int, int, int]:
    """(usage_events rows, sum of skills.total_uses, rows outside the default tenant)."""
    with _opened(url) as db:
        (events,) = db.execute_sql("SELECT count(*) FROM usage_events").fetchone()
        (uses,) = db.execute_sql("SELECT coalesce(sum(total_uses), 0) FROM skills").fetchone()
        strays = 0
        for table in ("skills", "usage_events"):
            if any(c.name == "tenant_id" for c in db.get_columns(table)):
                (n,) = db.execute_sql(
                    f"SELECT count(*) FROM {table} WHERE tenant_id IS DISTINCT FROM %s",
                    (DEFAULT_TENANT_ID,),
                ).fetchone()
                strays += n
    return int(events), int(uses), int(strays)


def run_phase(
    phase: Phase,
    url: str,
    args: argparse.Namespace,
    ids: tuple[list[str], list[str]],
    ws: Workspace,
    log: Callable[[str], None],
    action: Callable[[], None],
) -> None:
    """Start the load and the sampler, run ``action`` (the window), stop, collect."""
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    ready: MpQueue[str] = ctx.Queue()
    out: MpQueue[dict[str, Any]] = ctx.Queue()
    budget = args.duration + args.migrate_timeout + args.compete_seconds + 60
    deadline = time.monotonic() + budget
    events0, uses0, _ = _write_state(url)
    roles = ["reader"] * args.readers + ["writer"] * args.writers
    procs = [
        ctx.Process(
            target=load_worker,
            args=(role, url, *ids, args.pause_ms / 1000, deadline, i, stop, ready, out),
            daemon=True,
        )
        for i, role in enumerate(roles)
    ]
    sampler = LockSampler(url, LEGACY_TABLES, deadline)
    results: list[dict[str, Any]] = []
    try:
        for p in procs:
            p.start()
        for _ in procs:
            ready.get(timeout=60)
        sampler.start()
        time.sleep(WARMUP_SECONDS)
        begin = time.monotonic()
        action()
        phase.window = (begin, time.monotonic())
    finally:
        stop.set()
        for _ in procs:
            try:
                results.append(out.get(timeout=STATEMENT_TIMEOUT_S + 30))
            except Exception:
                break
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
        sampler.stop()
    for r in results:
        phase.records += [
            (float(a), float(b), str(c), str(d), int(e)) for a, b, c, d, e in r["records"]
        ]
        for k, v in r["counts"].items():
            phase.counts[k] = phase.counts.get(k, 0) + v
    if len(results) < len(procs):
        phase.writes_ok = False
        phase.writes = f"only {len(results)}/{len(procs)} load processes reported"
    phase.holds = sampler.holds()
    phase.max_waiting = sampler.max_waiting()
    phase.lock_samples = [(t, w) for t, _h, w in sampler.samples]
    phase.sampler_error = sampler.error
    events1, uses1, strays = _write_state(url)
    inserted, updated = phase.counts.get("inserted", 0), phase.counts.get("updated", 0)
    ok = events1 - events0 == inserted and uses1 - uses0 == updated and strays == 0
    phase.writes_ok = phase.writes_ok and ok
    phase.writes = (
        f"{inserted} inserts -> usage_events +{events1 - events0}, "
        f"{updated} updates -> total_uses +{uses1 - uses0}, "
        f"rows outside the default tenant: {strays}"
        + ("" if ok else "  MISMATCH")
        + (f"; {phase.writes}" if phase.writes else "")
    )
    log(f"{phase.name}: {len(phase.in_window)} statements in the window")


def competing_lock(url: str, hold: float, info: dict[str, float], held: threading.Event) -> None:
    """An application transaction that keeps ACCESS SHARE on skills for ``hold`` seconds."""
    import psycopg2

    conn = psycopg2.connect(url, connect_timeout=5, application_name="relay_competitor")
    try:
        with conn.cursor() as cur:
            cur.execute("LOCK TABLE skills IN ACCESS SHARE MODE")
            cur.execute("SELECT count(*) FROM skills")
        info["start"] = time.monotonic()
        held.set()
        time.sleep(hold)
        conn.rollback()
        info["end"] = time.monotonic()
    finally:
        held.set()
        conn.close()


# --- reporting -----------------------------------------------------------------


def _pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[max(0, math.ceil(p * len(sorted_values)) - 1)]


def _ms(x: float) -> str:
    return "-" if x != x else f"{x * 1000:.1f}"


def report(phases: list[Phase], args: argparse.Namespace) -> bool:
    header = (
        f"{'phase':13} {'migrate s':>9} {'stmts':>7} {'failed':>6} {'refused':>7} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>8}  {'AE hold max':>22}  longest statement"
    )
    print(header)
    print("-" * (len(header) + 20))
    for ph in phases:
        lat = sorted(r[1] for r in ph.in_window)
        longest = ph.longest()
        hold = ph.longest_hold()
        mig = ph.migration
        secs = "-" if mig is None else ("FAILED" if mig.error else f"{mig.seconds:.2f}")
        where = "-"
        if longest is not None:
            where = f"{longest[2]} at +{longest[0] - ph.origin:.2f} s"
            if longest[3]:
                where += " (" + ("refused" if _refused(longest) else "failed") + ")"
        hold_s = "-" if hold is None else hold.label()
        print(
            f"{ph.name:13} {secs:>9} {len(lat):>7} {len(ph.failed()):>6} "
            f"{len(ph.refused()):>7} {_ms(_pct(lat, 0.5)):>7} {_ms(_pct(lat, 0.99)):>7} "
            f"{_ms(lat[-1] if lat else float('nan')):>8}  {hold_s:>22}  {where}"
        )

    for ph in phases:
        print()
        print(f"[{ph.name}]")
        mig = ph.migration
        if mig is not None:
            if mig.error:
                print(f"  migrate FAILED: {mig.error}")
            else:
                print(
                    f"  migrate ({mig.mode}): {mig.seconds:.2f} s, applied "
                    f"{', '.join(mig.applied) or 'nothing'}; {len(mig.statements)} statements, "
                    f"{len(mig.steps)} progress steps"
                )
        kinds = sorted({r[2] for r in ph.in_window})
        by_kind = ", ".join(
            f"{k} {sum(1 for r in ph.in_window if r[2] == k)}x max "
            f"{_ms(max(r[1] for r in ph.in_window if r[2] == k))} ms"
            for k in kinds
        )
        print(f"  load: {by_kind}; saw no row: {ph.counts.get('no_row', 0)}")
        print(f"  writes (whole load run, warm-up included): {ph.writes}")
        if mig is not None and not mig.error:
            top = sorted(ph.in_window, key=lambda r: -r[1])[:5]
            print(
                "  slowest application statements; the migration statement overlapping most;"
                " what pg_locks showed:"
            )
            for r in top:
                began, took, kind = r[:3]
                print(
                    f"    {took * 1000:8.1f} ms  {kind:6} at +{began - ph.origin:6.2f} s  "
                    f"{mig.blocker(began, began + took)}\n{'':30}{ph.lock_wait(r)}"
                )
            holds = sorted(ph.holds, key=lambda h: (-h.seconds, -h.samples))[:3]
            if holds:
                print(
                    f"  longest ACCESS EXCLUSIVE holds seen in pg_locks (sampled every "
                    f"{SAMPLE_INTERVAL * 1000:.0f} ms; true hold up to {SAMPLE_INTERVAL * 2000:.0f}"
                    f" ms longer; {len(ph.holds)} holds seen, max {ph.max_waiting} "
                    "lock requests waiting at once):"
                )
                for h in holds:
                    print(
                        f"    {h.label():>26}  at +{h.first - ph.origin:6.2f} s  "
                        f"{mig.running_at(h.first)}"
                    )
            refused = ph.refused()
            if refused:
                first = min(r[0] for r in refused)
                print(
                    f"  tenant-unaware inserts refused from +{first - ph.origin:.2f} s "
                    f"(step '{mig.step_at(first)}'): {refused[0][3][:100]}"
                )
            if mig.mode == "online":
                tries = mig.retries()
                print(f"  retries: {len(tries)}" + (f" ({'; '.join(tries[:6])})" if tries else ""))
        for r in ph.failed()[:5]:
            print(f"  FAILED {r[2]} at +{r[0] - ph.origin:.2f} s: {r[3][:140]}")
        if ph.competitor:
            a, b = ph.competitor
            print(
                f"  competing transaction held ACCESS SHARE on skills from "
                f"{a - ph.origin:+.2f} s to {b - ph.origin:+.2f} s ({b - a:.2f} s)"
            )
        if ph.sampler_error:
            print(f"  pg_locks sampler error: {ph.sampler_error}")

    print()
    print("targets (issue 5, online path):")
    by = {ph.name: ph for ph in phases}
    ok = True

    def check(label: str, good: bool) -> None:
        nonlocal ok
        ok = ok and good
        print(f"  {label:80} {'met' if good else 'MISSED'}")

    online = by.get("online")
    if online is not None and online.migration is not None:
        lng = online.longest()
        worst = lng[1] if lng else float("nan")
        check("online: migration completed", not online.migration.error)
        check(
            f"online: longest application statement {worst * 1000:.0f} ms "
            f"<= {MAX_BLOCKED_SECONDS * 1000:.0f} ms",
            worst <= MAX_BLOCKED_SECONDS,
        )
        check(f"online: failed statements {len(online.failed())} == 0", not online.failed())
        check("online: writes all landed, in the default tenant", online.writes_ok)
    comp = by.get("competing")
    if comp is not None and comp.migration is not None:
        lng = comp.longest()
        worst = lng[1] if lng else float("nan")
        bound = args.lock_timeout + MAX_BLOCKED_SECONDS
        retries = len(comp.migration.retries())
        check("competing: migration completed", not comp.migration.error)
        check(f"competing: the migration retried ({retries} retries)", retries > 0)
        check(
            f"competing: longest application statement {worst * 1000:.0f} ms "
            f"<= lock_timeout + 250 = {bound * 1000:.0f} ms",
            worst <= bound,
        )
        check(f"competing: failed statements {len(comp.failed())} == 0", not comp.failed())
    trans = by.get("transactional")
    if trans is not None and trans.migration is not None:
        lng = trans.longest()
        print(
            "  (transactional, for comparison: longest application statement "
            f"{_ms(lng[1] if lng else float('nan'))} ms)"
        )
    return ok


# --- main ----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--skills", type=int, default=100_000, help="legacy skills (default 100k)")
    parser.add_argument(
        "--lock-timeout", type=float, default=1.0, help="migrate --online lock timeout (s)"
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="baseline load period without migration (s)"
    )
    parser.add_argument("--to", help="migrate only this far (default: every migration)")
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument(
        "--pause-ms", type=float, default=5.0, help="pause after each statement, per loop"
    )
    parser.add_argument(
        "--compete-seconds", type=float, default=5.0, help="competing ACCESS SHARE hold (s)"
    )
    parser.add_argument(
        "--migrate-timeout", type=float, default=300.0, help="kill a migration running longer"
    )
    parser.add_argument("--child", nargs=3, metavar=("MODE", "URL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        mode, url, out_path = args.child
        child_main(mode, url, out_path, args.to, args.lock_timeout)
        return 0

    clean_up_on_signals()
    ws = Workspace(None)
    ok = False
    try:
        print(f"relay_peewee lock impact: {_environment(['postgres'], ws)}")
        print(f"command: python benchmarks/lock_impact.py {' '.join(sys.argv[1:])}".rstrip())
        tag = f"relay_locks_{ws.token}_{args.skills}"
        template = f"{tag}_tpl"
        start = time.perf_counter()
        with _opened(ws.pg_create(template)) as db:
            counts = build_legacy_database(db, args.skills, lambda m: log(f"build: {m}"))
            skill_ids = [
                r[0]
                for r in db.execute_sql(
                    "SELECT id FROM skills ORDER BY random() LIMIT 5000"
                ).fetchall()
            ]
            user_ids = [
                r[0]
                for r in db.execute_sql(
                    "SELECT id FROM users ORDER BY random() LIMIT 2000"
                ).fetchall()
            ]
        build = time.perf_counter() - start
        (role,) = ws.pg_exec("SELECT current_user")[0]
        print(
            f"N = {args.skills:,} skills: {migrated_rows(counts):,} rows in the nine tables, "
            f"built in {build:.1f} s; load: {args.readers} readers + {args.writers} writers "
            f"(own process and connection each, {args.pause_ms:g} ms pause), as {role}; "
            f"lock_timeout {args.lock_timeout:g} s; "
            f"migrate to {args.to or 'the last migration'}"
        )
        ids = (skill_ids, user_ids)
        phases: list[Phase] = []

        def fresh(name: str) -> str:
            ws.pg_exec("CHECKPOINT")
            return ws.pg_create(f"{tag}_{name}", template=template)

        def migration_phase(name: str, url: str, mode: str, compete: bool) -> Phase:
            phase = Phase(name, migration=MigrateRun(mode))
            assert phase.migration is not None
            run = phase.migration

            def action() -> None:
                info: dict[str, float] = {}
                rival: threading.Thread | None = None
                if compete:
                    held = threading.Event()
                    rival = threading.Thread(
                        target=competing_lock, args=(url, args.compete_seconds, info, held)
                    )
                    rival.start()
                    held.wait(timeout=30)
                run_migration(run, url, args.to, args.lock_timeout, args.migrate_timeout, ws, log)
                if rival is not None:
                    rival.join(timeout=args.compete_seconds + 30)
                    if "start" in info and "end" in info:
                        phase.competitor = (info["start"], info["end"])

            log(f"{name}: migrate ({mode}{', competing transaction' if compete else ''})")
            run_phase(phase, url, args, ids, ws, log, action)
            return phase

        # 1 + 2: baseline, then the online migration, on the same copy.
        url = fresh("online")
        baseline = Phase("baseline")
        log(f"baseline: {args.duration:g} s of load, no migration")
        run_phase(baseline, url, args, ids, ws, log, lambda: time.sleep(args.duration))
        phases.append(baseline)
        phases.append(migration_phase("online", url, "online", compete=False))
        ws.pg_drop(f"{tag}_online")
        # 3: the default transactional migration, for comparison.
        url = fresh("transactional")
        phases.append(migration_phase("transactional", url, "transactional", compete=False))
        ws.pg_drop(f"{tag}_transactional")
        # 4: online again, with a competing transaction holding a lock on skills.
        url = fresh("competing")
        phases.append(migration_phase("competing", url, "online", compete=True))
        ws.pg_drop(f"{tag}_competing")
        print()
        ok = report(phases, args)
    except KeyboardInterrupt as exc:
        print(f"interrupted ({exc}); cleaning up", file=sys.stderr)
    except Exception:
        traceback.print_exc()
    finally:
        ws.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
