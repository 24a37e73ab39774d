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
import textwrap
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import peewee
from peewee import (
    Database,
    Field,
    ForeignKeyField,
    Index,
    Model,
    PostgresqlDatabase,
    SqliteDatabase,
)
from playhouse.migrate import make_index_name
from playhouse.migrations import Migration, sort_models, template
from playhouse.schema_diff import IndexDiff, SchemaDiff, diff_models

from ..database import catalog
from ..errors import MigrationError
from ..fields import TenantForeignKeyField
from ..migrator import check_base_set
from ..migrator.sources import migration_sources
from ..migrator.specs import (
    TENANT_COLUMN,
    TenancyPlan,
    TenantReference,
    TenantTable,
    tenancy_plan,
)
from ..migrator.sqlite_ddl import parse_create_table, quote
from ..models import TENANT_MODELS
from .migration_source import docstring, names_used, statement, string, value

__all__ = [
    "MigrationDraft",
    "NewTenantTables",
    "check_name",
    "draft_migration",
    "empty_draft",
    "write_migration",
]


# Frozen into check_down: scripts must not follow the code that wrote them.
_DEFAULT_TENANT = "default-tenant-000-0000-000000000000"


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
    # Plain ForeignKeyFields between TenantModels whose keys the draft makes
    # tenant-consistent, as "Model.field -> table" for the script's comment.
    consistent: tuple[str, ...] = ()
    empty: bool = False  # written on request, to be filled in by hand

    def __bool__(self) -> bool:
        return self.plan is not None or self.created is not None or bool(self.diff)

    def describe(self) -> list[str]:
        lines = [f"tenantize {t.table}" for t in (self.plan.tables if self.plan else ())]
        lines += [f"create tenant table {t}" for t in (self.created.tables if self.created else ())]
        return lines + [line for line in str(self.diff).splitlines() if line]

    def render(self, name: str) -> str:
        """The script, as a maintainer would write it (see ``migration_source``)."""
        doc = [
            name,
            "",
            "Drafted by `relay-peewee makemigration` from the models and the database.",
        ]
        imports: dict[str, set[str]] = {"typing": {"Any"}}
        head: list[str] = []
        up: list[str] = []
        check: list[str] = []
        down: list[str] = []  # run after the schema diff's own down steps
        guarded: list[str] = []  # tables whose other-tenant rows down() would lose
        if self.consistent:
            doc += [
                "",
                "Plain ForeignKeyFields between TenantModels get the key a",
                "TenantForeignKeyField has, (tenant_id, column) -> parent (tenant_id, id),",
                "so the database refuses a row that points into another tenant:",
                *[f"    {ref}" for ref in self.consistent],
            ]
        if self.plan is not None:
            imports["relay_peewee.migrator"] = {"TenancyPlan", "TenantTable"}
            if self.plan.references:
                imports["relay_peewee.migrator"].add("TenantReference")
            if self.created is None and not self.diff:
                head += [
                    "# With `migrate --online` on PostgreSQL, each step commits on its own and a",
                    "# crashed run resumes from the catalog.",
                    "ONLINE = True",
                    "",
                ]
            head.append("PLAN = " + value(self.plan, 0, len("PLAN = ")))
            up.append("migrator.tenantize(PLAN)")
            down.append("migrator.untenantize(PLAN)")
            guarded.append("*PLAN.table_names")
        if self.created is not None:
            # Parents are tenantized above first: a new table's
            # tenant-consistent key needs their (tenant_id, id).
            imports["relay_peewee.database"] = {"is_postgres"}
            created = self.created
            head += [
                "CREATED = " + value(created.tables, 0, len("CREATED = ")),
                "POSTGRES = " + value(list(created.postgres), 0, len("POSTGRES = ")),
                "SQLITE = " + value(list(created.sqlite), 0, len("SQLITE = ")),
            ]
            up += [
                "ddl = POSTGRES if is_postgres(db) else SQLITE",
                "migrator.migrate(*[migrator.sql(s) for s in ddl])",
                "migrator.enable_row_level_security(CREATED)",
            ]
            drop_triggers: list[str] = []
            if created.sqlite_triggers:
                head.append(
                    "SQLITE_TRIGGERS = "
                    + value(list(created.sqlite_triggers), 0, len("SQLITE_TRIGGERS = "))
                )
                drop_triggers = [
                    "if not is_postgres(db):",
                    "    for name in SQLITE_TRIGGERS:",
                    "        migrator.migrate(migrator.sql(f'DROP TRIGGER IF EXISTS \"{name}\"'))",
                ]
            down = [
                "migrator.disable_row_level_security(CREATED)",
                *drop_triggers,
                "for table in reversed(CREATED):",
                "    migrator.migrate(migrator.drop_table(table))",
                *down,
            ]
            guarded.insert(0, "*CREATED")
        if guarded:
            head.append(f"DEFAULT_TENANT = {string(_DEFAULT_TENANT)}")
            tables = guarded[0][1:] if len(guarded) == 1 else "[" + ", ".join(guarded) + "]"
            check = [
                "# Refused while tenants other than the default hold rows down() would drop.",
                f"migrator.refuse_unless_single_tenant({tables}, DEFAULT_TENANT)",
            ]
        if self.diff.create_tables:
            call = "migrator.refuse_if_rows("
            created_names = [m._meta.table_name for m in self.diff.create_tables]
            check += [
                "# Refused while the tables down() would drop hold rows (an adopted app's data).",
                call + value(created_names, 0, len(call)) + ")",
            ]
        diff_up, diff_down, extra_imports, todos = _diff_statements(self.diff)
        up += diff_up
        down = diff_down + down
        for module, names in extra_imports.items():
            imports.setdefault(module, set()).update(names)
        if self.empty:
            doc[2] = "Written empty by `relay-peewee makemigration --empty`: fill in up and down."
        return _script(doc, imports, head, todos, up, check, down)


