"""Statements a request sends: every ``cursor.execute`` on a connection, counted.

psycopg2 sends a string of several statements in one round trip, and psycopg 3
one statement per ``execute`` without parameters, so for both drivers the
count of ``execute`` calls is the count of round trips. The connection's
``cursor_factory`` is swapped for a counting one for the duration: the
database and the code under test are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["counting_statements"]


@contextmanager
def counting_statements(db: Any) -> Iterator[Callable[[], list[str]]]:
    """Within the block, every statement sent on ``db``'s connection; the
    callable returns them so far."""
    conn = db.connection()
    sent: list[str] = []
    base = conn.cursor_factory or _default_cursor(conn)

    class Counting(base):  # type: ignore[misc, valid-type]
        def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            sent.append(query if isinstance(query, str) else str(query))
            return super().execute(query, *args, **kwargs)

    conn.cursor_factory = Counting
    try:
        yield lambda: list(sent)
    finally:
        conn.cursor_factory = base


def _default_cursor(conn: Any) -> Any:
    module = type(conn).__module__
    if module.startswith("psycopg2"):
        import psycopg2.extensions

        return psycopg2.extensions.cursor
    import psycopg

    return psycopg.Cursor
