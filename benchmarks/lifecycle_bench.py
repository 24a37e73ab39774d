"""Tenant export and import against reading and loading the same rows raw (issue 21).

For each backend it builds one database holding the default tenant with
--others skills (a migrated legacy database) and a tenant `big` with --skills
skills (17 rows a skill over Relay's nine tables, plus one audit event per
ten skills), then times, taking turns part by part:

* export: `export_tenant` of `big` to a file, against the floor of reading
  the same rows raw - PostgreSQL `COPY (SELECT * FROM t WHERE tenant_id =
  ...) TO STDOUT` into a file, SQLite a plain cursor over the same SELECT;
* import: `import_tenant` of that file into a fresh migrated database,
  against the floor of loading the rows raw in one transaction - PostgreSQL
  `COPY FROM` of the raw COPY output (skills' references to later rows set
  by an UPDATE afterwards, as any loader must), SQLite `executemany` of the
  rows read by a plain cursor - with the same keys, triggers and audit-time
  switch in force.

Then the peak RSS (VmHWM) of an export and of an import, each in a process
of its own, at 10k and --skills skills (and 300k with --big): flat means
the larger tenant costs no more memory. Every timed import is checked:
the target's fingerprints equal the source's (--no-verify skips it).
More phases (erase) register in PHASES.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import support  # noqa: F401 - puts the repository root on sys.path
from support.databases import Workspace, opened, run_in_workspace
from support.legacy_data import build_legacy_database, fill_tenant
from support.sampling import peak_rss_mb
from support.timing import (
    add_backend,
    add_child,
    backends,
    check_ratio,
    fmt,
    log,
    parser,
    quartiles,
    take_turns,
    timed,
)

BIG = "big"
BIG_ID = "big-tenant-0000-4000-8000-000000000000"
TARGET = 1.5
RSS_GROWTH = 1.25  # peak RSS at the largest size / at 10k


@dataclass
class Setup:
    backend: str
    source: str  # URL of the database holding `big`
    empty: str  # URL of a migrated, empty database (the import targets' template)
    file: Path  # big's tenant file, from the last project export


def _relay() -> Any:
    # Imported here: a measuring child's RSS must be its own work's.
    import relay_peewee.operations.tenant_export as export
    import relay_peewee.operations.tenant_import as imp
    from relay_peewee.database import open_database
    from relay_peewee.operations.commands import migrate

    return export, imp, open_database, migrate


def build(ws: Workspace, backend: str, skills: int, others: int, tag: str) -> tuple[str, str]:
    """(source URL, empty migrated URL) for one size."""
    _export, _imp, open_database, migrate = _relay()
    source = ws.create(backend, f"lc_{ws.token}_{tag}")
    with opened(source) as plain:
        log(f"{backend}: legacy database of {others} skills (the default tenant)")
        build_legacy_database(plain, others)
    db = open_database(source)
    migrate(db)
    p = "%s" if backend == "postgres" else "?"
    db.execute_sql(
        "INSERT INTO tenants (id, name, slug, is_active, plan, created_at, updated_at)"
        f" VALUES ({p}, 'Big', {p}, {p}, 'freemium', {p}, {p})",
        (BIG_ID, BIG, True, "2024-01-01 00:00:00", "2024-01-01 00:00:00"),
    )
    log(f"{backend}: tenant big, {skills} skills")
    fill_tenant(db, BIG_ID, skills, space=1, events=skills // 10)
    db.close()
    empty = ws.create(backend, f"lc_{ws.token}_{tag}_empty")
    target = open_database(empty)
    migrate(target)
    target.close()
    ws.settle(backend)
    return source, empty


# --- export -------------------------------------------------------------------


def project_export(setup: Setup, path: Path | str | None = None) -> None:
    """Export big to ``path`` (default: the setup's file, which the import phase loads)."""
    export, _imp, open_database, _migrate = _relay()
    db = open_database(setup.source)
    try:
        with open(path or setup.file, "wb") as out:
            export.export_tenant(db, BIG, out)
    finally:
        db.close()


def floor_export(setup: Setup, folder: Path) -> None:
    from relay_peewee.operations.tenant_data import tenant_tables

    with opened(setup.source) as db:
        for spec in tenant_tables():
            owner = "id" if spec.name == "tenants" else "tenant_id"
            if setup.backend == "postgres":
                sql = f"COPY (SELECT * FROM {spec.name} WHERE {owner} = '{BIG_ID}') TO STDOUT"
                with open(os.devnull, "wb") as out:
                    db.cursor().copy_expert(sql, out)
            else:
                cursor = db.execute_sql(f"SELECT * FROM {spec.name} WHERE {owner} = ?", (BIG_ID,))
                while cursor.fetchmany(2000):
                    pass


# --- import -------------------------------------------------------------------


def project_import(setup: Setup, target: str) -> None:
    _export, imp, open_database, _migrate = _relay()
    db = open_database(target)
    try:
        imp.import_tenant(db, setup.file)
    finally:
        db.close()


# Columns of skills that name later rows: loaded as NULL, set afterwards.
LATER = ("published_version_id", "draft_version_id", "forked_from_id")


def prepare_floor_import(setup: Setup, folder: Path) -> list[tuple[str, list[str]]]:
    """Raw COPY files (PostgreSQL) for the floor's load; (table, columns) in order."""
    from relay_peewee.operations.tenant_data import tenant_tables

    order = []
    with opened(setup.source) as db:
        for spec in tenant_tables():
            columns = spec.column_names
            order.append((spec.name, columns))
            if setup.backend != "postgres":
                continue
            owner = "id" if spec.name == "tenants" else "tenant_id"
            shown = ["NULL" if (spec.name == "skills" and c in LATER) else c for c in columns]
            where = f"WHERE {owner} = '{BIG_ID}'"
            with open(folder / f"{spec.name}.load", "wb") as out:
                db.cursor().copy_expert(
                    f"COPY (SELECT {', '.join(shown)} FROM {spec.name} {where}) TO STDOUT", out
                )
            if spec.name == "skills":
                with open(folder / "skills.later", "wb") as out:
                    db.cursor().copy_expert(
                        f"COPY (SELECT id, {', '.join(LATER)} FROM skills {where}) TO STDOUT", out
                    )
    return order


def floor_import(
    setup: Setup, target: str, folder: Path, order: list[tuple[str, list[str]]]
) -> None:
    if setup.backend == "postgres":
        with opened(target) as db, db.atomic():
            db.execute_sql("SELECT set_config('relay.import_audit_times', 'on', true)")
            cursor = db.cursor()
            for table, columns in order:
                with open(folder / f"{table}.load", "rb") as raw:
                    cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", raw)
            db.execute_sql(
                "CREATE TEMP TABLE later (id text, p text, d text, f text) ON COMMIT DROP"
            )
            with open(folder / "skills.later", "rb") as raw:
                cursor.copy_expert("COPY later FROM STDIN", raw)
            db.execute_sql(
                "UPDATE skills AS s SET published_version_id = l.p, draft_version_id = l.d,"
                " forked_from_id = l.f FROM later AS l WHERE s.id = l.id"
                " AND (l.p IS NOT NULL OR l.d IS NOT NULL OR l.f IS NOT NULL)"
            )
        return
    with opened(setup.source) as src, opened(target) as db:
        db.execute_sql("PRAGMA foreign_keys = ON")
        with db.atomic():
            db.execute_sql("PRAGMA defer_foreign_keys = ON")
            (trigger,) = db.execute_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'audit_logs_created_at'"
            ).fetchone()
            db.execute_sql("DROP TRIGGER audit_logs_created_at")
            for table, columns in order:
                owner = "id" if table == "tenants" else "tenant_id"
                cursor = src.execute_sql(
                    f"SELECT {', '.join(columns)} FROM {table} WHERE {owner} = ?", (BIG_ID,)
                )
                insert = (
                    f"INSERT INTO {table} ({', '.join(columns)})"
                    f" VALUES ({', '.join('?' for _ in columns)})"
                )
                while rows := cursor.fetchmany(2000):
                    db.cursor().executemany(insert, rows)
            db.execute_sql(trigger)


