from __future__ import annotations

import copy
import pickle
from datetime import time, timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from app.events.domains import Domain
from app.rules.filters import Filter
from app.rules.spec import (
    RULE_TYPES,
    CountRule,
    Duration,
    GroupBy,
    HoursRange,
    OffHoursRule,
    RatioRule,
    Rule,
    RuleSet,
    Severity,
    SpikeRule,
)

RULE = TypeAdapter(Rule)


def rule_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "vr-bulk-register",
        "type": "count",
        "label_zh": "单人单小时大量上户",
        "label_en": "Bulk registrations by one operator in an hour",
        "domains": ["vehicle_registration"],
        "filter": {"action": "register", "attributes.vehicle_type": {"in": ["new_energy", "motorcycle"]}},
        "group_by": "operator",
        "window": "1h",
        "warn_at": 20,
        "trip_at": 40,
        "severity": "high",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def errors(data: dict[str, Any]) -> dict[tuple[Any, ...], str]:
    with pytest.raises(ValidationError) as caught:
        RULE.validate_python(data)
    return {tuple(e["loc"][1:]): e["msg"] for e in caught.value.errors()}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("1d", timedelta(days=1)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("90m", timedelta(minutes=90)),
    ],
)
def test_duration_parses_to_a_timedelta_and_prints_as_written(text: str, expected: timedelta) -> None:
    duration = Duration(text)
    assert duration == expected
    assert isinstance(duration, timedelta)
    assert str(duration) == text


@pytest.mark.parametrize("text", ["0h", "1.5h", "h", "10y", "-1h", "", "1 h", "1H", "01h", "1h30m", "99999w"])
def test_duration_refuses_what_is_not_a_positive_whole_number_with_a_unit(text: str) -> None:
    with pytest.raises(ValueError, match=repr(text).replace("'", ".")):
        Duration(text)


def test_duration_survives_copy_and_pickle() -> None:
    duration = Duration("7d")
    for clone in (copy.deepcopy(duration), pickle.loads(pickle.dumps(duration))):
        assert clone == duration
        assert str(clone) == "7d"


def test_duration_of_a_timedelta_uses_the_largest_unit_that_divides_it() -> None:
    assert str(Duration.of(timedelta(days=7))) == "1w"
    assert str(Duration.of(timedelta(minutes=90))) == "90m"
    with pytest.raises(ValueError, match="positive"):
        Duration.of(timedelta(0))


def test_rule_window_keeps_its_text_in_json_and_is_a_timedelta_in_python() -> None:
    rule = RULE.validate_python(rule_data(window="7d", probation="48h"))
    assert rule.window == timedelta(days=7)
    assert rule.window.total_seconds() == 7 * 86400
    dumped = rule.model_dump(mode="json")
    assert dumped["window"] == "7d"
    assert dumped["probation"] == "48h"


def test_the_contract_example_parses() -> None:
    rule = RULE.validate_python(rule_data(probation="24h"))
    assert isinstance(rule, CountRule)
    assert rule.domains == (Domain.VEHICLE_REGISTRATION,)
    assert rule.group_by is GroupBy.OPERATOR
    assert rule.severity is Severity.HIGH
    assert rule.warn_at == 20
    assert rule.trip_at == 40
    assert rule.probation == timedelta(hours=24)
    assert rule.filter.to_mapping() == {
        "action": "register",
        "attributes.vehicle_type": {"in": ["new_energy", "motorcycle"]},
    }


def test_a_rule_dumped_to_json_reads_back_equal() -> None:
    rule = RULE.validate_python(rule_data())
    again = RULE.validate_python(rule.model_dump(mode="json"))
    assert again == rule


def test_probation_defaults_to_a_day_and_filter_to_everything() -> None:
    rule = RULE.validate_python(rule_data(filter=None, trip_at=None))
    assert rule.probation == timedelta(hours=24)
    assert str(rule.probation) == "24h"
    assert rule.filter == Filter()
    assert rule.trip_at is None


