"""The migration engine: history, legacy adoption, dry runs, SQLite rebuilds."""

from .backends import TenantTable, migrator_for
from .runner import HISTORY_TABLE, MigrationRunner, MigrationStatus, classify_schema

__all__ = [
    "HISTORY_TABLE",
    "MigrationRunner",
    "MigrationStatus",
    "TenantTable",
    "classify_schema",
    "migrator_for",
]
