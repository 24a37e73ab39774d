"""`tenants export` / `tenants import`: one tenant's rows to a file and back, either backend.

The round trips compare ``tenant_fingerprints`` (one digest per table, the
same on both backends) at every hop; the refusals check that the target's
rows are exactly what they were before.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from peewee import AutoField, Database, TextField

import relay_peewee
from relay_peewee import TenantModel, tenant_context
from relay_peewee.cli import cli
from relay_peewee.config import load_models
from relay_peewee.database import is_postgres, open_database
from relay_peewee.errors import RelayError
from relay_peewee.models import (
    ApiKey,
    Rating,
    Skill,
    SkillEmbedding,
    SkillReview,
    SkillVersion,
    User,
)
from relay_peewee.operations.commands import create_tenant, migrate
from relay_peewee.operations.tenant_data import trailer_line
from relay_peewee.operations.tenant_export import export_tenant, tenant_fingerprints
from relay_peewee.operations.tenant_import import import_tenant
from relay_peewee.testing import TenantPair
from relay_peewee.testing.sample_data import populate_tenant

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "invoicing"
TABLES = (
    "tenants",
    "users",
    "skills",
    "skill_versions",
    "ratings",
    "usage_events",
    "skill_embeddings",
    "skill_reviews",
    "api_keys",
    "site_settings",
    "audit_logs",
)
TEXT = 'ünï ∑ \\ "q" \n\t\x01 💥 \u2028 end'
# Exact in float4 (real[]) and in their shortest text, so every hop reads them back equal.
VECTOR = [0.5, -0.25, 1024.0, 0.0, -3.0, 0.125]
OLD = datetime(2020, 2, 29, 23, 59, 59, 123450)


def _enrich(tenant_id: str) -> None:
    """Values that are easy to lose: unicode, NULLs, JSON, arrays, vectors, times, booleans."""
    with tenant_context(tenant_id):
        skills = list(Skill.select().order_by(Skill.slug))
        version = SkillVersion.select().first()
        first = skills[0]
        first.content = TEXT
        first.tags = ["ä", "", "with,comma", 'quote"', "{braces}"]
        first.average_rating = None
        first.published_version_id = version.id
        first.draft_version_id = version.id
        first.forked_from_id = skills[-1].id  # a fork of a row later in the file
        first.save()
        SkillVersion.update(metadata={"b": [1, 2.5, None, {"x": "ü"}], "a": True, "n": None}).where(
            SkillVersion.id == version.id
        ).execute()
        SkillEmbedding.update(embedding=VECTOR).execute()
        SkillReview.update(is_visible=False).execute()
        User.update(email_verified=OLD).where(User.id == first.author_id).execute()
        Rating.update(created_at=datetime(2021, 6, 1, 12, 0, 0, 500000)).execute()
        ApiKey.update(revoked_at=None, expires_at=OLD).execute()


def _source(url: str, slug: str = "acme") -> Database:
    db = relay_peewee.connect(url)
    tenant = create_tenant(db, slug, f"Acme {TEXT.splitlines()[0]}", f"{slug}.example")
    populate_tenant(tenant)
    _enrich(tenant.id)
    return db


def _export(db: Database, slug: str = "acme", **kw: object) -> bytes:
    out = io.BytesIO()
    export_tenant(db, slug, out, **kw)  # type: ignore[arg-type]
    return out.getvalue()


def _counts(db: Database) -> dict[str, int]:
    return {t: db.execute_sql(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


def _audit_times(db: Database, tenant_id: str) -> list[str]:
    p = "%s" if is_postgres(db) else "?"
    rows = db.execute_sql(
        f"SELECT created_at FROM audit_logs WHERE tenant_id = {p} ORDER BY created_at", (tenant_id,)
    ).fetchall()
    return [str(r[0])[:26].replace("T", " ") for r in rows]


@pytest.mark.postgres_only
def test_postgres_to_sqlite_and_back_keeps_every_row(blank: Callable[[str], str]) -> None:
    source = _source(blank("postgres"))
    before = tenant_fingerprints(source, "acme")
    tenant_id = source.execute_sql("SELECT id FROM tenants WHERE slug = 'acme'").fetchone()[0]
    times = _audit_times(source, tenant_id)
    first = _export(source)
    source.close()

    lite = open_database(blank("sqlite"))
    summary = import_tenant(lite, io.BytesIO(first))
    assert summary.slug == "acme" and summary.source_backend == "postgresql"
    assert summary.rows["skills"] == 3 and summary.rows["audit_logs"] == len(times) > 0
    assert tenant_fingerprints(lite, "acme") == before
    # The audit events kept their original times, not the import's.
    assert _audit_times(lite, tenant_id) == times
    content, tags, fork = lite.execute_sql(
        "SELECT content, tags, forked_from_id FROM skills WHERE content LIKE 'ünï%'"
    ).fetchone()
    assert content == TEXT and json.loads(tags)[0] == "ä" and fork is not None
    second = _export(lite)
    lite.close()

    back = open_database(blank("postgres"))
    import_tenant(back, io.BytesIO(second))
    assert tenant_fingerprints(back, "acme") == before
    assert _audit_times(back, tenant_id) == times
    (vector,) = back.execute_sql("SELECT embedding FROM skill_embeddings LIMIT 1").fetchone()
    assert vector == VECTOR
    back.close()


@pytest.mark.postgres_only
def test_sqlite_to_postgres_and_back_keeps_every_row(blank: Callable[[str], str]) -> None:
    source = _source(blank("sqlite"))
    before = tenant_fingerprints(source, "acme")
    first = _export(source)
    source.close()
    pg = open_database(blank("postgres"))
    import_tenant(pg, io.BytesIO(first))
    assert tenant_fingerprints(pg, "acme") == before
    second = _export(pg)
    pg.close()
    lite = open_database(blank("sqlite"))
    import_tenant(lite, io.BytesIO(second))
    assert tenant_fingerprints(lite, "acme") == before
    lite.close()


def test_export_holds_the_tenant_alone_and_imports_elsewhere(
    relay_db: Database, two_tenants: TenantPair, blank: Callable[[str], str]
) -> None:
    # On postgres_rls relay_db is the application role: export takes its admin path.
    a, b = two_tenants.a, two_tenants.b
    data = _export(relay_db, a.slug)
    lines = data.decode().split("\n")[:-1]
    header, rows, trailer = json.loads(lines[0]), lines[1:-1], json.loads(lines[-1])
    assert header["format"] == "relay-peewee-tenant" and header["version"] == 1
    assert header["tenant"]["id"] == a.id
    assert [t["name"] for t in header["tables"]] == list(TABLES)
    assert len(rows) == sum(trailer["rows"].values())
    assert b.id not in data.decode()
    assert trailer["rows"]["skills"] == len(two_tenants.rows_of(a).skills)

    target = open_database(blank("sqlite"))
    import_tenant(target, io.BytesIO(data))
    assert tenant_fingerprints(target, a.slug) == tenant_fingerprints(relay_db, a.slug)
    target.close()


# --- refusals ------------------------------------------------------------------


@pytest.fixture
def exported(backend: str, blank: Callable[[str], str]) -> tuple[bytes, str]:
    """A tenant file of tenant acme, exported from ``backend``; the tenant's id."""
    source = _source(blank(backend))
    data = _export(source)
    tenant_id = json.loads(data.splitlines()[0])["tenant"]["id"]
    source.close()
    return data, tenant_id


