"""Exceptions that mean "the user asked for something that cannot be done".

Every error the CLI should print as one line derives from ``RelayError``;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "AdminConnectionRequired",
    "ConfigurationError",
    "ContextAbandoned",
    "CrossTenantWrite",
    "InvalidTenantId",
    "MigrationError",
    "RawQueryRefused",
    "RelayError",
    "TenantInactive",
    "TenantRequired",
    "UnrecognisedSchema",
]


class RelayError(Exception):
    """Base class for errors that are the caller's to fix."""


class ContextAbandoned(RelayError):
    """A ``tenant_context``/``unscoped`` block ended out of order or from
    elsewhere (a generator suspended inside it, collected later or on another
    thread): its transaction, and those of the blocks inside it, were rolled
    back and their scopes closed."""


class ConfigurationError(RelayError):
    """A bad database URL, a missing driver, an unreachable server."""


class MigrationError(RelayError):
    """A migration cannot run, or was refused before it changed anything."""


class UnrecognisedSchema(MigrationError):
    """The database holds tables this package does not know how to adopt."""


class TenantRequired(RelayError):
    """A TenantModel was queried outside of any tenant context."""


class TenantInactive(RelayError):
    """The tenant named is deactivated (or erased): no new work may start in it.

    Raised by ``tenant_context`` on entry (also ``async with`` and
    ``tenant_bound``'s call on its thread), and by the operations that need
    an active tenant. ``unscoped()`` still reaches the tenant's rows: that is
    the admin path erase and export use.
    """

    def __init__(self, tenant_id: str) -> None:
        super().__init__(
            f"tenant {tenant_id} is inactive: `relay-peewee tenants activate` before working in it"
        )
        self.tenant_id = tenant_id


class InvalidTenantId(RelayError, ValueError):
    """A tenant id that can name no tenant: empty, or holding a NUL.

    Also a ``ValueError``, which these were before, so existing handlers
    still catch it; as a ``RelayError`` the CLI and an app's error handler
    show it as the caller's mistake rather than a bug."""


class CrossTenantWrite(RelayError):
    """A write would put or point a row into another tenant."""


class RawQueryRefused(RelayError):
    """``Model.raw()`` on a TenantModel outside ``unscoped()``: raw SQL cannot be scoped."""


class AdminConnectionRequired(RelayError):
    """Work that must see every tenant found no way past row-level security.

    ``reason`` is why the fallback (``SET ROLE`` to the admin role) failed;
    callers word the fix for their own users (an argument, a CLI option).
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
