"""The demo month as its user sees it: contract-shaped events, a believable city, nine findable stories."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any

import pytest

from app.demo.city import City, build_city
from app.demo.generate import (
    DEFAULT_SEED,
    DEMO_START,
    SOURCES,
    STORIES,
    TZ,
    DemoEvent,
    Story,
    generate,
    planted_stories,
)
from app.demo.stories import extra_stories

Body = dict[str, Any]

VEHICLE_TYPES = {"car", "new_energy", "motorcycle", "trailer", "truck", "other"}
ACTIONS = {
    "vehicle_registration": {"register", "transfer", "deregister"},
    "driver_testing": {"exam"},
    "vehicle_inspection": {"inspection"},
    "accident_handling": {"case_opened", "case_closed"},
    "violation_handling": {"penalty_issued", "record_modified", "record_deleted"},
}
ENVELOPE = {
    "source_event_id",
    "domain",
    "action",
    "occurred_at",
    "operator",
    "business_unit",
    "agent_id",
    "object_ref",
    "attributes",
}


@pytest.fixture(scope="module")
def city() -> City:
    return build_city(DEFAULT_SEED)


@pytest.fixture(scope="module")
def month(city: City) -> list[DemoEvent]:
    """The default demo: seed 7, 30 days, scale 1 (about two seconds to build)."""
    return generate(city, seed=DEFAULT_SEED)


@pytest.fixture(scope="module")
def bodies(month: list[DemoEvent]) -> list[Body]:
    return [event.body for event in month]


@pytest.fixture(scope="module")
def stories(city: City) -> dict[str, Story]:
    return {story.key: story for story in planted_stories(city, seed=DEFAULT_SEED)}


def when(body: Body) -> datetime:
    return datetime.fromisoformat(body["occurred_at"])


def on(body: Body, day: date) -> bool:
    return when(body).date() == day


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def story_events(bodies: list[Body], story: Story) -> list[Body]:
    """The story's subject's events in the story's domain (normal business included)."""

    def subject(body: Body) -> object:
        if story.subject_type == "operator":
            return body["operator"]["id"]
        if story.subject_type == "responsible_officer":
            return body["operator"]["responsible_officer"]
        if story.subject_type == "business_unit":
            return body.get("business_unit", {}).get("id")
        return body.get("agent_id")

    return [b for b in bodies if b["domain"] == story.domain and subject(b) == story.subject_id]


def planted(bodies: list[Body], stories: dict[str, Story]) -> set[str]:
    """Ids of the events of a story's subject on its day (or week, or night), to set them aside."""
    marked: set[str] = set()
    for story in stories.values():
        span = 7 if story.key == "no-liability-closures" else 2
        first = datetime.combine(story.day, time(), TZ)
        marked |= {
            b["source_event_id"] for b in story_events(bodies, story) if first <= when(b) < first + timedelta(days=span)
        }
    return marked


# --- determinism and volume -------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_city_and_events() -> None:
    assert build_city(3) == build_city(3)
    first = generate(build_city(3), seed=3, days=3, scale=0.1)
    assert first == generate(build_city(3), seed=3, days=3, scale=0.1)


def test_different_seeds_give_different_cities_and_events() -> None:
    assert build_city(3) != build_city(4)
    assert generate(build_city(3), seed=3, days=2, scale=0.05) != generate(build_city(3), seed=4, days=2, scale=0.05)


def test_a_shorter_window_is_the_start_of_a_longer_one(city: City) -> None:
    short = generate(city, seed=5, days=3, scale=0.1)
    longer = generate(city, seed=5, days=6, scale=0.1)
    cut = datetime.combine(DEMO_START + timedelta(days=3), time(), TZ)
    assert short == [e for e in longer if when(e.body) < cut]


def test_a_month_at_scale_one_is_about_a_hundred_thousand_events(bodies: list[Body]) -> None:
    assert 90_000 <= len(bodies) <= 110_000
    per_domain = Counter(b["domain"] for b in bodies)
    assert per_domain.most_common(1)[0][0] == "violation_handling"
    assert set(per_domain) == set(ACTIONS)


