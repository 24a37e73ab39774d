"""`export_tenant(jobs=K)`: tables read on K connections in one snapshot (parallel_export).

The file must be the serial export's, byte for byte; a row committed after
the snapshot must be in no table of it; a failure on any connection must
come out as the serial export's one error, with nothing left open; and the
workers must see the tenants the main connection sees, however it got past
row-level security (admin URL, SET ROLE, owner).
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from peewee import Database, OperationalError
from test_tenant_files import EXAMPLE, Note, _source

import relay_peewee
from relay_peewee import tenant_context
from relay_peewee.cli import cli
from relay_peewee.config import load_models
from relay_peewee.database import admin_database, is_postgres, open_database, set_admin_database
from relay_peewee.errors import RelayError
from relay_peewee.operations import tenant_export
from relay_peewee.operations.commands import create_tenant, migrate
from relay_peewee.operations.tenant_export import export_tenant, tenant_fingerprints
from relay_peewee.operations.tenant_import import import_tenant
from relay_peewee.testing import TenantPair
from relay_peewee.testing.assertions import bound_by_row_level_security

TIMESTAMP = "2024-05-01 10:00:00"


def _export(db: Database, slug: str = "acme", **kw: Any) -> bytes:
    out = io.BytesIO()
    export_tenant(db, slug, out, **kw)
    return out.getvalue()


def _wider(db: Database, slug: str = "acme", rows: int = 3000) -> None:
    """More rows than one spool buffer and one fetch: chunk edges get crossed."""
    p = "%s" if is_postgres(db) else "?"
    (tenant_id,) = db.execute_sql(f"SELECT id FROM tenants WHERE slug = {p}", (slug,)).fetchone()
    with db.atomic():
        for i in range(rows):
            db.execute_sql(
                "INSERT INTO audit_logs (id, tenant_id, action, resource_type, resource_id)"
                f" VALUES ({p}, {p}, {p}, 'skill', {p})",
                (_uuid(db), tenant_id, f"action-{i}-ünï", str(i)),
            )


def _uuid(db: Database) -> str:
    # peewee's UUIDField: 32 hex digits on SQLite, a uuid on PostgreSQL.
    return str(uuid.uuid4()) if is_postgres(db) else uuid.uuid4().hex


def _threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("export-")]


def _children() -> list[str]:
    """This process's child processes (zombies too), as "pid state command"."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            # pid (comm) state ppid ...: comm may hold spaces, so split after it.
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if int(ppid) == os.getpid():
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                found.append(f"{pid} {state} {command.decode(errors='replace')}")
    return found


def _spools() -> list[str]:
    """Spool folders of SQLite's worker processes left in the temporary folder."""
    return sorted(p.name for p in Path(tempfile.gettempdir()).glob("relay-export-*"))


