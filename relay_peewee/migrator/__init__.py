"""The migration engine: history, legacy adoption, dry runs, SQLite rebuilds.

An application's migration scripts use the same engine as Relay's: see
``sources`` (where migrations come from) and ``specs`` (what a table's
tenancy is; ``migrator.tenantize(Model)`` in a script makes it so).
"""

from .backends import migrator_for
from .runner import (
    HISTORY_TABLE,
    MigrationRunner,
    MigrationStatus,
    check_base_set,
    classify_schema,
    recorded_base_set,
)
from .sources import CORE_MIGRATIONS, RELAY_MIGRATIONS, MigrationSource, migration_sources
from .specs import TenancyPlan, TenantReference, TenantTable, tenancy_plan

__all__ = [
    "CORE_MIGRATIONS",
    "HISTORY_TABLE",
    "RELAY_MIGRATIONS",
    "MigrationRunner",
    "MigrationSource",
    "MigrationStatus",
    "TenancyPlan",
    "TenantReference",
    "TenantTable",
    "check_base_set",
    "classify_schema",
    "migration_sources",
    "migrator_for",
    "recorded_base_set",
    "tenancy_plan",
]
