"""Lock impact of ``relay-peewee migrate --online`` on a live PostgreSQL database (issue 5).

    python benchmarks/lock_impact.py [--skills N] [--lock-timeout S] [--duration S]
                                     [--to MIGRATION] [--readers R] [--writers W]
                                     [--pause-ms MS] [--compete-seconds S] [--migrate-timeout S]

Builds a legacy Relay database of N skills once, then runs a pre-tenant
application's load (``support/app_load.py``) in four phases: ``baseline`` (the
load alone for ``--duration`` s), ``online`` (``migrate(db, online=True)`` in a
child), ``transactional`` (the default ``migrate`` on a fresh copy) and
``competing`` (``--online`` on another copy while a separate connection holds
``LOCK TABLE skills IN ACCESS SHARE MODE`` for ``--compete-seconds``). Per
phase: statements, failures, refusals (tenant-unaware inserts after 0004, by
design), latencies, the longest ACCESS EXCLUSIVE hold seen in ``pg_locks``
and what the slowest statements waited for; then issue 5's targets. The
whole record: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Sequence

from support.app_load import (
    Phase,
    competing_lock,
    is_refused,
    ms,
    pct,
    print_details,
    run_phase,
)
from support.databases import Workspace, opened, run_in_workspace
from support.legacy_data import build_legacy_database, migrated_rows
from support.migration import MigrateRun, migrate_here, run_migration
from support.timing import add_child, log, parser, print_header, verdict

MAX_BLOCKED_SECONDS = 0.25  # issue 5's online-path target


def child_main(mode: str, url: str, out_path: str, to: str | None, lock_timeout: float) -> None:
    """Migrate ``url``; progress to stderr as '<monotonic> <label>'; JSON to ``out_path``."""
    online = mode == "online"
    run = migrate_here(
        url, to, time.monotonic, commits=True, echo=True, online=online, lock_timeout=lock_timeout
    )
    with open(out_path, "w") as fh:
        json.dump(run, fh)


def report(phases: list[Phase], args: argparse.Namespace) -> bool:
    header = (
        f"{'phase':13} {'migrate s':>9} {'stmts':>7} {'failed':>6} {'refused':>7} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>8}  {'AE hold max':>22}  longest statement"
    )
    print_header(header, extra=20)
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
                where += " (" + ("refused" if is_refused(longest) else "failed") + ")"
        hold_s = "-" if hold is None else hold.label()
        print(
            f"{ph.name:13} {secs:>9} {len(lat):>7} {len(ph.failed()):>6} "
            f"{len(ph.refused()):>7} {ms(pct(lat, 0.5)):>7} {ms(pct(lat, 0.99)):>7} "
            f"{ms(lat[-1] if lat else float('nan')):>8}  {hold_s:>22}  {where}"
        )

    for ph in phases:
        print_details(ph)

    print()
    print("targets (issue 5, online path):")
    by = {ph.name: ph for ph in phases}
    ok = True

    def check(label: str, good: bool) -> None:
        nonlocal ok
        ok = ok and good
        print(f"  {label:80} {verdict(good)}")

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
            f"{ms(lng[1] if lng else float('nan'))} ms)"
        )
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--skills", type=int, default=100_000, help="legacy skills (default 100k)")
    p.add_argument(
        "--lock-timeout", type=float, default=1.0, help="migrate --online lock timeout (s)"
    )
    p.add_argument(
        "--duration", type=float, default=10.0, help="baseline load period without migration (s)"
    )
    p.add_argument("--to", help="migrate only this far (default: every migration)")
    p.add_argument("--readers", type=int, default=2)
    p.add_argument("--writers", type=int, default=2)
    p.add_argument(
        "--pause-ms", type=float, default=5.0, help="pause after each statement, per loop"
    )
    p.add_argument(
        "--compete-seconds", type=float, default=5.0, help="competing ACCESS SHARE hold (s)"
    )
    p.add_argument(
        "--migrate-timeout", type=float, default=300.0, help="kill a migration running longer"
    )
    add_child(p, "MODE", "URL", "OUT")
    args = p.parse_args(argv)
    if args.child:
        mode, url, out_path = args.child
        child_main(mode, url, out_path, args.to, args.lock_timeout)
        return 0
    return run_in_workspace("relay_peewee lock impact", ["postgres"], lambda ws: run(ws, args))


def run(ws: Workspace, args: argparse.Namespace) -> bool:
    tag = f"relay_locks_{ws.token}_{args.skills}"
    start = time.perf_counter()
    template = ws.create("postgres", f"{tag}_tpl")
    with opened(template) as db:
        counts = build_legacy_database(db, args.skills, lambda m: log(f"build: {m}"))
        pick = "SELECT id FROM {} ORDER BY random() LIMIT {}"
        skill_ids = [r[0] for r in db.execute_sql(pick.format("skills", 5000)).fetchall()]
        user_ids = [r[0] for r in db.execute_sql(pick.format("users", 2000)).fetchall()]
        ids = (skill_ids, user_ids)
    build = time.perf_counter() - start
    (role,) = ws.pg_exec("SELECT current_user")[0]
    print(
        f"N = {args.skills:,} skills: {migrated_rows(counts):,} rows in the nine tables, "
        f"built in {build:.1f} s; load: {args.readers} readers + {args.writers} writers "
        f"(own process and connection each, {args.pause_ms:g} ms pause), as {role}; "
        f"lock_timeout {args.lock_timeout:g} s; "
        f"migrate to {args.to or 'the last migration'}"
    )
    options = ["--lock-timeout", str(args.lock_timeout)] + (["--to", args.to] if args.to else [])

    def migration_phase(name: str, url: str, mode: str, compete: bool = False) -> Phase:
        phase = Phase(name, migration=MigrateRun(mode))
        migration = phase.migration
        assert migration is not None

        def action() -> None:
            info: dict[str, float] = {}
            held = threading.Event()
            rival = threading.Thread(
                target=competing_lock, args=(url, args.compete_seconds, info, held)
            )
            if compete:
                rival.start()
                held.wait(timeout=30)
            run_migration(migration, __file__, url, options, args.migrate_timeout, ws, log)
            if compete:
                rival.join(timeout=args.compete_seconds + 30)
                if "start" in info and "end" in info:
                    phase.competitor = (info["start"], info["end"])

        log(f"{name}: migrate ({mode}{', competing transaction' if compete else ''})")
        run_phase(phase, url, args, ids, action)
        return phase

    def fresh(name: str) -> str:
        ws.pg_exec("CHECKPOINT")
        return ws.create("postgres", f"{tag}_{name}", template)

    # 1 + 2: baseline, then the online migration, on the same copy.
    url = fresh("online")
    baseline = Phase("baseline")
    log(f"baseline: {args.duration:g} s of load, no migration")
    run_phase(baseline, url, args, ids, lambda: time.sleep(args.duration))
    phases = [baseline, migration_phase("online", url, "online")]
    ws.drop(url)
    # 3: the default transactional migration, for comparison.
    url = fresh("transactional")
    phases.append(migration_phase("transactional", url, "transactional"))
    ws.drop(url)
    # 4: online again, with a competing transaction holding a lock on skills.
    url = fresh("competing")
    phases.append(migration_phase("competing", url, "online", compete=True))
    ws.drop(url)
    print()
    return report(phases, args)


if __name__ == "__main__":
    sys.exit(main())
