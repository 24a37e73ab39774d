"""The ``relay-peewee`` command line: thin click wrappers over ``commands``.

User errors (``RelayError``, a database that refuses a statement) become a
one-line ``click.ClickException`` and exit code 1; ``status`` exits 1 while
migrations are pending so it can gate a deploy. Usage errors (an unknown
option or command, a missing or invalid value) are one line too, with their
own exit code: ``EXIT_CODES`` is the table, printed in ``--help``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sqlite3
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from typing import Any, TypeVar
from urllib.parse import quote

import click
from peewee import Database, DatabaseError, InterfaceError

from . import __version__
from .audit import audit_schema, report
from .config import AppConfig, load_models, read_config
from .database import (
    ADMIN_URL_ENV,
    DEFAULT_URL,
    is_postgres,
    open_database,
    set_admin_database,
    sqlite_path,
)
from .errors import AdminConnectionRequired, RelayError
from .migrator import MigrationStatus
from .migrator.online import MAX_LOCK_TIMEOUT, MIN_LOCK_TIMEOUT
from .migrator.runner import BASELINE
from .operations import commands, tenant_erase, tenant_states
from .operations.distribute import distribute as distribute_database
from .operations.distribute import distribute_plan
from .operations.roles import create_roles, role_statements

__all__ = ["cli", "main"]

F = TypeVar("F", bound=Callable[..., Any])

# One code per answer a script may act on. Usage errors do not take click's
# 2: that is audit's "could not look", which a deploy gate must tell apart
# from a mistyped option. 64 is EX_USAGE from sysexits.h.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_UNREADABLE = 2
EXIT_USAGE = 64
EXIT_INTERRUPTED = 130
EXIT_CODES = [
    (EXIT_OK, "done; status, audit and makemigration --check found nothing"),
    (
        EXIT_ERROR,
        "refused, nothing changed (one Error: line); status: migrations pending or "
        "unknown; audit: errors found; makemigration --check: models and database differ",
    ),
    (EXIT_UNREADABLE, "audit only: the database could not be read"),
    (EXIT_USAGE, "usage error: unknown command or option, missing or invalid value"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
]


class LockTimeout(click.FloatRange):
    """Seconds for --lock-timeout: a finite number PostgreSQL's setting can hold.

    FloatRange alone lets NaN through (every comparison with it is false)."""

    def __init__(self) -> None:
        super().__init__(min=MIN_LOCK_TIMEOUT, max=MAX_LOCK_TIMEOUT)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        seconds = super().convert(value, param, ctx)
        if math.isnan(seconds):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        return seconds


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def _database(url: str | None, *, must_exist: bool = True) -> Iterator[Database]:
    db = open_database(url, must_exist=must_exist)
    try:
        yield db
    finally:
        db.close()


@contextmanager
def _admin_database(db: Database, url: str | None) -> Iterator[None]:
    """Give ``db`` the admin database ``unscoped()`` switches to, as connect() does."""
    if not url:
        yield
        return
    admin = open_database(url)  # checked now: a bad URL is refused before any work
    admin.close()
    set_admin_database(db, admin)
    try:
        yield
    finally:
        set_admin_database(db, None)
        admin.close()


def _user_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RelayError as exc:
            raise click.ClickException(_one_line(exc)) from None
        except (DatabaseError, InterfaceError) as exc:
            raise click.ClickException(f"database error: {_one_line(exc)}") from None

    return wrapper  # type: ignore[return-value]


database_option = click.option(
    "--database",
    "database",
    metavar="URL",
    envvar="DATABASE_URL",
    default=None,
    help=f"Database URL (sqlite:///path.db, postgresql://user@host:port/db). "
    f"Default: $DATABASE_URL, else {DEFAULT_URL}.",
)


def tenant_models_option(what: str) -> Callable[[F], F]:
    """--models for a command that carries the app's TenantModels along ("what" they do)."""
    return click.option(
        "--models",
        "models",
        multiple=True,
        metavar="MODULE",
        help=f"A module of the application's models, whose TenantModels {what} "
        "(repeatable). Default: `models` in [tool.relay_peewee] of pyproject.toml.",
    )