def _diff_statements(
    diff: SchemaDiff,
) -> tuple[list[str], list[str], dict[str, set[str]], list[str]]:
    """playhouse's rendering of ``diff``, reprinted: up and down lines, imports, TODOs."""
    if not diff:
        return [], [], {}, []
    text = template(diff)
    before, rest = text.split("\ndef up(migrator, db):\n", 1)
    up_text, down_text = rest.split("\ndef down(migrator, db):\n", 1)
    imports: dict[str, set[str]] = {}
    todos = []
    for line in before.splitlines():
        if line.startswith("from ") and " import " in line and "*" not in line:
            module, names = line[5:].split(" import ", 1)
            imports.setdefault(module, set()).update(n.strip() for n in names.split(","))
        elif line.startswith("# TODO"):
            todos.append(line)
    up = statement(textwrap.dedent(up_text), 1) if up_text.strip() != "pass" else []
    down = statement(textwrap.dedent(down_text), 1) if down_text.strip() != "pass" else []
    up = [line[4:] if line.startswith("    ") else line for line in up]
    down = [line[4:] if line.startswith("    ") else line for line in down]
    used = names_used(up + down)
    # `from peewee import *` in template(): name what the lines use instead.
    peewee_names = sorted(n for n in used if n not in ("migrator", "db") and hasattr(peewee, n))
    if peewee_names:
        imports.setdefault("peewee", set()).update(peewee_names)
    return up, down, imports, todos


def _script(
    doc: list[str],
    imports: dict[str, set[str]],
    head: list[str],
    todos: list[str],
    up: list[str],
    check: list[str],
    down: list[str],
) -> str:
    out = [docstring(doc), "", "from __future__ import annotations", ""]
    stdlib = sorted(m for m in imports if m in ("typing",))
    others = sorted(m for m in imports if m not in stdlib)
    for group in (stdlib, others):
        out += [f"from {m} import {', '.join(sorted(imports[m]))}" for m in group]
        out.append("")
    if head or todos:
        out += [*todos, *head, ""]

    def block(fn: str, lines: list[str]) -> list[str]:
        return ["", f"def {fn}(migrator: Any, db: Any) -> None:", *_indent(lines), ""]

    out += block("up", up or ["pass  # nothing to do"])
    if check:
        out += block("check_down", check)
    out += block("down", down or ["pass  # nothing to undo"])
    text = "\n".join(out).rstrip("\n") + "\n"
    while "\n\n\n\n" in text:
        text = text.replace("\n\n\n\n", "\n\n\n")
    return text


