"""Reference rule evaluation (app.rules.engine): every rule type, group_by, windows, evidence, order invariance."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from app.rules.engine import Finding, evaluate, occurred_at, subjects, values
from app.rules.loader import parse_rules_text
from app.rules.spec import AnyRule, CountRule, Rule
from tests.factories import CONTRACT_RULE_YAML

SHANGHAI = ZoneInfo("Asia/Shanghai")
RULE: TypeAdapter[AnyRule] = TypeAdapter(Rule)

VR_BULK_REGISTER = CONTRACT_RULE_YAML


def at(text: str) -> datetime:
    """A Shanghai local time `YYYY-MM-DDTHH:MM[:SS]` as an aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def event(
    event_id: int | str,
    when: str = "2026-11-21T09:30",
    *,
    operator: str = "P1001",
    kind: str = "police",
    officer: str | None = None,
    unit: str = "ZS1-CW",
    domain: str = "vehicle_registration",
    action: str = "register",
    business_unit: str | None = "IS-07",
    agent: str | None = "AG-88",
    **attributes: Any,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": event_id,
        "source": "vr-system",
        "source_event_id": f"E-{event_id}",
        "domain": domain,
        "action": action,
        "occurred_at": f"{when}:00+08:00" if len(when) == 16 else f"{when}+08:00",
        "operator": {"id": operator, "kind": kind, "unit": unit, "responsible_officer": officer},
        "object_ref": "湘J12345",
        "attributes": attributes or {"vehicle_type": "new_energy"},
    }
    if business_unit is not None:
        data["business_unit"] = {"id": business_unit, "kind": "inspection_station"}
    if agent is not None:
        data["agent_id"] = agent
    return data


def rule(type_: str = "count", **overrides: Any) -> AnyRule:
    data: dict[str, Any] = {
        "id": f"test-{type_.replace('_', '-')}",
        "type": type_,
        "label_zh": "测试规则",
        "label_en": "Test rule",
        "domains": ["vehicle_registration"],
        "group_by": "operator",
        "window": "1h",
        "warn_at": 3,
        "severity": "high",
    }
    data.update(overrides)
    return RULE.validate_python({k: v for k, v in data.items() if v is not None})


def summary(findings: list[Finding]) -> list[tuple[str, datetime, float, int, bool]]:
    return [(f.subject_id, f.window_start, f.value, f.hits, f.tripped) for f in findings]


# --- count, thresholds, the contract's example --------------------------------------------------------------------


def test_count_reaching_warn_at_exactly_is_a_finding() -> None:
    count = rule(warn_at=3, trip_at=4)
    events = [event(i, f"2026-11-21T09:{10 * i:02d}") for i in range(1, 4)]
    [finding] = evaluate(count, events, SHANGHAI)
    assert finding == Finding(
        rule_id="test-count",
        subject_type="operator",
        subject_id="P1001",
        window_start=utc("2026-11-21T01:00"),
        window_end=utc("2026-11-21T02:00"),
        value=3.0,
        hits=3,
        tripped=False,
        event_ids=(1, 2, 3),
        first_event_at=utc("2026-11-21T01:10"),
        last_event_at=utc("2026-11-21T01:30"),
    )
    assert finding.window_start.tzinfo is UTC
    assert evaluate(count, events[:2], SHANGHAI) == []
    assert values(count, events[:2], SHANGHAI) == {("P1001", utc("2026-11-21T01:00")): 2.0}
    [tripped] = evaluate(count, [*events, event(4, "2026-11-21T09:59")], SHANGHAI)
    assert (tripped.value, tripped.hits, tripped.tripped) == (4.0, 4, True)


def test_without_trip_at_nothing_trips() -> None:
    findings = evaluate(rule(warn_at=1), [event(i) for i in range(50)], SHANGHAI)
    assert [(f.value, f.tripped) for f in findings] == [(50.0, False)]