@pytest.fixture
def target(backend: str, blank: Callable[[str], str]) -> Iterator[Database]:
    db = open_database(blank(backend))
    yield db
    db.close()


def _refused(db: Database, data: bytes, match: str) -> None:
    before = _counts(db)
    with pytest.raises(RelayError, match=match) as refused:
        import_tenant(db, io.BytesIO(data))
    assert "\n" not in str(refused.value)
    db.connect(reuse_if_open=True)
    assert _counts(db) == before


def _rewrite(data: bytes, edit: Callable[[list[str]], list[str]]) -> bytes:
    """The file with its row lines edited and a trailer that agrees with them."""
    import hashlib

    # Split on newlines only: str.splitlines would also split at U+2028.
    lines = [line.decode() + "\n" for line in data.split(b"\n")[:-1]]
    rows = edit(lines[1:-1])
    counts: dict[str, int] = {}
    for row in rows:
        name = json.loads(row)[0]
        counts[name] = counts.get(name, 0) + 1
    digest = hashlib.sha256("".join(rows).encode()).hexdigest()
    return (lines[0] + "".join(rows) + trailer_line(counts, digest)).encode()


def test_import_refuses_a_taken_tenant(exported: tuple[bytes, str], target: Database) -> None:
    data, _tenant_id = exported
    import_tenant(target, io.BytesIO(data))
    _refused(target, data, r"^cannot import tenant 'acme': a tenant with id .* exists")


