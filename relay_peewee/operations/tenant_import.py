"""Importing a tenant file into a database of either backend, atomically."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TextIO

from peewee import Database, DatabaseProxy

__all__ = ["ImportSummary", "import_tenant"]


@dataclass(frozen=True)
class ImportSummary:
    tenant_id: str
    slug: str
    source_backend: str  # the backend the file was exported from
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows imported


def import_tenant(
    db: Database | DatabaseProxy,
    source: TextIO | BinaryIO | str | Path,
    *,
    progress: Callable[[str], None] | None = None,
) -> ImportSummary:
    """Import the tenant in ``source`` (a file path or an open file); all or nothing."""
    raise NotImplementedError
