"""save() checks the row its statement writes, also when application code runs inside it.

``TenantModel.save`` checks the tenant and the references before handing the
row to peewee. When nothing but peewee's and this package's code runs after
that check, the statement trusts it; when the application's code does (a
``playhouse.signals`` pre_save handler, a mixin's ``save``, an overridden
``insert``), the statement checks itself. The models here are the test's own and use plain
foreign keys, so no composite key in the database would catch what the ORM
missed (and Relay's models get no backrefs to tables only this test has).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from peewee import Database, ForeignKeyField, Model, TextField
from playhouse import signals

from relay_peewee import CrossTenantWrite, TenantModel, tenant_context, unscoped
from relay_peewee.commands import create_tenant
from relay_peewee.models import Tenant


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


TABLES = [Topic, SignalledNote, StampedNote, RedirectingNote]


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