def test_scale_shrinks_the_normal_business_but_not_the_stories(city: City) -> None:
    only_stories = generate(city, seed=DEFAULT_SEED, scale=0)
    assert 350 <= len(only_stories) <= 450
    tenth = generate(city, seed=DEFAULT_SEED, days=7, scale=0.1)
    full_week = 7 * 3_300
    assert 0.05 * full_week <= len(tenth) <= 0.15 * full_week


def test_bad_window_or_scale_is_refused(city: City) -> None:
    with pytest.raises(ValueError, match="days"):
        generate(city, seed=1, days=0)
    with pytest.raises(ValueError, match="scale"):
        generate(city, seed=1, scale=-1)


# --- the contract's envelope ------------------------------------------------------------------------


def test_every_event_has_the_contract_fields_and_attributes(bodies: list[Body]) -> None:
    for body in bodies:
        assert set(body) <= ENVELOPE, body
        assert {"source_event_id", "domain", "action", "occurred_at", "operator", "attributes"} <= set(body)
        assert body["action"] in ACTIONS[body["domain"]], body
        operator = body["operator"]
        assert set(operator) == {"id", "kind", "unit", "responsible_officer"}
        assert operator["kind"] in {"police", "auxiliary", "staff"}
        assert operator["kind"] != "police" or operator["responsible_officer"] is None
        if "business_unit" in body:
            assert set(body["business_unit"]) == {"id", "kind"}
        attrs = body["attributes"]
        match body["domain"]:
            case "vehicle_registration":
                assert attrs["vehicle_type"] in VEHICLE_TYPES
            case "driver_testing":
                assert attrs["subject"] in {1, 2, 3, 4}
                assert is_int(attrs["subject"])
                assert attrs["result"] in {"pass", "fail"}
                assert is_int(attrs["score"])
                assert 0 <= attrs["score"] <= 100
            case "vehicle_inspection":
                assert attrs["result"] in {"pass", "fail"}
                assert is_int(attrs["duration_seconds"])
                assert attrs["duration_seconds"] >= 0
                assert attrs["vehicle_type"] in VEHICLE_TYPES
            case "accident_handling":
                assert ("closure" in attrs) == (body["action"] == "case_closed")
                if "closure" in attrs:
                    assert attrs["closure"] in {"mediated", "penalized", "no_liability", "transferred"}
            case "violation_handling":
                assert is_int(attrs["fine_amount"])
                assert attrs["fine_amount"] >= 0
                assert is_int(attrs["points"])
                assert attrs["points"] >= 0


def test_occurred_at_is_rfc3339_with_the_shanghai_offset(bodies: list[Body]) -> None:
    pattern = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+08:00")
    assert all(pattern.fullmatch(b["occurred_at"]) for b in bodies)
    first = datetime.combine(DEMO_START, time(), TZ)
    assert all(first <= when(b) < first + timedelta(days=30) for b in bodies)


def test_events_are_sorted_by_occurred_at_then_source_event_id(bodies: list[Body]) -> None:
    keys = [(when(b), b["source_event_id"]) for b in bodies]
    assert keys == sorted(keys)


def test_source_event_ids_are_unique_per_source_and_each_domain_has_one_source(
    month: list[DemoEvent],
) -> None:
    ids = Counter((e.source, e.body["source_event_id"]) for e in month)
    assert max(ids.values()) == 1
    for event in month:
        source, prefix = SOURCES[event.body["domain"]]
        assert event.source == source
        assert re.fullmatch(rf"{prefix}-\d{{8}}-\d{{6}}", event.body["source_event_id"])
    assert {e.source for e in month} == {"vr-system", "dt-system", "vi-system", "ah-system", "vh-system"}


# --- the city ---------------------------------------------------------------------------------------


def test_the_city_has_a_detachment_of_several_hundred_people(city: City) -> None:
    assert (len(city.police), len(city.auxiliaries), len(city.staff)) == (300, 450, 40)
    kinds = Counter(bu.kind for bu in city.business_units)
    assert kinds == {
        "inspection_station": 12,
        "service_station": 6,
        "company": 10,
        "driving_school": 8,
        "exam_site": 5,
    }
    assert len(city.agents) == 60
    assert all(re.fullmatch(r"P1\d{3}", op.id) for op in city.police)
    assert all(re.fullmatch(r"A2\d{3}", op.id) for op in city.auxiliaries)
    assert all(re.fullmatch(r"S3\d{3}", op.id) for op in city.staff)
    assert len({op.id for op in city.operators}) == 790


