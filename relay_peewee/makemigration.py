"""Drafting an application's next migration from its models and the live database.

Two kinds of difference, two tools:

* a ``TenantModel`` whose existing table has no ``tenant_id`` yet becomes
  one ``migrator.tenantize(PLAN)`` call, with the plan frozen into the
  script (``specs.tenancy_plan``); a per-tenant unique replaces a global
  one only where the database has such a global unique, so the script's
  ``down`` restores exactly what was there;
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

from peewee import Database, Model
from playhouse.migrations import Migration, template
from playhouse.schema_diff import SchemaDiff, diff_models

from .errors import MigrationError
from .migrator import catalog
from .migrator.sources import migration_sources
from .migrator.specs import TENANT_COLUMN, TenancyPlan, tenancy_plan

__all__ = ["MigrationDraft", "draft_migration", "write_migration"]


_EMPTY = (
    "from peewee import *\n\n\ndef up(migrator, db):\n    pass\n\n\n"
    "def down(migrator, db):\n    pass\n"
)


@dataclass(frozen=True)
class MigrationDraft:
    plan: TenancyPlan | None  # the tables to tenantize, if any
    diff: SchemaDiff  # every other difference

    def __bool__(self) -> bool:
        return self.plan is not None or bool(self.diff)

    def describe(self) -> list[str]:
        lines = [f"tenantize {t.table}" for t in (self.plan.tables if self.plan else ())]
        return lines + [line for line in str(self.diff).splitlines() if line]

    def render(self, name: str) -> str:
        body = template(self.diff) if self.diff else _EMPTY
        if self.plan is None:
            return f'"""{name}"""\n' + body
        head = (
            "from relay_peewee.migrator import TenancyPlan, TenantReference, TenantTable\n\n"
            f"PLAN = {self.plan!r}\n"
        )
        if not self.diff:
            # Tenancy steps alone are resumable: `migrate --online` may run them.
            head += "ONLINE = True\n"
        body = body.replace(
            "\ndef up(migrator, db):\n",
            "\n" + head + "\n\ndef up(migrator, db):\n    migrator.tenantize(PLAN)\n",
            1,
        )
        body = body.rstrip("\n") + "\n    migrator.untenantize(PLAN)\n"
        return f'"""{name}"""\n' + body


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
    rest = [m for m in models if m not in legacy]
    return MigrationDraft(plan, diff_models(db, rest))


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