def app_options(fn: F) -> F:
    """--migrations, --models and --[no-]relay-schema, defaulting to
    [tool.relay_peewee] in pyproject.toml."""
    fn = click.option(
        "--relay-schema/--no-relay-schema",
        "relay_schema",
        default=None,
        help="Relay's schema (its nine tables), or the tenancy core alone for an application "
        "that is not Relay. Default: `relay_schema` in [tool.relay_peewee], else Relay's.",
    )(fn)
    fn = click.option(
        "--models",
        "models",
        multiple=True,
        metavar="MODULE",
        help="A module of the application's models (repeatable; importable from the current "
        "folder). Default: `models` in [tool.relay_peewee] of pyproject.toml.",
    )(fn)
    return click.option(
        "--migrations",
        "migrations",
        multiple=True,
        metavar="PKG",
        help="A package of the application's numbered migrations, run after Relay's "
        "(repeatable). Default: `migrations` in [tool.relay_peewee] of pyproject.toml.",
    )(fn)


def _app(
    migrations: tuple[str, ...], models: tuple[str, ...], relay_schema: bool | None = None
) -> AppConfig:
    """The options given, else the pyproject.toml defaults, one key at a time."""
    config = read_config()
    return AppConfig(
        migrations or config.migrations,
        models or config.models,
        config.source,
        config.relay_schema if relay_schema is None else relay_schema,
    )


class UsageError(click.ClickException):
    """A usage error as one line, ``Error: ... (see `CMD --help`)``, exit 64."""

    exit_code = EXIT_USAGE

    def __init__(self, error: click.UsageError) -> None:
        message = " ".join(error.format_message().split())
        if error.ctx is not None:
            message = f"{message.rstrip('.')} (see `{error.ctx.command_path} --help`)"
        super().__init__(message)


class _NoCommand(click.ClickException):
    """A group named without a command: its help, as click shows it, but exit 64."""

    exit_code = EXIT_USAGE

    def __init__(self, error: click.exceptions.NoArgsIsHelpError) -> None:
        super().__init__(error.format_message())
        self.error = error

    def show(self, file: Any = None) -> None:
        self.error.show(file)


@contextmanager
def _usage_errors() -> Iterator[None]:
    try:
        yield
    except click.exceptions.NoArgsIsHelpError as exc:
        raise _NoCommand(exc) from None
    except click.UsageError as exc:
        raise UsageError(exc) from None


class RelayCli(click.Group):
    """The root group: every usage error below it leaves as ``UsageError``.

    Parsing happens in the root's ``make_context`` and, for each command
    under it, inside the root's ``invoke``; wrapping both catches them all.
    """

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        with _usage_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with _usage_errors():
            return super().invoke(ctx)


def _exit_code_epilog() -> str:
    # \b keeps click from re-wrapping the table into one paragraph.
    rows = [
        f"  {code:<4} " + "\n       ".join(textwrap.wrap(meaning, 70))
        for code, meaning in EXIT_CODES
    ]
    return "\b\nExit codes:\n" + "\n".join(rows)


def _examples(*lines: str) -> str:
    """An epilog of example command lines, kept as written (\\b: no re-wrapping)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


# -h too, as most tools take it; inherited by every command below.
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


@click.group(cls=RelayCli, epilog=_exit_code_epilog(), context_settings=CONTEXT_SETTINGS)
@click.version_option(version=__version__, prog_name="relay-peewee")
def cli() -> None:
    """Multi-tenancy for Relay's Peewee database: migrate, inspect, manage tenants."""