def test_contract_vr_bulk_register_example() -> None:
    [bulk] = parse_rules_text(VR_BULK_REGISTER, "vehicle_registration.yaml")
    assert isinstance(bulk, CountRule)
    hour = [event(i, f"2026-11-21T09:{i:02d}") for i in range(19)]
    noise = [
        event(100, "2026-11-21T09:30", vehicle_type="car"),  # not a listed vehicle type
        event(101, "2026-11-21T09:30", action="transfer"),  # not a registration
        event(102, "2026-11-21T10:00", vehicle_type="motorcycle"),  # the next hour
        event(103, "2026-11-21T09:30", operator="P2002"),  # someone else
        event(104, "2026-11-21T09:30", domain="vehicle_inspection"),  # another domain
    ]
    assert evaluate(bulk, hour + noise, SHANGHAI) == []
    twenty = [*hour, event(19, "2026-11-21T09:59:59", vehicle_type="motorcycle")]
    [finding] = evaluate(bulk, twenty + noise, SHANGHAI)
    assert summary([finding]) == [("P1001", utc("2026-11-21T01:00"), 20.0, 20, False)]
    assert finding.event_ids == tuple(range(20))
    assert finding.window_end == utc("2026-11-21T02:00")
    forty = twenty + [event(i, f"2026-11-21T09:{i - 20:02d}:30") for i in range(20, 40)]
    [tripped] = evaluate(bulk, forty + noise, SHANGHAI)
    assert (tripped.value, tripped.tripped) == (40.0, True)


def test_filter_and_domain_exclude_events() -> None:
    registrations = rule(filter={"action": "register"}, warn_at=1)
    events = [event(1, action="transfer"), event(2, domain="driver_testing"), event(3, domain="vehicle_inspection")]
    assert evaluate(registrations, events, SHANGHAI) == []
    assert values(registrations, events, SHANGHAI) == {}
    both = rule(domains=["vehicle_registration", "vehicle_inspection"], warn_at=1)
    [finding] = evaluate(both, events, SHANGHAI)
    assert finding.event_ids == (1, 3)


# --- subjects -----------------------------------------------------------------------------------------------------


def test_subjects_per_group_by() -> None:
    auxiliary = event(1, operator="A7", kind="auxiliary", officer="P1001", unit="ZS1-CW")
    staff_alone = event(2, operator="S3", kind="staff", business_unit=None, agent=None)
    expected = {
        "operator": ("A7", "S3"),
        "responsible_officer": ("P1001", None),
        "business_unit": ("IS-07", None),
        "agent": ("AG-88", None),
        "org_unit": ("ZS1-CW", "ZS1-CW"),
    }
    for group_by, (first, second) in expected.items():
        grouped = rule(group_by=group_by)
        assert (subjects(grouped, auxiliary), subjects(grouped, staff_alone)) == (first, second), group_by


def test_responsible_officer_groups_auxiliaries_police_and_staff() -> None:
    officer = rule(group_by="responsible_officer", warn_at=1)
    events = [
        event(1, operator="P1001", kind="police"),  # counts for themselves
        event(2, operator="A1", kind="auxiliary", officer="P1001"),
        event(3, operator="A2", kind="auxiliary", officer="P1001"),
        event(4, operator="A3", kind="auxiliary", officer="P2002"),
        event(5, operator="S1", kind="staff", officer="P2002"),  # staff naming an officer
        event(6, operator="S2", kind="staff"),  # staff without one: not counted
        event(7, operator="P3003", kind="police", officer="P9999"),  # police count for themselves only
    ]
    findings = evaluate(officer, events, SHANGHAI)
    assert [(f.subject_type, f.subject_id, f.value, f.event_ids) for f in findings] == [
        ("responsible_officer", "P1001", 3.0, (1, 2, 3)),
        ("responsible_officer", "P2002", 2.0, (4, 5)),
        ("responsible_officer", "P3003", 1.0, (7,)),
    ]


def test_events_without_the_subject_are_not_counted() -> None:
    events = [event(1, agent=None, business_unit=None), event(2), event(3, agent="AG-1", business_unit="IS-1")]
    agent = rule(group_by="agent", warn_at=1)
    assert [(f.subject_id, f.event_ids) for f in evaluate(agent, events, SHANGHAI)] == [("AG-1", (3,)), ("AG-88", (2,))]
    unit = rule(group_by="business_unit", warn_at=1)
    assert [(f.subject_id, f.event_ids) for f in evaluate(unit, events, SHANGHAI)] == [("IS-07", (2,)), ("IS-1", (3,))]
    blank = event(4, agent="")
    assert subjects(agent, blank) is None


# --- ratio --------------------------------------------------------------------------------------------------------


def exam(event_id: int, result: str, when: str = "2026-11-21T10:00", examiner: str = "P1001") -> dict[str, Any]:
    return event(
        event_id, when, operator=examiner, domain="driver_testing", action="exam", subject=2, result=result, score=90
    )


