"""save() checks the row its statement writes, whatever runs between the two.

``TenantModel.save`` checks the tenant and the references before handing the
row to peewee, and only the statement built from exactly the values it
checked skips a second look. Application code inside ``save()`` (a
``playhouse.signals`` pre_save handler, a mixin's ``save``, an overridden
``insert``, a callable default), peewee filling in a related row's id, or
an instance that is not what it seems must not turn that into a way across.
The models here are the test's own and use plain foreign keys, so no
composite key in the database would catch what the ORM missed (and Relay's
models get no backrefs to tables only this test has).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
from peewee import (
    Database,
    DeferredForeignKey,
    ForeignKeyField,
    IntegerField,
    Model,
    ModelInsert,
    PostgresqlDatabase,
    TextField,
)
from playhouse import signals

from relay_peewee import CrossTenantWrite, TenantModel, tenant_context, unscoped
from relay_peewee.models import AuditLog, Tenant
from relay_peewee.operations.commands import create_tenant


class Topic(TenantModel):
    slug = TextField()

    class Meta:
        table_name = "hook_topics"


class SignalledNote(TenantModel, signals.Model):
    topic = ForeignKeyField(Topic, backref="+")
    body = TextField()

    class Meta:
        table_name = "signalled_notes"


class Stamped(Model):
    """A mixin below TenantModel in the MRO whose save() changes the row."""

    def save(self, force_insert: bool = False, only: Any = None) -> Any:
        retarget = getattr(self, "retarget", None)
        if retarget is not None:
            self.topic = retarget
        return super().save(force_insert, only)


class StampedNote(TenantModel, Stamped):
    topic = ForeignKeyField(Topic, backref="+")
    body = TextField()

    class Meta:
        table_name = "stamped_notes"


class RedirectingNote(TenantModel):
    """Overrides insert(), which peewee's save() calls after the check."""

    topic = ForeignKeyField(Topic, backref="+")
    body = TextField()
    redirect_to: str | None = None

    class Meta:
        table_name = "redirecting_notes"

    @classmethod
    def insert(cls, data: Any = None, /, **insert: Any) -> Any:
        if cls.redirect_to is not None:
            insert["topic"] = cls.redirect_to
        return super().insert(data, **insert)


class Board(TenantModel):
    class Meta:
        table_name = "hook_boards"


class Pin(TenantModel):
    """A reference named like the notes' ``topic``, to another table."""

    topic = ForeignKeyField(Board, backref="+")

    class Meta:
        table_name = "hook_pins"


class Note(TenantModel):
    topic = ForeignKeyField(Topic, backref="+")
    body = TextField()
    # Called while the INSERT of save(only=...) is rendered: application code
    # that runs inside the statement itself.
    rank = IntegerField(default=lambda: Note.on_default())
    side_effect: Callable[[], None] | None = None
    side_pin: int | None = None

    class Meta:
        table_name = "hook_notes"

    @classmethod
    def on_default(cls) -> int:
        if cls.side_effect is not None:
            effect, cls.side_effect = cls.side_effect, None
            effect()
        return 0

    @classmethod
    def insert_many(cls, rows: Any, fields: Any = None) -> Any:
        if cls.side_pin is not None:  # runs inside bulk_create
            Pin.insert(topic=cls.side_pin).execute()
        return super().insert_many(rows, fields)


class Counting(ModelInsert):
    """A query layer of the application's own, under relay_peewee's."""

    executed: ClassVar[list[str]] = []

    def _execute(self, database: Database) -> Any:
        Counting.executed.append(self.model.__name__)
        return super()._execute(database)  # type: ignore[misc]


class CountedNote(TenantModel):
    topic = ForeignKeyField(Topic, backref="+")
    body = TextField()

    class Meta:
        table_name = "hook_counted_notes"

    @classmethod
    def _write_queries(cls, records_events: bool) -> Any:
        insert, update, delete = super()._write_queries(records_events)
        return type("CountedInsert", (insert, Counting), {}), update, delete


class AuditedCountedNote(CountedNote):
    class Meta:
        table_name = "hook_audited_counted_notes"
        audit_events = "counted_note"


class ArchivedTopic(Topic):
    """A subclass: its own table, with ids of its own."""

    class Meta:
        table_name = "hook_archived_topics"


