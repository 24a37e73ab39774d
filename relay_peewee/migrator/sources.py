"""Where migrations come from: relay_peewee's own package, then an application's.

A migration *source* is an importable package of numbered
``playhouse.migrations`` scripts. Relay's own (``relay_peewee.migrations``)
always comes first; an application's packages follow in the order given,
because its scripts build on Relay's tables (``tenants``, ``users``, ...).
The runner reads every source through ``migration_sources``, Relay's too.

One history table records them all. A Relay migration keeps the bare name
it always had (``0004_tenant_keys``), so databases migrated by earlier
releases are recognised as they are; an application's migration is
recorded with its package (``myapp.migrations:0001_invoices``), so two
packages may both have a ``0001_...``.

The first source is the *base set*: Relay's schema (``relay_schema=True``,
the default), or the tenancy core alone (``relay_peewee.migrations.core``,
``relay_schema = false`` in ``[tool.relay_peewee]``) for an application that
is not Relay. The core's rows carry their package like an application's, so
the history itself says which base set a database was built with.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType

from ..errors import ConfigurationError

__all__ = [
    "CORE_MIGRATIONS",
    "RELAY_MIGRATIONS",
    "MigrationSource",
    "base_package",
    "import_from_cwd",
    "migration_sources",
]

RELAY_MIGRATIONS = "relay_peewee.migrations"
CORE_MIGRATIONS = "relay_peewee.migrations.core"
SEPARATOR = ":"  # between package and file in a history name


@dataclass(frozen=True)
class MigrationSource:
    package: str  # dotted, importable name
    directory: str

    @property
    def is_relay(self) -> bool:
        return self.package == RELAY_MIGRATIONS

    @property
    def is_base(self) -> bool:
        """One of relay_peewee's own sets (Relay's schema or the core), not an application's."""
        return self.package in (RELAY_MIGRATIONS, CORE_MIGRATIONS)

    def history_name(self, stem: str) -> str:
        """The name a migration file ``stem`` is recorded under."""
        return stem if self.is_relay else f"{self.package}{SEPARATOR}{stem}"


def import_from_cwd(name: str, what: str) -> ModuleType:
    """Import ``name`` the way ``python -m`` would: the current folder comes first.

    A console script's ``sys.path`` does not hold the current folder, yet
    an application names its own packages relative to it.
    """
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {what} {name!r}: {exc}") from None
    except Exception as exc:
        # The application's own code failed while importing (a SyntaxError,
        # an exception at module level): its error, in one line, is the fix.
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConfigurationError(
            f"cannot import {what} {name!r}: {type(exc).__name__}"
            + (f": {detail}" if detail else "")
        ) from None


def _source(package: str) -> MigrationSource:
    module = import_from_cwd(package, "migrations package")
    paths = list(getattr(module, "__path__", ()))
    if not paths:
        raise ConfigurationError(
            f"migrations {package!r} is a module, not a package: make it a folder with "
            "an __init__.py holding the numbered scripts"
        )
    return MigrationSource(package, paths[0])


def base_package(relay_schema: bool = True) -> str:
    """The base set's package: Relay's schema, or the tenancy core alone."""
    return RELAY_MIGRATIONS if relay_schema else CORE_MIGRATIONS


def migration_sources(
    packages: Iterable[str] = (), *, relay_schema: bool = True
) -> list[MigrationSource]:
    """The base set (Relay's, or the core's), then each application package
    (each once, in order)."""
    base = base_package(relay_schema)
    names: Sequence[str] = list(dict.fromkeys([base, *packages]))
    for name in names:
        if SEPARATOR in name or not all(part.isidentifier() for part in name.split(".")):
            raise ConfigurationError(f"invalid migrations package name {name!r}")
        if name in (RELAY_MIGRATIONS, CORE_MIGRATIONS) and name != base:
            # The other base set named as an application's package would
            # build Relay's tables into a core database, or the reverse.
            raise ConfigurationError(
                f"{name} is relay_peewee's own base set, not an application's migrations "
                "package: choose the base set with relay_schema in [tool.relay_peewee]"
            )
    return [_source(name) for name in names]