def test_every_unit_has_a_known_parent_up_to_the_detachment(city: City) -> None:
    units = {unit.id: unit for unit in city.units}
    assert [u.id for u in city.units if u.parent is None] == ["CD-ZD"]
    for unit in city.units:
        assert unit.parent is None or unit.parent in units
        assert unit.label_zh
        assert unit.label_en
        assert unit.id.isascii()


def test_auxiliaries_answer_to_a_police_officer_of_their_own_unit(city: City, bodies: list[Body]) -> None:
    police = {op.id: op for op in city.police}
    for aux in city.auxiliaries:
        assert aux.responsible_officer in police
        assert police[aux.responsible_officer].unit == aux.unit
    assert any(s.responsible_officer for s in city.staff)
    assert any(not s.responsible_officer for s in city.staff)
    for body in bodies:
        operator = body["operator"]
        assert city.operator(operator["id"]).unit == operator["unit"]
        if operator["kind"] == "auxiliary":
            assert operator["responsible_officer"] in police


def test_events_name_only_units_business_units_and_agents_of_the_city(city: City, bodies: list[Body]) -> None:
    units = {unit.id for unit in city.units}
    business_units = {(bu.id, bu.kind) for bu in city.business_units}
    assert {b["operator"]["unit"] for b in bodies} <= units
    assert {(b["business_unit"]["id"], b["business_unit"]["kind"]) for b in bodies if "business_unit" in b} <= (
        business_units
    )
    assert {b["agent_id"] for b in bodies if "agent_id" in b} <= set(city.agents)
    auxiliaries_at_work = {b["operator"]["id"] for b in bodies if b["operator"]["kind"] == "auxiliary"}
    assert len(auxiliaries_at_work) > 200  # auxiliaries do a real share of the business


# --- the planted stories ----------------------------------------------------------------------------


def test_the_stories_are_the_nine_of_the_articles_with_city_subjects(city: City) -> None:
    assert STORIES == planted_stories(city, seed=DEFAULT_SEED)
    assert len({s.key for s in STORIES}) == 9
    subjects = {
        "operator": {op.id for op in city.operators},
        "responsible_officer": {op.id for op in city.police},
        "business_unit": {bu.id for bu in city.business_units},
        "agent": set(city.agents),
    }
    for story in STORIES:
        assert story.subject_id in subjects[story.subject_type]
        assert story.domain in ACTIONS
        assert DEMO_START <= story.day < DEMO_START + timedelta(days=28)
        assert story.day.weekday() < 5
        assert story.label_zh
        assert story.label_en


def _max_in_one_hour(events: list[Body]) -> int:
    return max(Counter(b["occurred_at"][:13] for b in events).values(), default=0)


def _bulk_new_energy(story: Story, events: list[Body], city: City) -> None:
    mine = [b for b in events if on(b, story.day) and b["action"] == "register"]
    assert _max_in_one_hour([b for b in mine if b["attributes"]["vehicle_type"] == "new_energy"]) >= 40
    assert city.operator(story.subject_id).kind == "police"


def _bulk_motorcycles(story: Story, events: list[Body], city: City) -> None:
    mine = [b for b in events if on(b, story.day) and b["attributes"]["vehicle_type"] == "motorcycle"]
    assert _max_in_one_hour(mine) >= 35
    auxiliary = city.operator(story.subject_id)
    assert auxiliary.kind == "auxiliary"
    assert auxiliary.responsible_officer in {op.id for op in city.police}
    assert {b["operator"]["responsible_officer"] for b in mine} == {auxiliary.responsible_officer}


def _bulk_trailers(story: Story, events: list[Body], city: City) -> None:
    trailers = [b for b in events if on(b, story.day) and b["attributes"]["vehicle_type"] == "trailer"]
    assert sum(b["attributes"]["result"] == "pass" for b in trailers) >= 65


def _rushed(story: Story, events: list[Body], city: City) -> None:
    quick = [b for b in events if on(b, story.day) and b["attributes"]["duration_seconds"] < 120]
    assert len(quick) >= 28
    assert all(b["attributes"]["result"] == "pass" for b in quick)