def test_import_refuses_a_taken_slug(exported: tuple[bytes, str], target: Database) -> None:
    data, _tenant_id = exported
    create_tenant(target, "acme", "Another Acme")
    _refused(target, data, r"a tenant with slug 'acme' exists")


def test_import_refuses_a_taken_email(exported: tuple[bytes, str], target: Database) -> None:
    data, _tenant_id = exported
    email = next(json.loads(x)[2] for x in data.decode().splitlines() if x.startswith('["users"'))
    p = target.param
    target.execute_sql(
        f"INSERT INTO users (id, email, tenant_id, created_at, updated_at)"
        f" VALUES ('someone', {p}, 'default-tenant-000-0000-000000000000', {p}, {p})",
        (email, OLD, OLD),
    )
    _refused(target, data, r"a user's email in the file is taken in this database")


def test_import_refuses_a_taken_api_key(exported: tuple[bytes, str], target: Database) -> None:
    data, _tenant_id = exported
    header = json.loads(data.splitlines()[0])
    columns = next(t for t in header["tables"] if t["name"] == "api_keys")["columns"]
    index = [c["name"] for c in columns].index("key_hash") + 1
    key_hash = next(
        json.loads(x)[index] for x in data.decode().splitlines() if x.startswith('["api_keys"')
    )
    p = target.param
    default = "default-tenant-000-0000-000000000000"
    target.execute_sql(
        f"INSERT INTO users (id, email, tenant_id, created_at, updated_at)"
        f" VALUES ('someone', 'x@example.com', '{default}', {p}, {p})",
        (OLD, OLD),
    )
    target.execute_sql(
        "INSERT INTO api_keys (id, user_id, key_hash, key_prefix, name, created_at, tenant_id)"
        f" VALUES ('11111111-1111-4111-8111-111111111111', 'someone', {p}, 'rk', 'k', {p}, {p})",
        (key_hash, OLD, default),
    )
    _refused(target, data, r"an API key in the file is taken in this database")


def test_import_refuses_a_schema_the_target_lacks(
    exported: tuple[bytes, str], target: Database
) -> None:
    data, _tenant_id = exported
    first, rest = data.split(b"\n", 1)
    header = json.loads(first)
    header["migrations"].append("0099_from_the_future")
    newer = json.dumps(header).encode() + b"\n" + rest
    _refused(target, newer, r"not migrated to: it lacks 0099_from_the_future")


@pytest.mark.parametrize("cut", [1, 4], ids=["no-trailer", "rows-missing"])
def test_import_refuses_a_truncated_file(
    exported: tuple[bytes, str], target: Database, cut: int
) -> None:
    data, _tenant_id = exported
    lines = data.splitlines(keepends=True)
    short = b"".join(lines[:-cut])
    _refused(target, short, r"truncated")


def test_import_refuses_an_altered_file(exported: tuple[bytes, str], target: Database) -> None:
    data, _tenant_id = exported
    altered = data.replace(b"alpha of acme", b"alpha of evil", 1)
    assert altered != data
    _refused(target, altered, r"do not match its trailer")