def test_rules_are_frozen() -> None:
    rule = RULE.validate_python(rule_data())
    with pytest.raises(ValidationError):
        rule.warn_at = 1  # type: ignore[misc]


@pytest.mark.parametrize("rule_id", ["vr-bulk-register", "a", "x1", "1-2-3", "a" * 64])
def test_slug_ids_are_accepted(rule_id: str) -> None:
    assert RULE.validate_python(rule_data(id=rule_id)).id == rule_id


@pytest.mark.parametrize("rule_id", ["", "VR-bulk", "vr_bulk", "vr bulk", "-vr", "a" * 65, "规则"])
def test_ids_that_are_not_slugs_are_refused(rule_id: str) -> None:
    assert ("id",) in errors(rule_data(id=rule_id))


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"label_zh": "  "}, ("label_zh",), "blank"),
        ({"label_en": ""}, ("label_en",), "at least 1"),
        ({"domains": []}, ("domains",), "at least 1"),
        ({"domains": ["vehicle_registration", "vehicle_registration"]}, ("domains",), "listed twice"),
        ({"domains": ["parking"]}, ("domains", 0), "vehicle_registration"),
        ({"group_by": "operatr"}, ("group_by",), "responsible_officer"),
        ({"severity": "urgent"}, ("severity",), "critical"),
        ({"window": "10y"}, ("window",), "unknown unit"),
        ({"window": 60}, ("window",), "must be a duration"),
        ({"probation": "1.5h"}, ("probation",), "not a duration"),
        ({"warn_at": -1, "trip_at": None}, ("warn_at",), "greater than or equal to 0"),
        ({"warn_at": True}, ("warn_at",), "must be a number"),
        ({"warn_at": "20"}, ("warn_at",), "must be a number"),
        ({"warn_at": float("nan")}, ("warn_at",), "finite"),
        ({"trip_at": 10}, ("trip_at",), "must be ≥ warn_at (20)"),
        ({"trip_at": -5}, ("trip_at",), "greater than or equal to 0"),
        ({"colour": "red"}, ("colour",), "Extra inputs"),
        ({"filter": {"operator.name": "x"}}, ("filter",), "operator.name"),
    ],
)
def test_refusals_name_the_field(overrides: dict[str, Any], field: tuple[Any, ...], fragment: str) -> None:
    found = errors(rule_data(**overrides))
    assert field in found, found
    assert fragment in found[field]


def test_trip_at_may_equal_warn_at() -> None:
    assert RULE.validate_python(rule_data(warn_at=5, trip_at=5)).trip_at == 5


def ratio_data(**overrides: Any) -> dict[str, Any]:
    base = {
        "id": "dt-pass-rate",
        "type": "ratio",
        "domains": ["driver_testing"],
        "group_by": "business_unit",
        "window": "1d",
        "warn_at": 0.9,
        "trip_at": 0.98,
        "numerator": {"attributes.result": "pass"},
        "min_events": 20,
    }
    return rule_data(**{**base, **overrides})


def test_ratio_rule_reads_numerator_and_min_events() -> None:
    rule = RULE.validate_python(ratio_data())
    assert isinstance(rule, RatioRule)
    assert rule.min_events == 20
    assert rule.numerator.matches({"attributes": {"result": "pass"}})
    assert RULE.validate_python(ratio_data(min_events=None)).min_events == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"warn_at": 1.5, "trip_at": None}, ("warn_at",)),
        ({"trip_at": 2}, ("trip_at",)),
        ({"numerator": None}, ("numerator",)),
        ({"numerator": {}}, ("numerator",)),
        ({"min_events": 0}, ("min_events",)),
        ({"min_events": True}, ("min_events",)),
        ({"min_events": 2.5}, ("min_events",)),
    ],
)
def test_ratio_refusals(overrides: dict[str, Any], field: tuple[Any, ...]) -> None:
    assert field in errors(ratio_data(**overrides))


