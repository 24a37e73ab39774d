"""Rows for ``Skill.insert_many``: the small skills the request benchmarks read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def skill_rows(count: int, authors: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """``count`` skills with distinct slugs; ``authors``, when given, taken in turn."""
    rows: list[dict[str, Any]] = []
    for i in range(count):
        row: dict[str, Any] = {
            "name": f"skill {i}",
            "slug": f"skill-{i}",
            "description": "d",
            "category": f"cat-{i % 10}",
            "content": "# x",
        }
        if authors:
            row["author"] = authors[i % len(authors)]
        rows.append(row)
    return rows