def _fds() -> list[str]:
    """This process's open files, but sockets (PostgreSQL's are counted apart)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            found.append(os.readlink(f"/proc/self/fd/{fd}"))
    return sorted(f for f in found if not f.startswith(("socket:", "pipe:", "anon_inode:")))


def _backends(db: Database, expected: int | None = None) -> int:
    """This database's server connections (other than the asking one); with
    ``expected``, given a moment to get there (a closed one's backend exits
    on its own time)."""
    if not is_postgres(db):
        return 0
    for _ in range(50):
        (n,) = db.execute_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchone()
        if expected is None or n == expected:
            break
        time.sleep(0.05)
    return int(n)


# --- the same file ------------------------------------------------------------------


@pytest.mark.parametrize("jobs", [2, 3, 20])
def test_parallel_file_is_the_serial_file(
    backend: str, blank: Callable[[str], str], jobs: int
) -> None:
    source = _source(blank(backend))
    _wider(source)
    serial = _export(source, jobs=1)
    assert _export(source, jobs=jobs) == serial
    text = io.StringIO()
    summary = export_tenant(source, "acme", text, jobs=jobs)
    assert text.getvalue().encode() == serial
    assert summary.rows["audit_logs"] > 3000
    assert _threads() == []
    assert _children() == []
    source.close()


def test_parallel_file_holds_the_application_tables(
    backend: str, blank: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.chdir(EXAMPLE)
    Customer, Invoice, Payment = load_models(["invoicing.models"])
    models = [Customer, Invoice, Payment, Note]
    db = relay_peewee.connect(blank(backend))
    migrate(db, migrations=["invoicing.migrations"])
    db.create_tables([Note])
    tenant = create_tenant(db, "shop", "Shop")
    with tenant_context(tenant):
        customer = Customer.create(name="Zoë", email="zoe@example.com")
        invoice = Invoice.create(number="INV-1", customer=customer, total=100)
        Payment.create(invoice=invoice, amount=40)
        for i in range(500):
            Note.create(body=f"note {i}")
    serial = _export(db, "shop", models=models, jobs=1)
    assert b'"test_notes"' in serial and b'"payments"' in serial
    assert _export(db, "shop", models=models, jobs=2) == serial
    db.close()


def test_a_caller_transaction_exports_serially_and_sees_its_own_writes(
    backend: str, blank: Callable[[str], str]
) -> None:
    source = _source(blank(backend))
    with source.atomic():
        source.execute_sql("UPDATE tenants SET name = 'Renamed' WHERE slug = 'acme'")
        inside = _export(source, jobs=2)
    assert b'"Renamed"' in inside
    assert inside == _export(source, jobs=1)
    source.close()


def test_jobs_must_be_positive(backend: str, blank: Callable[[str], str]) -> None:
    source = open_database(blank(backend))
    with pytest.raises(RelayError, match="jobs must be at least 1"):
        export_tenant(source, "acme", io.BytesIO(), jobs=0)
    source.close()


# --- one snapshot -------------------------------------------------------------------


def test_a_row_committed_after_the_snapshot_is_in_no_table(
    backend: str, blank: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = blank(backend)
    source = _source(url)
    if not is_postgres(source):
        # WAL: a writer may commit while the export reads (the rollback
        # journal would make it wait for the export to end).
        source.execute_sql("PRAGMA journal_mode = wal")
    before = tenant_fingerprints(source, "acme")
    expected = _export(source, jobs=1)
    tenant_id = source.execute_sql("SELECT id FROM tenants WHERE slug = 'acme'").fetchone()[0]
    writer = open_database(url)
    lines = tenant_export._table_lines
    wrote: list[str] = []

    def after_the_snapshot(db: Database, spec: Any, tid: str, write: Any) -> int:
        # The first table read, on whichever connection: every snapshot is
        # taken (SQLite: the commit waits until every reader has one).
        if not wrote:
            wrote.append(threading.current_thread().name)
            p = "%s" if is_postgres(writer) else "?"
            with writer.atomic():
                writer.execute_sql(
                    "INSERT INTO users (id, tenant_id, email, name, created_at, updated_at)"
                    f" VALUES ('late-user', {p}, 'late@example.com', 'Late', {p}, {p})",
                    (tenant_id, TIMESTAMP, TIMESTAMP),
                )
                writer.execute_sql(
                    "INSERT INTO audit_logs (id, tenant_id, action, resource_type)"
                    f" VALUES ({p}, {p}, 'late-action', 'tenant')",
                    (_uuid(writer), tenant_id),
                )
                writer.execute_sql(
                    f"UPDATE tenants SET name = 'Late name' WHERE id = {p}", (tenant_id,)
                )
        return lines(db, spec, tid, write)

    monkeypatch.setattr(tenant_export, "_table_lines", after_the_snapshot)
    data = _export(source, jobs=3)
    monkeypatch.undo()
    assert wrote
    # Committed: a new export sees it.
    assert b"late@example.com" in _export(source, jobs=2)
    assert b"late@example.com" not in data and b"late-action" not in data
    assert b"Late name" not in data
    assert data == expected
    target = open_database(blank("sqlite"))
    import_tenant(target, io.BytesIO(data))
    assert tenant_fingerprints(target, "acme") == before
    target.close()
    writer.close()
    source.close()


@pytest.mark.sqlite_only
def test_sqlite_workers_are_processes_in_the_snapshot(
    blank: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite the workers are processes; a commit after the snapshot is in
    none of the tables they read (the main process reads slowly: the worker
    process reads all the rest)."""
    url = blank("sqlite")
    source = _source(url)
    source.execute_sql("PRAGMA journal_mode = wal")
    _wider(source)
    expected = _export(source, jobs=1)
    writer = open_database(url)
    lines = tenant_export._table_lines
    seen: list[str] = []
    main_read: list[str] = []

    def late_commit(db: Database, spec: Any, tid: str, write: Any) -> int:
        if not seen:  # the main process's first table: every snapshot is taken
            with writer.atomic():
                writer.execute_sql(
                    "INSERT INTO audit_logs (id, tenant_id, action, resource_type)"
                    " VALUES (?, ?, 'late-action', 'tenant')",
                    (_uuid(writer), tid),
                )
                writer.execute_sql(
                    "UPDATE users SET name = 'Late name' WHERE tenant_id = ?", (tid,)
                )
        seen.extend(c for c in _children() if "sqlite_export_worker" in c)
        main_read.append(spec.name)
        time.sleep(0.3)
        return lines(db, spec, tid, write)

    monkeypatch.setattr(tenant_export, "_table_lines", late_commit)
    summary_out = io.BytesIO()
    summary = export_tenant(source, "acme", summary_out, jobs=2)
    monkeypatch.undo()
    assert seen, "no worker process ran"
    data = summary_out.getvalue()
    assert data == expected
    assert b"late-action" not in data and b"Late name" not in data
    # The worker process read the tables the main one did not, the big one too.
    assert summary.rows["audit_logs"] > 3000 and "audit_logs" not in main_read
    assert b"late-action" in _export(source, jobs=2)
    assert _children() == [] and _threads() == []
    writer.close()
    source.close()