def test_ratio_thresholds_may_be_exactly_zero_and_one() -> None:
    rule = RULE.validate_python(ratio_data(warn_at=0, trip_at=1))
    assert (rule.warn_at, rule.trip_at) == (0, 1)


@pytest.mark.parametrize("rule_type", ["distinct", "sum"])
def test_distinct_and_sum_need_a_known_field_path(rule_type: str) -> None:
    good = RULE.validate_python(rule_data(type=rule_type, field="attributes.fine_amount"))
    assert good.field == "attributes.fine_amount"  # type: ignore[union-attr]
    assert ("field",) in errors(rule_data(type=rule_type))
    assert "unknown field path" in errors(rule_data(type=rule_type, field="operator.name"))[("field",)]


def test_off_hours_parses_two_times() -> None:
    rule = RULE.validate_python(rule_data(type="off_hours", allowed_hours="08:00-18:00"))
    assert isinstance(rule, OffHoursRule)
    assert (rule.allowed_hours.start, rule.allowed_hours.end) == (time(8), time(18))
    assert time(8) in rule.allowed_hours
    assert time(17, 59) in rule.allowed_hours
    assert time(18) not in rule.allowed_hours
    assert time(7, 59) not in rule.allowed_hours
    assert rule.model_dump(mode="json")["allowed_hours"] == "08:00-18:00"


@pytest.mark.parametrize("hours", ["18:00-08:00", "08:00-08:00", "8:00-18:00", "08:00-24:00", "0800-1800", 800])
def test_off_hours_refuses_bad_ranges(hours: object) -> None:
    assert ("allowed_hours",) in errors(rule_data(type="off_hours", allowed_hours=hours))


def test_hours_range_prints_as_written() -> None:
    assert str(HoursRange.parse("00:00-23:59")) == "00:00-23:59"


def test_spike_rule_needs_baseline_windows() -> None:
    rule = RULE.validate_python(rule_data(type="spike", baseline_windows=4, warn_at=3, trip_at=5))
    assert isinstance(rule, SpikeRule)
    assert (rule.baseline_windows, rule.min_events) == (4, 1)
    assert ("baseline_windows",) in errors(rule_data(type="spike"))
    assert ("baseline_windows",) in errors(rule_data(type="spike", baseline_windows=0))


def test_every_type_is_in_the_union() -> None:
    for name, model in RULE_TYPES.items():
        assert model.model_fields["type"].default == name


def test_unknown_type_is_refused_by_the_union() -> None:
    with pytest.raises(ValidationError, match="union_tag_invalid|does not match"):
        RULE.validate_python(rule_data(type="average"))


def test_rule_set_looks_up_by_id_and_domain() -> None:
    a = RULE.validate_python(rule_data(id="a"))
    b = RULE.validate_python(rule_data(id="b", domains=["driver_testing", "vehicle_registration"]))
    rules = RuleSet([a, b])
    assert len(rules) == 2
    assert rules["a"] is a
    assert rules.get("c") is None
    assert "b" in rules
    assert rules.ids == ("a", "b")
    assert list(rules) == [a, b]
    assert rules.for_domain(Domain.DRIVER_TESTING) == (b,)
    assert rules.for_domain(Domain.VEHICLE_REGISTRATION) == (a, b)
    assert rules.for_domain(Domain.ACCIDENT_HANDLING) == ()
    with pytest.raises(KeyError):
        rules["c"]


def test_rule_set_refuses_duplicate_ids() -> None:
    a = RULE.validate_python(rule_data(id="a"))
    with pytest.raises(ValueError, match="duplicate rule id 'a'"):
        RuleSet([a, a])


def test_the_json_schema_describes_rules_as_written() -> None:
    schema = RULE.json_schema()
    assert schema["discriminator"]["propertyName"] == "type"
    count = schema["$defs"]["CountRule"]["properties"]
    assert count["window"]["type"] == "string"
    assert count["probation"]["default"] == "24h"
    assert count["filter"]["type"] == "object"
    assert count["warn_at"]["minimum"] == 0