@cli.command(
    epilog=_examples(
        "relay-peewee migrate --database sqlite:///relay.db",
        "relay-peewee migrate --sql --to 3   # print what the first three would run",
        "relay-peewee migrate --online --lock-timeout 2 --database postgresql://...",
    )
)
@database_option
@click.option("--to", "target", metavar="NAME", help="Stop after this migration (name or number).")
@click.option(
    "--sql", "show_sql", is_flag=True, help="Print the SQL that would run; change nothing."
)
@click.option(
    "--online",
    is_flag=True,
    help="PostgreSQL with live traffic: short lock-bounded steps, concurrent index builds.",
)
@click.option(
    "--lock-timeout",
    type=LockTimeout(),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="With --online: how long one step may wait for a table lock before it retries.",
)
@click.option(
    "--no-wait", is_flag=True, help="Fail at once if another migrate holds the migration lock."
)
@click.option(
    "--fake",
    is_flag=True,
    help="With --to: record the migrations through NAME as applied without running them "
    "(their change was made by hand). `audit` still checks the schema.",
)
@click.option("-q", "--quiet", is_flag=True, help="Do not print progress.")
@app_options
@_user_errors
def migrate(
    database: str | None,
    target: str | None,
    show_sql: bool,
    online: bool,
    lock_timeout: float,
    no_wait: bool,
    fake: bool,
    quiet: bool,
    migrations: tuple[str, ...],
    models: tuple[str, ...],
    relay_schema: bool | None,
) -> None:
    """Apply pending migrations (all of them, or up to --to): Relay's, then the application's."""
    app = _app(migrations, models, relay_schema)
    packages, relay = app.migrations, app.relay_schema
    if fake and show_sql:
        raise click.UsageError("--fake and --sql do not go together: --fake runs no SQL")
    if show_sql:
        path = sqlite_path(database)
        if path is not None and not os.path.exists(path):
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                raise click.ClickException(f"cannot create {path}: no such folder {folder}")
            # Plan against the empty database migrate would create, without
            # leaving an empty file behind.
            database = "sqlite:///:memory:"
        with _database(database, must_exist=False) as db:
            plan = commands.migration_sql(
                db,
                target,
                online=online,
                lock_timeout=lock_timeout,
                migrations=packages,
                relay_schema=relay,
            )
            for statement in plan or ["-- nothing to do."]:
                click.echo(statement)
        return
    with _no_file_left_behind(database), _database(database, must_exist=False) as db:
        progress = None if quiet else (lambda label: click.echo(f"  {label}", err=True))
        before = commands.applied_migrations(db, packages, relay_schema=relay)
        legacy = commands.is_legacy(db, relay)
        try:
            result = commands.migrate(
                db,
                target,
                progress,
                online=online,
                lock_timeout=lock_timeout,
                wait=not no_wait,
                migrations=packages,
                fake=fake,
                relay_schema=relay,
            )
        except KeyboardInterrupt:
            db.close()
            _interrupted(database, before, packages, legacy=legacy, relay_schema=relay)
    if result.adopted_legacy:
        click.echo(ADOPTED_LEGACY)
    for name in result.applied:
        click.echo(f"recorded as applied, not run: {name}" if fake else f"applied: {name}")
    if not result.applied:
        click.echo("nothing to do.")


@contextmanager
def _no_file_left_behind(url: str | None) -> Iterator[None]:
    """A migrate that fails on a SQLite file it created removes the file again.

    Opening the database creates it; a refusal that comes later (an unknown
    --to, --online on SQLite) must not leave an empty relay.db behind. On
    SQLite a failed migrate rolls back as one transaction, so a file this
    run created holds no schema then; one that does is left alone.
    """
    path = sqlite_path(url)
    created = path is not None and not os.path.exists(path)
    try:
        yield
    except BaseException:
        if created and path is not None:
            _remove_if_schemaless(path)
        raise


def _remove_if_schemaless(path: str) -> None:
    try:
        with closing(sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True)) as conn:
            if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                return
    except sqlite3.Error:
        return  # not ours to judge: leave it
    for leftover in (path, f"{path}-journal", f"{path}-wal", f"{path}-shm"):
        with suppress(FileNotFoundError):
            os.remove(leftover)


ADOPTED_LEGACY = f"recognised a legacy Relay database: recorded {BASELINE} as applied"


