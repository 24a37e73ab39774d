"""``erase_tenant`` against hand-written DELETEs in dependency order, same run.

A migrated database holds a big tenant (``--skills N``, default 100,000:
about 1.7 million rows in the nine tables, built inside the database by
``support/legacy_data.py`` and re-homed from the default tenant) and two
small ones (the plugin's sample data); on PostgreSQL the big tenant has
``--pg-skills`` (default 100,000 too; before migration 0014 indexed the
tenant-consistent keys, every deleted parent row read the tenant's child
rows, and both sides were quadratic there). Each round copies that database
twice (SQLite: the file; PostgreSQL: ``CREATE DATABASE ... TEMPLATE``) and
erases the big tenant from one copy with the project's ``erase_tenant``
(one transaction; with ``--batch-size`` also its resumable batches) and
from the other with the floor (Relay's auth tables, which reference users
with no index on ``user_id``, get one first: see ``build``): one
``DELETE FROM t WHERE tenant_id = ?`` per table, children first, in one
transaction, run on a plain peewee connection. The sides take turns, in
alternating order. Every run is verified: no row of the big tenant left,
the small tenants' rows intact.

Prints seconds per side and the median ratio project/floor (target <= 1.5).

    python benchmarks/erase_bench.py                          # N = 100,000, both backends
    python benchmarks/erase_bench.py --backend sqlite --skills 20000 --rounds 3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import support  # noqa: F401  (puts the repository root and tests/ on the path)
from support.databases import opened, server_url, sqlite_path, sqlite_url, throwaway
from support.legacy_data import build_legacy_database

import relay_peewee
from relay_peewee import tenant_context
from relay_peewee.models import DEFAULT_TENANT_ID
from relay_peewee.operations.commands import create_tenant, migrate
from relay_peewee.operations.tenant_erase import erase_order, erase_tenant
from relay_peewee.operations.tenant_states import deactivate_tenant
from relay_peewee.testing.sample_data import populate_tenant

TARGET = 1.5
# The floor's order: what a careful hand writes from the schema, children first.
FLOOR_ORDER = (
    "api_keys",
    "ratings",
    "site_settings",
    "skill_embeddings",
    "skill_reviews",
    "usage_events",
    "skill_versions",
    "skills",
    "users",
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def build(url: str, skills: int) -> str:
    """The source database: the big tenant ``big`` and the small ``a``, ``b``; big's id."""
    with opened(url) as raw:
        build_legacy_database(raw, skills, progress=log)
        # Relay's auth tables reference users ON DELETE CASCADE with no index
        # on user_id: without one, deleting any user (erase's and the floor's
        # alike) scans both tables, and both sides go quadratic on that alone.
        for table in ("accounts", "sessions"):
            raw.execute_sql(f"CREATE INDEX {table}_user_id ON {table} (user_id)")
    db = relay_peewee.connect(url)
    try:
        log("migrating")
        migrate(db)
        big = create_tenant(db, "big", "Big")
        log("re-homing the legacy rows into tenant big")
        _rehome(db, big.id)
        for slug in ("a", "b"):
            tenant = create_tenant(db, slug, slug.upper())
            with tenant_context(tenant):
                populate_tenant(tenant)
        deactivate_tenant(db, "big")
        return big.id
    finally:
        db.close()


def _rehome(db: Any, tenant_id: str) -> None:
    # Setup only, not measured: the rows are consistent by construction, so
    # the keys are switched off while tenant_id changes under them.
    # (SQLite: its tenant triggers dropped and put back, keys off.)
    pg = relay_peewee.database.is_postgres(db)
    p = "%s" if pg else "?"
    triggers = []
    if not pg:
        db.execute_sql("PRAGMA foreign_keys = OFF")
        triggers = db.execute_sql(
            "SELECT name, sql FROM sqlite_master"
            " WHERE type = 'trigger' AND tbl_name <> 'audit_logs'"
        ).fetchall()
    with db.atomic():
        if pg:
            db.execute_sql("SET LOCAL session_replication_role = replica")
        for name, _sql in triggers:
            db.execute_sql(f'DROP TRIGGER "{name}"')
        for table in FLOOR_ORDER:
            db.execute_sql(
                f"UPDATE {table} SET tenant_id = {p} WHERE tenant_id = {p}",
                (tenant_id, DEFAULT_TENANT_ID),
            )
        for _name, sql in triggers:
            db.execute_sql(sql)
    if not pg:
        db.execute_sql("PRAGMA foreign_keys = ON")
        db.execute_sql("VACUUM")


def floor(url: str, tenant_id: str) -> None:
    with opened(url) as db:
        p = "?" if url.startswith("sqlite") else "%s"
        if p == "?":
            db.execute_sql("PRAGMA foreign_keys = ON")
        with db.atomic():
            for table in FLOOR_ORDER:
                db.execute_sql(f"DELETE FROM {table} WHERE tenant_id = {p}", (tenant_id,))


