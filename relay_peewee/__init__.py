"""relay_peewee: multi-tenancy for Relay's Peewee models."""

from .db import DEFAULT_URL, connect, database_proxy
from .errors import (
    ConfigurationError,
    CrossTenantWrite,
    MigrationError,
    RelayError,
    TenantRequired,
    UnrecognisedSchema,
)
from .models import MODELS, TENANT_MODELS
from .tenancy import TenantModel

__all__ = [
    "DEFAULT_URL",
    "MODELS",
    "TENANT_MODELS",
    "ConfigurationError",
    "CrossTenantWrite",
    "MigrationError",
    "RelayError",
    "TenantModel",
    "TenantRequired",
    "UnrecognisedSchema",
    "connect",
    "database_proxy",
]