def _interrupted(
    database: str | None,
    before: list[str],
    packages: Sequence[str] = (),
    *,
    legacy: bool = False,
    relay_schema: bool = True,
) -> None:
    """Ctrl-C during migrate: say what is applied now and what is not; exit 130.

    Each migration commits on its own on PostgreSQL (SQLite runs them all as
    one transaction, rolled back), so some may have landed before the signal.
    """
    try:
        with _database(database) as db:
            rows = commands.status(db, packages, relay_schema=relay_schema)
    except (RelayError, DatabaseError, InterfaceError) as exc:
        click.echo(f"interrupted; cannot tell what was applied: {_one_line(exc)}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    for row in rows:
        if row.applied is not None and row.name not in before:
            # A legacy database's baseline was recorded, not run: say so,
            # as an uninterrupted migrate does.
            adopted = legacy and row.name == BASELINE
            click.echo(ADOPTED_LEGACY if adopted else f"applied: {row.name}")
    pending = [r.name for r in rows if r.applied is None]
    rest = f"not applied: {', '.join(pending)}" if pending else "every migration is applied"
    click.echo(f"interrupted: {rest}; run `relay-peewee migrate` to continue", err=True)
    sys.exit(EXIT_INTERRUPTED)


@cli.command(
    epilog=_examples(
        "relay-peewee status && ./deploy.sh   # status exits 1 while anything is pending",
        "relay-peewee status --json",
    )
)
@database_option
@click.option(
    "--json", "as_json", is_flag=True, help="Print every migration and the counts as JSON."
)
@app_options
@_user_errors
def status(
    database: str | None,
    as_json: bool,
    migrations: tuple[str, ...],
    models: tuple[str, ...],
    relay_schema: bool | None,
) -> None:
    """List applied and pending migrations; exit 1 while any is pending or unknown."""
    app = _app(migrations, models, relay_schema)
    with _database(database) as db:
        rows = commands.status(db, app.migrations, relay_schema=app.relay_schema)
    if as_json:
        _status_json(rows)
        return
    for row in rows:
        if row.applied is None:
            click.echo(f"[ ] {row.name}")
        else:
            mark = "x" if row.known else "?"
            note = "" if row.known else "  (unknown to this version of relay_peewee)"
            click.echo(f"[{mark}] {row.name}  {row.applied:%Y-%m-%d %H:%M:%S}{note}")
    pending = [r.name for r in rows if r.applied is None]
    unknown = [r.name for r in rows if not r.known]
    if unknown:
        # A newer release migrated this database; `migrate` refuses, so a
        # deploy gate must not pass either.
        click.echo(f"{len(unknown)} unknown: upgrade relay_peewee", err=True)
    if pending:
        click.echo(f"{len(pending)} pending: run `relay-peewee migrate`", err=True)
    if pending or unknown:
        sys.exit(EXIT_ERROR)


def _status_json(rows: Sequence[MigrationStatus]) -> None:
    """``status --json``: the rows and the counts; the exit code as without it."""
    pending = sum(r.applied is None for r in rows)
    unknown = sum(not r.known for r in rows)
    out = {
        "migrations": [
            {
                "name": r.name,
                "applied": None if r.applied is None else r.applied.isoformat(sep=" "),
                "known": r.known,
            }
            for r in rows
        ],
        "pending": pending,
        "unknown": unknown,
    }
    click.echo(json.dumps(out, indent=2, ensure_ascii=False))
    if pending or unknown:
        sys.exit(EXIT_ERROR)


@cli.command()
@database_option
@click.option("--to", "target", metavar="NAME", help="Undo every migration back through this one.")
@click.option(
    "--no-wait", is_flag=True, help="Fail at once if another migrate holds the migration lock."
)
@click.option("-q", "--quiet", is_flag=True, help="Do not print progress.")
@app_options
@_user_errors
def rollback(
    database: str | None,
    target: str | None,
    no_wait: bool,
    quiet: bool,
    migrations: tuple[str, ...],
    models: tuple[str, ...],
    relay_schema: bool | None,
) -> None:
    """Undo the last migration (or back through --to), the application's included."""
    app = _app(migrations, models, relay_schema)
    progress = None if quiet else (lambda label: click.echo(f"  {label}", err=True))
    with _database(database) as db:
        names = commands.rollback(
            db,
            target,
            progress=progress,
            wait=not no_wait,
            migrations=app.migrations,
            relay_schema=app.relay_schema,
        )
    for name in names:
        click.echo(f"reverted: {name}")
    if not names:
        click.echo("nothing to do.")


@cli.command()
@database_option
@click.argument("name", required=False, default="")
@click.option(
    "--check", is_flag=True, help="Write nothing; exit 1 if the models and the database differ."
)
@click.option(
    "--empty",
    is_flag=True,
    help="Write an empty migration to fill in by hand (reads neither models nor database).",
)
@app_options
@_user_errors
def makemigration(
    database: str | None,
    name: str,
    check: bool,
    empty: bool,
    migrations: tuple[str, ...],
    models: tuple[str, ...],
    relay_schema: bool | None,
) -> None:
    """Write the application's next migration (into the last --migrations package).

    It holds what makes the database match the --models: tenantize for
    TenantModels whose tables lack tenant_id, new tenant tables, and the
    rest of playhouse's schema diff.
    """
    from .operations.makemigration import (
        check_name,
        draft_migration,
        empty_draft,
        write_migration,
    )

    app = _app(migrations, models, relay_schema)
    if empty:
        if check:
            raise click.ClickException("--empty writes a migration; --check writes none")
        if not app.migrations:
            raise click.ClickException("name the package to write into: --migrations PKG")
        if not name:
            raise click.ClickException("name the migration: relay-peewee makemigration NAME")
        click.echo(f"wrote {write_migration(empty_draft(), name, app.migrations[-1])}")
        return
    if name and not check:
        check_name(name)  # before the database is read, not after
    if not app.models:
        raise click.ClickException("name the application's models: --models MODULE")
    app_models = load_models(app.models)
    with _database(database) as db:
        draft = draft_migration(db, app_models, relay_schema=app.relay_schema)
    if check:
        for line in draft.describe():
            click.echo(line)
        if draft:
            sys.exit(EXIT_ERROR)
        click.echo("models and database agree.")
        return
    if not app.migrations:
        raise click.ClickException("name the package to write into: --migrations PKG")
    if not name:
        raise click.ClickException("name the migration: relay-peewee makemigration NAME")
    if not draft:
        click.echo("nothing to do.")
        return
    # The last package named is the newest: earlier ones are already released.
    click.echo(f"wrote {write_migration(draft, name, app.migrations[-1])}")


@cli.group()
def tenants() -> None:
    """Create, list, export, import, deactivate, activate and erase tenants."""


@tenants.command(
    "create",
    epilog=_examples(
        "relay-peewee tenants create --slug acme --name 'Acme Inc.' --domain acme.example"
    ),
)
@database_option
@click.option(
    "--slug", required=True, help="Unique short name: lower-case letters, digits, dashes."
)
@click.option("--name", required=True, help="Display name.")
@click.option("--domain", default=None, help="The tenant's own domain, if any.")
@_user_errors
def tenants_create(database: str | None, slug: str, name: str, domain: str | None) -> None:
    """Create a tenant and print its id."""
    with _database(database) as db:
        tenant = commands.create_tenant(db, slug, name, domain)
    click.echo(f"created tenant {tenant.slug}: {tenant.id}")


admin_database_option = click.option(
    "--admin-database",
    "admin_url",
    metavar="URL",
    envvar=ADMIN_URL_ENV,
    default=None,
    help="PostgreSQL, when --database is the application role: the database as a BYPASSRLS "
    f"role (relay_admin), which the command runs on. Default: ${ADMIN_URL_ENV}.",
)


@contextmanager
def _sees_every_tenant(command: str) -> Iterator[None]:
    """AdminConnectionRequired as the one line that names the fix."""
    try:
        yield
    except AdminConnectionRequired as exc:
        raise click.ClickException(
            f"{command} must see every tenant, and this role cannot: {exc.reason}; pass "
            f"--admin-database URL (or set ${ADMIN_URL_ENV}) naming a BYPASSRLS role such "
            "as relay_admin (see `relay-peewee roles`), or connect as one"
        ) from None


def _progress(quiet: bool) -> Callable[[str], None] | None:
    return None if quiet else (lambda label: click.echo(f"  {label}", err=True))


@tenants.command(
    "export",
    epilog=_examples(
        "relay-peewee tenants export --slug acme --output acme.jsonl",
        "relay-peewee tenants export --slug acme | gzip > acme.jsonl.gz",
    ),
)
@database_option
@click.option("--slug", required=True, help="The tenant to export.")
@click.option(
    "--output",
    default="-",
    metavar="FILE",
    show_default=True,
    help="The file to write; - is stdout.",
)
@admin_database_option
@tenant_models_option("are exported too")
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Connections reading tables at once, all in one snapshot; tables not yet due "
    "in the file wait in spool files in the temporary folder (at most about the file's "
    "size); on SQLite the other readers are processes. 1 reads them one by one. "
    "Default: 2.",
)
@click.option("-q", "--quiet", is_flag=True, help="Do not print progress.")
@_user_errors
def tenants_export(
    database: str | None,
    slug: str,
    output: str,
    admin_url: str | None,
    models: tuple[str, ...],
    jobs: int | None,
    quiet: bool,
) -> None:
    """Write a tenant's rows (Relay's tables, the app's, its audit events) as a tenant file."""
    from .operations.tenant_export import export_tenant

    app_models = load_models(_app((), models).models)
    with (
        _database(database) as db,
        _admin_database(db, admin_url),
        _sees_every_tenant("tenants export"),
        _output(output) as out,
    ):
        done = export_tenant(db, slug, out, models=app_models, progress=_progress(quiet), jobs=jobs)
    where = "stdout" if output == "-" else output
    rows = sum(done.rows.values())
    click.echo(
        f"exported tenant {slug}: {rows} rows in {len(done.rows)} tables to {where}", err=True
    )


