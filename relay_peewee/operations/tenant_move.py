"""Moving a tenant to another database (either backend), resumably.

The steps, each a transaction on one database, each safe to run again:

1. **deactivate** at the source (``tenant.deactivate``): no new request or
   context gets into it from here on;
2. **export** to a temporary file and **import** it into the target, in one
   transaction there: the tenant arrives inactive, as it was exported;
3. **verify**: the per-table fingerprints (``tenant_fingerprints``) of
   source and target agree; a ``tenant.move.verified`` audit event at the
   source records it, naming the target;
4. **erase** at the source, in resumable batches (``tenant_erase``), leaving
   its tombstone;
5. **activate** at the target (``tenant.activate``).

No step is remembered in this process: a run reads where the tenant stands
in both databases and goes on from there, so after a kill -9 anywhere the
same command completes the move. The tenant is active in at most one of
them at any time: at the source until step 1, at the target from step 5,
which runs only once the source is erased. A failed verification stops
before anything is erased, with both copies inactive: the source is intact,
and ``tenants activate`` there undoes the move once the target's copy is
erased.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from peewee import Database, DatabaseProxy, Model

from ..database import is_postgres, unwrap
from ..database.quoting import quote
from ..errors import RelayError
from ..tenancy.rls import bypass_scope
from .tenant_data import database_tables
from .tenant_erase import ERASE_ACTION, erase_order, erase_tenant
from .tenant_export import export_tenant, tenant_fingerprints
from .tenant_import import import_tenant
from .tenant_states import activate_tenant, deactivate_tenant, placeholder, record

__all__ = ["VERIFIED_ACTION", "MoveSummary", "describe", "move_tenant"]

VERIFIED_ACTION = "tenant.move.verified"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class MoveSummary:
    tenant_id: str
    slug: str
    target: str
    rows: dict[str, int]  # table -> rows erased at the source (this run's erase)
    resumed: bool  # a previous run had got part of the way


def describe(db: Database) -> str:
    """The target as the audit event names it: no user, no password."""
    if is_postgres(db):
        params: dict[str, Any] = dict(getattr(db, "connect_params", {}))
        return f"postgresql://{params.get('host', '')}:{params.get('port', 5432)}/{db.database}"
    return f"sqlite:///{os.path.abspath(str(db.database))}"


def move_tenant(
    source: Database | DatabaseProxy,
    slug: str,
    target: Database | DatabaseProxy,
    *,
    models: Sequence[type[Model]] = (),
    batch_size: int = 10_000,
    progress: Progress | None = None,
) -> MoveSummary:
    """Move tenant ``slug`` from ``source`` to ``target``; see the module docstring."""
    src, dst = unwrap(source), unwrap(target)
    say = progress or (lambda _message: None)
    where = describe(dst)
    if where == describe(src):
        raise RelayError("the source and the target are the same database")
    tenant_id = _source_tenant(src, slug)
    if tenant_id is None:  # erased at the source already: only step 5 may be left
        erased = _erased_id(src, slug)
        if erased is None or _row(dst, erased) is None:
            raise RelayError(f"no tenant with slug {slug!r} at the source")
        say("move: activating at the target")
        activate_tenant(dst, slug)
        return MoveSummary(erased, slug, where, {}, True)
    _require_carried(src, slug, tenant_id, models)
    at_target = _row(dst, tenant_id)
    taken = _slug_owner(dst, slug)
    if taken is not None and taken != tenant_id:
        raise RelayError(
            f"the target has another tenant with slug {slug!r} ({taken}); nothing was changed"
        )
    resumed = at_target is not None
    if at_target is None:
        say("move: deactivating at the source")
        deactivate_tenant(src, slug)
        with tempfile.TemporaryDirectory(prefix="relay-move-") as folder:
            path = os.path.join(folder, f"{slug}.jsonl")
            say("move: exporting")
            with open(path, "wb") as out:
                export_tenant(src, slug, out, models=models)
            say("move: importing")
            import_tenant(dst, path)
    elif _active(src, tenant_id):
        raise RelayError(
            f"tenant {slug!r} is active at the source and already present at the target: "
            "deactivate it at the source and rerun, or erase the target's copy"
        )
    if not _verified(src, tenant_id, where):
        say("move: verifying")
        theirs = tenant_fingerprints(dst, slug, models=models)
        ours = tenant_fingerprints(src, slug, models=models)
        differ = sorted(t for t in ours if ours[t] != theirs.get(t))
        if differ:
            raise RelayError(
                f"the target's copy of {slug!r} differs from the source in {', '.join(differ)}: "
                "nothing was erased; both copies are inactive"
            )
        _record_verified(src, tenant_id, slug, where)
    say("move: erasing at the source")
    erasure = erase_tenant(src, slug, batch_size=batch_size, progress=progress)
    say("move: activating at the target")
    activate_tenant(dst, slug)
    return MoveSummary(tenant_id, slug, where, erasure.deleted, resumed)


def _require_carried(
    db: Database, slug: str, tenant_id: str, models: Sequence[type[Model]]
) -> None:
    """Refuse a move that would erase rows the tenant file does not carry.

    Erase deletes the tenant's rows in every table with a ``tenant_id``;
    export writes only the tables a model describes. A table between the
    two would be lost in a move, so it is refused before anything changes.
    """
    carried = {spec.name for spec in database_tables(db, models)}
    for table in erase_order(db):
        if table in carried:
            continue
        if _one(db, f"SELECT 1 FROM {quote(table)} WHERE tenant_id = ? LIMIT 1", (tenant_id,)):
            raise RelayError(
                f"table {table} holds rows of tenant {slug!r} that a tenant file does not "
                "carry (no model describes it): name its module with --models, or delete "
                "those rows first; nothing was changed"
            )


def _one(db: Database, query: str, params: tuple[Any, ...]) -> Any:
    # fetchall: a SQLite statement left unfinished would make a later COMMIT fail.
    with bypass_scope(db):
        rows = db.execute_sql(query.replace("?", placeholder(db)), params).fetchall()
    return rows[0] if rows else None


def _source_tenant(db: Database, slug: str) -> str | None:
    if "\x00" in slug:
        raise RelayError(f"invalid tenant slug {slug!r}: it contains NUL")
    row = _one(db, "SELECT id FROM tenants WHERE slug = ?", (slug,))
    return None if row is None else str(row[0])


def _row(db: Database, tenant_id: str) -> Any:
    return _one(db, "SELECT id, is_active FROM tenants WHERE id = ?", (tenant_id,))


def _active(db: Database, tenant_id: str) -> bool:
    row = _row(db, tenant_id)
    return bool(row and row[1])


def _slug_owner(db: Database, slug: str) -> str | None:
    row = _one(db, "SELECT id FROM tenants WHERE slug = ?", (slug,))
    return None if row is None else str(row[0])


def _events(db: Database, tenant_id: str | None, action: str) -> list[dict[str, Any]]:
    where = "action = ?" + ("" if tenant_id is None else " AND tenant_id = ?")
    params = (action,) if tenant_id is None else (action, tenant_id)
    with bypass_scope(db):
        rows = db.execute_sql(
            f"SELECT tenant_id, metadata FROM audit_logs WHERE {where}".replace(
                "?", placeholder(db)
            ),
            params,
        ).fetchall()
    out = []
    for owner, metadata in rows:
        data = json.loads(metadata) if isinstance(metadata, str) else metadata
        out.append({"tenant_id": str(owner), **(data if isinstance(data, dict) else {})})
    return out


def _erased_id(db: Database, slug: str) -> str | None:
    found = [e["tenant_id"] for e in _events(db, None, ERASE_ACTION) if e.get("slug") == slug]
    return found[-1] if found else None


def _verified(db: Database, tenant_id: str, where: str) -> bool:
    return any(e.get("to") == where for e in _events(db, tenant_id, VERIFIED_ACTION))


def _record_verified(db: Database, tenant_id: str, slug: str, where: str) -> None:
    with db.atomic(), bypass_scope(db):
        record(
            db,
            {
                "action": VERIFIED_ACTION,
                "tenant_id": tenant_id,
                "resource_type": "tenant",
                "resource_id": tenant_id,
                "metadata": {"slug": slug, "to": where},
            },
        )
