"""``postgresql+pool://``: a pool of PostgreSQL connections reset on check-in."""

from __future__ import annotations

import logging
from typing import Any

from playhouse.pool import PooledPostgresqlDatabase

__all__ = ["SessionResettingPool"]

logger = logging.getLogger(__name__)


class SessionResettingPool(PooledPostgresqlDatabase):
    """``postgresql+pool://``: every connection is reset when it is checked in.

    A pooled connection outlives the request that used it. ``tenant_context``
    sets its tenant transaction-locally, but raw SQL can set a session-level
    tenant (``set_config(..., false)``), ``SET ROLE``, or leave temporary
    tables and prepared statements behind; the next checkout would inherit
    them. ``DISCARD ALL`` drops all of it (and ``SET SESSION AUTHORIZATION
    DEFAULT`` undoes any role switch). It cannot run inside a transaction,
    so peewee's own check-in (which rolls back what was left open) runs
    first; a connection that cannot be reset is closed, not pooled.
    """

    def _can_reuse(self, conn: Any) -> bool:
        if not super()._can_reuse(conn):
            return False
        autocommit = conn.autocommit
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute("DISCARD ALL")
        except Exception:
            logger.warning("could not reset a pooled connection; closing it", exc_info=True)
            return False
        finally:
            try:
                conn.autocommit = autocommit
            except Exception:
                return False
        return True
