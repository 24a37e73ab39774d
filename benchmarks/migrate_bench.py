"""Time ``relay-peewee migrate`` on a big legacy database against hand-written baselines.

    python benchmarks/migrate_bench.py [--skills N] [--backend sqlite|postgres|both]
                                       [--scaling] [--repeat R] [--profile]
                                       [--to MIGRATION] [--all-migrations]

For each backend, in one run: build a legacy database of N skills once (a
template), then for each approach migrate a fresh, identical copy of it:

* ``project``: ``relay_peewee.operations.migrate(db, to)`` on ``open_database(url)``,
  through ``--to`` (default 0005_audit_logs: the end state the baselines build);
* ``project-all`` (``--all-migrations``): every pending migration;
* ``floor``: the hand-written best case (``baselines.py``);
* ``naive`` (PostgreSQL): Relay's UPDATE-backfill approach.

Every approach runs in its own child process, so its time excludes the
build and its peak RSS (VmHWM of that process) is its own. Each result is
verified: row counts of every legacy and foreign table equal the template's,
every tenant_id is the default tenant, and the baselines' end-state schema
equals the project's (so a baseline cannot win by doing less). Throw-away
PostgreSQL databases and SQLite files are removed at the end, also on error
or Ctrl-C.

PostgreSQL is reached through libpq's variables (PGHOST, PGPORT, PGUSER,
PGDATABASE for the admin database), defaulting to root@127.0.0.1:5432/test.

Lock impact (``migrate --online`` under application load) is measured by
``lock_impact.py``, which reuses this module's workspace and builders.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from baselines import DEFAULT_TENANT_ID, floor_postgres, floor_sqlite, naive_postgres
from legacy_data import (
    LEGACY_TABLES,
    build_legacy_database,
    migrated_rows,
    row_counts,
)
from peewee import Database, PostgresqlDatabase, SqliteDatabase

ROOT = Path(__file__).resolve().parent.parent
PG_HOST = os.environ.get("PGHOST", "127.0.0.1")
PG_PORT = int(os.environ.get("PGPORT", "5432"))
PG_USER = os.environ.get("PGUSER", "root")
PG_ADMIN_DB = os.environ.get("PGDATABASE", "test")

SCALING_SIZES = (10_000, 100_000, 300_000)
# The baselines reproduce the schema of migrations 0002-0005 (issue 5's
# "same uniques and indexes"); later migrations (e.g. tenant-consistent
# composite foreign keys) have no hand-written floor yet, so by default the
# project is migrated exactly this far and the end states are compared.
FLOOR_END_STATE = "0005_audit_logs"
# Issue 5's targets for the transactional path.
MAX_PROJECT_OVER_FLOOR = 1.2
MIN_NAIVE_OVER_PROJECT = 8.0

# Approaches per backend, in the order they run. The floor runs before the
# project so any warm-up advantage goes to the baseline, not to us.
APPROACHES: dict[str, tuple[str, ...]] = {
    "sqlite": ("floor", "project"),
    "postgres": ("floor", "project", "naive"),
}


# --- child side ---------------------------------------------------------------
#
# A child migrates one database and prints one JSON line: its own timing of
# the migration (connect to close, imports excluded) and every statement's
# duration, for the "where the time goes" breakdown.


def _child_project(url: str, to: str | None) -> dict[str, Any]:
    from relay_peewee.database import open_database
    from relay_peewee.operations.commands import migrate

    statements: list[tuple[float, str]] = []
    steps: list[tuple[float, str]] = []
    start = time.perf_counter()
    db = open_database(url)
    inner = db.execute_sql

    # Wrapping the instance's execute_sql sees every statement peewee, the
    # Runner and the project's migrator issue, without touching their code.
    def timed(sql: str, params: Any = None, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return inner(sql, params, *args, **kwargs)
        finally:
            statements.append((time.perf_counter() - t, " ".join(str(sql).split())))

    db.execute_sql = timed  # type: ignore[method-assign]
    kwargs: dict[str, Any] = {}
    if "progress" in inspect.signature(migrate).parameters:
        kwargs["progress"] = lambda label: steps.append((time.perf_counter() - start, label))
    migrate(db, to, **kwargs)
    db.close()
    return {"seconds": time.perf_counter() - start, "statements": statements, "steps": steps}


def _child_baseline(backend: str, approach: str, url: str) -> dict[str, Any]:
    start = time.perf_counter()
    if backend == "sqlite":
        # The same connection settings open_database gives the project:
        # autocommit driver, foreign_keys ON, default journal and cache.
        conn = sqlite3.connect(_sqlite_path(url), isolation_level=None, timeout=10)
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA busy_timeout = 10000")
        statements = floor_sqlite(conn)
    else:
        import psycopg2

        conn = psycopg2.connect(url)
        run = floor_postgres if approach == "floor" else naive_postgres
        statements = run(conn)
    conn.close()
    return {"seconds": time.perf_counter() - start, "statements": statements, "steps": []}


def _peak_rss_mb() -> float:
    # VmHWM is the high-water mark of this process image since exec. The
    # parent's rusage for the child is not: Linux carries the fork-time RSS
    # of the parent (which built the database) into the child's ru_maxrss.
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_main(approach: str, backend: str, url: str, to: str | None) -> None:
    if approach == "project":
        result = _child_project(url, to)
    elif approach == "project-all":
        result = _child_project(url, None)
    else:
        result = _child_baseline(backend, approach, url)
    result["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(result))


# --- parent side --------------------------------------------------------------


class Monitor(Protocol):
    """Something that watches the database while one approach migrates it.

    Issue 5's lock-impact measurement is one: reader/writer loops against
    skills and usage_events, started before the child and stopped after it,
    reporting the longest and p99 statement latency as extra columns.
    """

    name: str

    def start(self, url: str) -> None: ...

    def stop(self) -> dict[str, str]: ...


@dataclass
class Result:
    backend: str
    approach: str
    n_skills: int
    rows: int
    seconds: float = float("nan")
    peak_rss_mb: float = float("nan")
    rows_ok: bool = False
    tenant_ok: bool = False
    schema: dict[str, list[str]] = field(default_factory=dict)
    schema_note: str = ""
    statements: list[tuple[float, str]] = field(default_factory=list)
    steps: list[tuple[float, str]] = field(default_factory=list)
    monitors: dict[str, str] = field(default_factory=dict)
    # 1-minute load average around the run: on a shared 2-core machine other
    # work competes with the migration, and this shows when it did.
    load: float = float("nan")
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.rows_ok and self.tenant_ok

    @property
    def per_million(self) -> float:
        return self.seconds / (self.rows / 1e6)


class Workspace:
    """Owns every throw-away database and file of one benchmark run."""

    def __init__(self, workdir: str | None) -> None:
        self.token = secrets.token_hex(3)
        self.dir = Path(tempfile.mkdtemp(prefix="relay_bench_", dir=workdir))
        self.pg_databases: list[str] = []
        self._admin: Any = None
        self.child: subprocess.Popen[str] | None = None

    # PostgreSQL
    def admin(self) -> Any:
        if self._admin is None:
            import psycopg2

            self._admin = psycopg2.connect(
                host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=PG_ADMIN_DB, connect_timeout=5
            )
            # CREATE/DROP DATABASE refuse to run inside a transaction.
            self._admin.autocommit = True
        return self._admin

    def pg_exec(self, sql: str) -> list[tuple[Any, ...]]:
        with self.admin().cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else []

    def pg_url(self, name: str) -> str:
        return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"

    def pg_create(self, name: str, template: str | None = None) -> str:
        self.pg_databases.append(name)
        if template is None:
            self.pg_exec(f'CREATE DATABASE "{name}"')
        else:
            # FILE_COPY copies the files after a checkpoint; the default
            # WAL_LOG strategy would push the whole database through WAL and
            # leave a checkpoint due in the middle of the timed run.
            self.pg_exec(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
        return self.pg_url(name)

    def pg_drop(self, name: str) -> None:
        self.pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.pg_databases:
            self.pg_databases.remove(name)

    def close(self) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.kill()
            self.child.wait()
        errors = []
        for name in list(self.pg_databases):
            try:
                self.pg_drop(name)
            except Exception as exc:  # keep cleaning up the rest
                errors.append(f"{name}: {exc}")
        if self._admin is not None:
            self._admin.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        for err in errors:
            print(f"warning: could not drop database {err}", file=sys.stderr)


def _sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


def _open(url: str) -> Database:
    if url.startswith("sqlite:///"):
        return SqliteDatabase(_sqlite_path(url))
    from playhouse.db_url import connect

    db: Database = connect(url)
    return db


@contextmanager
def _opened(url: str) -> Iterator[Database]:
    db = _open(url)
    db.connect()
    try:
        yield db
    finally:
        db.close()


def fingerprint(db: Database) -> dict[str, list[str]]:
    """The end-state schema of the nine tenant tables, order-insensitive.

    Columns (type, NOT NULL, default), keys, indexes, foreign keys, plus the
    names of views and triggers. Compared between approaches, so names must
    be equal too.
    """
    out: dict[str, list[str]] = {}
    if isinstance(db, PostgresqlDatabase):
        for t in LEGACY_TABLES:
            rows = db.execute_sql(
                "SELECT 'column ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)"
                " || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END"
                " || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')"
                " FROM pg_attribute a LEFT JOIN pg_attrdef d"
                " ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
                " WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped"
                " UNION ALL SELECT 'index ' || pg_get_indexdef(indexrelid) FROM pg_index"
                " WHERE indrelid = %s::regclass"
                " UNION ALL SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(oid)"
                " FROM pg_constraint WHERE conrelid = %s::regclass",
                (t, t, t),
            ).fetchall()
            out[t] = sorted(r[0] for r in rows)
        rows = db.execute_sql(
            "SELECT 'view ' || viewname FROM pg_views WHERE schemaname = current_schema()"
            " UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger WHERE NOT tgisinternal"
        ).fetchall()
    else:
        for t in LEGACY_TABLES:
            items = [
                f"column {name} {kind.upper()}{' NOT NULL' if notnull else ''}"
                f"{'' if default is None else ' DEFAULT ' + default}{f' pk{pk}' if pk else ''}"
                for _cid, name, kind, notnull, default, pk in db.execute_sql(
                    f'PRAGMA table_info("{t}")'
                ).fetchall()
            ]
            for _seq, name, unique, origin, partial in db.execute_sql(
                f'PRAGMA index_list("{t}")'
            ).fetchall():
                cols = [r[2] for r in db.execute_sql(f'PRAGMA index_info("{name}")').fetchall()]
                # Automatic indexes are numbered by position in the DDL;
                # their columns and kind are what matters.
                label = "auto" if name.startswith("sqlite_autoindex_") else name
                items.append(f"index {label} {origin} unique={unique} partial={partial} {cols}")
            items += [
                f"fk {r[3]} -> {r[2]}.{r[4]} on delete {r[6]}"
                for r in db.execute_sql(f'PRAGMA foreign_key_list("{t}")').fetchall()
            ]
            out[t] = sorted(items)
        rows = db.execute_sql(
            "SELECT type || ' ' || name FROM sqlite_master WHERE type IN ('view', 'trigger')"
        ).fetchall()
    out["*"] = sorted(r[0] for r in rows)
    return out


def schema_diff(a: dict[str, list[str]], b: dict[str, list[str]]) -> list[str]:
    diff = []
    for table in sorted(set(a) | set(b)):
        left, right = set(a.get(table, [])), set(b.get(table, []))
        diff += [f"{table}: only here: {x}" for x in sorted(left - right)]
        diff += [f"{table}: only in project: {x}" for x in sorted(right - left)]
    return diff


def verify(db: Database, before: dict[str, int], result: Result) -> None:
    after = row_counts(db)
    result.rows_ok = after == before
    if not result.rows_ok:
        lost = {t: (before[t], after.get(t)) for t in before if before[t] != after.get(t)}
        result.error = f"row counts changed (before, after): {lost}"
    p = db.param
    strays = 0
    for table in LEGACY_TABLES:
        (n,) = db.execute_sql(
            f'SELECT count(*) FROM "{table}" WHERE tenant_id IS NULL OR tenant_id <> {p}',
            (DEFAULT_TENANT_ID,),
        ).fetchone()
        strays += n
    result.tenant_ok = strays == 0
    if strays:
        result.error = result.error or f"{strays} rows without the default tenant"
    result.schema = fingerprint(db)


def run_child(
    ws: Workspace,
    approach: str,
    backend: str,
    url: str,
    to: str,
    result: Result,
    monitors: Sequence[Monitor],
) -> None:
    script = str(Path(__file__).resolve())
    cmd = [sys.executable, script, "--child", approach, backend, url, "--to", to]
    for m in monitors:
        m.start(url)
    load_before = os.getloadavg()[0]
    ws.child = proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    out, err = proc.communicate()
    result.load = max(load_before, os.getloadavg()[0])
    ws.child = None
    for m in monitors:
        result.monitors.update(m.stop())
    if proc.returncode != 0:
        tail = err.strip().splitlines()[-3:] or [f"exit status {proc.returncode}"]
        result.error = " | ".join(tail)
        return
    data = json.loads(out.strip().splitlines()[-1])
    result.seconds = data["seconds"]
    result.peak_rss_mb = data["peak_rss_mb"]
    result.statements = [tuple(s) for s in data["statements"]]
    result.steps = [tuple(s) for s in data["steps"]]


def _settle(ws: Workspace, backend: str) -> None:
    # Start every timed run from the same quiet state: no checkpoint due, no
    # dirty pages from copying the template still being written back.
    if backend == "postgres":
        ws.pg_exec("CHECKPOINT")
    os.sync()


def bench_backend(
    ws: Workspace,
    backend: str,
    n_skills: int,
    approaches: Sequence[str],
    to: str,
    repeat: int,
    log: Callable[[str], None],
) -> tuple[float, list[Result]]:
    """Build the template once, then migrate a fresh copy per approach and repeat."""
    tag = f"relay_bench_{ws.token}_{n_skills}"
    start = time.perf_counter()
    if backend == "postgres":
        template = f"{tag}_tpl"
        url = ws.pg_create(template)
    else:
        template = str(ws.dir / f"{tag}_tpl.db")
        url = f"sqlite:///{template}"
    with _opened(url) as db:
        before = build_legacy_database(db, n_skills)
    build_seconds = time.perf_counter() - start
    log(f"{backend}: built {n_skills:,} skills in {build_seconds:.1f} s")
    rows = migrated_rows(before)

    results: list[Result] = []
    for approach in approaches:
        best: Result | None = None
        for attempt in range(repeat):
            result = Result(backend, approach, n_skills, rows)
            copy = f"{tag}_{approach}_{attempt}"
            if backend == "postgres":
                copy_url = ws.pg_create(copy, template=template)
            else:
                copy_path = ws.dir / f"{copy}.db"
                shutil.copyfile(template, copy_path)
                copy_url = f"sqlite:///{copy_path}"
            try:
                _settle(ws, backend)
                run_child(ws, approach, backend, copy_url, to, result, monitors=())
                if not result.error:
                    with _opened(copy_url) as db:
                        verify(db, before, result)
            finally:
                if backend == "postgres":
                    ws.pg_drop(copy)
                else:
                    copy_path.unlink(missing_ok=True)
            log(
                f"{backend}: {approach} run {attempt + 1}/{repeat}: "
                + (f"{result.seconds:.2f} s" if not result.error else f"FAILED {result.error}")
            )
            if best is None or (result.ok and (not best.ok or result.seconds < best.seconds)):
                best = result
        assert best is not None
        results.append(best)

    if backend == "postgres":
        ws.pg_drop(template)
    else:
        Path(template).unlink(missing_ok=True)

    project = next((r for r in results if r.approach == "project" and r.ok), None)
    for r in results:
        if r.approach == "project" or not r.ok:
            continue
        if r.approach == "project-all":
            r.schema_note = f"n/a (adds migrations after {to})"
            continue
        if project is None:
            r.schema_note = "? (project failed)"
            continue
        diff = schema_diff(r.schema, project.schema)
        r.schema_note = "= project" if not diff else f"DIFFERS ({len(diff)})"
        for line in diff[:10]:
            log(f"{backend}: {r.approach} end state differs: {line}")
    return build_seconds, results


# --- reporting ----------------------------------------------------------------


def _statement_kind(sql: str) -> str:
    """Group statements by what they do, not by which table they touch."""
    s = sql.upper()
    for pattern, label in (
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
    ):
        if re.search(pattern, s):
            return label
    return "other"


def breakdown(result: Result, top: int = 8) -> list[str]:
    total_sql = sum(s for s, _ in result.statements)
    groups: dict[str, list[float]] = defaultdict(list)
    for seconds, sql in result.statements:
        groups[_statement_kind(sql)].append(seconds)
    lines = [
        f"  {result.backend} {result.approach}: {result.seconds:.2f} s total, "
        f"{total_sql:.2f} s in {len(result.statements)} statements, "
        f"{result.seconds - total_sql:.2f} s outside them (Python, commits, connect)"
    ]
    for kind, times in sorted(groups.items(), key=lambda kv: -sum(kv[1]))[:top]:
        lines.append(f"    {sum(times):7.2f} s  {len(times):3d}x  {kind}")
    lines.append("    slowest statements:")
    for seconds, sql in sorted(result.statements, key=lambda s: -s[0])[:top]:
        lines.append(f"    {seconds:7.2f} s  {sql[:100]}")
    return lines


def _fmt(x: float, spec: str = ".2f") -> str:
    return "-" if x != x else format(x, spec)  # NaN: not measured


def report(n_skills: int, builds: dict[str, float], results: list[Result], profile: bool) -> bool:
    """Print the table, ratios and (when a target is missed) where time goes."""
    rows = results[0].rows if results else 0
    print()
    print(f"== N = {n_skills:,} skills: {rows:,} rows in the nine migrated tables ==")
    print("build: " + ", ".join(f"{b} {s:.1f} s" for b, s in builds.items()))
    header = (
        f"{'backend':9} {'approach':11} {'seconds':>8} {'s/1M rows':>9} {'peak RSS':>9} "
        f"{'rows':>5} {'tenant':>6} {'load':>5}  end state"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.backend:9} {r.approach:11} {_fmt(r.seconds):>8} {_fmt(r.per_million):>9} "
            f"{_fmt(r.peak_rss_mb, '.0f') + ' MB':>9} {'ok' if r.rows_ok else 'BAD':>5} "
            f"{'ok' if r.tenant_ok else 'BAD':>6} {_fmt(r.load, '.1f'):>5}  "
            + (r.schema_note or ("reference" if r.approach == "project" else ""))
            + (f"  ERROR: {r.error}" if r.error else "")
            + "".join(f"  {k}={v}" for k, v in r.monitors.items())
        )
    by = {(r.backend, r.approach): r for r in results if r.ok}
    print("ratios:")
    missed: set[str] = set()
    for backend in builds:
        project, floor = by.get((backend, "project")), by.get((backend, "floor"))
        if project and floor:
            ratio = project.seconds / floor.seconds
            ok = ratio <= MAX_PROJECT_OVER_FLOOR
            print(
                f"  {backend:9} project/floor     = {ratio:5.2f}   "
                f"(target <= {MAX_PROJECT_OVER_FLOOR})  {'met' if ok else 'MISSED'}"
            )
            if not ok:
                missed.add(backend)
        everything = by.get((backend, "project-all"))
        if everything and floor:
            print(
                f"  {backend:9} project-all/floor = {everything.seconds / floor.seconds:5.2f}   "
                "(informational: the floor stops where --to does)"
            )
        naive = by.get((backend, "naive"))
        if project and naive:
            ratio = naive.seconds / project.seconds
            ok = ratio >= MIN_NAIVE_OVER_PROJECT
            print(
                f"  {backend:9} naive/project     = {ratio:5.2f}   "
                f"(target >= {MIN_NAIVE_OVER_PROJECT})  {'met' if ok else 'MISSED'}"
            )
            if not ok:
                missed.add(backend)
    shown = [r for r in results if r.ok and (profile or r.backend in missed)]
    if shown:
        print("where the time goes:")
        for r in shown:
            # On a miss, the floor's breakdown is the yardstick for the project's.
            if r.approach != "naive" or profile:
                for line in breakdown(r):
                    print(line)
    # project-all has no floor to match (the floor stops where --to does):
    # its "n/a" note is information, not a failure.
    return all(r.ok for r in results) and all(
        r.schema_note in ("", "= project") or r.approach == "project-all" for r in results
    )


def report_scaling(all_results: dict[int, list[Result]]) -> None:
    keys = [(r.backend, r.approach) for r in next(iter(all_results.values()))]
    print()
    print("== scaling: seconds per 1M migrated rows (flat = linear) ==")
    header = f"{'N skills':>9} {'rows':>10}" + "".join(f" {b[:2] + '/' + a:>11}" for b, a in keys)
    print(header)
    print("-" * len(header))
    for n, results in all_results.items():
        by = {(r.backend, r.approach): r for r in results}
        rows = results[0].rows
        cells = "".join(
            f" {_fmt(by[k].per_million) if k in by and by[k].ok else '-':>11}" for k in keys
        )
        print(f"{n:>9,} {rows:>10,}{cells}")
    print("(sq = sqlite, po = postgres; peak RSS per N is in each table above)")


def _environment(backends: Sequence[str], ws: Workspace) -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "relay_peewee"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        code = f"relay_peewee @ {rev}" + (" + uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        code = "relay_peewee @ unknown revision"
    parts = [code, f"{os.cpu_count()} CPUs", f"Python {sys.version.split()[0]}"]
    if "sqlite" in backends:
        parts.append(f"SQLite {sqlite3.sqlite_version}")
    if "postgres" in backends:
        parts.append(f"PostgreSQL {ws.pg_exec('SHOW server_version')[0][0]}")
    return ", ".join(parts)


def clean_up_on_signals() -> None:
    """Turn SIGTERM/SIGHUP into exceptions, so a run's cleanup still runs."""

    def stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)


