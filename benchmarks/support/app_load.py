"""A pre-tenant application's load on PostgreSQL, and the phases ``lock_impact`` runs it in.

Readers and writers are processes of their own with a connection each (in
autocommit, as an ORM), issuing what an application that knows nothing of
tenants issues; every statement's start and latency is recorded on
``time.monotonic()``, a clock all processes share on Linux. A phase starts
the load and the ``pg_locks`` sampler, runs its action (the window), stops
them, and checks that every write landed, in the default tenant.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.queues import Queue as MpQueue
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

from .baselines import DEFAULT_TENANT_ID
from .databases import opened
from .legacy_data import LEGACY_TABLES
from .migration import MigrateRun
from .sampling import SAMPLE_INTERVAL, Hold, LockSampler, Waiter, first_line
from .timing import log

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
                error = f"{exc.pgcode or '-'} {first_line(exc)}"
            records.append((start, time.monotonic() - start, kind, error, pid))
            if pause:
                time.sleep(pause)
    except Exception as exc:  # report, never hang the parent
        records.append((time.monotonic(), 0.0, "connect", f"- {first_line(exc)}", 0))
        ready.put(role)
    finally:
        out.put({"role": role, "records": records, "counts": counts})
        if conn is not None and not conn.closed:
            conn.close()


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
        return [r for r in self.in_window if r[3] and not is_refused(r)]

    def refused(self) -> list[Record]:
        return [r for r in self.in_window if is_refused(r)]

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


def is_refused(r: Record) -> bool:
    # The tenant-unaware insert after 0004 dropped usage_events' default.
    return r[2] == "insert" and r[3].startswith(NOT_NULL_VIOLATION) and "tenant_id" in r[3]


def write_state(url: str) -> tuple[int, int, int]:
    """(usage_events rows, sum of skills.total_uses, rows outside the default tenant)."""
    with opened(url) as db:
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
    action: Callable[[], None],
) -> None:
    """Start the load and the sampler, run ``action`` (the window), stop, collect."""
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    ready: MpQueue[str] = ctx.Queue()
    out: MpQueue[dict[str, Any]] = ctx.Queue()
    budget = args.duration + args.migrate_timeout + args.compete_seconds + 60
    deadline = time.monotonic() + budget
    events0, uses0, _ = write_state(url)
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
    events1, uses1, strays = write_state(url)
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


def pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[max(0, math.ceil(p * len(sorted_values)) - 1)]


def ms(x: float) -> str:
    return "-" if x != x else f"{x * 1000:.1f}"


def print_details(ph: Phase) -> None:
    """A phase's migration, load, slowest statements and what blocked them."""
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
        f"{ms(max(r[1] for r in ph.in_window if r[2] == k))} ms"
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