def _agent(story: Story, events: list[Body], city: City) -> None:
    mine = [b for b in events if on(b, story.day) and b["action"] in {"register", "transfer"}]
    assert len(mine) >= 30
    assert len({b["operator"]["id"] for b in mine}) >= 12


def _night_deletions(story: Story, events: list[Body], city: City) -> None:
    night = datetime.combine(story.day, time(22), TZ)
    deleted = [b for b in events if b["action"] == "record_deleted" and night <= when(b) < night + timedelta(hours=4)]
    assert len(deleted) >= 22


def _no_liability(story: Story, events: list[Body], city: City) -> None:
    assert story.day.weekday() == 0  # a whole Monday-to-Friday inside one weekly window
    week = datetime.combine(story.day, time(), TZ)
    closed = [
        b
        for b in events
        if week <= when(b) < week + timedelta(days=7)
        and b["attributes"].get("closure") == "no_liability"
        and b["operator"]["kind"] == "auxiliary"
    ]
    assert len(closed) >= 18
    assert len({b["operator"]["id"] for b in closed}) >= 2


def _fine_reductions(story: Story, events: list[Body], city: City) -> None:
    reduced = [
        b
        for b in events
        if on(b, story.day)
        and b["action"] == "record_modified"
        and b["attributes"]["fine_amount"] < b["attributes"]["original_fine_amount"]
    ]
    assert len(reduced) >= 28


def _examiner(story: Story, events: list[Body], city: City) -> None:
    exams = [b for b in events if on(b, story.day)]
    assert len(exams) >= 55
    assert sum(b["attributes"]["result"] == "pass" for b in exams) / len(exams) >= 0.95
    assert {b["attributes"]["subject"] for b in exams} <= {2, 3}
    assert len({b["business_unit"]["id"] for b in exams}) == 1


STORY_CHECKS: dict[str, Callable[[Story, list[Body], City], None]] = {
    "new-energy-bulk-registration": _bulk_new_energy,
    "motorcycle-bulk-registration": _bulk_motorcycles,
    "trailer-bulk-inspection": _bulk_trailers,
    "rushed-inspection": _rushed,
    "agent-many-officers": _agent,
    "night-record-deletion": _night_deletions,
    "no-liability-closures": _no_liability,
    "fine-reduction": _fine_reductions,
    "examiner-pass-rate": _examiner,
}


@pytest.mark.parametrize("key", list(STORY_CHECKS))
def test_each_story_is_found_among_a_month_of_normal_business(
    key: str, stories: dict[str, Story], bodies: list[Body], city: City
) -> None:
    story = stories[key]
    STORY_CHECKS[key](story, story_events(bodies, story), city)


def test_the_inspectors_stories_are_a_filed_fleet_registration_and_a_staff_clerks_corrections(
    bodies: list[Body], city: City, stories: dict[str, Story]
) -> None:
    fleet, staff = extra_stories(city, seed=DEFAULT_SEED)
    assert (fleet.key, staff.key) == ("fleet-registration", "staff-record-corrections")
    assert {fleet.day, staff.day}.isdisjoint({story.day for story in stories.values()})
    assert {fleet.subject_id, staff.subject_id}.isdisjoint({story.subject_id for story in stories.values()})
    registered = [b for b in story_events(bodies, fleet) if on(b, fleet.day) and b["action"] == "register"]
    assert _max_in_one_hour([b for b in registered if b["attributes"]["vehicle_type"] == "new_energy"]) >= 36
    assert len({b["business_unit"]["id"] for b in registered if "fleet_order" in b["attributes"]}) == 1
    assert city.operator(fleet.subject_id).kind == "police"
    corrected = [b for b in story_events(bodies, staff) if on(b, staff.day) and b["action"] == "record_modified"]
    assert len(corrected) >= 14
    assert city.operator(staff.subject_id).kind == "staff"


@pytest.mark.parametrize("seed", [1, 2, 42])
def test_every_seed_plants_every_story(seed: int) -> None:
    city = build_city(seed)
    bodies = [e.body for e in generate(city, seed=seed, scale=0.02)]
    for story in planted_stories(city, seed=seed):
        STORY_CHECKS[story.key](story, story_events(bodies, story), city)


# --- nobody in the normal population looks abnormal ------------------------------------------------


