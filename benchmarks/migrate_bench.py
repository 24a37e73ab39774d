"""Time ``relay-peewee migrate`` on a big legacy database against hand-written baselines.

    python benchmarks/migrate_bench.py [--skills N] [--backend sqlite|postgres|both]
                                       [--scaling] [--repeat R] [--profile] [--to MIGRATION]
                                       [--all-migrations] [--no-naive] [--workdir DIR]

For each backend: build a legacy database of N skills once (a template), then
migrate a fresh copy of it per approach, each in its own child process:
``floor`` (``support/baselines.py``), ``project`` (``migrate`` through ``--to``),
``naive`` (PostgreSQL's UPDATE backfill) and, with ``--all-migrations``,
``project-all``. Every result is verified (row counts, default tenant, end
state equal to the project's). What it prints and the latest numbers:
benchmarks/README.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from support import ROOT
from support.baselines import run_baseline
from support.checks import fingerprint, row_changes, schema_diff, tenant_strays
from support.databases import Workspace, opened, run_in_workspace
from support.legacy_data import build_legacy_database, migrated_rows
from support.migration import breakdown, migrate_here
from support.sampling import peak_rss_mb
from support.timing import (
    add_backend,
    add_child,
    backends,
    check_ratio,
    fmt,
    log,
    parser,
    print_header,
)

SCRIPT = str(Path(__file__).resolve())
SCALING_SIZES = (10_000, 100_000, 300_000)
# The baselines reproduce migrations 0002-0005; later ones have no floor yet.
FLOOR_END_STATE = "0005_audit_logs"
MAX_PROJECT_OVER_FLOOR = 1.2  # issue 5's targets
MIN_NAIVE_OVER_PROJECT = 8.0
# In the order they run: the floor before the project, so any warm-up
# advantage goes to the baseline, not to us.
APPROACHES = {"sqlite": ("floor", "project"), "postgres": ("floor", "project", "naive")}


def child_main(approach: str, backend: str, url: str, to: str) -> None:
    """Migrate ``url`` one way; print seconds, statements (seconds, SQL) and peak RSS."""
    if approach.startswith("project"):
        run = migrate_here(url, None if approach == "project-all" else to, time.perf_counter)
        statements = [(e - s, sql) for s, e, sql in run["statements"]]
        seconds = run["end"] - run["start"]
    else:
        start = time.perf_counter()
        statements = run_baseline(approach, url)
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "statements": statements, "rss": peak_rss_mb()}))


@dataclass
class Result:
    backend: str
    approach: str
    rows: int
    seconds: float = float("nan")
    peak_rss_mb: float = float("nan")
    rows_ok: bool = False
    tenant_ok: bool = False
    schema: dict[str, list[str]] = field(default_factory=dict)
    schema_note: str = ""
    statements: list[tuple[float, str]] = field(default_factory=list)
    load: float = float("nan")  # 1-minute load average around the run
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.rows_ok and self.tenant_ok

    @property
    def per_million(self) -> float:
        return self.seconds / (self.rows / 1e6)


def run_once(ws: Workspace, r: Result, url: str, to: str, before: dict[str, int]) -> None:
    """Migrate ``url`` in a child, then verify the copy."""
    cmd = [sys.executable, SCRIPT, "--child", r.approach, r.backend, url, "--to", to]
    ws.settle(r.backend)
    load_before = os.getloadavg()[0]
    ws.child = proc = subprocess.Popen(cmd, stdout=-1, stderr=-1, text=True, cwd=ROOT)
    out, err = proc.communicate()
    r.load, ws.child = max(load_before, os.getloadavg()[0]), None
    if proc.returncode != 0:
        r.error = " | ".join(err.strip().splitlines()[-3:] or [f"exit status {proc.returncode}"])
        return
    data = json.loads(out.strip().splitlines()[-1])
    r.seconds, r.peak_rss_mb = data["seconds"], data["rss"]
    r.statements = [(float(s), str(sql)) for s, sql in data["statements"]]
    with opened(url) as db:
        lost, strays = row_changes(db, before), tenant_strays(db)
        r.rows_ok, r.tenant_ok, r.schema = not lost, not strays, fingerprint(db)
    if lost or strays:
        r.error = f"row counts changed (before, after): {lost}" if lost else ""
        r.error = r.error or f"{strays} rows without the default tenant"


def bench_backend(
    ws: Workspace, backend: str, n: int, approaches: Sequence[str], to: str, repeat: int
) -> tuple[float, list[Result]]:
    """Build the template once, then migrate a fresh copy per approach and repeat."""
    tag = f"relay_bench_{ws.token}_{n}"
    start = time.perf_counter()
    template = ws.create(backend, f"{tag}_tpl")
    with opened(template) as db:
        before = build_legacy_database(db, n)
    build_seconds = time.perf_counter() - start
    log(f"{backend}: built {n:,} skills in {build_seconds:.1f} s")
    results: list[Result] = []
    for approach in approaches:
        best: Result | None = None
        for attempt in range(repeat):
            r = Result(backend, approach, migrated_rows(before))
            url = ws.create(backend, f"{tag}_{approach}_{attempt}", template)
            try:
                run_once(ws, r, url, to, before)
            finally:
                ws.drop(url)
            outcome = f"{r.seconds:.2f} s" if not r.error else f"FAILED {r.error}"
            log(f"{backend}: {approach} run {attempt + 1}/{repeat}: {outcome}")
            if best is None or (r.ok and (not best.ok or r.seconds < best.seconds)):
                best = r
        assert best is not None
        results.append(best)
    ws.drop(template)

    project = next((r for r in results if r.approach == "project" and r.ok), None)
    for r in results:
        if r.approach == "project" or not r.ok:
            continue
        if r.approach == "project-all":
            r.schema_note = f"n/a (adds migrations after {to})"
        elif project is None:
            r.schema_note = "? (project failed)"
        else:
            diff = schema_diff(r.schema, project.schema)
            r.schema_note = "= project" if not diff else f"DIFFERS ({len(diff)})"
            for line in diff[:10]:
                log(f"{backend}: {r.approach} end state differs: {line}")
    return build_seconds, results


def report(n: int, builds: dict[str, float], results: list[Result], profile: bool) -> bool:
    """Print the table, ratios and (when a target is missed) where time goes."""
    print(
        f"\n== N = {n:,} skills: {results[0].rows if results else 0:,} rows "
        "in the nine migrated tables =="
    )
    print("build: " + ", ".join(f"{b} {s:.1f} s" for b, s in builds.items()))
    print_header(
        f"{'backend':9} {'approach':11} {'seconds':>8} {'s/1M rows':>9} {'peak RSS':>9} "
        f"{'rows':>5} {'tenant':>6} {'load':>5}  end state"
    )
    for r in results:
        print(
            f"{r.backend:9} {r.approach:11} {fmt(r.seconds):>8} {fmt(r.per_million):>9} "
            f"{fmt(r.peak_rss_mb, '.0f') + ' MB':>9} {'ok' if r.rows_ok else 'BAD':>5} "
            f"{'ok' if r.tenant_ok else 'BAD':>6} {fmt(r.load, '.1f'):>5}  "
            + (r.schema_note or ("reference" if r.approach == "project" else ""))
            + (f"  ERROR: {r.error}" if r.error else "")
        )
    by = {(r.backend, r.approach): r for r in results if r.ok}
    print("ratios:")
    missed: set[str] = set()
    for b in builds:
        project, floor, naive = (by.get((b, a)) for a in ("project", "floor", "naive"))
        everything = by.get((b, "project-all"))
        if project and floor:
            ratio = project.seconds / floor.seconds
            if not check_ratio(f"{b:9} project/floor    ", ratio, MAX_PROJECT_OVER_FLOOR):
                missed.add(b)
        if everything and floor:
            print(
                f"  {b:9} project-all/floor = {everything.seconds / floor.seconds:5.2f}   "
                "(informational: the floor stops where --to does)"
            )
        if project and naive:
            ratio = naive.seconds / project.seconds
            if not check_ratio(f"{b:9} naive/project    ", ratio, MIN_NAIVE_OVER_PROJECT, True):
                missed.add(b)
    # On a miss, the floor's breakdown is the yardstick for the project's.
    shown = [r for r in results if r.ok and (profile or r.backend in missed)]
    if shown:
        print("where the time goes:")
    for r in (r for r in shown if r.approach != "naive" or profile):
        print("\n".join(breakdown(f"{r.backend} {r.approach}", r.seconds, r.statements)))
    # project-all has no floor to match: its "n/a" note is not a failure.
    return all(r.ok for r in results) and all(
        r.schema_note in ("", "= project") or r.approach == "project-all" for r in results
    )


def report_scaling(all_results: dict[int, list[Result]]) -> None:
    keys = [(r.backend, r.approach) for r in next(iter(all_results.values()))]
    print("\n== scaling: seconds per 1M migrated rows (flat = linear) ==")
    print_header(
        f"{'N skills':>9} {'rows':>10}" + "".join(f" {b[:2] + '/' + a:>11}" for b, a in keys)
    )
    for n, results in all_results.items():
        by = {(r.backend, r.approach): r for r in results}
        cells = "".join(
            f" {fmt(by[k].per_million) if k in by and by[k].ok else '-':>11}" for k in keys
        )
        print(f"{n:>9,} {results[0].rows:>10,}{cells}")
    print("(sq = sqlite, po = postgres; peak RSS per N is in each table above)")


def main(argv: Sequence[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--skills", type=int, default=100_000, help="legacy skills (default 100k)")
    add_backend(p)
    p.add_argument(
        "--scaling", action="store_true", help=f"run N = {', '.join(map(str, SCALING_SIZES))}"
    )
    p.add_argument("--repeat", type=int, default=1, help="runs per approach; best is kept")
    p.add_argument(
        "--profile", action="store_true", help="always print where each approach's time goes"
    )
    p.add_argument(
        "--to",
        default=FLOOR_END_STATE,
        help="migrate the project this far: the end state "
        f"the baselines reproduce (default {FLOOR_END_STATE})",
    )
    p.add_argument(
        "--all-migrations",
        action="store_true",
        help="also time the project's full migrate (every pending migration; no floor to match)",
    )
    p.add_argument(
        "--no-naive", action="store_true", help="skip the (slow) naive PostgreSQL baseline"
    )
    p.add_argument("--workdir", help="directory for SQLite files (default: system temp)")
    add_child(p, "APPROACH", "BACKEND", "URL")
    args = p.parse_args(argv)
    if args.child:
        approach, backend, url = args.child
        child_main(approach, backend, url, args.to)
        return 0
    chosen = backends(args.backend)

    def run(ws: Workspace) -> bool:
        ok = True
        all_results: dict[int, list[Result]] = {}
        for n in SCALING_SIZES if args.scaling else (args.skills,):
            builds: dict[str, float] = {}
            results: list[Result] = []
            for b in chosen:
                approaches = [a for a in APPROACHES[b] if not (args.no_naive and a == "naive")]
                approaches += ["project-all"] if args.all_migrations else []
                builds[b], done = bench_backend(ws, b, n, approaches, args.to, args.repeat)
                results += done
            all_results[n] = results
            ok = report(n, builds, results, args.profile) and ok
            sys.stdout.flush()
        if args.scaling:
            report_scaling(all_results)
        return ok

    return run_in_workspace("relay_peewee migrate benchmark", chosen, run, args.workdir)


if __name__ == "__main__":
    sys.exit(main())
