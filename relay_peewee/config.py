"""An application's own migrations and models, named once in its pyproject.toml.

::

    [tool.relay_peewee]
    migrations = ["myapp.migrations"]   # packages of numbered scripts, run after Relay's
    models = ["myapp.models"]           # modules whose models audit, roles and makemigration cover
    relay_schema = false                # the tenancy core alone, without Relay's tables

``relay_schema`` (default true) picks the base set of migrations: Relay's
schema (tenants, audit_logs and Relay's nine tables), or for an application
that is not Relay the tenancy core alone (tenants, audit_logs, the history
and the lookups). The history records the set a database was built with,
and every command refuses a database built with the other one.

The CLI reads this from the nearest ``pyproject.toml`` at or above the
current folder; ``--migrations`` and ``--models`` replace it. Names are
imported with the current folder first on ``sys.path``.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peewee import Model
from playhouse.migrations import sort_models  # peewee's dependency order, re-exported

from .errors import ConfigurationError
from .migrator.sources import import_from_cwd

__all__ = ["AppConfig", "find_pyproject", "load_models", "read_config"]

SECTION = "relay_peewee"
_IMPLICIT = {"id", "tenant"}  # fields every model (or TenantModel) gets without declaring


@dataclass(frozen=True)
class AppConfig:
    migrations: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    source: str | None = None  # the pyproject.toml it came from
    relay_schema: bool = True  # False: the tenancy core alone (no Relay tables)


def find_pyproject(start: str | Path | None = None) -> Path | None:
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def read_config(start: str | Path | None = None) -> AppConfig:
    """``[tool.relay_peewee]`` of the nearest pyproject.toml (empty if none)."""
    path = find_pyproject(start)
    if path is None:
        return AppConfig()
    # Imported here, not at the top: the CLI imports this module, and
    # `python cli.py --version` must work where Python 3.10's tomli is not
    # installed (an uninstalled checkout).
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from None
    section = data.get("tool", {}).get(SECTION, {})
    relay_schema = section.get("relay_schema", True)
    if not isinstance(relay_schema, bool):
        raise ConfigurationError(
            f"{path}: [tool.{SECTION}] relay_schema must be true or false, not {relay_schema!r}"
        )
    return AppConfig(
        _names(section, "migrations", path),
        _names(section, "models", path),
        str(path),
        relay_schema,
    )


def _names(section: dict[str, Any], key: str, path: Path) -> tuple[str, ...]:
    value = section.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(
            f"{path}: [tool.{SECTION}] {key} must be a list of dotted module names"
        )
    return tuple(value)


def load_models(modules: Iterable[str]) -> list[type[Model]]:
    """The models defined in ``modules`` (not those they import), parents first."""
    found: list[type[Model]] = []
    for name in modules:
        module = import_from_cwd(name, "models module")
        defined = [
            obj
            for _n, obj in inspect.getmembers(module, inspect.isclass)
            if issubclass(obj, Model)
            and obj.__module__ == module.__name__
            and not getattr(obj._meta, "abstract", False)
            and obj.__name__ not in ("TenantModel",)
        ]
        # A base class the module's models derive from (peewee's usual
        # `class BaseModel(Model)` holding Meta.database) is not a table.
        bases = {base for m in defined for base in m.__mro__[1:]}
        defined = [m for m in defined if not (m in bases and set(m._meta.fields) <= _IMPLICIT)]
        if not defined:
            raise ConfigurationError(f"models module {name!r} defines no peewee model")
        found += [m for m in defined if m not in found]
    return list(sort_models(found))