@pytest.fixture(scope="module")
def normal(bodies: list[Body], stories: dict[str, Story], city: City) -> list[Body]:
    marked = planted(bodies, {**stories, **{s.key: s for s in extra_stories(city, seed=DEFAULT_SEED)}})
    return [b for b in bodies if b["source_event_id"] not in marked]


def _of(bodies: list[Body], domain: str, action: str | None = None) -> list[Body]:
    return [b for b in bodies if b["domain"] == domain and action in (None, b["action"])]


def test_normal_registrations_stay_under_fifteen_per_operator_hour(normal: list[Body]) -> None:
    per_hour = Counter((b["operator"]["id"], b["occurred_at"][:13]) for b in _of(normal, "vehicle_registration"))
    assert max(per_hour.values()) <= 15


def test_normal_inspections_look_like_honest_work(normal: list[Body]) -> None:
    inspections = _of(normal, "vehicle_inspection")
    per_station_day = Counter((b["business_unit"]["id"], b["occurred_at"][:10]) for b in inspections)
    assert max(per_station_day.values()) < 60
    trailers = Counter(b["business_unit"]["id"] for b in inspections if b["attributes"]["vehicle_type"] == "trailer")
    assert max(trailers.values()) < 40  # over a whole month, per station
    durations = [b["attributes"]["duration_seconds"] for b in inspections]
    assert min(durations) >= 300
    assert sum(8 * 60 <= d <= 30 * 60 for d in durations) / len(durations) >= 0.85
    assert 0.75 <= sum(b["attributes"]["result"] == "pass" for b in inspections) / len(inspections) <= 0.9


def test_normal_exam_pass_rates_are_between_half_and_four_fifths(normal: list[Body]) -> None:
    exams = _of(normal, "driver_testing")
    for subject in (1, 2, 3, 4):
        taken = [b for b in exams if b["attributes"]["subject"] == subject]
        assert 0.5 <= sum(b["attributes"]["result"] == "pass" for b in taken) / len(taken) <= 0.8
    per_examiner_day = Counter((b["operator"]["id"], b["occurred_at"][:10]) for b in exams)
    assert max(per_examiner_day.values()) <= 45


def test_normal_record_deletions_are_rare_and_in_daytime(normal: list[Body]) -> None:
    deleted = _of(normal, "violation_handling", "record_deleted")
    assert max(Counter(b["occurred_at"][:10] for b in deleted).values()) <= 8
    assert all(time(8) <= when(b).time() < time(18) for b in deleted)
    assert all(b["operator"]["kind"] == "police" for b in deleted)


def test_normal_fine_reductions_are_scattered(normal: list[Body]) -> None:
    reduced = [
        b
        for b in _of(normal, "violation_handling", "record_modified")
        if b["attributes"]["fine_amount"] < b["attributes"]["original_fine_amount"]
    ]
    assert max(Counter((b["operator"]["id"], b["occurred_at"][:10]) for b in reduced).values()) <= 5


def test_about_one_closure_in_ten_is_no_liability_and_no_officer_collects_them(normal: list[Body]) -> None:
    closed = _of(normal, "accident_handling", "case_closed")
    no_liability = [b for b in closed if b["attributes"]["closure"] == "no_liability"]
    assert 0.05 <= len(no_liability) / len(closed) <= 0.15
    per_officer_week: defaultdict[tuple[str, int], int] = defaultdict(int)
    for b in no_liability:
        if b["operator"]["kind"] == "auxiliary":
            per_officer_week[b["operator"]["responsible_officer"], when(b).isocalendar().week] += 1
    assert max(per_officer_week.values()) <= 6


def test_normal_agents_use_few_operators_a_day(normal: list[Body]) -> None:
    operators: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
    for b in normal:
        if "agent_id" in b:
            operators[b["agent_id"], b["occurred_at"][:10]].add(b["operator"]["id"])
    assert max(len(ops) for ops in operators.values()) <= 10


def test_most_office_business_happens_in_working_hours(bodies: list[Body]) -> None:
    office = [b for b in bodies if b["domain"] in {"vehicle_registration", "driver_testing"}]
    working = [b for b in office if when(b).weekday() < 5 and time(8, 30) <= when(b).time() < time(17, 30)]
    assert len(working) / len(office) >= 0.85
    assert any(when(b).weekday() >= 5 for b in office)
    assert any(when(b).time() >= time(17, 30) for b in office)