TABLES = [
    Topic,
    SignalledNote,
    StampedNote,
    RedirectingNote,
    Board,
    Pin,
    Note,
    ArchivedTopic,
    CountedNote,
    AuditedCountedNote,
]


@pytest.fixture
def tenants(migrated_db: Database) -> Iterator[tuple[Tenant, Tenant]]:
    migrated_db.create_tables(TABLES)
    a = create_tenant(migrated_db, "hooks-a", "A")
    b = create_tenant(migrated_db, "hooks-b", "B")
    for tenant in (a, b):
        with tenant_context(tenant):
            Topic.create(slug="alpha")
    yield a, b
    migrated_db.drop_tables(TABLES)


def alpha_of(tenant: Tenant) -> Topic:
    with tenant_context(tenant):
        return Topic.get(Topic.slug == "alpha")


def notes_of_every_tenant(model: Any) -> list[tuple[str, str]]:
    with unscoped("test: read every tenant's notes"):
        return [(n.tenant_id, n.topic_id) for n in model.select()]


@pytest.fixture
def on_pre_save() -> Iterator[Callable[[Callable[..., None]], None]]:
    connected: list[str] = []

    def connect(handler: Callable[..., None]) -> None:
        name = f"test-handler-{len(connected)}"
        signals.pre_save.connect(handler, name=name, sender=SignalledNote)
        connected.append(name)

    yield connect
    for name in connected:
        signals.pre_save.disconnect(name=name, sender=SignalledNote)


def test_a_pre_save_signal_cannot_point_the_row_at_another_tenant(
    tenants: tuple[Tenant, Tenant], on_pre_save: Callable[[Callable[..., None]], None]
) -> None:
    a, b = tenants
    b_topic = alpha_of(b)

    def retarget(sender: Any, instance: Any, created: bool) -> None:
        instance.topic = b_topic.id

    with tenant_context(a):
        a_topic = Topic.get(Topic.slug == "alpha")
        note = SignalledNote.create(topic=a_topic, body="kept")
        on_pre_save(retarget)
        with pytest.raises(CrossTenantWrite, match="not a row of tenant"):
            SignalledNote.create(topic=a_topic, body="new")
        note.body = "changed"
        with pytest.raises(CrossTenantWrite, match="not a row of tenant"):
            note.save()
    assert notes_of_every_tenant(SignalledNote) == [(a.id, a_topic.id)]


def test_trust_in_a_loaded_row_does_not_carry_into_another_tenants_context(
    tenants: tuple[Tenant, Tenant], on_pre_save: Callable[[Callable[..., None]], None]
) -> None:
    a, b = tenants
    a_topic = alpha_of(a)

    def write_for_b(sender: Any, instance: Any, created: bool) -> None:
        # A's topic id is trusted for the save in A's context, not in B's.
        with tenant_context(b):
            SignalledNote.insert(topic=instance.topic_id, body="smuggled").execute()

    on_pre_save(write_for_b)
    with tenant_context(a), pytest.raises(CrossTenantWrite, match="not a row of tenant"):
        SignalledNote.create(topic=Topic.get_by_id(a_topic.id), body="x")
    assert notes_of_every_tenant(SignalledNote) == []


