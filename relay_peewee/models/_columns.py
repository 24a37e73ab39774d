"""Column defaults shared by the model modules."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

__all__ = ["new_id", "utcnow"]


def new_id() -> str:
    """A text primary key: Relay stores uuids as strings."""
    return str(uuid.uuid4())


def utcnow() -> datetime:
    # Naive UTC, because Relay's columns are `timestamp` without time zone.
    return datetime.now(timezone.utc).replace(tzinfo=None)
