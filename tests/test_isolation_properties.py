"""Property: random sequences of reads and writes under random tenants never cross.

Hypothesis draws steps - creates, renames (by query and by save), deletes,
ratings (some aimed at the other tenant's skills), and reads (every read path
at once) - each run as tenant A or B. After every step: each row the step saw belongs to
the tenant it ran as, the other tenant's rows are byte-for-byte unchanged
(read with plain SQL), and the acting tenant's skills match a model of what
the steps so far should have left. Each example runs in a transaction that is
rolled back, so examples start from the same two populated tenants.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from peewee import Database, prefetch

from relay_peewee import CrossTenantWrite, tenant_context
from relay_peewee.models import Rating, Skill, Tenant, User
from relay_peewee.testing import (
    SAMPLE_SLUGS,
    TenantPair,
    assert_only_tenant,
    assert_unchanged,
    snapshot_tenant,
)

SLUGS = (*SAMPLE_SLUGS, "delta", "epsilon")
READS = (
    "select",
    "get",
    "count",
    "exists",
    "join",
    "same_slug",
    "backref",
    "prefetch",
    "dicts",
    "fk",
)

tenants = st.sampled_from("ab")
slugs = st.sampled_from(SLUGS)
steps = st.one_of(
    st.tuples(st.just("create"), tenants, slugs),
    st.tuples(st.just("rename"), tenants, slugs, st.text("xyz", min_size=1, max_size=3)),
    st.tuples(st.just("save"), tenants, slugs, st.text("xyz", min_size=1, max_size=3)),
    st.tuples(st.just("delete"), tenants, slugs),
    st.tuples(st.just("rate"), tenants, slugs, st.integers(1, 5)),
    st.tuples(st.just("cross_rate"), tenants, slugs),
    st.tuples(st.just("read"), tenants, slugs),
)


@dataclass
class Model:
    """What each tenant should hold: slug -> (skill id, name, number of ratings)."""

    skills: dict[str, dict[str, list[Any]]] = field(default_factory=dict)

    def of(self, key: str) -> dict[str, list[Any]]:
        return self.skills[key]


def current_state(tenant: Tenant) -> dict[str, list[Any]]:
    with tenant_context(tenant):
        return {
            s.slug: [s.id, s.name, s.ratings.count()] for s in Skill.select().order_by(Skill.slug)
        }


def run_step(step: tuple[Any, ...], me: Tenant, other: Tenant, model: Model, key: str) -> list[Any]:
    """Run one step as ``me``; update the model; return every row it read."""
    kind, _, *args = step
    mine, theirs = model.of(key), model.of("b" if key == "a" else "a")
    seen: list[Any] = []
    with tenant_context(me):
        rater = User.select().order_by(User.email).first()
        if kind == "create":
            (slug,) = args
            if slug not in mine:  # a duplicate slug is the database's business
                skill = Skill.create(
                    name=slug, slug=slug, description="d", category="c", content="x"
                )
                mine[slug] = [skill.id, slug, 0]
        elif kind == "rename":
            slug, name = args
            changed = Skill.update(name=name).where(Skill.slug == slug).execute()
            assert changed == (1 if slug in mine else 0)
            if slug in mine:
                mine[slug][1] = name
        elif kind == "save":
            slug, name = args
            skill = Skill.get_or_none(Skill.slug == slug)
            assert (skill is not None) == (slug in mine)
            if skill is not None:
                seen.append(skill)
                skill.name = name
                skill.save()
                mine[slug][1] = name
        elif kind == "delete":
            (slug,) = args
            assert Skill.delete().where(Skill.slug == slug).execute() == (1 if slug in mine else 0)
            mine.pop(slug, None)
        elif kind == "rate":
            slug, score = args
            if slug in mine:
                Rating.create(skill=Skill.get(Skill.slug == slug), user=rater, rating=score)
                mine[slug][2] += 1
        elif kind == "cross_rate":
            (slug,) = args
            if slug in theirs:
                with pytest.raises(CrossTenantWrite):
                    Rating.create(skill=theirs[slug][0], user=rater, rating=1)
        else:  # every read path, each step: they are cheap and this is the point
            for how in READS:
                seen.extend(read(how, args[0]))
    return seen


def read(kind: str, slug: str) -> list[Any]:
    if kind == "select":
        return list(Skill.select())
    if kind == "get":
        found = Skill.get_or_none(Skill.slug == slug)
        return [found] if found is not None else []
    if kind == "count":
        assert Skill.select().count() == len(list(Skill.select()))
        return []
    if kind == "exists":
        assert Skill.select().where(Skill.slug == slug).exists() == any(
            s.slug == slug for s in Skill.select()
        )
        return []
    if kind == "join":
        return list(Rating.select(Rating, Skill, User).join(Skill).switch(Rating).join(User))
    if kind == "same_slug":
        # Both tenants use the same slugs: an unscoped join would pair them.
        other = Skill.alias()
        query = Skill.select(other.id, other.tenant).join(other, on=(Skill.slug == other.slug))
        rows = list(query.dicts())
        assert len(rows) == Skill.select().count()
        return rows
    if kind == "backref":
        return [r for s in Skill.select() for r in s.ratings]
    if kind == "prefetch":
        skills = prefetch(Skill.select(), Rating.select())
        return [*skills, *(r for s in skills for r in s.ratings)]
    if kind == "dicts":
        return list(Skill.select().dicts())
    ratings = list(Rating.select())
    return [r.skill for r in ratings]  # a foreign-key load per rating


@pytest.mark.parametrize("examples", [30])
def test_random_steps_never_cross_tenants(
    two_tenants: TenantPair, relay_db: Database, examples: int
) -> None:
    by_key = {"a": two_tenants.a, "b": two_tenants.b}
    start = {key: current_state(t) for key, t in by_key.items()}
    ran: list[int] = []

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,  # no .hypothesis directory in the checkout
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(st.lists(steps, min_size=1, max_size=12))
    def property_holds(sequence: list[tuple[Any, ...]]) -> None:
        model = Model({key: {s: list(v) for s, v in state.items()} for key, state in start.items()})
        with relay_db.atomic() as transaction:
            for step in sequence:
                key = step[1]
                me, other = by_key[key], by_key["b" if key == "a" else "a"]
                before = snapshot_tenant(other)
                seen = run_step(step, me, other, model, key)
                assert_only_tenant(seen, me)
                assert_unchanged(before)
                assert current_state(me) == model.of(key), step
            transaction.rollback()
        ran.append(len(sequence))

    property_holds()
    assert len(ran) >= examples and sum(ran) > 2 * examples, ran  # it did run
