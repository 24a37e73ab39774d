"""Exporting one tenant's rows to a tenant file (format: ``tenant_data``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, TextIO

from peewee import Database, DatabaseProxy, Model

__all__ = ["ExportSummary", "export_tenant", "tenant_fingerprints"]


@dataclass(frozen=True)
class ExportSummary:
    tenant_id: str
    slug: str
    backend: str  # "postgresql" or "sqlite"
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows written
    sha256: str = ""  # the trailer's digest of the row lines


def export_tenant(
    db: Database | DatabaseProxy,
    slug: str,
    out: TextIO | BinaryIO,
    *,
    models: Sequence[type[Model]] = (),
    progress: Callable[[str], None] | None = None,
) -> ExportSummary:
    """Write every row of tenant ``slug`` to ``out``: header, rows, trailer."""
    raise NotImplementedError


def tenant_fingerprints(
    db: Database | DatabaseProxy, slug: str, *, models: Sequence[type[Model]] = ()
) -> dict[str, str]:
    """One digest per table of the tenant's rows, the same on both backends."""
    raise NotImplementedError
