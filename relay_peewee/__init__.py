"""relay_peewee: multi-tenancy for Relay's Peewee models."""

from .database import DEFAULT_URL, connect, database_proxy
from .errors import (
    ConfigurationError,
    ContextAbandoned,
    CrossTenantWrite,
    MigrationError,
    RawQueryRefused,
    RelayError,
    TenantRequired,
    UnrecognisedSchema,
)
from .events import record_event
from .fields import TenantForeignKeyField
from .models import MODELS, TENANT_MODELS
from .tenancy import (
    TenantModel,
    current_tenant,
    require_tenant,
    tenant_bound,
    tenant_context,
    unscoped,
)

# The one place the version is written: setup.cfg reads it (attr:), and
# `python cli.py --version` works from a checkout that was never installed.
__version__ = "0.1.0"

__all__ = [
    "DEFAULT_URL",
    "MODELS",
    "TENANT_MODELS",
    "ConfigurationError",
    "ContextAbandoned",
    "CrossTenantWrite",
    "MigrationError",
    "RawQueryRefused",
    "RelayError",
    "TenantForeignKeyField",
    "TenantModel",
    "TenantRequired",
    "UnrecognisedSchema",
    "connect",
    "current_tenant",
    "database_proxy",
    "record_event",
    "require_tenant",
    "tenant_bound",
    "tenant_context",
    "unscoped",
]
