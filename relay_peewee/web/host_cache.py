"""A short-lived memory of which tenant a host resolved to, so a page pays no lookup.

Resolving the Host header is the one statement a tenanted request adds to an
untenanted app's page; remembering the answer for a couple of seconds takes
it off almost every request. What bounds the risk:

* an entry lives ``seconds`` at most, so a tenant deactivated (or a domain
  moved) by another process - the CLI, another worker - stops resolving
  within that time;
* any write to ``tenants`` made in this process (``tenants_changed``) drops
  every entry at once;
* entries are kept per database object, so two databases (or two tests'
  databases) never share an answer;
* only hits are stored, and at most ``max_entries`` of them (least recently
  used out first), so hosts nobody owns cost a lookup but no memory.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from typing import Any

from ..models.tenant import tenants_generation

__all__ = ["HostCache"]


class HostCache:
    """host -> tenant id, per database, for ``seconds``; thread-safe."""

    def __init__(self, seconds: float, max_entries: int = 10_000) -> None:
        if not seconds >= 0:  # also refuses NaN
            raise ValueError(f"cache_seconds must be >= 0, not {seconds!r}")
        self.seconds = seconds
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._generation = tenants_generation()
        self._entries: weakref.WeakKeyDictionary[Any, OrderedDict[str, tuple[float, str]]]
        self._entries = weakref.WeakKeyDictionary()

    def get(self, db: Any, host: str) -> str | None:
        if not self.seconds or db is None:
            return None
        with self._lock:
            if self._generation != tenants_generation():
                self._generation = tenants_generation()
                self._entries.clear()
                return None
            entries = self._entries.get(db)
            hit = entries.get(host) if entries is not None else None
            if hit is None:
                return None
            expires, tenant_id = hit
            if time.monotonic() >= expires:
                del entries[host]  # type: ignore[union-attr]
                return None
            entries.move_to_end(host)  # type: ignore[union-attr]
            return tenant_id

    def put(self, db: Any, host: str, tenant_id: str) -> None:
        if not self.seconds or db is None:
            return
        with self._lock:
            if self._generation != tenants_generation():
                # A tenant changed while this answer was being looked up: it
                # may predate the change, so it is not kept.
                return
            entries = self._entries.setdefault(db, OrderedDict())
            entries[host] = (time.monotonic() + self.seconds, tenant_id)
            entries.move_to_end(host)
            while len(entries) > self.max_entries:
                entries.popitem(last=False)