# --- failures ----------------------------------------------------------------------


def _slow_main(monkeypatch: pytest.MonkeyPatch) -> None:
    """The main thread takes its time over each table: the workers read the rest."""
    lines = tenant_export._table_lines

    def slow(db: Database, spec: Any, tid: str, write: Any) -> int:
        if threading.current_thread() is threading.main_thread():
            time.sleep(0.3)
        return lines(db, spec, tid, write)

    monkeypatch.setattr(tenant_export, "_table_lines", slow)


def test_a_worker_error_is_the_serial_error_and_leaves_nothing_open(
    backend: str, blank: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = blank(backend)
    source = _source(url)
    if is_postgres(source):
        # A column the model declares and the table lacks: refused by the
        # worker that reads api_keys (a late table).
        source.execute_sql("ALTER TABLE api_keys DROP COLUMN revoked_at")
        message = r"^api_keys has no column revoked_at that its model declares"
    else:
        source.execute_sql("UPDATE api_keys SET expires_at = 'yesterday'")
        message = r"^cannot export api_keys.expires_at = 'yesterday'"
    with pytest.raises(RelayError, match=message) as serial:
        _export(source, jobs=1)
    # SQLite keeps a closed connection's file open while another connection
    # of the process still has it: the files are counted with none open.
    source.close()
    serial_message = str(serial.value)
    del serial  # its traceback holds the serial export's cursor, so a SQLite file open
    gc.collect()
    fds = _fds()
    spools = _spools()
    checker = open_database(url)
    backends = _backends(checker)
    _slow_main(monkeypatch)
    with pytest.raises(RelayError, match=message) as parallel:
        _export(source, jobs=2)
    assert str(parallel.value) == serial_message and "\n" not in str(parallel.value)
    assert _threads() == []
    assert _children() == []
    assert _spools() == spools
    source.close()
    assert _backends(checker, backends) == backends
    checker.close()
    assert _fds() == fds
    # The main connection was fine: the next export runs (and fails the same way).
    with pytest.raises(RelayError, match=message):
        _export(source, jobs=2)
    source.close()


@pytest.mark.sqlite_only
def test_a_worker_process_missing_a_column_is_the_serial_error(
    blank: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _source(blank("sqlite"))
    source.execute_sql("ALTER TABLE api_keys DROP COLUMN revoked_at")
    message = r"^api_keys has no column revoked_at that its model declares"
    with pytest.raises(RelayError, match=message) as serial:
        _export(source, jobs=1)
    spools = _spools()
    _slow_main(monkeypatch)  # the worker process reads api_keys
    with pytest.raises(RelayError, match=message) as parallel:
        _export(source, jobs=2)
    assert str(parallel.value) == str(serial.value)
    assert _children() == [] and _threads() == [] and _spools() == spools
    source.close()


@pytest.mark.postgres_only
def test_a_worker_losing_its_connection_fails_the_export(
    blank: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = blank("postgres")
    source = _source(url)
    checker = open_database(url)
    backends = _backends(checker)
    lines = tenant_export._table_lines

    def killed(db: Database, spec: Any, tid: str, write: Any) -> int:
        if threading.current_thread() is threading.main_thread():
            time.sleep(0.3)
        elif spec.name == "ratings":
            (pid,) = db.execute_sql("SELECT pg_backend_pid()").fetchone()
            checker.execute_sql("SELECT pg_terminate_backend(%s)", (pid,))
        return lines(db, spec, tid, write)

    monkeypatch.setattr(tenant_export, "_table_lines", killed)
    with pytest.raises((OperationalError, Exception)) as lost:
        _export(source, jobs=2)
    assert "terminat" in str(lost.value) or "closed" in str(lost.value)
    assert _threads() == []
    assert _backends(checker, backends) == backends
    monkeypatch.undo()
    assert _export(source, jobs=2) == _export(source, jobs=1)
    checker.close()
    source.close()


def test_an_interrupt_stops_the_workers(
    backend: str, blank: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _source(blank(backend))
    source.close()  # as above: SQLite's files are counted with it closed
    fds = _fds()
    calls = 0

    def progress(_line: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt

    spools = _spools()
    with pytest.raises(KeyboardInterrupt):
        export_tenant(source, "acme", io.BytesIO(), jobs=2, progress=progress)
    assert _threads() == []
    assert _children() == []
    assert _spools() == spools
    source.close()
    assert _fds() == fds


# --- the roles the main connection reads as -------------------------------------------------


def test_the_app_role_exports_through_its_admin_connection(
    relay_db: Database, two_tenants: TenantPair, owner: Database
) -> None:
    if not bound_by_row_level_security(relay_db):
        pytest.skip("the application role exists on postgres_rls")
    a = two_tenants.a
    expected = _export(owner, a.slug, jobs=1)
    assert _export(relay_db, a.slug, jobs=1) == expected
    # Admin URL: the main thread is on its own admin connection; so are the workers.
    assert _export(relay_db, a.slug, jobs=2) == expected
    # SET ROLE: no admin URL, the app role granted the admin role.
    admin = admin_database(relay_db)
    app_role, admin_role = relay_db.connect_params["user"], relay_db.relay_admin_role  # type: ignore[attr-defined]
    owner.execute_sql(f'GRANT "{admin_role}" TO "{app_role}"')
    set_admin_database(relay_db, None)
    try:
        assert _export(relay_db, a.slug, jobs=2) == expected
    finally:
        set_admin_database(relay_db, admin)
        owner.execute_sql(f'REVOKE "{admin_role}" FROM "{app_role}"')


def test_cli_jobs(backend: str, blank: Callable[[str], str], tmp_path: Path) -> None:
    url = blank(backend)
    _source(url).close()
    runner = CliRunner()
    files = []
    for jobs in ("1", "2"):
        out = tmp_path / f"acme-{jobs}.jsonl"
        args = ["tenants", "export", "--slug", "acme", "--output", str(out), "--jobs", jobs]
        result = runner.invoke(cli, [*args, "-q", "--database", url])
        assert result.exit_code == 0, result.output
        files.append(out.read_bytes())
    assert files[0] == files[1]
    refused = runner.invoke(cli, ["tenants", "export", "--slug", "acme", "--jobs", "0"])
    assert refused.exit_code == 64 and "--jobs" in refused.output


@pytest.mark.postgres_only
def test_a_pooled_database_gives_its_workers_connections_of_their_own(
    blank: Callable[[str], str],
) -> None:
    url = blank("postgres")
    _source(url).close()
    scheme, rest = url.split("://", 1)
    pooled = open_database(f"{scheme}+pool://{rest}")
    checker = open_database(url)
    serial = _export(pooled, jobs=1)
    backends = _backends(checker)
    assert _export(pooled, jobs=2) == serial
    # The workers' connections were closed, not handed to the pool.
    assert _backends(checker, backends) == backends
    assert len(pooled._in_use) <= 1  # type: ignore[attr-defined]
    pooled.close_all()  # type: ignore[attr-defined]
    checker.close()