def pass_rate(**overrides: Any) -> AnyRule:
    data: dict[str, Any] = {
        "domains": ["driver_testing"],
        "filter": {"action": "exam"},
        "numerator": {"attributes.result": "pass"},
        "min_events": 4,
        "window": "1d",
        "warn_at": 0.75,
        "trip_at": 0.9,
    }
    data.update(overrides)
    return rule("ratio", **data)


def test_ratio_is_the_share_of_matching_events() -> None:
    events = [exam(1, "pass"), exam(2, "pass"), exam(3, "fail"), exam(4, "pass"), exam(5, "pass", examiner="P2")]
    [finding] = evaluate(pass_rate(), events, SHANGHAI)
    assert summary([finding]) == [("P1001", utc("2026-11-20T16:00"), 0.75, 4, False)]
    assert finding.event_ids == (1, 2, 3, 4)  # the denominator: every matching event
    assert finding.window_end == utc("2026-11-21T16:00")
    [tripped] = evaluate(pass_rate(), [*events, *(exam(i, "pass") for i in range(6, 12))], SHANGHAI)
    assert (tripped.value, tripped.hits, tripped.tripped) == (0.9, 10, True)


def test_ratio_below_min_events_is_not_evaluated() -> None:
    events = [exam(1, "pass"), exam(2, "pass"), exam(3, "pass")]
    assert evaluate(pass_rate(), events, SHANGHAI) == []
    assert values(pass_rate(), events, SHANGHAI) == {}
    assert values(pass_rate(min_events=3), events, SHANGHAI) == {("P1001", utc("2026-11-20T16:00")): 1.0}


def test_ratio_can_fall_below_warn_at_and_values_still_report_it() -> None:
    events = [exam(1, "fail"), exam(2, "fail"), exam(3, "fail"), exam(4, "pass")]
    assert evaluate(pass_rate(), events, SHANGHAI) == []
    assert values(pass_rate(), events, SHANGHAI) == {("P1001", utc("2026-11-20T16:00")): 0.25}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 47), st.sampled_from(["P1", "P2"])), max_size=40))
