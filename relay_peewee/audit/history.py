"""The migration history and the project's own lookup functions, against what the package ships."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from peewee import Database

from ..database import is_postgres
from ..migrator import CORE_MIGRATIONS, HISTORY_TABLE, MigrationRunner
from ..migrator.sources import SEPARATOR
from ..operations.distribute import FIND_API_KEY_BODY
from .citus import is_distributed
from .findings import MIGRATE, Finding


def check_history(
    db: Database, tables: set[str], migrations: Sequence[str], relay_schema: bool = True
) -> list[Finding]:
    if HISTORY_TABLE not in tables:
        msg = f"no migration history; fix: {MIGRATE}"
        return [Finding("error", HISTORY_TABLE, "history-missing", msg)]
    statuses = MigrationRunner(db, migrations=migrations, relay_schema=relay_schema).statuses()
    out = []
    pending = [s.name for s in statuses if s.applied is None]
    if pending:
        msg = f"pending migrations: {', '.join(pending)}; fix: {MIGRATE}"
        out.append(Finding("error", HISTORY_TABLE, "migration-pending", msg))
    unknown = [s.name for s in statuses if not s.known]
    if unknown:
        msg = f"applied, but unknown to this relay_peewee: {', '.join(unknown)}; fix: upgrade "
        msg += "it, or name the application's migrations package"
        out.append(Finding("error", HISTORY_TABLE, "migration-unknown", msg))
    return out


# The migrations that create or replace the lookup functions of
# relay_peewee.operations.lookups, oldest first: the latest applied one that
# defines a function holds the text its live definition must match.
LOOKUPS_MIGRATIONS = ("0010_relay_app_compat", "0012_api_keys_of_active_tenants")
LOOKUPS_MIGRATION = LOOKUPS_MIGRATIONS[0]  # the one that creates them all
# The tenancy core's (relay_schema = false): the host lookup alone.
CORE_LOOKUPS_MIGRATIONS = (f"{CORE_MIGRATIONS}{SEPARATOR}0004_tenant_lookup",)


def _module(history_name: str) -> str:
    package, _, stem = history_name.rpartition(SEPARATOR)
    return f"{package or 'relay_peewee.migrations'}.{stem}"


def lookups_migrations(relay_schema: bool = True) -> tuple[str, ...]:
    """History names of the migrations defining the lookups, for a base set."""
    return LOOKUPS_MIGRATIONS if relay_schema else CORE_LOOKUPS_MIGRATIONS


def lookup_signatures(relay_schema: bool = True) -> list[str]:
    """The signatures of every lookup function the base set creates."""
    module = importlib.import_module(_module(lookups_migrations(relay_schema)[0]))
    return list(module.FUNCTIONS)


def expected_lookups(db: Database, relay_schema: bool = True) -> dict[str, tuple[str, str]]:
    """Signature -> (body, migration) of each lookup, as the applied migrations left it."""
    names = lookups_migrations(relay_schema)
    placeholders = ", ".join(["%s"] * len(names))
    applied = {
        row[0]
        for row in db.execute_sql(
            f"SELECT name FROM {HISTORY_TABLE} WHERE name IN ({placeholders})", names
        ).fetchall()
    }
    expected: dict[str, tuple[str, str]] = {}
    for name in names:
        if name in applied:
            migration = importlib.import_module(_module(name))
            for sig, (_head, body) in migration.FUNCTIONS.items():
                expected[sig] = (body, name)
    if expected and is_distributed(db, "api_keys"):
        # `distribute` made it PL/pgSQL, which Citus can plan.
        expected["relay_find_api_key(text)"] = (FIND_API_KEY_BODY, LOOKUPS_MIGRATIONS[-1])
    return expected


def check_lookup_functions(
    db: Database, tables: set[str], relay_schema: bool = True
) -> list[Finding]:
    """PostgreSQL: the SECURITY DEFINER lookups are exactly what 0010 (and
    the migrations replacing them since) created.

    Each runs with its owner's rights across every tenant, so a changed body,
    a lost pinned search_path, EXECUTE for PUBLIC or an owner that row-level
    security binds (the lookups would find nothing) is an error.
    """
    if not is_postgres(db) or HISTORY_TABLE not in tables:
        return []
    expected = expected_lookups(db, relay_schema)
    if not expected:
        return []  # 0010 not applied: reported as a pending migration
    schema = db.execute_sql("SELECT quote_ident(current_schema())").fetchone()[0]
    config = [f"search_path=pg_catalog, {schema}, pg_temp", "TimeZone=UTC"]
    out = []
    for sig, (body, made_by) in expected.items():
        package, _, stem = made_by.rpartition(SEPARATOR)
        number = stem.split("_")[0]
        to = f"{package}{SEPARATOR}{int(number)}" if package else str(int(number))
        recreate = f"`relay-peewee rollback --to {to}`, then `relay-peewee migrate` (recreates it)"
        row = db.execute_sql(
            "SELECT p.prosecdef, p.proconfig, p.prosrc, r.rolsuper OR r.rolbypassrls,"
            " has_function_privilege('public', p.oid, 'EXECUTE')"
            " FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner"
            " WHERE p.oid = to_regprocedure(%s)",
            (sig,),
        ).fetchone()
        name = sig.split("(")[0]
        problems = []
        if row is None:
            problems.append("is missing")
        else:
            definer, proconfig, source, owner_bypasses, public = row
            if not definer:
                problems.append("is not SECURITY DEFINER")
            if list(proconfig or []) != config:
                problems.append(f"has settings {proconfig}, not {config}")
            if " ".join(str(source).split()) != " ".join(body.split()):
                problems.append(f"has a body other than the one migration {number} created")
            if not owner_bypasses:
                problems.append("is owned by a role row-level security binds (it finds nothing)")
            if public:
                problems.append("is executable by PUBLIC")
        if problems:
            if problems == ["is executable by PUBLIC"]:
                fix = f"REVOKE ALL ON FUNCTION {sig} FROM PUBLIC"
            elif len(problems) == 1 and problems[0].startswith("is owned by"):
                fix = f"ALTER FUNCTION {sig} OWNER TO <the BYPASSRLS role that runs migrate>"
            else:
                fix = recreate
            message = f"lookup function {sig} {'; '.join(problems)}; fix: {fix}"
            out.append(Finding("error", name, "lookup-function", message))
    return out
