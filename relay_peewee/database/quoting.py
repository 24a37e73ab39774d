"""Identifiers written into SQL text, quoted the way peewee quotes them.

Most of the project's SQL goes through peewee's query builder, which quotes
every name. What it writes by hand - GRANTs, policies, ``ALTER TABLE``
fixes in audit findings, a drafted migration - must do the same, or a
table peewee names by default (``user`` for a ``User`` model) or a
mixed-case one (``"Order"``) is a syntax error or a different table.
Rendering peewee's own ``Entity`` keeps one rule for both (SQLite and
PostgreSQL both quote with ``"``, doubling an embedded one).
"""

from __future__ import annotations

from collections.abc import Iterable

from peewee import Context, Entity

__all__ = ["quote", "quote_list"]


def quote(*path: str) -> str:
    """``"name"``, or ``"schema"."name"`` for a dotted path given as parts."""
    return Context().sql(Entity(*path)).query()[0]


def quote_list(names: Iterable[str]) -> str:
    """``"a", "b"``: a column or table list."""
    return ", ".join(quote(n) for n in names)