@contextmanager
def _output(path: str) -> Iterator[Any]:
    """stdout, or ``path`` written whole or not at all (a temporary file renamed at the end)."""
    if path == "-":
        yield sys.stdout.buffer
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise click.ClickException(f"cannot write {path}: no such folder {folder}")
    partial = f"{path}.partial"
    try:
        with open(partial, "wb") as out:
            yield out
        os.replace(partial, path)
    finally:
        with suppress(FileNotFoundError):
            os.remove(partial)


@tenants.command(
    "import",
    epilog=_examples(
        "relay-peewee tenants import acme.jsonl --database postgresql://root@db/relay",
        "gunzip -c acme.jsonl.gz | relay-peewee tenants import - --database sqlite:///relay.db",
    ),
)
@click.argument("file", metavar="FILE")
@database_option
@admin_database_option
@click.option("-q", "--quiet", is_flag=True, help="Do not print progress.")
@_user_errors
def tenants_import(file: str, database: str | None, admin_url: str | None, quiet: bool) -> None:
    """Import a tenant file (- is stdin) in one transaction: all of it, or nothing."""
    from .operations.tenant_import import import_tenant

    source: Any = sys.stdin.buffer if file == "-" else file
    with (
        _database(database) as db,
        _admin_database(db, admin_url),
        _sees_every_tenant("tenants import"),
    ):
        done = import_tenant(db, source, progress=_progress(quiet))
    rows = sum(done.rows.values())
    click.echo(
        f"imported tenant {done.slug} ({done.tenant_id}): {rows} rows from {done.source_backend}"
    )


