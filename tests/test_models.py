"""The models: the schema they declare, their fields and relations, on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest
from peewee import Database, IntegrityError, TextField
from schema import tenancy_structure

import relay_peewee
from relay_peewee import TenantModel, tenant_context
from relay_peewee.database import catalog, open_database
from relay_peewee.models import (
    DEFAULT_TENANT_ID,
    MODELS,
    Rating,
    Skill,
    SkillEmbedding,
    SkillVersion,
    Tenant,
    User,
)
from relay_peewee.operations.commands import create_tenant, migrate


def test_models_declare_the_schema_the_migrations_build(
    db_url: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A fresh database from create_tables() and one from migrate() agree."""
    migrated = open_database(db_url)
    other_url = (
        str(request.getfixturevalue("pg_url"))
        if not db_url.startswith("sqlite")
        else f"sqlite:///{tmp_path / 'created.db'}"
    )
    created = relay_peewee.connect(other_url)
    try:
        migrate(migrated)
        created.create_tables(MODELS)
        assert tenancy_structure(created) == tenancy_structure(migrated)
    finally:
        migrated.close()
        created.close()


def test_json_and_list_fields_round_trip(migrated_db: Database) -> None:
    with tenant_context(DEFAULT_TENANT_ID):
        author = User.create(email="ann@example.com", name="Ann")
        skill = Skill.create(
            name="Writer",
            slug="writer",
            description="d",
            category="c",
            content="x",
            tags=["draft", "émoji ✓", ""],
            author=author,
        )
        SkillVersion.create(
            skill=skill,
            version=1,
            content_url="u",
            content_hash="h",
            content_type="t",
            name="v1",
            description="first",
            metadata={"nested": {"list": [1, 2.5, None]}, "s": '100% "quoted"'},
        )
        SkillEmbedding.create(
            skill=skill, embedding=[0.25, -1.5, 3.0], model_name="m", dimensions=3, input_hash="i"
        )
        again = Skill.get_by_id(skill.id)
        assert again.tags == ["draft", "émoji ✓", ""]
        assert again.versions[0].metadata == {
            "nested": {"list": [1, 2.5, None]},
            "s": '100% "quoted"',
        }
        assert again.embeddings[0].embedding == [0.25, -1.5, 3.0]
        assert again.author.email == "ann@example.com"
        assert list(author.skills) == [again]


def test_relations_and_backrefs_exist() -> None:
    for name in ("users", "skills", "api_keys", "ratings", "site_settings", "usage_events"):
        assert hasattr(Tenant, name), name
    for name in (
        "versions",
        "ratings",
        "usage_events",
        "embeddings",
        "reviews",
        "author",
        "tenant",
    ):
        assert hasattr(Skill, name), name
    for name in ("skills", "ratings", "api_keys", "tenant"):
        assert hasattr(User, name), name
    assert Rating.skill.rel_model is Skill and Rating.user.rel_model is User


def test_an_applications_own_tenant_model(migrated_db: Database) -> None:
    class Invoice(TenantModel):
        number = TextField()
        customer = TextField()

        class Meta:
            table_name = "invoices"
            tenant_unique = [("number",)]

    migrated_db.create_tables([Invoice])
    indexes = {ix.columns: ix.unique for ix in catalog.indexes(migrated_db, "invoices")}
    # the composite unique starts with tenant_id, so no separate tenant index
    assert indexes.get(("tenant_id", "number")) is True
    assert ("tenant_id",) not in indexes
    acme = create_tenant(migrated_db, "acme", "Acme")
    with tenant_context(DEFAULT_TENANT_ID):
        Invoice.create(number="1", customer="x")
    with tenant_context(acme):
        Invoice.create(number="1", customer="y")  # the same number in another tenant
        with pytest.raises(IntegrityError), migrated_db.atomic():
            Invoice.create(number="1", customer="z")
        assert [i.customer for i in Invoice.select()] == ["y"]
    assert hasattr(Tenant, "invoices")


def test_tenant_foreign_key_field_is_public_api_like_tenant_model() -> None:
    import relay_peewee
    from relay_peewee.fields import TenantForeignKeyField

    assert relay_peewee.TenantForeignKeyField is TenantForeignKeyField
    assert {"TenantModel", "TenantForeignKeyField"} <= set(relay_peewee.__all__)
