"""Whether the tenant a context names is active, without a query per context.

``tenant_context(t)`` refuses a deactivated tenant with ``TenantInactive``.
Asking the database on every entry would add a round trip to every request
(the request path's one-statement budget, ``benchmarks/request_bench.py``),
so an answer "active" is remembered, per database, for ``SECONDS``; only a
miss reads ``tenants``. What bounds the risk is what bounds ``by_host``'s
cache (``web.host_cache``):

* a tenant deactivated by another process is refused by this one within
  ``SECONDS`` at most; a write to ``tenants`` in this process
  (``tenants_changed``) forgets every answer at once;
* only "active" is remembered: an inactive or unknown tenant is read again
  on each entry (an unknown id is not refused - it reads nothing and cannot
  write, as before), so the cache cannot hold a refusal past its reason;
* the read runs inside the context's own transaction, as its first
  statement: on a deferred-BEGIN database it rides the BEGIN and the tenant
  setting, one round trip on a miss.

Inside ``unscoped()`` a ``tenant_context`` is not checked: admin work
(erase, export) must still reach an inactive tenant's rows.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

from ..errors import TenantInactive
from ..models.tenant import Tenant, tenants_generation

__all__ = ["SECONDS", "forget", "is_known_active", "require_active"]

# As by_host's default: how stale an "active" may be, the documented bound on
# how long a deactivated tenant's new requests may still be let in.
SECONDS = 2.0

_lock = threading.Lock()
_generation = tenants_generation()
_known: weakref.WeakKeyDictionary[Any, dict[str, float]] = weakref.WeakKeyDictionary()


def is_known_active(db: Any, tenant_id: str) -> bool:
    """True when ``tenant_id`` was read active on ``db`` less than ``SECONDS`` ago.

    The hot path of every context: no lock, no query. A stale generation
    or an expired entry answers False, and ``require_active`` reads again.
    """
    if _generation != tenants_generation():
        return False
    known = _known.get(db)
    expires = known.get(tenant_id) if known is not None else None
    return expires is not None and time.monotonic() < expires


def require_active(db: Any, tenant_id: str) -> None:
    """Read ``tenants.is_active`` (``db`` is the database ``Tenant`` is bound
    to, the key of what is remembered); ``TenantInactive`` when it is false."""
    global _generation
    generation = tenants_generation()
    # Through the model's own binding (the database proxy, which is ``db``):
    # bind_ctx would rebind Tenant for every thread while it runs.
    row = Tenant.select(Tenant.is_active).where(Tenant.id == tenant_id).tuples().first()
    if row is None:
        return  # no such tenant: not refused here, and not remembered either
    if not row[0]:
        raise TenantInactive(tenant_id)
    with _lock:
        if generation != tenants_generation():
            return  # tenants changed during the read: the answer may predate it
        if _generation != generation:
            _generation = generation
            _known.clear()
        _known.setdefault(db, {})[tenant_id] = time.monotonic() + SECONDS


def forget() -> None:
    """Drop every remembered answer (tests; ``tenants_changed`` does it too)."""
    with _lock:
        _known.clear()