def _set_active(database: str | None, admin_url: str | None, slug: str, active: bool) -> None:
    command = f"tenants {'activate' if active else 'deactivate'}"
    change_state = tenant_states.activate_tenant if active else tenant_states.deactivate_tenant
    with (
        _database(database) as db,
        _admin_database(db, admin_url),
        _sees_every_tenant(command),
    ):
        change = change_state(db, slug)
    state = "active" if active else "inactive"
    if change.changed:
        click.echo(f"tenant {change.slug} ({change.tenant_id}) is now {state}")
    else:
        click.echo(f"tenant {change.slug} ({change.tenant_id}) was already {state}")


@tenants.command(
    "deactivate",
    epilog=_examples("relay-peewee tenants deactivate --slug acme"),
)
@database_option
@click.option("--slug", required=True, help="The tenant's slug.")
@admin_database_option
@_user_errors
def tenants_deactivate(database: str | None, slug: str, admin_url: str | None) -> None:
    """Refuse the tenant's new requests and contexts (audited: tenant.deactivate).

    Requests already running finish; other processes refuse it within 2
    seconds. Deactivating an inactive tenant changes nothing.
    """
    _set_active(database, admin_url, slug, False)


@tenants.command(
    "activate",
    epilog=_examples("relay-peewee tenants activate --slug acme"),
)
@database_option
@click.option("--slug", required=True, help="The tenant's slug.")
@admin_database_option
@_user_errors
def tenants_activate(database: str | None, slug: str, admin_url: str | None) -> None:
    """Let a deactivated tenant in again (audited: tenant.activate)."""
    _set_active(database, admin_url, slug, True)


@tenants.command(
    "erase",
    epilog=_examples(
        "relay-peewee tenants deactivate --slug acme",
        "relay-peewee tenants erase --slug acme --yes",
        "relay-peewee tenants erase --slug big --yes --batch-size 10000   # resumable",
    ),
)
@database_option
@click.option("--slug", required=True, help="The tenant's slug (deactivated first).")
@click.option("--yes", is_flag=True, help="Confirm: every row of the tenant is deleted for good.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Delete in transactions of at most N rows each, resumable after a crash "
    "(default: one transaction).",
)
@click.option("-q", "--quiet", is_flag=True, help="Do not print progress.")
@admin_database_option
@_user_errors
def tenants_erase(
    database: str | None,
    slug: str,
    yes: bool,
    batch_size: int | None,
    quiet: bool,
    admin_url: str | None,
) -> None:
    """Delete every row of a deactivated tenant, keeping a tombstone (audited: tenant.erase).

    The tenants row stays, inactive, as slug erased:<id> (the slug is free
    again); the audit log keeps its events. Refused for the default tenant
    and an active one.
    """
    if not yes:
        raise click.ClickException(
            f"tenants erase deletes every row of tenant {slug!r} for good: "
            "pass --yes to confirm (nothing was changed)"
        )

    def progress(message: str) -> None:
        if not quiet:
            click.echo(message, err=True)

    with (
        _database(database) as db,
        _admin_database(db, admin_url),
        _sees_every_tenant("tenants erase"),
    ):
        erasure = tenant_erase.erase_tenant(db, slug, batch_size=batch_size, progress=progress)
    counts = ", ".join(f"{n} {table}" for table, n in erasure.deleted.items() if n)
    click.echo(f"erased tenant {slug} ({erasure.tenant_id}): {counts or 'no rows'}")