def verify(setup: Setup, target: str) -> bool:
    export, _imp, open_database, _migrate = _relay()
    a, b = open_database(setup.source), open_database(target)
    try:
        return bool(export.tenant_fingerprints(a, BIG) == export.tenant_fingerprints(b, BIG))
    finally:
        a.close()
        b.close()


# --- phases -------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    # (setup, workspace, rounds, verify) -> (project seconds, floor seconds)
    run: Callable[[Setup, Workspace, int, bool], tuple[list[float], list[float]]]


def run_export(
    setup: Setup, ws: Workspace, rounds: int, check: bool
) -> tuple[list[float], list[float]]:
    folder = ws.dir / "floor_export"
    folder.mkdir(exist_ok=True)
    pairs = take_turns(
        # Both to /dev/null: the export's work, not the disk's (a 0.5 GB file
        # written on a loaded VM swings by seconds with the page cache's writeback).
        timed(lambda _i: project_export(setup, os.devnull)),
        timed(lambda _i: floor_export(setup, folder)),
        rounds,
    )
    return [p for p, _f in pairs], [f for _p, f in pairs]


def run_import(
    setup: Setup, ws: Workspace, rounds: int, check: bool
) -> tuple[list[float], list[float]]:
    folder = ws.dir / "floor_import"
    folder.mkdir(exist_ok=True)
    order = prepare_floor_import(setup, folder)
    targets: list[str] = []
    ok = True

    def fresh(i: int, side: str) -> str:
        url = ws.create(setup.backend, f"lc_{ws.token}_t{side}{i}", template=setup.empty)
        targets.append(url)
        ws.settle(setup.backend)
        return url

    def project(i: int) -> float:
        nonlocal ok
        url = fresh(i, "p")
        seconds = timed(lambda _i: project_import(setup, url))(i)
        if check and i == rounds - 1:
            log(f"{setup.backend}: verifying the import's fingerprints")
            ok = verify(setup, url)
        ws.drop(url)
        return seconds

    def floor(i: int) -> float:
        url = fresh(i, "f")
        seconds = timed(lambda _i: floor_import(setup, url, folder, order))(i)
        ws.drop(url)
        return seconds

    pairs = take_turns(project, floor, rounds)
    if not ok:
        raise SystemExit(
            f"{setup.backend}: the imported tenant's fingerprints differ from the source's"
        )
    return [p for p, _f in pairs], [f for _p, f in pairs]