def project(batch_size: int | None) -> Callable[[str, str], None]:
    def run(url: str, _tenant_id: str) -> None:
        db = relay_peewee.connect(url)
        try:
            erase_tenant(db, "big", batch_size=batch_size)
        finally:
            db.close()

    return run


def check(url: str, tenant_id: str, small: dict[str, int]) -> None:
    db = relay_peewee.connect(url)
    try:
        p = "%s" if relay_peewee.database.is_postgres(db) else "?"
        for table in erase_order(db):
            left = db.execute_sql(
                f"SELECT count(*) FROM {table} WHERE tenant_id = {p}", (tenant_id,)
            ).fetchone()[0]
            assert left == 0, f"{table}: {left} rows of the erased tenant left"
        assert _small_rows(db) == small, "the other tenants' rows changed"
    finally:
        db.close()


def _small_rows(db: Any) -> dict[str, int]:
    p = "%s" if relay_peewee.database.is_postgres(db) else "?"
    return {
        t: db.execute_sql(
            f"SELECT count(*) FROM {t} WHERE tenant_id IN "
            f"(SELECT id FROM tenants WHERE slug IN ({p}, {p}))",
            ("a", "b"),
        ).fetchone()[0]
        for t in FLOOR_ORDER
    }


def run_backend(backend: str, args: argparse.Namespace) -> list[tuple[str, float, float, float]]:
    results = []
    with ExitStack() as stack:
        if backend == "sqlite":
            source = stack.enter_context(sqlite_url("erase-bench-"))
        else:
            source = stack.enter_context(throwaway("erase_bench_src"))
        skills = args.skills if backend == "sqlite" else args.pg_skills
        log(f"{backend}: building {skills} skills")
        tenant_id = build(source, skills)
        db = relay_peewee.connect(source)
        total = sum(db.execute_sql(f"SELECT count(*) FROM {t}").fetchone()[0] for t in FLOOR_ORDER)
        small = _small_rows(db)
        db.close()
        log(f"{backend}: {total} rows in the nine tables")
        sides: dict[str, Callable[[str, str], None]] = {"floor": floor, "project": project(None)}
        if args.batch_size:
            sides[f"batches of {args.batch_size}"] = project(args.batch_size)
        times: dict[str, list[float]] = {name: [] for name in sides}
        for round_no in range(args.rounds):
            names = list(sides) if round_no % 2 == 0 else list(reversed(sides))
            for name in names:
                with _copy(backend, source) as url:
                    start = time.perf_counter()
                    sides[name](url, tenant_id)
                    times[name].append(time.perf_counter() - start)
                    check(url, tenant_id, small)
                log(f"{backend}: round {round_no + 1} {name}: {times[name][-1]:.2f} s")
        base = statistics.median(times["floor"])
        for name in sides:
            median = statistics.median(times[name])
            results.append((f"{backend} {name}", median, median / base, total))
    return results


class _copy:
    """A copy of the source database for one run, removed afterwards."""

    def __init__(self, backend: str, source: str) -> None:
        self.backend, self.source = backend, source
        self.stack = ExitStack()

    def __enter__(self) -> str:
        if self.backend == "sqlite":
            url = self.stack.enter_context(sqlite_url("erase-bench-run-"))
            shutil.copyfile(sqlite_path(self.source), sqlite_path(url))
            return url
        name = f"erase_bench_run_{time.monotonic_ns()}"
        template = self.source.rsplit("/", 1)[1]
        with opened(server_url()) as admin:
            admin.execute_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        self.stack.callback(_drop, name)
        return server_url(dbname=name)

    def __exit__(self, *exc: Any) -> None:
        self.stack.close()


def _drop(name: str) -> None:
    with opened(server_url()) as admin:
        admin.execute_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--skills", type=int, default=100_000, help="SQLite's big tenant")
    parser.add_argument(
        "--pg-skills",
        type=int,
        default=100_000,
        help="PostgreSQL's big tenant",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--batch-size", type=int, default=0, help="also time resumable batches of this size"
    )
    args = parser.parse_args(argv)
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    rows = [row for backend in backends for row in run_backend(backend, args)]
    print(f"\n{'backend side':<28} {'seconds':>8} {'ratio':>6}  rows")
    missed = 0
    for name, seconds, ratio, total in rows:
        measured = not name.endswith("floor")
        met = ratio <= TARGET
        missed += measured and not met and "batches" not in name
        verdict = ("met" if met else "MISSED") if measured else "baseline"
        if "batches" in name:  # resumable: a commit per batch, not held to the target
            verdict = "informational"
        print(f"{name:<28} {seconds:>8.2f} {ratio:>6.2f}  {total}  {verdict}")
    print(f"\ntarget: project/floor <= {TARGET} (one transaction); {missed} missed")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