@tenants.command(
    "move",
    epilog=_examples(
        "relay-peewee tenants move --slug big --to postgresql://root@db2/relay",
        "relay-peewee tenants move --slug acme --database postgresql://root@db/relay "
        "--to sqlite:///acme.db",
    ),
)
@database_option
@click.option("--slug", required=True, help="The tenant to move.")
@click.option(
    "--to", "target_url", required=True, metavar="URL", help="The migrated database to move it to."
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    metavar="N",
    help="Rows per transaction of the erase at the source.",
)
@admin_database_option
@tenant_models_option("move too")
@click.option("-q", "--quiet", is_flag=True, help="Do not print progress.")
@_user_errors
def tenants_move(
    database: str | None,
    slug: str,
    target_url: str,
    batch_size: int,
    admin_url: str | None,
    models: tuple[str, ...],
    quiet: bool,
) -> None:
    """Move a tenant to another database: deactivate, export, import, verify, erase, activate.

    Resumable: after a crash at any step the same command completes the
    move. The tenant is never active in both databases.
    """
    from .operations.tenant_move import move_tenant

    app_models = load_models(_app((), models).models)
    with (
        _database(database) as db,
        _admin_database(db, admin_url),
        _database(target_url) as target,
        _sees_every_tenant("tenants move"),
    ):
        moved = move_tenant(
            db, slug, target, models=app_models, batch_size=batch_size, progress=_progress(quiet)
        )
    again = " (resumed)" if moved.resumed else ""
    click.echo(f"moved tenant {slug} ({moved.tenant_id}) to {moved.target}{again}")


@cli.group()
def users() -> None:
    """Move users between tenants."""


@users.command(
    "move",
    epilog=_examples(
        "relay-peewee users move --email ada@acme.example --to acme",
        "RELAY_ADMIN_DATABASE_URL=postgresql://relay_admin@db/relay \\",
        "  relay-peewee users move --database postgresql://relay_app@db/relay "
        "--email ada@x --to acme",
    ),
)
@database_option
@click.option("--email", required=True, help="The user's email (unique across tenants).")
@click.option("--to", "to_slug", required=True, metavar="SLUG", help="The target tenant's slug.")
@click.option(
    "--admin-database",
    "admin_url",
    metavar="URL",
    envvar=ADMIN_URL_ENV,
    default=None,
    help="PostgreSQL, when --database is the application role: the database as a BYPASSRLS "
    f"role (relay_admin), which the move runs on. Default: ${ADMIN_URL_ENV}.",
)
@_user_errors
def users_move(database: str | None, email: str, to_slug: str, admin_url: str | None) -> None:
    """Move a user, with their api keys, into another tenant (audited: user.move)."""
    with _database(database) as db, _admin_database(db, admin_url):
        try:
            move = commands.move_user(db, email, to_slug)
        except AdminConnectionRequired as exc:
            raise click.ClickException(
                f"users move must see every tenant, and this role cannot: {exc.reason}; pass "
                f"--admin-database URL (or set ${ADMIN_URL_ENV}) naming a BYPASSRLS role such "
                "as relay_admin (see `relay-peewee roles`), or connect as one"
            ) from None
    along = ", ".join(f"{n} {table}" for table, n in move.moved.items())
    click.echo(f"moved {move.email} to {to_slug} ({move.to_tenant}); moved along: {along}")


@tenants.command("list")
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print the tenants as a JSON list.")
@_user_errors
def tenants_list(database: str | None, as_json: bool) -> None:
    """List tenants: id, slug, name, domain, active."""
    with _database(database) as db:
        rows = [
            {
                "id": t.id,
                "slug": t.slug,
                "name": t.name,
                "domain": t.domain,
                "active": bool(t.is_active),
            }
            for t in commands.list_tenants(db)
        ]
    if as_json:
        # Names are the user's own text: shown as written, not as \u escapes.
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    table: list[list[str]] = [["ID", "SLUG", "NAME", "DOMAIN", "ACTIVE"]]
    table += [
        [
            _cell(r["id"], limit=SLUG_MAX),
            _cell(r["slug"], limit=SLUG_MAX),
            _cell(r["name"]),
            _cell(r["domain"] or "-"),
            "yes" if r["active"] else "no",
        ]
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        cells = [f"{cell:<{w}}" for cell, w in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[4]]))


# The longest slug tenants create accepts: a valid slug (or a uuid id) is
# never cut, since a user copies it into the next command (users move --to).
SLUG_MAX = 64


def _cell(value: object, limit: int = 60) -> str:
    """One table cell on one line: control characters escaped, long text cut.

    Rows written by other code than ``tenants create`` may hold anything;
    the cut keeps a row of such text readable (``--json`` has it all)."""
    text = str(value)
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."


