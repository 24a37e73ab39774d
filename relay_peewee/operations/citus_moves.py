"""``move_user`` on a distributed Citus schema (``operations.distribute``).

There ``tenant_id`` is the distribution column: Citus refuses to change it
(``UPDATE users SET tenant_id``) and a ``SELECT ... FOR UPDATE`` that does
not name it (the user is found by email). So the user is found through the
email registry, and it and the rows that move along are re-created in the
new tenant - their own values, read as JSON and written back with the new
``tenant_id`` - and deleted from the old one, the registries moved with
them: the same rows, the same ids, in the same transaction.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from peewee import Database

from ..errors import RelayError

__all__ = ["find_user_for_move", "move_rows"]


def find_user_for_move(db: Database, email: str) -> tuple[str, str] | None:
    """(user id, tenant id) of ``email``, its row locked: the registry names the tenant."""
    owner = db.execute_sql(
        "SELECT tenant_id FROM relay_user_emails WHERE email = %s", (email,)
    ).fetchone()
    if owner is None:
        return None
    row = db.execute_sql(
        "SELECT id, tenant_id FROM users WHERE tenant_id = %s AND email = %s FOR UPDATE",
        (owner[0], email),
    ).fetchone()
    return (str(row[0]), str(row[1])) if row else None


def move_rows(
    db: Database, user_id: str, old: str, new: str, moved_along: tuple[tuple[str, str], ...]
) -> dict[str, int]:
    """Re-create the user and ``moved_along`` (table, extra condition) in ``new``."""
    now = datetime.now(timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
    user = _rows(db, "users", "id = %s", (old, user_id))
    if len(user) != 1:
        raise RelayError("the user changed while being moved; nothing was changed")
    along = {t: _rows(db, t, f"user_id = %s{extra}", (old, user_id)) for t, extra in moved_along}
    # Children first: the user's delete would cascade to its keys otherwise.
    for table, extra in moved_along:
        db.execute_sql(
            f"DELETE FROM {table} WHERE tenant_id = %s AND user_id = %s{extra}", (old, user_id)
        )
    db.execute_sql("DELETE FROM users WHERE tenant_id = %s AND id = %s", (old, user_id))
    db.execute_sql(
        "UPDATE relay_user_emails SET tenant_id = %s WHERE email = %s AND tenant_id = %s",
        (new, user[0]["email"], old),
    )
    hashes = [r["key_hash"] for r in along.get("api_keys", [])]
    if hashes:
        db.execute_sql(
            "UPDATE relay_api_key_hashes SET tenant_id = %s"
            " WHERE key_hash = ANY (%s) AND tenant_id = %s",
            (new, hashes, old),
        )
    _insert(db, "users", [dict(user[0], tenant_id=new, updated_at=now)])
    for table, _extra in moved_along:
        _insert(db, table, [dict(r, tenant_id=new) for r in along[table]])
    return {t: len(rows) for t, rows in along.items()}


def _rows(db: Database, table: str, where: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    cursor = db.execute_sql(
        f"SELECT row_to_json(t)::text FROM {table} AS t WHERE tenant_id = %s AND {where}", params
    )
    return [json.loads(r[0]) for r in cursor.fetchall()]


def _insert(db: Database, table: str, rows: list[dict[str, Any]]) -> None:
    for row in rows:  # one router INSERT each: the rows of one user, a handful
        db.execute_sql(
            f"INSERT INTO {table} SELECT * FROM json_populate_record(NULL::{table}, %s::json)",
            (json.dumps(row),),
        )
