"""Drafting an application's next migration from its models and the live database.

Two kinds of difference, two tools:

* a ``TenantModel`` whose existing table has no ``tenant_id`` yet becomes
  one ``migrator.tenantize(PLAN)`` call, with the plan frozen into the
  script (``specs.tenancy_plan``); a per-tenant unique replaces a global
  one only where the database has such a global unique, so the script's
  ``down`` restores exactly what was there;
* a ``TenantModel`` whose table does not exist yet is created from DDL
  peewee renders for each backend, frozen into the script (with its
  tenant-consistent keys), and gets the RLS policy;
* everything else - a table to create, a column or an index to add - is
  what ``playhouse.schema_diff.diff_models`` finds, rendered by
  ``playhouse.migrations.template`` as plain ``playhouse.migrate`` calls.

The file gets the next number in the package's folder, named as
``playhouse.migrations.Runner.create`` names it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from peewee import Database, Model, PostgresqlDatabase, SqliteDatabase
from playhouse.migrations import Migration, sort_models, template
from playhouse.schema_diff import SchemaDiff, diff_models

from ..database import catalog
from ..errors import MigrationError
from ..fields import TenantForeignKeyField
from ..migrator.sources import migration_sources
from ..migrator.specs import TENANT_COLUMN, TenancyPlan, TenantReference, tenancy_plan

__all__ = ["MigrationDraft", "NewTenantTables", "draft_migration", "write_migration"]


_EMPTY = (
    "from peewee import *\n\n\ndef up(migrator, db):\n    pass\n\n\n"
    "def down(migrator, db):\n    pass\n"
)


@dataclass(frozen=True)
class NewTenantTables:
    """TenantModel tables to create, as frozen DDL for each backend."""

    tables: tuple[str, ...]
    postgres: tuple[str, ...]
    sqlite: tuple[str, ...]
    # SQLite's SET NULL stand-ins: they live on the parent tables, so
    # dropping the new tables does not drop them.
    sqlite_triggers: tuple[str, ...] = ()


@dataclass(frozen=True)
class MigrationDraft:
    plan: TenancyPlan | None  # existing tables to tenantize, if any
    diff: SchemaDiff  # every other difference
    created: NewTenantTables | None = None

    def __bool__(self) -> bool:
        return self.plan is not None or self.created is not None or bool(self.diff)

    def describe(self) -> list[str]:
        lines = [f"tenantize {t.table}" for t in (self.plan.tables if self.plan else ())]
        lines += [f"create tenant table {t}" for t in (self.created.tables if self.created else ())]
        return lines + [line for line in str(self.diff).splitlines() if line]

    def render(self, name: str) -> str:
        body = template(self.diff) if self.diff else _EMPTY
        head: list[str] = []
        first: list[str] = []  # run before the schema diff's statements
        last: list[str] = []  # run after them in down()
        if self.plan is not None:
            head += [
                "from relay_peewee.migrator import TenancyPlan, TenantReference, TenantTable",
                "",
                f"PLAN = {self.plan!r}",
            ]
            first.append("migrator.tenantize(PLAN)")
            last.append("migrator.untenantize(PLAN)")
        if self.created is not None:
            # Parents are tenantized above first: a new table's
            # tenant-consistent key needs their (tenant_id, id).
            head += [
                "from relay_peewee.database import is_postgres",
                "",
                f"CREATED = {self.created.tables!r}",
                f"POSTGRES = {list(self.created.postgres)!r}",
                f"SQLITE = {list(self.created.sqlite)!r}",
            ]
            first += [
                "ddl = POSTGRES if is_postgres(db) else SQLITE",
                "migrator.migrate(*[migrator.sql(s) for s in ddl])",
                "migrator.enable_row_level_security(CREATED)",
            ]
            drop_triggers = []
            if self.created.sqlite_triggers:
                head.append(f"SQLITE_TRIGGERS = {list(self.created.sqlite_triggers)!r}")
                drop_triggers = [
                    "if not is_postgres(db):",
                    "    for name in SQLITE_TRIGGERS:",
                    "        migrator.migrate(migrator.sql(f'DROP TRIGGER IF EXISTS \"{name}\"'))",
                ]
            last = [
                "migrator.disable_row_level_security(CREATED)",
                *drop_triggers,
                "for table in reversed(CREATED):",
                "    migrator.migrate(migrator.drop_table(table))",
                *last,
            ]
        if self.plan is not None and self.created is None and not self.diff:
            # Tenancy steps alone are resumable: `migrate --online` may run them.
            head.append("ONLINE = True")
        if not head:
            return f'"""{name}"""\n' + body
        indent = "".join(f"    {line}\n" for line in first)
        body = body.replace(
            "\ndef up(migrator, db):\n",
            "\n" + "\n".join(head) + "\n\n\ndef up(migrator, db):\n" + indent,
            1,
        )
        body = body.rstrip("\n") + "\n" + "".join(f"    {line}\n" for line in last)
        return f'"""{name}"""\n' + body


def _create_sql(models: Sequence[type[Model]], db: Database) -> tuple[str, ...]:
    """CREATE TABLE and CREATE INDEX for ``models`` as peewee renders them for ``db``."""
    out: list[str] = []
    for model in models:
        with model.bind_ctx(db, bind_refs=False, bind_backrefs=False):
            # peewee's SchemaManager, the one create_tables() uses.
            schema = cast(Any, model)._schema
            queries = [schema._create_table(safe=False).query()]
            queries += [ix.query() for ix in schema._create_indexes(safe=False)]
        for sql, params in queries:
            if params:
                raise MigrationError(f"{model.__name__}: cannot freeze DDL with parameters")
            out.append(sql)
        if not isinstance(db, PostgresqlDatabase):
            # SQLite's stand-in for SET NULL on a composite key (see fields.py).
            out += [
                ref.set_null_trigger_sql()
                for ref, fk in _references_with_fields(model)
                if (fk.on_delete or "").upper() == "SET NULL"
            ]
    return tuple(out)


def _references_with_fields(model: type[Model]) -> list[tuple[TenantReference, Any]]:
    return [
        (TenantReference(model._meta.table_name, fk.column_name, fk.rel_model._meta.table_name), fk)
        for fk in model._meta.sorted_fields
        if isinstance(fk, TenantForeignKeyField)
    ]


def _is_tenant_model(model: type[Model]) -> bool:
    return TENANT_COLUMN in {f.column_name for f in model._meta.sorted_fields}


def draft_migration(db: Database, models: Sequence[type[Model]]) -> MigrationDraft:
    """What the next migration must do to make the database match ``models``."""
    tables = set(db.get_tables())
    legacy = [
        m
        for m in models
        if _is_tenant_model(m)
        and m._meta.table_name in tables
        and TENANT_COLUMN not in catalog.table_columns(db, m._meta.table_name)
    ]
    plan = None
    if legacy:
        plan = tenancy_plan(legacy)
        plan = replace(
            plan,
            tables=tuple(
                replace(
                    t,
                    unique_swaps=tuple(
                        (old if old and catalog.unique_on(db, t.table, old) else (), new)
                        for old, new in t.unique_swaps
                    ),
                )
                for t in plan.tables
            ),
        )
    fresh = [m for m in models if _is_tenant_model(m) and m._meta.table_name not in tables]
    created = None
    if fresh:
        fresh = list(sort_models(fresh))
        created = NewTenantTables(
            tuple(m._meta.table_name for m in fresh),
            _create_sql(fresh, PostgresqlDatabase(None)),
            _create_sql(fresh, SqliteDatabase(None)),
            tuple(
                ref.set_null_trigger
                for m in fresh
                for ref, fk in _references_with_fields(m)
                if (fk.on_delete or "").upper() == "SET NULL"
            ),
        )
    rest = [m for m in models if m not in legacy and m not in fresh]
    return MigrationDraft(plan, diff_models(db, rest), created)


def write_migration(draft: MigrationDraft, name: str, package: str) -> str:
    """Write ``draft`` as the next numbered script of ``package``; its path."""
    if not draft:
        raise MigrationError("the models and the database agree: no migration to write")
    source = migration_sources([package])[-1]
    if source.is_relay:
        raise MigrationError("name the application's migrations package (--migrations)")
    # Runner.create's numbering and naming, without the history table a
    # Runner needs a database for.
    index = max((m.idx for m in Migration.load_directory(source.directory)), default=0) + 1
    slug = re.sub(r"[^\w]+", "_", name.strip()).strip("_").lower() or "migration"
    path = os.path.join(source.directory, f"{index:04d}_{slug}.py")
    with open(path, "x", encoding="utf-8") as out:
        out.write(draft.render(name))
    return path