def log(msg: str) -> None:
    """Progress on stderr, time-stamped; the results go to stdout."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skills", type=int, default=100_000, help="legacy skills (default 100k)")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument(
        "--scaling", action="store_true", help=f"run N = {', '.join(map(str, SCALING_SIZES))}"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per approach; best is kept")
    parser.add_argument(
        "--profile", action="store_true", help="always print where each approach's time goes"
    )
    parser.add_argument(
        "--to",
        default=FLOOR_END_STATE,
        help="migrate the project this far: the end state the baselines reproduce "
        f"(default {FLOOR_END_STATE})",
    )
    parser.add_argument(
        "--all-migrations",
        action="store_true",
        help="also time the project's full migrate (every pending migration; no floor to match)",
    )
    parser.add_argument(
        "--no-naive", action="store_true", help="skip the (slow) naive PostgreSQL baseline"
    )
    parser.add_argument("--workdir", help="directory for SQLite files (default: system temp)")
    parser.add_argument(
        "--child", nargs=3, metavar=("APPROACH", "BACKEND", "URL"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        approach, backend, url = args.child
        child_main(approach, backend, url, args.to)
        return 0

    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    sizes = SCALING_SIZES if args.scaling else (args.skills,)

    clean_up_on_signals()
    ws = Workspace(args.workdir)
    ok = True
    try:
        print(f"relay_peewee migrate benchmark: {_environment(backends, ws)}")
        print(f"command: python benchmarks/migrate_bench.py {' '.join(sys.argv[1:])}".rstrip())
        all_results: dict[int, list[Result]] = {}
        for n in sizes:
            builds: dict[str, float] = {}
            results: list[Result] = []
            for backend in backends:
                approaches = tuple(
                    a for a in APPROACHES[backend] if not (args.no_naive and a == "naive")
                ) + (("project-all",) if args.all_migrations else ())
                builds[backend], backend_results = bench_backend(
                    ws, backend, n, approaches, args.to, args.repeat, log
                )
                results += backend_results
            all_results[n] = results
            ok = report(n, builds, results, args.profile) and ok
            sys.stdout.flush()
        if args.scaling:
            report_scaling(all_results)
    except KeyboardInterrupt as exc:
        print(f"interrupted ({exc}); cleaning up", file=sys.stderr)
        ok = False
    finally:
        ws.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
