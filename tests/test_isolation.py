"""Every read and write path of a TenantModel stays inside the tenant in context.

Two tenants hold the same shape of data under the same slugs (the plugin's
``two_tenants``); each test acts as tenant A and asserts it saw only A's rows
and left B's untouched - B is read back with plain SQL, not through the ORM
under test. Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from peewee import JOIN, PREFETCH_TYPE, SQL, Database, ProgrammingError, Select, fn, prefetch

from relay_peewee import (
    CrossTenantWrite,
    RawQueryRefused,
    TenantRequired,
    current_tenant,
    tenant_context,
    unscoped,
)
from relay_peewee.database import is_postgres, postgres_driver
from relay_peewee.errors import InvalidTenantId, RelayError
from relay_peewee.models import (
    ApiKey,
    AuditLog,
    Rating,
    SiteSettings,
    Skill,
    SkillVersion,
    Tenant,
    UsageEvent,
    User,
)
from relay_peewee.testing import (
    SAMPLE_SLUGS,
    TenantPair,
    assert_only_tenant,
    assert_tenant_untouched,
    assert_unchanged,
    bound_by_row_level_security,
    snapshot_tenant,
)


def skill_of(tenant: Tenant, slug: str = "alpha") -> Skill:
    with tenant_context(tenant):
        return Skill.get(Skill.slug == slug)


def count_all(model: Any) -> int:
    with unscoped("test: count every tenant's rows"):
        return int(model.select().count())


# --- reads -------------------------------------------------------------------


def test_select_sees_only_the_tenant_in_context(two_tenants: TenantPair) -> None:
    a, b = two_tenants.a, two_tenants.b
    for tenant in (a, b):
        with tenant_context(tenant):
            skills = list(Skill.select())
            assert {s.slug for s in skills} == set(SAMPLE_SLUGS)
            assert_only_tenant(skills, tenant)
            assert_only_tenant(list(Skill.select().dicts()), tenant)
            assert_only_tenant(list(Skill.select(Skill.id, Skill.name)), tenant)
            assert_only_tenant(list(Skill.filter(slug="alpha")), tenant)
            assert_only_tenant(list(Rating.filter(skill__slug="alpha")), tenant)


def test_lookups_by_key_do_not_find_another_tenants_rows(two_tenants: TenantPair) -> None:
    a, b = two_tenants.a, two_tenants.b
    b_skill = skill_of(b)
    with tenant_context(a):
        alpha = Skill.get(Skill.slug == "alpha")
        assert alpha.tenant_id == a.id and alpha.id != b_skill.id
        assert Skill.get_or_none(Skill.id == b_skill.id) is None
        with pytest.raises(Skill.DoesNotExist):
            Skill.get_by_id(b_skill.id)
        with pytest.raises(Skill.DoesNotExist):
            Skill.get(id=b_skill.id)
        assert b_skill.id not in Skill
        settings = SiteSettings.get_by_id((a.id, "default"))
        assert settings.tenant_id == a.id
        with pytest.raises(SiteSettings.DoesNotExist):
            SiteSettings.get_by_id((b.id, "default"))


def test_count_and_exists_are_scoped(two_tenants: TenantPair) -> None:
    a, b = two_tenants.a, two_tenants.b
    b_skill = skill_of(b)
    assert count_all(Skill) == 2 * len(SAMPLE_SLUGS)
    with tenant_context(a):
        assert Skill.select().count() == len(SAMPLE_SLUGS)
        assert len(Skill) == len(SAMPLE_SLUGS)
        assert Rating.select().count() == len(two_tenants.rows_of(a).ratings)
        assert Skill.select().where(Skill.slug == "alpha").exists()
        assert not Skill.select().where(Skill.id == b_skill.id).exists()
        grouped = Skill.select(Skill.category, fn.COUNT(Skill.id)).group_by(Skill.category)
        assert sum(n for _, n in grouped.tuples()) == len(SAMPLE_SLUGS)
        assert grouped.count() == 2


def test_every_joined_tenant_model_is_constrained(two_tenants: TenantPair) -> None:
    a = two_tenants.a
    with tenant_context(a):
        ratings = list(Rating.select(Rating, Skill, User).join(Skill).switch(Rating).join(User))
        assert len(ratings) == len(two_tenants.rows_of(a).ratings)
        assert_only_tenant(ratings, a)  # the joined skill and user too

        # Both tenants have a skill "alpha": joined on slug, an unconstrained
        # second table would pair A's alpha with B's as well.
        other = Skill.alias()
        for join_type in (JOIN.INNER, JOIN.LEFT_OUTER, JOIN.RIGHT_OUTER, JOIN.FULL):
            rows = list(
                Skill.select(Skill, other)
                .join(other, join_type, on=(Skill.slug == other.slug))
                .objects()
            )
            assert len(rows) == len(SAMPLE_SLUGS), join_type
            assert_only_tenant(rows, a)
        pairs = (
            Skill.select(Skill.id, other.id.alias("other_id"))
            .join(other, on=(Skill.slug == other.slug))
            .dicts()
        )
        assert all(row["id"] == row["other_id"] for row in pairs)

        # LEFT JOIN keeps A's users without skills - and never pairs B's.
        authors = list(
            User.select(User, Skill).join(Skill, JOIN.LEFT_OUTER, on=(Skill.author == User.id))
        )
        assert_only_tenant(authors, a)


def test_a_tenant_model_joined_from_a_plain_model_is_scoped(two_tenants: TenantPair) -> None:
    a = two_tenants.a
    with tenant_context(a):
        # Tenant is not a TenantModel: Skill's table is scoped on its own.
        rows = list(Tenant.select(Tenant.slug, Skill.slug).join(Skill).tuples())
        assert sorted(rows) == sorted((a.slug, slug) for slug in SAMPLE_SLUGS)
        table = Skill._meta.table
        assert Select([table], [fn.COUNT(SQL("*"))]).scalar(Skill._meta.database) == 3


def test_subqueries_are_scoped(two_tenants: TenantPair) -> None:
    a = two_tenants.a
    with tenant_context(a):
        # The outer query is on Tenant, so only the subquery can filter.
        owners = Tenant.select().where(Tenant.id.in_(Skill.select(Skill.tenant)))
        assert [t.id for t in owners] == [a.id]
        alpha_ratings = Rating.select().where(
            Rating.skill.in_(Skill.select(Skill.id).where(Skill.slug == "alpha"))
        )
        assert_only_tenant(list(alpha_ratings), a)
        assert alpha_ratings.count() == 2
        source = Skill.select(Skill.id, Skill.tenant).alias("sq")
        outer = Select([source], [source.c.tenant_id]).bind(Skill._meta.database)
        assert {tenant_id for (tenant_id,) in outer.tuples()} == {a.id}
        union = Skill.select().where(Skill.slug == "alpha") | Skill.select().where(
            Skill.slug == "beta"
        )
        assert_only_tenant(list(union), a)
        cte = Skill.select(Skill.id).cte("own")
        via_cte = Rating.select().where(Rating.skill.in_(cte.select(cte.c.id))).with_cte(cte)
        assert_only_tenant(list(via_cte), a)


def test_prefetch_backrefs_and_foreign_keys_stay_in_the_tenant(two_tenants: TenantPair) -> None:
    a, b = two_tenants.a, two_tenants.b
    with tenant_context(b):
        b_rating = Rating.select().first()
    with tenant_context(a):
        skills = prefetch(Skill.select(), Rating.select(), SkillVersion.select())
        assert len(skills) == len(SAMPLE_SLUGS)
        for skill in skills:
            assert len(skill.ratings) == 2 and len(skill.versions) == 1
            assert_only_tenant([skill, *skill.ratings, *skill.versions], a)
        tenants = prefetch(Tenant.select().where(Tenant.id.in_([a.id, b.id])), Skill.select())
        assert {t.id: len(t.skills) for t in tenants} == {a.id: 3, b.id: 0}

        alpha = Skill.get(Skill.slug == "alpha")
        assert_only_tenant(list(alpha.ratings), a)
        assert list(b.skills) == []  # backref from a plain model, still scoped
        assert len(list(a.skills)) == len(SAMPLE_SLUGS)
        rating = Rating.get(Rating.skill == alpha)
        assert rating.skill.id == alpha.id  # a foreign key inside the tenant loads

        related = list(Skill.select().with_related(Skill.ratings))
        assert_only_tenant([*related, *(r for s in related for r in s.ratings)], a)
        joined = prefetch(Skill.select(), Rating.select(), prefetch_type=PREFETCH_TYPE.JOIN)
        assert_only_tenant([*joined, *(r for s in joined for r in s.ratings)], a)

        # A row read as B, followed in A's context: B's skill is not returned.
        assert b_rating is not None
        b_rating.__rel__.clear()
        with pytest.raises(Skill.DoesNotExist):
            _ = b_rating.skill


def test_raw_sql_is_refused_unless_unscoped(two_tenants: TenantPair) -> None:
    sql = "SELECT * FROM skills"
    with tenant_context(two_tenants.a), pytest.raises(RawQueryRefused):
        list(Skill.raw(sql))
    with pytest.raises(TenantRequired):
        list(Skill.raw(sql))
    with tenant_context(two_tenants.a), unscoped("test: raw report"):
        assert len(list(Skill.raw(sql))) == 2 * len(SAMPLE_SLUGS)


def test_a_query_built_once_is_rescoped_for_each_tenant(two_tenants: TenantPair) -> None:
    a, b = two_tenants.a, two_tenants.b
    everything = Skill.select().order_by(Skill.slug)  # e.g. at import time
    with tenant_context(a):
        assert_only_tenant(list(everything), a)
        assert len(everything) == len(SAMPLE_SLUGS)
    with tenant_context(b):
        # peewee caches rows on the query; A's must not be served to B.
        assert_only_tenant(list(everything), b)
        assert_only_tenant([everything[0]], b)


# --- writes ------------------------------------------------------------------


def new_skill(slug: str, **extra: Any) -> dict[str, Any]:
    return dict(name=slug, slug=slug, description="d", category="c", content="x", **extra)


def test_create_save_and_insert_fill_in_the_tenant(two_tenants: TenantPair) -> None:
    a, b = two_tenants.a, two_tenants.b
    with assert_tenant_untouched(b), tenant_context(a):
        created = Skill.create(**new_skill("created"))
        saved = Skill(**new_skill("saved"))
        saved.save(force_insert=True)  # a new row with its id already set
        Skill.insert(**new_skill("inserted")).execute()
        Skill.insert_many([new_skill("many-1"), new_skill("many-2")]).execute()
        fields = [Skill.name, Skill.slug, Skill.description, Skill.category, Skill.content]
        Skill.insert_many([("t", "tuple-row", "d", "c", "x")], fields=fields).execute()
        bulk = [Skill(**new_skill(f"bulk-{i}")) for i in range(3)]
        Skill.bulk_create(bulk, batch_size=2)
        got, was_created = Skill.get_or_create(slug="alpha", defaults=new_skill("alpha"))
        fresh, fresh_created = Skill.get_or_create(slug="fresh", defaults=new_skill("fresh"))
        assert created.tenant_id == saved.tenant_id == a.id
        assert all(s.tenant_id == a.id for s in bulk)
        assert (was_created, fresh_created) == (False, True)
        assert got.tenant_id == a.id and fresh.tenant_id == a.id
    with tenant_context(a):
        assert Skill.select().count() == len(SAMPLE_SLUGS) + 10
    with tenant_context(b):
        assert Skill.select().count() == len(SAMPLE_SLUGS)


def test_rows_naming_another_tenant_are_refused_and_nothing_is_written(
    two_tenants: TenantPair,
) -> None:
    a, b = two_tenants.a, two_tenants.b
    before = count_all(Skill)
    attempts: list[Callable[[], Any]] = [
        lambda: Skill.create(tenant=b, **new_skill("x")),
        lambda: Skill(tenant=b.id, **new_skill("x")).save(),
        lambda: Skill.insert(tenant=b.id, **new_skill("x")).execute(),
        lambda: Skill.insert_many([new_skill("ok"), new_skill("x", tenant=b.id)]).execute(),
        lambda: Skill.bulk_create([Skill(**new_skill("ok")), Skill(tenant=b, **new_skill("x"))]),
        lambda: Skill.get_or_create(slug="new", tenant=b.id, defaults=new_skill("new")),
        lambda: Skill.replace(**new_skill("x")).execute(),
        lambda: Skill.insert_from(Skill.select(Skill.name), [Skill.name]).execute(),
    ]
    with assert_tenant_untouched(a), assert_tenant_untouched(b), tenant_context(a):
        for attempt in attempts:
            with pytest.raises(CrossTenantWrite):
                attempt()
    assert count_all(Skill) == before


def test_a_column_named_any_way_is_still_checked(two_tenants: TenantPair) -> None:
    a, b = two_tenants.a, two_tenants.b
    a_rows, b_rows = two_tenants.rows_of(a), two_tenants.rows_of(b)
    table = Skill._meta.table
    skill = {Skill.name: "n", Skill.slug: "z", Skill.description: "d", Skill.category: "c"}
    rating = {Rating.user: a_rows.users[0].id, Rating.rating: 1}
    attempts: list[Callable[[], Any]] = [
        lambda: Skill.insert({table.tenant_id: b.id, **skill, Skill.content: "x"}).execute(),
        lambda: Skill.insert({Skill.alias().tenant: b.id, **skill, Skill.content: "x"}).execute(),
        lambda: Rating.insert(
            {Skill.tenant: b.id, Rating.skill: a_rows.skills[0].id, **rating}
        ).execute(),
        lambda: Rating.insert(
            {Rating._meta.table.skill_id: b_rows.skills[0].id, **rating}
        ).execute(),
        lambda: Skill.update({table.tenant_id: b.id}).execute(),
    ]
    with assert_tenant_untouched(a), assert_tenant_untouched(b), tenant_context(a):
        for attempt in attempts:
            with pytest.raises(CrossTenantWrite):
                attempt()


def test_update_and_delete_touch_only_the_tenant_in_context(two_tenants: TenantPair) -> None:
    a, b = two_tenants.a, two_tenants.b
    with assert_tenant_untouched(b), tenant_context(a):
        assert Skill.update(category="renamed").execute() == len(SAMPLE_SLUGS)
        alpha = Skill.get(Skill.slug == "alpha")
        alpha.name = "Alpha, edited"
        assert alpha.save() == 1
        beta = Skill.get(Skill.slug == "beta")
        beta.description = "only this column"
        assert beta.save(only=[Skill.description]) == 1
        Skill.bulk_update([alpha, beta], fields=[Skill.total_uses])
        assert Skill.delete().where(Skill.slug == "gamma").execute() == 1
        assert Rating.get(Rating.skill == alpha).delete_instance() == 1
        assert UsageEvent.delete().execute() == len(SAMPLE_SLUGS)
        assert {s.category for s in Skill.select()} == {"renamed"}
        assert Skill.select().count() == len(SAMPLE_SLUGS) - 1
        alpha.delete_instance(recursive=True)
        assert Skill.select().count() == len(SAMPLE_SLUGS) - 2


def test_update_from_another_table_is_scoped_on_both(two_tenants: TenantPair) -> None:
    a, b = two_tenants.a, two_tenants.b
    with assert_tenant_untouched(b), tenant_context(a):
        # UPDATE ... FROM users: the FROM side is scoped as a derived table.
        query = Skill.update(description="by author").from_(User).where(Skill.author == User.id)
        assert query.execute() == len(SAMPLE_SLUGS)


def count_selects(caplog: pytest.LogCaptureFixture, run: Callable[[], Any]) -> int:
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        run()
    return sum(1 for r in caplog.records if str(r.msg).lstrip("('\"").startswith("SELECT"))


def test_references_to_rows_already_read_cost_no_query(
    two_tenants: TenantPair, caplog: pytest.LogCaptureFixture, relay_db: Database
) -> None:
    a = two_tenants.a
    with tenant_context(a):
        skill = Skill.get(Skill.slug == "alpha")
        user = User.get(User.email == f"ann@{a.slug}.example")
        assert count_selects(caplog, lambda: Rating.create(skill=skill, user=user, rating=5)) == 0

        # Ids alone: the database's tenant-consistent keys (0006) check them,
        # so no lookup is spent (a refusal is tested below) - except on
        # psycopg 3, whose context has no deferred savepoint to lean on: one
        # lookup per referenced model (README, "Choosing a driver").
        def by_id() -> Rating:
            return Rating.create(skill=skill.id, user=user.id, rating=5)

        eager = is_postgres(relay_db) and postgres_driver(relay_db) == "psycopg3"
        assert count_selects(caplog, by_id) == (2 if eager else 0)
        rows = [{"skill": skill.id, "user": user.id, "rating": n} for n in range(50)]
        # Many rows: the database's own tenant-consistent keys (0006) check
        # them, inside a savepoint, so no lookup is spent.
        assert count_selects(caplog, lambda: Rating.insert_many(rows).execute()) == 0
        rating = Rating.get(Rating.skill == skill)
        rating.rating = 1  # the references are unchanged since the row was read
        assert count_selects(caplog, rating.save) == 0


def test_a_raw_id_of_another_tenant_is_refused_by_the_database_naming_the_reference(
    two_tenants: TenantPair, relay_db: Database
) -> None:
    a, b = two_tenants.a, two_tenants.b
    a_rows, b_rows = two_tenants.rows_of(a), two_tenants.rows_of(b)
    with assert_tenant_untouched(b), tenant_context(a):
        for skill_id, user_id, named in (
            (b_rows.skills[0].id, a_rows.users[0].id, "Rating.skill"),
            (a_rows.skills[0].id, b_rows.users[0].id, "Rating.user"),
            ("no-such-skill", a_rows.users[0].id, "Rating.skill"),
        ):
            with pytest.raises(CrossTenantWrite, match=named) as refused:
                Rating.create(skill=skill_id, user=user_id, rating=2)
            other = "Rating.user" if named == "Rating.skill" else "Rating.skill"
            assert other not in str(refused.value)
            assert b.id not in str(refused.value)
        # The refusal left the context's transaction usable.
        kept = Rating.create(skill=a_rows.skills[0].id, user=a_rows.users[0].id, rating=4)
    with tenant_context(a):
        assert Rating.get_by_id(kept.id).rating == 4


def test_moving_or_changing_another_tenants_row_is_refused(two_tenants: TenantPair) -> None:
    a, b = two_tenants.a, two_tenants.b
    b_skill = skill_of(b)
    with assert_tenant_untouched(a), assert_tenant_untouched(b), tenant_context(a):
        mine = Skill.get(Skill.slug == "alpha")
        mine.tenant = b
        with pytest.raises(CrossTenantWrite):
            mine.save()
        with pytest.raises(CrossTenantWrite):
            Skill.update(tenant=b.id).execute()
        b_skill.name = "hijacked"
        with pytest.raises(CrossTenantWrite):
            b_skill.save()
        with pytest.raises(CrossTenantWrite):
            b_skill.delete_instance()
        with pytest.raises(CrossTenantWrite):
            Skill.bulk_update([b_skill], fields=[Skill.name])
        # Not refused but scoped: matches none of B's rows.
        assert Skill.update(name="hijacked").where(Skill.id == b_skill.id).execute() == 0
        assert Skill.delete().where(Skill.id == b_skill.id).execute() == 0


def test_foreign_keys_into_another_tenant_are_refused(two_tenants: TenantPair) -> None:
    a, b = two_tenants.a, two_tenants.b
    a_user = two_tenants.rows_of(a).users[0]
    b_skill = skill_of(b)
    before = count_all(Rating)
    with assert_tenant_untouched(a), assert_tenant_untouched(b), tenant_context(a):
        a_skill = Skill.get(Skill.slug == "alpha")
        a_rating = Rating.get(Rating.skill == a_skill)
        attempts: list[Callable[[], Any]] = [
            lambda: Rating.create(skill=b_skill.id, user=a_user.id, rating=1),
            lambda: Rating.create(skill=b_skill, user=a_user, rating=1),  # B's instance
            lambda: Rating.create(skill="no-such-skill", user=a_user, rating=1),
            lambda: Rating.insert(skill=b_skill.id, user=a_user.id, rating=1).execute(),
            lambda: Rating.insert_many(
                [
                    {"skill": a_skill.id, "user": a_user.id, "rating": 2},
                    {"skill": b_skill.id, "user": a_user.id, "rating": 2},
                ]
            ).execute(),
            lambda: Rating.bulk_create([Rating(skill=b_skill.id, user=a_user.id, rating=1)]),
            lambda: Rating.update(skill=b_skill.id).where(Rating.id == a_rating.id).execute(),
            lambda: Rating.update(skill=Skill.id).execute(),  # an expression: uncheckable
        ]
        for attempt in attempts:
            with pytest.raises(CrossTenantWrite):
                attempt()
        a_rating.skill = b_skill.id
        with pytest.raises(CrossTenantWrite):
            a_rating.save()
        a_rating.skill = b_skill.id
        with pytest.raises(CrossTenantWrite):
            Rating.bulk_update([a_rating], fields=[Rating.skill])
    assert count_all(Rating) == before
    with assert_tenant_untouched(b), tenant_context(a):
        a_rating.skill = a_skill  # back to A's own: fine
        a_rating.save()
        # A subquery of a TenantModel is scoped itself, so it is allowed.
        ok = Rating.create(
            skill=Skill.select(Skill.id).where(Skill.slug == "beta"), user=a_user, rating=3
        )
        assert Rating.get_by_id(ok.id).skill.slug == "beta"


def test_an_upsert_never_updates_another_tenants_row(two_tenants: TenantPair) -> None:
    a, b = two_tenants.a, two_tenants.b
    b_user = two_tenants.rows_of(b).users[0]  # users.email is unique across tenants
    hijack = User.insert(email=b_user.email, name="hijacked").on_conflict(
        conflict_target=[User.email], update={User.name: "hijacked"}
    )
    with assert_tenant_untouched(b):
        if bound_by_row_level_security():
            # Row-level security refuses outright to update a row it hides.
            with pytest.raises(ProgrammingError, match="row-level security"), tenant_context(a):
                hijack.execute()
        else:
            with tenant_context(a):
                hijack.execute()  # the ORM's conflict update is limited to A's rows
    with assert_tenant_untouched(b), tenant_context(a):
        mine = two_tenants.rows_of(a).users[0]
        (
            User.insert(email=mine.email, name="renamed")
            .on_conflict(conflict_target=[User.email], update={User.name: "renamed"})
            .execute()
        )
        assert User.get_by_id(mine.id).name == "renamed"
        with pytest.raises(CrossTenantWrite):
            User.insert(email=mine.email).on_conflict_replace().execute()


def test_site_settings_for_tenant(two_tenants: TenantPair, relay_db: Database) -> None:
    a, b = two_tenants.a, two_tenants.b
    with tenant_context(a):
        settings = SiteSettings.for_tenant()
        assert (settings.tenant_id, settings.id) == (a.id, "default")
        settings.ollama_model = "a-model"
        settings.save()
    with tenant_context(b):
        assert SiteSettings.for_tenant().ollama_model == "nomic-embed-text"
    with unscoped("test: a new tenant"):  # an admin operation
        fresh = Tenant.create(slug="fresh", name="Fresh")
    with tenant_context(fresh):
        created = SiteSettings.for_tenant()
        assert created.embedding_dimensions == 768 and created.tenant_id == fresh.id
        assert SiteSettings.for_tenant().tenant_id == fresh.id
        assert SiteSettings.select().count() == 1
    with tenant_context(a), unscoped("test: settings while unscoped"):
        assert SiteSettings.for_tenant().ollama_model == "a-model"
    with pytest.raises(TenantRequired):
        SiteSettings.for_tenant()


# --- no context, and the escape hatch ----------------------------------------


def test_every_path_fails_closed_without_a_tenant(two_tenants: TenantPair) -> None:
    a, b = two_tenants.a, two_tenants.b
    with tenant_context(a):
        skill = Skill.get(Skill.slug == "alpha")
        rating = Rating.get(Rating.skill == skill)
        user = User.get(User.email == f"ann@{a.slug}.example")
    rating.__rel__.clear()
    paths: dict[str, Callable[[], Any]] = {
        "select": lambda: list(Skill.select()),
        "dicts": lambda: list(Skill.select().dicts()),
        "get": lambda: Skill.get(Skill.slug == "alpha"),
        "get_or_none": lambda: Skill.get_or_none(Skill.slug == "alpha"),
        "get_by_id": lambda: Skill.get_by_id(skill.id),
        "count": lambda: Skill.select().count(),
        "exists": lambda: Skill.select().exists(),
        "len": lambda: len(Skill),
        "join": lambda: list(Rating.select().join(Skill)),
        "plain join": lambda: list(Tenant.select().join(Skill)),
        "subquery": lambda: list(Tenant.select().where(Tenant.id.in_(Skill.select(Skill.tenant)))),
        "prefetch": lambda: prefetch(Skill.select(), Rating.select()),
        "backref": lambda: list(skill.ratings),
        "plain backref": lambda: list(a.skills),
        "foreign key": lambda: rating.skill,
        "raw": lambda: list(Skill.raw("SELECT * FROM skills")),
        "create": lambda: Skill.create(**new_skill("x")),
        "save new": lambda: Skill(**new_skill("x")).save(),
        "save existing": lambda: skill.save(),
        "insert": lambda: Skill.insert(**new_skill("x")).execute(),
        "insert_many": lambda: Skill.insert_many([new_skill("x")]).execute(),
        "bulk_create": lambda: Skill.bulk_create([Skill(**new_skill("x"))]),
        "bulk_update": lambda: Skill.bulk_update([skill], fields=[Skill.name]),
        "get_or_create": lambda: Skill.get_or_create(slug="x", defaults=new_skill("x")),
        "update": lambda: Skill.update(name="x").execute(),
        "delete": lambda: Skill.delete().execute(),
        "delete_instance": lambda: user.delete_instance(),
        "site settings": lambda: SiteSettings.for_tenant(),
        "api keys": lambda: list(ApiKey.select()),
    }
    assert current_tenant() is None
    open_paths = []
    with assert_tenant_untouched(a), assert_tenant_untouched(b):
        for name, path in paths.items():
            try:
                path()
            except TenantRequired:
                continue
            open_paths.append(name)
    assert open_paths == [], f"ran without a tenant: {open_paths}"


def test_unscoped_sees_every_tenant_and_leaves_an_audit_row(two_tenants: TenantPair) -> None:
    a, b = two_tenants.a, two_tenants.b
    with pytest.raises(ValueError):
        unscoped("  ")
    with tenant_context(a):
        with unscoped("support ticket #42"):
            assert current_tenant() == a.id  # the caller's, for the record
            assert {s.tenant_id for s in Skill.select()} == {a.id, b.id}
            with tenant_context(b):  # scoping again inside, innermost wins
                assert_only_tenant(list(Skill.select()), b)
            Skill.create(tenant=b, **new_skill("by-admin"))  # unscoped writes name the tenant
        assert_only_tenant(list(Skill.select()), a)
    with unscoped("nightly job"):
        assert Skill.select().count() == 2 * len(SAMPLE_SLUGS) + 1
        rows = list(
            AuditLog.select()
            .where(AuditLog.action == "tenant.unscoped")
            .order_by(AuditLog.created_at, AuditLog.id)
        )
    reasons = sorted((r.metadata["reason"], r.tenant_id, r.metadata["tenant_id"]) for r in rows)
    assert reasons == [("nightly job", None, None), ("support ticket #42", a.id, a.id)]


def test_contexts_nest_and_restore_on_exceptions(two_tenants: TenantPair) -> None:
    a, b = two_tenants.a, two_tenants.b
    assert current_tenant() is None
    with tenant_context(a) as outer:
        assert outer == a.id
        with tenant_context(b.id):
            assert current_tenant() == b.id
        assert current_tenant() == a.id
        with pytest.raises(RuntimeError), tenant_context(b):
            raise RuntimeError("boom")
        assert current_tenant() == a.id
        assert_only_tenant(list(Skill.select()), a)
    assert current_tenant() is None
    # A RelayError (the caller's mistake, one line in the CLI), and still
    # the ValueError it used to be, for handlers written against that.
    with pytest.raises(InvalidTenantId) as empty:
        tenant_context("")
    with pytest.raises(InvalidTenantId, match="NUL") as nul:  # on entry, whatever the driver
        tenant_context("a\x00b")
    for refused in (empty, nul):
        assert isinstance(refused.value, RelayError) and isinstance(refused.value, ValueError)
    with pytest.raises(TypeError):
        tenant_context(None)
    with pytest.raises(TypeError):  # a row, but not a tenant's
        tenant_context(two_tenants.rows_of(a).users[0])
    assert snapshot_tenant(b).tables["skills"]


# --- the pytest plugin's own assertions --------------------------------------


def test_the_plugins_assertions_catch_another_tenants_rows(two_tenants: TenantPair) -> None:
    a, b = two_tenants.a, two_tenants.b
    with tenant_context(a), unscoped("test: rows of both tenants"):
        both = list(Skill.select())
        both_dicts = list(Skill.select().dicts())
        no_tenant_column = list(Skill.select(Skill.id, Skill.slug))
        ratings_with_b_skills = list(
            Rating.select(Rating, Skill).join(Skill).where(Skill.tenant == b.id)
        )
    for rows in (both, both_dicts, no_tenant_column):
        with pytest.raises(AssertionError, match="another tenant"):
            assert_only_tenant(rows, a)
    for rating in ratings_with_b_skills:
        rating.tenant = a.id  # only the joined skill still belongs to B
    with pytest.raises(AssertionError, match="another tenant"):
        assert_only_tenant(ratings_with_b_skills, a)
    with pytest.raises(TypeError):
        assert_only_tenant([("a tuple", "says nothing")], a)

    snapshot = snapshot_tenant(b)
    with tenant_context(b):
        Skill.update(name="changed").where(Skill.slug == "alpha").execute()
    with pytest.raises(AssertionError, match="skills"):
        assert_unchanged(snapshot)
    untouched_a = assert_tenant_untouched(a)
    with pytest.raises(AssertionError, match="was modified"), untouched_a, tenant_context(a):
        Skill.delete().where(Skill.slug == "gamma").execute()
