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
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType

from ..errors import ConfigurationError

__all__ = ["RELAY_MIGRATIONS", "MigrationSource", "import_from_cwd", "migration_sources"]

RELAY_MIGRATIONS = "relay_peewee.migrations"
SEPARATOR = ":"  # between package and file in a history name


@dataclass(frozen=True)
class MigrationSource:
    package: str  # dotted, importable name
    directory: str

    @property
    def is_relay(self) -> bool:
        return self.package == RELAY_MIGRATIONS

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


def migration_sources(packages: Iterable[str] = ()) -> list[MigrationSource]:
    """Relay's migrations, then each application package (each once, in order)."""
    names: Sequence[str] = list(dict.fromkeys([RELAY_MIGRATIONS, *packages]))
    for name in names:
        if SEPARATOR in name or not all(part.isidentifier() for part in name.split(".")):
            raise ConfigurationError(f"invalid migrations package name {name!r}")
    return [_source(name) for name in names]
