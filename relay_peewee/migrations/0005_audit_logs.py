"""audit_logs: the append-only record of security events."""

from __future__ import annotations

from typing import Any

from peewee import DateTimeField, Model, TextField, UUIDField

from relay_peewee.errors import MigrationError

INDEXES = (("tenant_id", "created_at"), ("actor_id", "created_at"), ("action", "created_at"))


def _audit_model(db: Any) -> Any:
    class AuditLog(Model):
        id = UUIDField(primary_key=True)
        actor_id = TextField(null=True)
        tenant_id = TextField(null=True)
        action = TextField()
        resource_type = TextField(null=True)
        resource_id = TextField(null=True)
        ip_address = TextField(null=True)
        metadata = TextField(null=True)  # replaced by jsonb below on PostgreSQL
        created_at = DateTimeField()

        class Meta:
            database = db
            table_name = "audit_logs"

    return AuditLog


# SQLite: its statements do not need earlier migrations' queued table
# rebuilds to have run, so they are merged with its own (one copy per table).
MERGES_REBUILDS = True


def up(migrator: Any, db: Any) -> None:
    from relay_peewee.database import is_postgres

    migrator.step("creating audit_logs")
    model = _audit_model(db)
    if is_postgres(db):
        model.metadata.field_type = "JSONB"
    model.create_table(safe=False)
    # Named like the AuditLog model's own indexes, not by this frozen class.
    for columns in INDEXES:
        migrator.migrate(migrator.add_index("audit_logs", columns))


def check_down(migrator: Any, db: Any) -> None:
    count = _audit_model(db).select().count()
    if count:
        raise MigrationError(
            f"refusing to drop audit_logs: it holds {count} security event(s); export them, "
            "lift the append-only rule (`relay-peewee rollback --to 0007_audit_log_append_only`),"
            " delete them, then roll back again"
        )


def down(migrator: Any, db: Any) -> None:
    check_down(migrator, db)
    migrator.migrate(migrator.drop_table("audit_logs"))