def test_a_signal_that_changes_nothing_still_trusts_the_loaded_rows(
    tenants: tuple[Tenant, Tenant],
    on_pre_save: Callable[[Callable[..., None]], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, _b = tenants
    seen: list[str] = []
    on_pre_save(lambda sender, instance, created: seen.append(instance.body))
    with tenant_context(a):
        topic = Topic.get(Topic.slug == "alpha")
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="peewee"):
            SignalledNote.create(topic=topic, body="one")
        selects = [r for r in caplog.records if str(r.msg).lstrip("('\"").startswith("SELECT")]
        assert selects == []  # the topic was read in this tenant: no lookup
        SignalledNote.create(topic=topic.id, body="two")  # a bare id is looked up, and fine
    assert seen == ["one", "two"]
    assert notes_of_every_tenant(SignalledNote) == [(a.id, topic.id)] * 2


def test_a_mixins_save_below_tenant_model_is_checked(tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    b_topic = alpha_of(b)
    with tenant_context(a):
        a_topic = Topic.get(Topic.slug == "alpha")
        StampedNote.create(topic=a_topic, body="plain")
        note = StampedNote(topic=a_topic, body="retargeted")
        note.retarget = b_topic.id  # type: ignore[attr-defined]
        with pytest.raises(CrossTenantWrite, match="not a row of tenant"):
            note.save()
    assert notes_of_every_tenant(StampedNote) == [(a.id, a_topic.id)]


@pytest.mark.parametrize("model", [CountedNote, AuditedCountedNote])
def test_every_insert_goes_through_every_query_layer(
    tenants: tuple[Tenant, Tenant], model: type[CountedNote]
) -> None:
    # save()'s own INSERT, checked up front, takes the short way through the
    # scoping layer; it must still pass through the layers below it (the
    # audit layer where the model records events, and any of its own).
    a, _b = tenants
    Counting.executed.clear()
    with tenant_context(a):
        a_topic = Topic.get(Topic.slug == "alpha")
        model.create(topic=a_topic, body="saved")
        model.insert(topic=a_topic.id, body="inserted").execute()
        events = AuditLog.select().where(AuditLog.action == "counted_note.create").count()
    assert Counting.executed == [model.__name__, model.__name__]
    assert events == (2 if model is AuditedCountedNote else 0)


def test_an_overridden_insert_is_checked(tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    b_topic = alpha_of(b)
    with tenant_context(a):
        a_topic = Topic.get(Topic.slug == "alpha")
        RedirectingNote.create(topic=a_topic, body="plain")
        RedirectingNote.redirect_to = b_topic.id
        try:
            with pytest.raises(CrossTenantWrite, match="not a row of tenant"):
                RedirectingNote.create(topic=a_topic, body="redirected")
        finally:
            RedirectingNote.redirect_to = None
    assert notes_of_every_tenant(RedirectingNote) == [(a.id, a_topic.id)]


def test_a_related_row_saved_in_another_tenant_after_assignment_is_refused(
    tenants: tuple[Tenant, Tenant],
) -> None:
    a, b = tenants
    with tenant_context(a):
        topic = Topic(slug="unsaved")
        note = Note(topic=topic, body="x")  # no id yet: peewee fills it in on save
    with tenant_context(b):
        topic.save()  # now a row of B
    with tenant_context(a), pytest.raises(CrossTenantWrite, match="not a row of tenant"):
        note.save()
    assert notes_of_every_tenant(Note) == []


def test_a_row_copied_from_another_tenant_has_every_reference_checked(
    tenants: tuple[Tenant, Tenant],
) -> None:
    a, b = tenants
    b_topic = alpha_of(b)
    with tenant_context(b):
        Note.create(topic=b_topic, body="b's")
    with unscoped("test: copy a row of B"):
        copy = Note.get()
    copy.id, copy.tenant = None, a.id  # its topic is unchanged, and B's
    with tenant_context(a), pytest.raises(CrossTenantWrite, match="not a row of tenant"):
        copy.save()
    assert notes_of_every_tenant(Note) == [(b.id, b_topic.id)]


def test_an_update_that_matched_nothing_does_not_make_the_row_trusted(
    tenants: tuple[Tenant, Tenant],
) -> None:
    a, b = tenants
    with unscoped("test: read a row of B"):
        b_topic = Topic.get(Topic.tenant == b.id)
    b_topic.tenant = a.id
    with tenant_context(a):
        assert b_topic.save() == 0  # scoped to A: B's row is not touched
        with pytest.raises(CrossTenantWrite, match="not a row of tenant"):
            Note.create(topic=b_topic, body="x")
    assert alpha_of(b).tenant_id == b.id
    assert notes_of_every_tenant(Note) == []


def test_a_statement_inside_the_statement_is_checked_in_its_own_tenant(
    tenants: tuple[Tenant, Tenant],
) -> None:
    a, b = tenants
    a_topic = alpha_of(a)

    def write_for_b() -> None:
        with tenant_context(b):
            Note.insert(topic=a_topic.id, body="smuggled", rank=1).execute()

    with tenant_context(a):
        note = Note(topic=a_topic, body="x")  # calls the default once: not yet armed
    Note.side_effect = write_for_b
    try:
        with tenant_context(a), pytest.raises(CrossTenantWrite, match="not a row of tenant"):
            # rank is left out, so peewee calls its default as the INSERT renders
            note.save(only=[Note.topic, Note.body, Note.tenant])
    finally:
        Note.side_effect = None
    assert notes_of_every_tenant(Note) == []


def test_checked_values_are_trusted_for_their_own_model_only(
    tenants: tuple[Tenant, Tenant],
) -> None:
    a, b = tenants
    a_topic = alpha_of(a)
    with tenant_context(b):
        b_board = Board.create()
    # Note.topic and Pin.topic share a name, not a table: A's topic id, trusted
    # for the notes bulk_create writes, says nothing about boards.
    assert a_topic.id == b_board.id  # the same number, in two tables
    Note.side_pin = b_board.id
    try:
        with tenant_context(a), pytest.raises(CrossTenantWrite, match="not a row of tenant"):
            Note.bulk_create([Note(topic=a_topic, body="x")])
    finally:
        Note.side_pin = None
    with unscoped("test: read every tenant's pins"):
        assert list(Pin.select()) == []


def test_a_row_of_a_subclass_is_not_a_row_of_the_target(tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    b_topic = alpha_of(b)
    with tenant_context(a):
        # Its id, in its own table, is the id of B's row in hook_topics.
        archived = ArchivedTopic.create(id=b_topic.id, slug="old")
        assert isinstance(archived, Topic) and archived._dirty == set()
        for attempt in (
            lambda: Note.create(topic=archived, body="x"),
            lambda: Note.bulk_create([Note(topic=archived, body="y")]),
        ):
            with pytest.raises(CrossTenantWrite, match="not a row of tenant"):
                attempt()
    assert notes_of_every_tenant(Note) == []


def test_a_deleted_row_is_no_longer_trusted(tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    with tenant_context(a):
        gone = Topic.create(slug="gone")
        gone.delete_instance()
    with tenant_context(b):
        Topic.create(slug="maybe-the-same-id")  # SQLite may hand out gone's id again
    with tenant_context(a), pytest.raises(CrossTenantWrite, match="not a row of tenant"):
        Note.create(topic=gone, body="x")
    assert notes_of_every_tenant(Note) == []


def test_an_update_leaves_unchanged_references_out(tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    with tenant_context(a):
        a_topic = Topic.create(slug="shared")
        Note.create(topic=a_topic, body="shared")
    with tenant_context(b):
        b_topic = Topic.create(slug="shared")
    # A join on a non-key condition fills note.topic with B's topic and leaves
    # nothing dirty: the instance is not what the row holds.
    with unscoped("test: a support query across tenants"):
        (note,) = (
            Note.select(Note, Topic)
            .join(Topic, on=(Topic.slug == Note.body))
            .where(Topic.tenant == b.id)
        )
    assert note.topic_id == b_topic.id and note._dirty == set()
    with tenant_context(a):
        note.body = "edited"
        note.save()  # writes the body; the unchanged reference is not written back
    assert notes_of_every_tenant(Note) == [(a.id, a_topic.id)]


def test_a_deferred_foreign_key_is_checked_once_resolved(
    tenants: tuple[Tenant, Tenant], migrated_db: Database
) -> None:
    a, b = tenants

    class Early(TenantModel):
        body = TextField()
        late = DeferredForeignKey("Late", null=True, backref="+")

        class Meta:
            table_name = "hook_early"

    # Created by hand: create_tables() cannot type a key that is not resolved yet.
    key = "SERIAL" if isinstance(migrated_db, PostgresqlDatabase) else "INTEGER"
    migrated_db.execute_sql(
        f"CREATE TABLE hook_early (id {key} PRIMARY KEY, body TEXT NOT NULL, "
        "late_id INTEGER, tenant_id TEXT NOT NULL)"
    )
    try:
        with tenant_context(a):
            Early.create(body="before Late exists")  # its references, as known then

        class Late(TenantModel):
            class Meta:
                table_name = "hook_late"

        migrated_db.create_tables([Late])
        with tenant_context(b):
            b_late = Late.create()
        with tenant_context(a):
            with pytest.raises(CrossTenantWrite, match="not a row of tenant"):
                Early.create(body="x", late=b_late.id)
            with pytest.raises(CrossTenantWrite, match="not a row of tenant"):
                Early.insert(body="y", late=b_late.id).execute()
    finally:
        migrated_db.execute_sql("DROP TABLE IF EXISTS hook_early")
        migrated_db.execute_sql("DROP TABLE IF EXISTS hook_late")