# erase (life-b) adds its phase here: PHASES["erase"] = Phase("erase", run_erase).
PHASES: dict[str, Phase] = {
    "export": Phase("export", run_export),
    "import": Phase("import", run_import),
}


# --- peak RSS -------------------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    """``--child export URL FILE`` / ``--child import URL FILE``: do it, print VmHWM."""
    what, url, path = args.child
    setup = Setup("postgres" if url.startswith("postgres") else "sqlite", url, "", Path(path))
    if what == "export":
        project_export(setup)
    else:
        project_import(setup, url)
    print(f"{peak_rss_mb():.1f}")


def rss(what: str, url: str, path: Path) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--child", what, url, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.split()[-1])


def memory(
    ws: Workspace, backend: str, sizes: list[int], others: int, big: Setup, big_n: int
) -> bool:
    print(f"\n{backend}: peak RSS (MB) of one export and one import, each in its own process")
    print(f"{'skills':>8} {'rows':>10} {'export':>8} {'import':>8}")
    seen: list[tuple[float, float]] = []
    for n in sizes:
        # The timed database serves its own size; the others are built here.
        if n == big_n:
            source, empty = big.source, big.empty
        else:
            source, empty = build(ws, backend, n, others, f"m{n}")
        path = ws.dir / f"rss_{n}.jsonl"
        exported = rss("export", source, path)
        target = ws.create(backend, f"lc_{ws.token}_rss{n}", template=empty)
        imported = rss("import", target, path)
        ws.drop(target)
        seen.append((exported, imported))
        print(f"{n:>8} {n * 17:>10} {exported:>8.1f} {imported:>8.1f}")
        path.unlink(missing_ok=True)
    ok = True
    for i, what in enumerate(("export", "import")):
        growth = seen[-1][i] / seen[0][i]
        ok &= check_ratio(f"{backend:8s} {what} RSS {sizes[-1]}/{sizes[0]}", growth, RSS_GROWTH)
    return ok


def main() -> int:
    p = parser(__doc__)
    add_backend(p)
    p.add_argument("--skills", type=int, default=100_000, help="skills of tenant big")
    p.add_argument("--others", type=int, default=10_000, help="skills of the default tenant")
    p.add_argument("--rounds", type=int, default=3, help="timed parts per side")
    p.add_argument("--phases", default="export,import", help=f"of {', '.join(PHASES)}")
    p.add_argument("--no-memory", action="store_true", help="skip the peak RSS runs")
    p.add_argument("--big", action="store_true", help="peak RSS at 300k skills too")
    p.add_argument("--no-verify", action="store_true", help="skip the fingerprint check")
    p.add_argument("--workdir", default=None, help="where the SQLite files go")
    add_child(p, "WHAT", "URL", "FILE")
    args = p.parse_args()
    if args.child:
        child(args)
        return 0
    chosen = backends(args.backend)

    def body(ws: Workspace) -> bool:
        ok = True
        print("load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
        for backend in chosen:
            source, empty = build(ws, backend, args.skills, args.others, "main")
            setup = Setup(backend, source, empty, ws.dir / f"{backend}.jsonl")
            project_export(setup)  # the file the import phase loads
            size = setup.file.stat().st_size / 1e6
            rows = args.skills * 17 + args.skills // 10 + 2
            print(
                f"\n{backend}: tenant big, {args.skills} skills ({rows} rows, file {size:.0f} MB),"
                f" {args.others} skills besides"
            )
            print(f"{'phase':<8} {'project s':>10} {'floor s':>9} {'ratio q1':>9} {'median':>7} q3")
            for name in args.phases.split(","):
                log(f"{backend}: {name}, {args.rounds} rounds a side")
                project, floor = PHASES[name].run(setup, ws, args.rounds, not args.no_verify)
                ratios = [a / b for a, b in zip(project, floor, strict=True)]
                q1, med, q3 = quartiles(ratios)
                seconds = f"{statistics.median(project):>10.2f} {statistics.median(floor):>9.2f}"
                print(f"{name:<8} {seconds} {fmt(q1):>9} {fmt(med):>7} {fmt(q3):>6}")
                ok &= check_ratio(f"{backend:8s} {name} project/floor (median)", med, TARGET)
            if not args.no_memory:
                sizes = sorted({10_000, args.skills} | ({300_000} if args.big else set()))
                ok &= memory(ws, backend, sizes, args.others, setup, args.skills)
        print("load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
        return ok

    return run_in_workspace("lifecycle_bench", chosen, body, args.workdir)


if __name__ == "__main__":
    sys.exit(main())