def _indent(lines: list[str]) -> list[str]:
    return [("    " + line) if line else "" for line in lines]


PARENT_KEY = (TENANT_COLUMN, "id")


def _tenant_references(model: type[Model]) -> list[tuple[TenantReference, ForeignKeyField]]:
    """Every foreign key of ``model`` into a TenantModel, plain or TenantForeignKeyField."""
    out = []
    for fk in model._meta.sorted_fields:
        if not isinstance(fk, ForeignKeyField) or fk.column_name == TENANT_COLUMN:
            continue
        if not _is_tenant_model(fk.rel_model):
            continue
        if fk.rel_field.column_name != "id":
            raise MigrationError(
                f"{model.__name__}.{fk.name}: a reference between tenant tables must point at "
                f"the parent's id, not {fk.rel_field.column_name} (it cannot be made "
                "tenant-consistent)"
            )
        ref = TenantReference(model._meta.table_name, fk.column_name, fk.rel_model._meta.table_name)
        out.append((ref, fk))
    return out


def _plain(fk: ForeignKeyField) -> bool:
    return not isinstance(fk, TenantForeignKeyField)


def _declares_parent_key(model: type[Model]) -> bool:
    declared = {tuple(cols) for cols in getattr(model._meta, "tenant_unique", ()) or ()}
    pk = model._meta.primary_key
    names = tuple(getattr(pk, "field_names", ()))
    return ("id",) in declared or names == ("tenant", "id")


def _parent_key_sql(table: str) -> str:
    name = make_index_name(table, PARENT_KEY)
    return f'CREATE UNIQUE INDEX {quote(name)} ON {quote(table)} ({quote(TENANT_COLUMN)}, "id")'


def _create_sql(
    models: Sequence[type[Model]], db: Database, parent_keys: Collection[str]
) -> tuple[str, ...]:
    """CREATE TABLE and CREATE INDEX for ``models`` as peewee renders them for ``db``.

    A plain ForeignKeyField into a TenantModel gets the key a
    TenantForeignKeyField renders; ``parent_keys`` are the tables that need
    the unique (tenant_id, id) those keys point at, created here.
    """
    postgres = isinstance(db, PostgresqlDatabase)
    out: list[str] = [_parent_key_sql(t) for t in parent_keys if t not in _tables(models)]
    for model in models:
        with model.bind_ctx(db, bind_refs=False, bind_backrefs=False):
            # peewee's SchemaManager, the one create_tables() uses.
            schema = cast(Any, model)._schema
            queries = [schema._create_table(safe=False).query()]
            queries += [ix.query() for ix in schema._create_indexes(safe=False)]
        for _sql, params in queries:
            if params:
                raise MigrationError(f"{model.__name__}: cannot freeze DDL with parameters")
        refs = _tenant_references(model)
        plain = [(ref, fk) for ref, fk in refs if _plain(fk)]
        create = queries[0][0]
        if plain:
            ddl = parse_create_table(create)
            for ref, fk in plain:
                action = (fk.on_delete or "NO ACTION").upper()
                if action == "SET NULL" and not postgres:
                    action = "NO ACTION"  # and the trigger below
                ddl.drop_foreign_key([ref.column])
                ddl.add(ref.references_sql(action))
            create = ddl.render(model._meta.table_name)
        out.append(create)
        if model._meta.table_name in parent_keys:
            out.append(_parent_key_sql(model._meta.table_name))
        out += [sql for sql, _params in queries[1:]]
        if not postgres:
            # SQLite's stand-in for SET NULL on a composite key (see fields.py).
            out += [
                ref.set_null_trigger_sql()
                for ref, fk in refs
                if (fk.on_delete or "").upper() == "SET NULL"
            ]
    return tuple(out)


def _tables(models: Sequence[type[Model]]) -> set[str]:
    return {m._meta.table_name for m in models}


def _is_tenant_model(model: type[Model]) -> bool:
    return TENANT_COLUMN in {f.column_name for f in model._meta.sorted_fields}