def test_import_refuses_a_row_of_another_tenant(
    exported: tuple[bytes, str], target: Database
) -> None:
    data, tenant_id = exported
    default = "default-tenant-000-0000-000000000000"

    def smuggle(rows: list[str]) -> list[str]:
        out = list(rows)
        i = next(i for i, r in enumerate(out) if r.startswith('["skills"'))
        out[i] = out[i].replace(tenant_id, default)
        return out

    _refused(target, _rewrite(data, smuggle), r"belong.? to another tenant")


def test_import_refuses_a_value_its_column_cannot_take(
    exported: tuple[bytes, str], target: Database
) -> None:
    data, _tenant_id = exported

    def garble(rows: list[str]) -> list[str]:
        out = list(rows)
        i = next(i for i, r in enumerate(out) if r.startswith('["users"'))
        row = json.loads(out[i])
        row[6] = "not a time"  # users.created_at
        out[i] = json.dumps(row) + "\n"
        return out

    _refused(target, _rewrite(data, garble), r"a row (holds a value|of users holds a value)")


def test_import_refuses_what_is_not_a_tenant_file(target: Database, tmp_path: Path) -> None:
    _refused(target, b"", r"empty")
    _refused(target, b'{"hello": 1}\n', r"not a relay-peewee-tenant file")
    with pytest.raises(RelayError, match="cannot read"):
        import_tenant(target, tmp_path / "missing.jsonl")


def test_export_refuses_an_unknown_slug(target: Database) -> None:
    with pytest.raises(RelayError, match="no tenant with slug 'nobody'"):
        export_tenant(target, "nobody", io.BytesIO())


# --- the audit log's times ------------------------------------------------------


def test_only_an_import_keeps_audit_times(
    relay_backend: str, relay_db: Database, owner: Database, two_tenants: TenantPair
) -> None:
    """Everyone else's events still get the database's clock (or are refused)."""
    a = two_tenants.a
    event = ("22222222-2222-4222-8222-222222222222", a.id, "x.y", OLD)
    if relay_backend == "sqlite":
        with pytest.raises(Exception, match="must be the current time"):
            owner.execute_sql(
                "INSERT INTO audit_logs (id, tenant_id, action, created_at) VALUES (?, ?, ?, ?)",
                (*event[:3], str(OLD)),
            )
        return
    with tenant_context(a):
        if relay_backend == "postgres_rls":
            # The application role may set the setting: it is not enough.
            relay_db.execute_sql("SELECT set_config('relay.import_audit_times', 'on', true)")
        relay_db.execute_sql(
            "INSERT INTO audit_logs (id, tenant_id, action, created_at) VALUES (%s, %s, %s, %s)",
            event,
        )
    (when,) = owner.execute_sql("SELECT created_at FROM audit_logs WHERE action = 'x.y'").fetchone()
    assert when.year == datetime.now(timezone.utc).year


def test_sqlite_import_puts_the_clock_trigger_back(
    blank: Callable[[str], str],
) -> None:
    source = _source(blank("sqlite"))
    data = _export(source)
    source.close()
    lite = open_database(blank("sqlite"))
    import_tenant(lite, io.BytesIO(data))
    (count,) = lite.execute_sql(
        "SELECT count(*) FROM sqlite_master WHERE name = 'audit_logs_created_at'"
    ).fetchone()
    assert count == 1
    lite.close()


# --- the application's tables ------------------------------------------------------


class Note(TenantModel):
    """An application table with a serial id: the import must move its sequence."""

    id = AutoField()
    body = TextField()

    class Meta:
        table_name = "test_notes"


@pytest.fixture
def invoicing(monkeypatch: pytest.MonkeyPatch) -> list[type]:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.chdir(EXAMPLE)
    return load_models(["invoicing.models"])