@cli.command()
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print the findings and a summary as JSON.")
@click.option(
    "--citus", is_flag=True, help="Also check the rules for distributing by tenant_id on Citus."
)
@click.option("--strict", is_flag=True, help="Count warnings (e.g. the Citus rules) as errors.")
@click.option(
    "--app-role",
    default=None,
    help="PostgreSQL: the role the application connects as (default: relay_app, if it exists).",
)
@click.option(
    "--admin-role",
    default="relay_admin",
    show_default=True,
    help="PostgreSQL: the BYPASSRLS role unscoped() uses.",
)
@app_options
def audit(
    database: str | None,
    as_json: bool,
    citus: bool,
    strict: bool,
    app_role: str | None,
    admin_role: str,
    migrations: tuple[str, ...],
    models: tuple[str, ...],
    relay_schema: bool | None,
) -> None:
    """Check that the live database isolates tenants: exit 1 on errors, 2 if unreadable."""
    try:
        app = _app(migrations, models, relay_schema)
        app_models = load_models(app.models)
        with _database(database) as db:
            findings = audit_schema(
                db,
                app_models,
                citus=citus,
                strict=strict,
                app_role=app_role,
                admin_role=admin_role,
                migrations=app.migrations,
                relay_schema=app.relay_schema,
            )
    except (RelayError, DatabaseError, InterfaceError) as exc:
        # Exit 2, not the usual 1: a gate must tell "could not look" from "found errors".
        click.echo(f"Error: cannot audit the database: {_one_line(exc)}", err=True)
        sys.exit(EXIT_UNREADABLE)
    click.echo(report(findings, as_json=as_json))
    if any(f.severity == "error" for f in findings):
        sys.exit(EXIT_ERROR)


@cli.command()
@database_option
@click.option("--app-role", default="relay_app", show_default=True, help="Role the app logs in as.")
@click.option("--admin-role", default="relay_admin", show_default=True, help="The BYPASSRLS role.")
@click.option(
    "--allow-set-role",
    is_flag=True,
    help="Opt in: grant the admin role to the app role, so unscoped() can SET ROLE to it "
    "(and so can any SQL the app sends). Default: unscoped() uses its own admin connection.",
)
@click.option("--no-unscoped", is_flag=True, hidden=True, help="The default now; ignored.")
@click.option(
    "--apply", is_flag=True, help="Run the SQL (needs a superuser) instead of printing it."
)
@app_options
@_user_errors
def roles(
    database: str | None,
    app_role: str,
    admin_role: str,
    allow_set_role: bool,
    no_unscoped: bool,
    apply: bool,
    migrations: tuple[str, ...],
    models: tuple[str, ...],
    relay_schema: bool | None,
) -> None:
    """PostgreSQL: print (or --apply) the SQL creating the app and admin roles for RLS.

    The grants cover Relay's tables (unless relay_schema is false) and those of
    the application's --models.
    """
    app = _app(migrations, models, relay_schema)
    app_models = load_models(app.models)
    if not apply:
        for statement in role_statements(
            app_role,
            admin_role,
            allow_set_role=allow_set_role,
            models=app_models,
            relay_schema=app.relay_schema,
        ):
            click.echo(f"{statement};")
        return
    with _database(database) as db:
        if not is_postgres(db):
            raise click.ClickException("roles are a PostgreSQL feature; SQLite has none")
        create_roles(
            db,
            app_role,
            admin_role,
            allow_set_role=allow_set_role,
            models=app_models,
            relay_schema=app.relay_schema,
        )
    click.echo(f"roles {app_role} and {admin_role} are ready; set a password with:")
    click.echo(f"  ALTER ROLE {app_role} PASSWORD '...';")
    click.echo(f"  ALTER ROLE {admin_role} PASSWORD '...';  -- unscoped()'s own connection")


@cli.command()
@database_option
@click.option("--sql", is_flag=True, help="Print the SQL that would run; change nothing.")
@_user_errors
def distribute(database: str | None, sql: bool) -> None:
    """Citus: make the migrated schema Citus-ready and distribute it by tenant_id.

    tenants becomes a reference table; every tenant table and audit_logs is
    distributed, co-located. One transaction; run it again after adding tables.
    """
    with _database(database) as db:
        if sql:
            plan = distribute_plan(db)
            for statement in plan.statements:
                click.echo(f"{statement};")
            if not plan.statements:
                click.echo("-- nothing to do: every table is distributed already")
            return
        plan = distribute_database(db)
    if not plan.statements:
        click.echo("nothing to do: every table is distributed already")
        return
    if plan.reference:
        click.echo(f"reference tables: {', '.join(plan.reference)}")
    click.echo(f"distributed by tenant_id: {', '.join(plan.distributed)}")


def main() -> None:
    cli(prog_name="relay-peewee")