def _model_indexes(model: type[Model]) -> set[tuple[tuple[str, ...], bool]]:
    """The plain indexes ``model`` declares, as schema_diff pairs them: (columns, unique)."""
    out = set()
    for declared in model._meta.fields_to_index():
        if not isinstance(declared, Index):
            continue
        index = cast(Any, declared)  # peewee keeps an Index's parts private
        parts = index._expressions
        if index._where is None and all(isinstance(p, Field) for p in parts):
            out.add((tuple(p.column_name for p in parts), bool(index._unique)))
    return out


def _database_indexes(db: Database, table: str) -> dict[str, tuple[tuple[str, ...], bool]]:
    """The table's plain indexes, by name, as schema_diff reads them (no keys)."""
    out = {}
    for ix in db.get_indexes(table):
        if ix.name.endswith("_pkey") or ix.name.startswith("sqlite_autoindex_"):
            continue
        if None not in ix.columns and not re.search(r"\)\s*WHERE\s", ix.sql or "", re.I):
            out[ix.name] = (tuple(ix.columns), bool(ix.unique))
    return out


def _after_tenantize(
    db: Database, model: type[Model], spec: TenantTable, parent_keys: Collection[str]
) -> tuple[list[IndexDiff], list[IndexDiff]]:
    """The index differences left once ``tenantize`` has run on ``model``'s table.

    tenantize adds the per-tenant uniques, the tenant index and the parents'
    (tenant_id, id); anything else the model declares (a ForeignKeyField's
    own index, say) is drafted beside it, so the next ``--check`` agrees.
    """
    table = model._meta.table_name
    present = _database_indexes(db, table)
    for old, _new in spec.unique_swaps:
        for name, signature in list(present.items()):
            if signature == (old, True):
                del present[name]
    made = {(new, True) for _old, new in spec.unique_swaps}
    if spec.needs_tenant_index:
        made.add(((TENANT_COLUMN,), False))
    if table in parent_keys:
        made.add((PARENT_KEY, True))
    wanted = _model_indexes(model)
    have = set(present.values()) | made
    add = [IndexDiff(table, None, cols, unique) for cols, unique in sorted(wanted - have)]
    drop = [
        IndexDiff(table, name, cols, unique)
        for name, (cols, unique) in sorted(present.items())
        if (cols, unique) not in wanted and (cols, unique) != (PARENT_KEY, True)
    ]
    return add, drop


def _refuse_relay_references(models: Sequence[type[Model]]) -> None:
    """With the core alone, a reference to one of Relay's tables names a table
    the database will never have: say so now, not at ``migrate``."""
    for model in models:
        for fk in model._meta.refs:
            if fk.rel_model in TENANT_MODELS and fk.rel_model not in models:
                raise MigrationError(
                    f"{model.__name__}.{fk.name} references Relay's "
                    f"{fk.rel_model._meta.table_name}, which relay_schema = false leaves out: "
                    "reference a model of your own (or use Relay's schema)"
                )