def test_application_tables_travel_too(
    backend: str, blank: Callable[[str], str], invoicing: list[type]
) -> None:
    models = [*invoicing, Note]
    urls = (blank(backend), blank("sqlite"))
    dbs = []
    for url in urls:
        db = relay_peewee.connect(url)
        migrate(db, migrations=["invoicing.migrations"])
        db.create_tables([Note])
        dbs.append(db)
    source, lite = dbs
    relay_peewee.connect(urls[0])
    Customer, Invoice, Payment = invoicing
    tenant = create_tenant(source, "shop", "Shop")
    with tenant_context(tenant):
        customer = Customer.create(name="Zoë", email="zoe@example.com")
        invoice = Invoice.create(number="INV-1", customer=customer, total=100)
        Payment.create(invoice=invoice, amount=40)
        Note.create(body="first")
        Note.create(body=TEXT)
    before = tenant_fingerprints(source, "shop", models=models)
    data = _export(source, "shop", models=models)
    assert b'"invoices"' in data and b'"test_notes"' in data

    # Without the application's tables the target refuses, changing nothing.
    bare = open_database(blank("sqlite"))
    _refused(bare, data, r"not migrated to: it lacks invoicing.migrations:0001_baseline")
    bare.close()

    import_tenant(lite, io.BytesIO(data))
    assert tenant_fingerprints(lite, "shop", models=models) == before
    if backend == "postgres":
        # Back to PostgreSQL, past the ids it holds: the sequence moved.
        again = open_database(blank("postgres"))
        migrate(again, migrations=["invoicing.migrations"])
        with again.bind_ctx([Note]):
            again.create_tables([Note])
        import_tenant(again, io.BytesIO(_export(lite, "shop", models=models)))
        assert tenant_fingerprints(again, "shop", models=models) == before
        (new_id,) = again.execute_sql(
            "INSERT INTO test_notes (body, tenant_id) SELECT 'next', id FROM tenants"
            " WHERE slug = 'shop' RETURNING id"
        ).fetchone()
        assert new_id == 3  # not 1: the imported rows hold 1 and 2
        again.close()
    for db in dbs:
        db.close()


# --- the CLI ------------------------------------------------------------------------


def test_cli_exports_and_imports(blank: Callable[[str], str], tmp_path: Path) -> None:
    source_url = blank("sqlite")
    _source(source_url).close()
    runner = CliRunner()
    out = tmp_path / "acme.jsonl"
    result = runner.invoke(
        cli, ["tenants", "export", "--slug", "acme", "--output", str(out), "--database", source_url]
    )
    assert result.exit_code == 0, result.output
    assert "exported tenant acme:" in result.stderr
    to_stdout = runner.invoke(
        cli, ["tenants", "export", "--slug", "acme", "-q", "--database", source_url]
    )
    assert to_stdout.exit_code == 0
    assert to_stdout.stdout_bytes.splitlines()[1:-1] == out.read_bytes().splitlines()[1:-1]

    target_url = blank("sqlite")
    done = runner.invoke(cli, ["tenants", "import", str(out), "-q", "--database", target_url])
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("imported tenant acme (")
    again = runner.invoke(
        cli, ["tenants", "import", "-", "--database", target_url], input=out.read_bytes()
    )
    assert again.exit_code == 1
    assert again.stderr.strip().count("\n") == 0 and "a tenant with id" in again.stderr

    missing = tmp_path / "none" / "x.jsonl"
    bad = runner.invoke(
        cli,
        [
            "tenants",
            "export",
            "--slug",
            "nobody",
            "--output",
            str(tmp_path / "x.jsonl"),
            "--database",
            source_url,
        ],
    )
    assert bad.exit_code == 1 and "no tenant with slug 'nobody'" in bad.stderr
    assert not (tmp_path / "x.jsonl").exists() and not (tmp_path / "x.jsonl.partial").exists()
    nowhere = runner.invoke(
        cli,
        ["tenants", "export", "--slug", "acme", "--output", str(missing), "--database", source_url],
    )
    assert nowhere.exit_code == 1 and "no such folder" in nowhere.stderr


def test_export_refuses_a_sqlite_timestamp_it_cannot_read(blank: Callable[[str], str]) -> None:
    source = _source(blank("sqlite"))
    source.execute_sql("UPDATE users SET created_at = 'yesterday' WHERE email LIKE 'ann@%'")
    with pytest.raises(RelayError, match=r"cannot export users.created_at = 'yesterday'"):
        _export(source)
    source.close()
