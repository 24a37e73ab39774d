"""``AuditedModel`` and its query classes, at the path they were first published.

They live in ``relay_peewee.models.audited``, inside the models package that
builds on them: importing this module from below the models would otherwise
run ``models/__init__`` (every table, ``TenantModel``) half-way through.
"""

from __future__ import annotations

from .models.audited import (
    AuditedDelete,
    AuditedInsert,
    AuditedModel,
    AuditedUpdate,
    audit_prefix,
)

__all__ = ["AuditedDelete", "AuditedInsert", "AuditedModel", "AuditedUpdate", "audit_prefix"]