def draft_migration(
    db: Database, models: Sequence[type[Model]], *, relay_schema: bool | None = None
) -> MigrationDraft:
    """What the next migration must do to make the database match ``models``.

    ``relay_schema`` (None: not checked): the base set the database must
    record, as ``migrate`` requires; False also refuses a model that
    references one of Relay's tables.
    """
    if relay_schema is not None:
        check_base_set(db, relay_schema)
        if not relay_schema:
            _refuse_relay_references(models)
    tables = set(db.get_tables())
    legacy = [
        m
        for m in models
        if _is_tenant_model(m)
        and m._meta.table_name in tables
        and TENANT_COLUMN not in catalog.table_columns(db, m._meta.table_name)
    ]
    fresh = [m for m in models if _is_tenant_model(m) and m._meta.table_name not in tables]
    rest = [m for m in models if m not in legacy and m not in fresh]
    by_table = {m._meta.table_name: m for m in models}
    consistent = [
        f"{m.__name__}.{fk.name} -> {ref.parent}"
        for m in [*legacy, *fresh]
        for ref, fk in _tenant_references(m)
        if _plain(fk)
    ]
    _refuse_plain_references_on_existing_tables(db, rest, tables)

    # Tables that plain references point at and that will not have the unique
    # (tenant_id, id) their keys need (a TenantForeignKeyField's parent must
    # declare it; tenantize adds it to a tenantized parent by itself).
    fresh_tables = _tables(fresh)
    parent_keys = sorted(
        {
            ref.parent
            for m in fresh
            for ref, fk in _tenant_references(m)
            if _plain(fk)
            and not (ref.parent in by_table and _declares_parent_key(by_table[ref.parent]))
            and (ref.parent in fresh_tables or not _has_parent_key(db, ref.parent, tables))
        }
    )

    plan = None
    extra_add: list[IndexDiff] = []
    extra_drop: list[IndexDiff] = []
    if legacy:
        plan = tenancy_plan(legacy)
        known = set(plan.references)
        plain_refs = tuple(
            ref
            for m in legacy
            for ref, fk in _tenant_references(m)
            if _plain(fk) and ref not in known
        )
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
            references=plan.references + plain_refs,
        )
        keyed = {r.parent for r in plan.references}
        for spec in plan.tables:
            add, drop = _after_tenantize(db, by_table[spec.table], spec, keyed)
            extra_add += add
            extra_drop += drop
    created = None
    if fresh:
        fresh = list(sort_models(fresh))
        created = NewTenantTables(
            tuple(m._meta.table_name for m in fresh),
            _create_sql(fresh, PostgresqlDatabase(None), parent_keys),
            _create_sql(fresh, SqliteDatabase(None), parent_keys),
            tuple(
                ref.set_null_trigger
                for m in fresh
                for ref, fk in _tenant_references(m)
                if (fk.on_delete or "").upper() == "SET NULL"
            ),
        )
    diff = diff_models(db, rest)
    tenant_tables = {m._meta.table_name for m in models if _is_tenant_model(m)}
    diff = diff._replace(
        add_indexes=[*extra_add, *diff.add_indexes],
        # The unique (tenant_id, id) that tenant-consistent keys point at is
        # the tenancy's, not the model's: never drafted away.
        drop_indexes=[
            *extra_drop,
            *(
                ix
                for ix in diff.drop_indexes
                if not (ix.table in tenant_tables and ix.columns == PARENT_KEY and ix.unique)
            ),
        ],
    )
    return MigrationDraft(plan, diff, created, tuple(consistent))


def _has_parent_key(db: Database, table: str, tables: Collection[str]) -> bool:
    if table not in tables:
        return False
    return bool(catalog.unique_on(db, table, PARENT_KEY)) or (
        catalog.primary_key(db, table) == PARENT_KEY
    )


def _refuse_plain_references_on_existing_tables(
    db: Database, models: Sequence[type[Model]], tables: Collection[str]
) -> None:
    """A new foreign key column between tenant tables: not drafted half-isolated."""
    for model in models:
        if not _is_tenant_model(model) or model._meta.table_name not in tables:
            continue
        columns = set(catalog.table_columns(db, model._meta.table_name))
        for ref, fk in _tenant_references(model):
            if ref.column not in columns:
                raise MigrationError(
                    f"{model.__name__}.{fk.name} is a new foreign key between tenant tables, "
                    "which makemigration cannot yet draft tenant-consistent: add the column in "
                    "a migration, then migrator.enforce_tenant_references([TenantReference("
                    f"{ref.table!r}, {ref.column!r}, {ref.parent!r})], ())"
                )


# A name becomes a file name and the script's docstring: kept to what both take.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _-]{0,79}")


def check_name(name: str) -> None:
    """Refuse a migration name that would not make a file name and a docstring."""
    if not _NAME.fullmatch(name.strip()):
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise MigrationError(
            f"invalid migration name {shown!r}: use letters, digits, spaces, '-' and '_' "
            "(at most 80 characters, starting with a letter or digit)"
        )


def empty_draft() -> MigrationDraft:
    """An empty script to fill in by hand (``makemigration --empty``)."""
    return MigrationDraft(None, SchemaDiff([], [], [], [], []), empty=True)


def write_migration(draft: MigrationDraft, name: str, package: str) -> str:
    """Write ``draft`` as the next numbered script of ``package``; its path."""
    check_name(name)
    if not draft and not draft.empty:
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
