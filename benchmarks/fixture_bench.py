"""What the plugin's fixtures cost an application's test suite.

    python benchmarks/fixture_bench.py [--backend sqlite|postgres|both] [--tests N] [--rounds R]

Writes an application-style suite to a temporary folder - two TenantModels
of its own (``Project``, ``Task``), N tests each doing one insert and one
scoped query - twice: once on the plugin's ``two_tenants`` fixture (which
brings ``relay_db``), once in plain peewee (in-memory SQLite, ``create_tables``
per test, the tenant written by hand). Both run under pytest in this one run,
each in its own interpreter; a small pytest plugin records the session's wall
time (collection to the last teardown, not the interpreter's start) and every
test's setup and teardown.

Targets: SQLite, plugin suite <= 2x the plain suite's wall time; PostgreSQL,
<= 20 ms of fixture setup + teardown per test (mean), for ``postgres`` and
``postgres_rls``. Exit 1 if a target is missed.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from support.timing import add_backend, parser

SQLITE_TARGET = 2.0
POSTGRES_TARGET_MS = 20.0

MODELS = """
from peewee import ForeignKeyField, IntegerField, Model, SqliteDatabase, TextField

from relay_peewee import TenantModel


class Project(TenantModel):
    name = TextField()

    class Meta:
        table_name = "app_projects"


class Task(TenantModel):
    project = ForeignKeyField(Project, backref="tasks")
    title = TextField()
    done = IntegerField(default=0)

    class Meta:
        table_name = "app_tasks"


plain_db = SqliteDatabase(None)


class PlainProject(Model):
    tenant_id = TextField(index=True)
    name = TextField()

    class Meta:
        database = plain_db
        table_name = "app_projects"


class PlainTask(Model):
    tenant_id = TextField(index=True)
    project = ForeignKeyField(PlainProject, backref="tasks")
    title = TextField()
    done = IntegerField(default=0)

    class Meta:
        database = plain_db
        table_name = "app_tasks"
"""

CONFTEST = """
import json
import os
import time

import pytest

from app_models import Project, Task

_times = {"setup": [], "teardown": []}
_start = []


def pytest_relay_build_schema(db):
    db.create_tables([Project, Task])


def pytest_sessionstart(session):
    _start.append(time.perf_counter())


def pytest_runtest_logreport(report):
    if report.when in _times:
        _times[report.when].append(report.duration)
    if report.failed:
        raise SystemExit(f"benchmark test failed: {report.nodeid}: {report.longreprtext}")


def pytest_sessionfinish(session):
    out = os.environ["FIXTURE_BENCH_OUT"]
    with open(out, "w") as f:
        json.dump({"wall": time.perf_counter() - _start[0], **_times}, f)
"""

PLUGIN_TESTS = """
import pytest

from relay_peewee import tenant_context
from app_models import Project


@pytest.mark.parametrize("n", range({n}))
def test_app(two_tenants, n):
    with tenant_context(two_tenants.a):
        Project.create(name=f"project {{n}}")
        assert [p.name for p in Project.select()] == [f"project {{n}}"]
"""

PLAIN_TESTS = """
import pytest

from app_models import PlainProject, PlainTask, plain_db

TENANT = "tenant-a"


@pytest.fixture
def db():
    plain_db.init(":memory:")
    plain_db.connect()
    plain_db.create_tables([PlainProject, PlainTask])
    yield plain_db
    plain_db.close()


@pytest.mark.parametrize("n", range({n}))
def test_app(db, n):
    PlainProject.create(tenant_id=TENANT, name=f"project {{n}}")
    rows = PlainProject.select().where(PlainProject.tenant_id == TENANT)
    assert [p.name for p in rows] == [f"project {{n}}"]
"""


def run_suite(folder: Path, test_file: str, backends: str) -> dict[str, Any]:
    out = folder / f"{test_file}.{backends}.json"
    env = {**os.environ, "FIXTURE_BENCH_OUT": str(out), "CI": "true"}
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "--rootdir", str(folder), "--relay-backends", backends, test_file,
    ]  # fmt: skip
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{test_file} on {backends} failed:\n{done.stdout}\n{done.stderr}")
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def per_test_ms(data: dict[str, Any]) -> float:
    n = len(data["setup"])
    return 1000 * (sum(data["setup"]) + sum(data["teardown"])) / n


def main() -> None:
    p = parser(__doc__)
    add_backend(p)
    p.add_argument("--tests", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3, help="runs of each suite (median)")
    args = p.parse_args()
    missed = []
    with tempfile.TemporaryDirectory(prefix="fixture_bench_") as tmp:
        folder = Path(tmp)
        (folder / "app_models.py").write_text(MODELS)
        (folder / "conftest.py").write_text(CONFTEST)
        (folder / "test_plugin.py").write_text(PLUGIN_TESTS.format(n=args.tests))
        (folder / "test_plain.py").write_text(PLAIN_TESTS.format(n=args.tests))
        print(f"{args.tests} tests, one insert and one scoped query each")
        if args.backend in ("sqlite", "both"):
            # The two suites take turns, so a busy moment hits both alike.
            ratios = []
            for _ in range(args.rounds):
                plain = run_suite(folder, "test_plain.py", "sqlite")
                plugin = run_suite(folder, "test_plugin.py", "sqlite")
                ratios.append(plugin["wall"] / plain["wall"])
                print(
                    f"sqlite        plugin {plugin['wall']:.3f}s ({per_test_ms(plugin):.2f} ms "
                    f"setup+teardown/test)   plain peewee {plain['wall']:.3f}s "
                    f"({per_test_ms(plain):.2f} ms)   ratio {ratios[-1]:.2f}x"
                )
            ratio = statistics.median(ratios)
            print(f"sqlite        median ratio {ratio:.2f}x (target <= {SQLITE_TARGET}x)")
            if ratio > SQLITE_TARGET:
                missed.append("sqlite")
        if args.backend in ("postgres", "both"):
            for backend in ("postgres", "postgres_rls"):
                per_test = []
                for _ in range(args.rounds):
                    plugin = run_suite(folder, "test_plugin.py", backend)
                    per_test.append(per_test_ms(plugin))
                    print(
                        f"{backend:<13} plugin {plugin['wall']:.3f}s "
                        f"({1000 * plugin['wall'] / args.tests:.1f} ms/test in all), "
                        f"setup+teardown {per_test[-1]:.1f} ms/test"
                    )
                ms = statistics.median(per_test)
                print(
                    f"{backend:<13} median setup+teardown {ms:.1f} ms/test "
                    f"(target <= {POSTGRES_TARGET_MS:.0f} ms)"
                )
                if ms > POSTGRES_TARGET_MS:
                    missed.append(backend)
    if missed:
        print(f"missed target: {', '.join(missed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