def test_ratio_values_lie_in_unit_interval(exams: list[tuple[bool, int, str]]) -> None:
    events = [
        exam(i, "pass" if ok else "fail", (at("2026-11-20T00:00") + timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M"), who)
        for i, (ok, h, who) in enumerate(exams)
    ]
    for value in values(pass_rate(min_events=1, warn_at=0), events, SHANGHAI).values():
        assert 0.0 <= value <= 1.0


# --- distinct -----------------------------------------------------------------------------------------------------


def test_distinct_operators_per_agent() -> None:
    spread = rule("distinct", field="operator.id", group_by="agent", warn_at=3)
    events = [
        event(1, operator="P1"),
        event(2, operator="P2"),
        event(3, operator="P1"),
        event(4, operator="P3"),
        event(5, operator="P4", agent="AG-2"),
        event(6, operator="P5", agent=None),
    ]
    [finding] = evaluate(spread, events, SHANGHAI)
    assert (finding.subject_type, finding.subject_id, finding.value, finding.hits) == ("agent", "AG-88", 3.0, 4)
    assert finding.event_ids == (1, 2, 3, 4)
    assert values(spread, events, SHANGHAI)[("AG-2", utc("2026-11-21T01:00"))] == 1.0


def test_distinct_normal_form_tells_json_kinds_apart() -> None:
    kinds = rule("distinct", field="attributes.x", warn_at=0)
    xs: list[Any] = [1, 1.0, True, "1", [1, 2], [1, 2], {"b": 1, "a": 2}, {"a": 2, "b": 1}, None]
    events = [event(i, x=x) for i, x in enumerate(xs)]
    [finding] = evaluate(kinds, events, SHANGHAI)
    # 1 == 1.0; True and "1" are other values; equal lists and mappings are one value each; None is no value
    assert (finding.value, finding.hits) == (5.0, 8)
    assert 8 not in finding.event_ids


# --- sum ----------------------------------------------------------------------------------------------------------


def penalty(event_id: int, fine: Any, when: str = "2026-11-21T10:00") -> dict[str, Any]:
    return event(event_id, when, domain="violation_handling", action="penalty_issued", fine_amount=fine, points=3)


def test_sum_of_fine_amounts() -> None:
    fines = rule("sum", domains=["violation_handling"], field="attributes.fine_amount", window="1d", warn_at=1000)
    events = [penalty(1, 200), penalty(2, 300.5), penalty(3, 500), penalty(4, 99, when="2026-11-22T10:00")]
    [finding] = evaluate(fines, events, SHANGHAI)
    assert (finding.value, finding.hits, finding.event_ids) == (1000.5, 3, (1, 2, 3))
    assert values(fines, events, SHANGHAI)[("P1001", utc("2026-11-21T16:00"))] == 99.0


def test_sum_counts_only_numbers_as_hits() -> None:
    fines = rule("sum", domains=["violation_handling"], field="attributes.fine_amount", warn_at=0)
    events = [penalty(1, 200), penalty(2, "300"), penalty(3, True), penalty(4, None), penalty(5, 0)]
    [finding] = evaluate(fines, events, SHANGHAI)
    assert (finding.value, finding.hits, finding.event_ids) == (200.0, 2, (1, 5))
    nothing = [penalty(6, "a"), penalty(7, None)]
    assert evaluate(fines, nothing, SHANGHAI) == []  # evaluated (value 0) but no event counted: no finding
    assert values(fines, nothing, SHANGHAI) == {("P1001", utc("2026-11-21T02:00")): 0.0}


def test_sum_does_not_depend_on_float_addition_order() -> None:
    fines = rule("sum", domains=["violation_handling"], field="attributes.fine_amount", warn_at=0)
    amounts = [1e16, 1.0, -1e16, 0.1, 0.2, 0.3] * 5
    events = [penalty(i, x) for i, x in enumerate(amounts)]
    expected = values(fines, events, SHANGHAI)
    assert list(expected.values()) == [pytest.approx(8.0)]
    for seed in range(5):
        random.Random(seed).shuffle(events)
        assert values(fines, events, SHANGHAI) == expected


# --- off hours ----------------------------------------------------------------------------------------------------


def test_off_hours_in_local_time() -> None:
    night = rule("off_hours", allowed_hours="08:00-18:00", window="1d", warn_at=3)
    events = [
        event(1, "2026-11-21T07:59"),  # before opening: off hours
        event(2, "2026-11-21T08:00"),  # opening: inside
        event(3, "2026-11-21T17:59:59"),  # inside
        event(4, "2026-11-21T18:00"),  # closing: outside
        event(5, "2026-11-21T23:30"),
        event(6, "2026-11-21T00:00"),
    ]
    [finding] = evaluate(night, events, SHANGHAI)
    assert (finding.value, finding.hits, finding.event_ids) == (4.0, 4, (6, 1, 4, 5))
    assert finding.first_event_at == utc("2026-11-20T16:00")
    assert finding.window_start == utc("2026-11-20T16:00")
    # Hours are read in the zone: in UTC only 07:59 local (23:59Z) and 08:00 local (00:00Z) are off hours.
    assert values(night, events, ZoneInfo("UTC")) == {
        ("P1001", utc("2026-11-20T00:00")): 1.0,
        ("P1001", utc("2026-11-21T00:00")): 1.0,
    }


def test_off_hours_with_every_event_inside_has_no_finding() -> None:
    night = rule("off_hours", allowed_hours="08:00-18:00", warn_at=0)
    events = [event(1, "2026-11-21T09:00"), event(2, "2026-11-21T09:30")]
    assert evaluate(night, events, SHANGHAI) == []
    assert values(night, events, SHANGHAI) == {("P1001", utc("2026-11-21T01:00")): 0.0}


# --- spike --------------------------------------------------------------------------------------------------------


def daily(counts: dict[str, int], business_unit: str = "IS-07") -> list[dict[str, Any]]:
    """`counts[day]` events on each local day `YYYY-MM-DD` at 10:00."""
    return [
        event(f"{business_unit}-{day}-{i}", f"{day}T10:00", business_unit=business_unit)
        for day, n in counts.items()
        for i in range(n)
    ]


def volume_spike(**overrides: Any) -> AnyRule:
    data: dict[str, Any] = {
        "group_by": "business_unit",
        "window": "1d",
        "baseline_windows": 3,
        "min_events": 4,
        "warn_at": 2.5,
        "trip_at": 4,
    }
    data.update(overrides)
    return rule("spike", **data)


def test_spike_with_a_zero_baseline_is_the_count() -> None:
    [finding] = evaluate(volume_spike(), daily({"2026-11-21": 5}), SHANGHAI)
    assert summary([finding]) == [("IS-07", utc("2026-11-20T16:00"), 5.0, 5, True)]


def test_spike_over_a_normal_baseline() -> None:
    events = daily({"2026-11-18": 2, "2026-11-19": 3, "2026-11-20": 1, "2026-11-21": 6})
    found = values(volume_spike(), events, SHANGHAI)
    assert found == {("IS-07", utc("2026-11-20T16:00")): 3.0}  # 6 / mean(1, 3, 2); earlier days below min_events
    [finding] = evaluate(volume_spike(), events, SHANGHAI)
    assert (finding.value, finding.hits, finding.tripped) == (3.0, 6, False)
    assert all(str(i).startswith("IS-07-2026-11-21") for i in finding.event_ids)
    # A baseline further back than baseline_windows does not count.
    older = daily({"2026-11-17": 30}) + events
    assert values(volume_spike(), older, SHANGHAI) == found | {("IS-07", utc("2026-11-16T16:00")): 30.0}


def test_spike_below_min_events_is_not_evaluated() -> None:
    events = daily({"2026-11-21": 3})
    assert values(volume_spike(), events, SHANGHAI) == {}
    assert values(volume_spike(min_events=3), events, SHANGHAI) == {("IS-07", utc("2026-11-20T16:00")): 3.0}


def test_spike_baselines_are_per_subject() -> None:
    events = daily({"2026-11-20": 10, "2026-11-21": 5}, "IS-1") + daily({"2026-11-21": 5}, "IS-2")
    found = values(volume_spike(baseline_windows=1), events, SHANGHAI)
    assert found == {
        ("IS-1", utc("2026-11-19T16:00")): 10.0,
        ("IS-1", utc("2026-11-20T16:00")): 0.5,
        ("IS-2", utc("2026-11-20T16:00")): 5.0,
    }


def test_a_late_event_in_a_baseline_window_lowers_the_spike() -> None:
    events = daily({"2026-11-21": 6})
    assert values(volume_spike(), events, SHANGHAI) == {("IS-07", utc("2026-11-20T16:00")): 6.0}
    late = [*events, *daily({"2026-11-19": 6}, "IS-07")]
    assert values(volume_spike(), late, SHANGHAI)[("IS-07", utc("2026-11-20T16:00"))] == 3.0


# --- windows, order, evidence -------------------------------------------------------------------------------------


def test_a_late_event_lands_in_its_own_window() -> None:
    count = rule(warn_at=1)
    events = [event(2, "2026-11-21T10:15"), event(3, "2026-11-21T10:45"), event(1, "2026-11-21T08:05")]
    findings = evaluate(count, events, SHANGHAI)
    assert [(f.window_start, f.value, f.event_ids) for f in findings] == [
        (utc("2026-11-21T00:00"), 1.0, (1,)),
        (utc("2026-11-21T02:00"), 2.0, (2, 3)),
    ]


def test_findings_are_sorted_by_window_then_subject() -> None:
    count = rule(warn_at=1)
    events = [
        event(1, "2026-11-21T10:00", operator="P3"),
        event(2, "2026-11-21T09:00", operator="P2"),
        event(3, "2026-11-21T10:00", operator="P1"),
        event(4, "2026-11-21T09:00", operator="P9"),
    ]
    assert [(f.window_start.hour, f.subject_id) for f in evaluate(count, events, SHANGHAI)] == [
        (1, "P2"),
        (1, "P9"),
        (2, "P1"),
        (2, "P3"),
    ]


def test_event_ids_in_occurred_at_then_id_order() -> None:
    count = rule(warn_at=1)
    events = [
        event(9, "2026-11-21T09:20"),
        event(3, "2026-11-21T09:20"),
        event(7, "2026-11-21T09:05"),
        event(1, "2026-11-21T09:40"),
    ]
    [finding] = evaluate(count, events, SHANGHAI)
    assert finding.event_ids == (7, 3, 9, 1)
    assert (finding.first_event_at, finding.last_event_at) == (utc("2026-11-21T01:05"), utc("2026-11-21T01:40"))
    text_ids = [event("b", "2026-11-21T09:20"), event("a", "2026-11-21T09:20"), event(5, "2026-11-21T09:20")]
    assert evaluate(count, text_ids, SHANGHAI)[0].event_ids == (5, "a", "b")  # numbers first, never compared to text


def test_occurred_at_as_datetime_or_text() -> None:
    count = rule(warn_at=1)
    as_text = [event(1, "2026-11-21T09:30"), {**event(2), "occurred_at": "2026-11-21T01:40:00Z"}]
    as_datetime = [{**e, "occurred_at": occurred_at(e).astimezone(SHANGHAI)} for e in as_text]
    assert evaluate(count, as_text, SHANGHAI) == evaluate(count, as_datetime, SHANGHAI)
    assert occurred_at(as_text[1]) == utc("2026-11-21T01:40")
    with pytest.raises(ValueError, match="offset"):
        occurred_at({"occurred_at": "2026-11-21T09:30:00"})
    with pytest.raises(ValueError, match="offset"):
        occurred_at({"occurred_at": datetime(2026, 11, 21, 9, 30)})
    with pytest.raises(ValueError, match="RFC 3339"):
        occurred_at({"occurred_at": "yesterday"})
    with pytest.raises(ValueError, match="RFC 3339"):
        occurred_at({})


def test_events_may_be_any_iterable() -> None:
    count = rule(warn_at=2)
    events = [event(1), event(2)]
    assert evaluate(count, iter(events), SHANGHAI) == evaluate(count, events, SHANGHAI)


RULES_FOR_PERMUTATION: list[AnyRule] = [
    rule(warn_at=1, trip_at=3),
    rule(group_by="responsible_officer", window="1d", warn_at=1),
    rule("ratio", numerator={"action": "register"}, min_events=2, warn_at=0.5, window="1d"),
    rule("distinct", field="agent_id", group_by="business_unit", warn_at=1, window="1d"),
    rule("sum", field="attributes.fine_amount", group_by="org_unit", warn_at=0, window="1d"),
    rule("off_hours", allowed_hours="08:00-18:00", warn_at=1, window="1d"),
    rule("spike", baseline_windows=2, min_events=1, warn_at=1, window="1h", group_by="agent"),
]

event_strategy = st.builds(
    lambda minutes, who, kind, action, agent, fine: (minutes, who, kind, action, agent, fine),
    st.integers(0, 3 * 24 * 60),
    st.sampled_from(["P1", "P2", "A1", "S1"]),
    st.sampled_from(["police", "auxiliary", "staff"]),
    st.sampled_from(["register", "transfer"]),
    st.sampled_from(["AG-1", "AG-2", None]),
    st.one_of(st.none(), st.integers(0, 500), st.floats(0, 500, allow_nan=False), st.just("x")),
)


@settings(max_examples=80, deadline=None)
@given(st.lists(event_strategy, max_size=30), st.randoms(use_true_random=False))
def test_order_of_events_does_not_matter(raw: list[tuple[Any, ...]], shuffler: random.Random) -> None:
    start = at("2026-11-20T00:00")
    events = [
        event(
            i,
            (start + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M"),
            operator=who,
            kind=kind,
            officer="P1" if kind == "auxiliary" else None,
            action=action,
            agent=agent,
            business_unit=f"IS-{i % 3}",
            unit=f"U{i % 2}",
            fine_amount=fine,
        )
        for i, (minutes, who, kind, action, agent, fine) in enumerate(raw)
    ]
    shuffled = list(events)
    shuffler.shuffle(shuffled)
    for checked in RULES_FOR_PERMUTATION:
        assert evaluate(checked, shuffled, SHANGHAI) == evaluate(checked, events, SHANGHAI), checked.id
        assert values(checked, shuffled, SHANGHAI) == values(checked, events, SHANGHAI), checked.id
        for finding in evaluate(checked, events, SHANGHAI):
            assert finding.value >= checked.warn_at
            assert finding.hits == len(finding.event_ids) >= 1
            assert finding.window_start <= finding.first_event_at <= finding.last_event_at < finding.window_end


def test_every_event_counts_once_over_a_month_of_events() -> None:
    rng = random.Random(7)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    events = [
        {
            **event(i, operator=f"P{rng.randrange(40)}"),
            "occurred_at": start + timedelta(seconds=rng.randrange(30 * 86400)),
        }
        for i in range(20_000)
    ]
    findings = evaluate(rule(warn_at=2), events, SHANGHAI)
    assert sum(f.hits for f in findings) + sum(
        v for v in values(rule(warn_at=2), events, SHANGHAI).values() if v < 2
    ) == len(events)
