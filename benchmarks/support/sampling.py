"""Sampling a process or a server while a benchmark runs: peak RSS, ``pg_locks``."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

SAMPLE_INTERVAL = 0.02  # pg_locks sampling period


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def peak_rss_mb() -> float:
    """This process's peak RSS since exec, in MB.

    VmHWM is the high-water mark of this process image since exec. The
    parent's rusage for a child is not: Linux carries the fork-time RSS of
    the parent (which built the database) into the child's ru_maxrss.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Hold:
    table: str
    first: float
    last: float
    samples: int

    @property
    def seconds(self) -> float:
        # Seen from `first` to `last`; the true hold is at most one sampling
        # period longer on each side.
        return self.last - self.first

    def label(self) -> str:
        if self.samples == 1:
            return f"{self.table} <{SAMPLE_INTERVAL * 1000:.0f} ms"
        return f"{self.table} {self.seconds * 1000:.0f} ms"


# Granted ACCESS EXCLUSIVE locks on the relay tables, and every lock request
# still waiting, of the sessions connected to this database.
LOCKS_SQL = """
SELECT l.pid, coalesce(c.relname, l.locktype), l.mode, l.granted, l.virtualtransaction
FROM pg_locks l LEFT JOIN pg_class c ON c.oid = l.relation
WHERE l.pid <> pg_backend_pid()
  AND l.pid IN (SELECT pid FROM pg_stat_activity WHERE datname = current_database())
  AND (NOT l.granted OR (l.mode = 'AccessExclusiveLock' AND c.relname = ANY(%s)))
"""
# (pid, relation or lock type, mode) of a waiting lock request.
Waiter = tuple[int, str, str]


class LockSampler(threading.Thread):
    """Reads pg_locks every SAMPLE_INTERVAL from its own connection until stopped."""

    def __init__(self, url: str, tables: Sequence[str], deadline: float) -> None:
        super().__init__(daemon=True)
        self.url, self.tables, self.deadline = url, list(tables), deadline
        self.halt = threading.Event()
        # (time, [(table, virtualtransaction)] granted AE, waiting requests)
        self.samples: list[tuple[float, list[tuple[str, str]], list[Waiter]]] = []
        self.error = ""

    def run(self) -> None:
        import psycopg2

        try:
            conn = psycopg2.connect(self.url, connect_timeout=5, application_name="relay_locks")
            conn.autocommit = True
            # Not `with conn:` - psycopg2 >= 2.9 opens a transaction there even
            # in autocommit, and an open transaction in this database makes
            # every CREATE INDEX CONCURRENTLY of the migration wait for it.
            try:
                cur = conn.cursor()
                while not self.halt.is_set() and time.monotonic() < self.deadline:
                    t = time.monotonic()
                    cur.execute(LOCKS_SQL, (self.tables,))
                    held: list[tuple[str, str]] = []
                    waiting: list[Waiter] = []
                    for pid, what, mode, granted, vxid in cur.fetchall():
                        if granted:
                            held.append((what, vxid))
                        else:
                            waiting.append((pid, what, mode))
                    self.samples.append((t, held, waiting))
                    self.halt.wait(max(0.0, SAMPLE_INTERVAL - (time.monotonic() - t)))
            finally:
                conn.close()
        except Exception as exc:
            self.error = first_line(exc)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=10)

    def holds(self) -> list[Hold]:
        """Continuous runs of one transaction holding ACCESS EXCLUSIVE on one table."""
        done: list[Hold] = []
        open_: dict[tuple[str, str], Hold] = {}
        for t, held, _waiting in self.samples:
            now = set(held)
            for key in list(open_):
                if key not in now:
                    done.append(open_.pop(key))
            for key in now:
                if key in open_:
                    open_[key].last = t
                    open_[key].samples += 1
                else:
                    open_[key] = Hold(key[0], t, t, 1)
        return done + list(open_.values())

    def max_waiting(self) -> int:
        return max((len(w) for _t, _h, w in self.samples), default=0)
