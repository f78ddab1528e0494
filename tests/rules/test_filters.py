from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.events.domains import Domain
from app.rules.filters import Filter, check_path, field_value, getter, matches


def make_event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "source": "vr-system",
        "source_event_id": "VR-2026-000123",
        "domain": "vehicle_registration",
        "action": "register",
        "occurred_at": "2026-11-21T09:30:00+08:00",
        "operator": {"id": "P1001", "kind": "police", "unit": "ZS1-CW", "responsible_officer": None},
        "business_unit": {"id": "IS-07", "kind": "inspection_station"},
        "agent_id": "AG-88",
        "object_ref": "湘J12345",
        "attributes": {"vehicle_type": "new_energy", "fine_amount": 200, "points": 3, "flag": True},
    }
    event.update(overrides)
    return event


def holds(written: Mapping[str, Any], event: Mapping[str, Any] | None = None) -> bool:
    return matches(Filter.parse(written), make_event() if event is None else event)


def test_empty_filter_matches_every_event() -> None:
    assert holds({})
    assert Filter.parse(None).matches({})


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ({"action": "register"}, True),
        ({"action": "transfer"}, False),
        ({"domain": "vehicle_registration"}, True),
        ({"source": "vr-system"}, True),
        ({"source_event_id": "VR-2026-000123"}, True),
        ({"operator.id": "P1001"}, True),
        ({"operator.kind": "auxiliary"}, False),
        ({"operator.unit": "ZS1-CW"}, True),
        ({"business_unit.id": "IS-07"}, True),
        ({"business_unit.kind": "inspection_station"}, True),
        ({"agent_id": "AG-88"}, True),
        ({"object_ref": "湘J12345"}, True),
        ({"attributes.vehicle_type": "new_energy"}, True),
        ({"attributes.fine_amount": 200}, True),
        ({"attributes.fine_amount": 200.0}, True),
        ({"attributes.flag": True}, True),
        ({"attributes.flag": 1}, False),
        ({"attributes.points": True}, False),
        ({"attributes.vehicle_type": {"in": ["car", "new_energy"]}}, True),
        ({"attributes.vehicle_type": {"in": ["car"]}}, False),
        ({"attributes.vehicle_type": {"not_in": ["car"]}}, True),
        ({"attributes.vehicle_type": {"not_in": ["new_energy"]}}, False),
        ({"attributes.points": {"in": [True, 3]}}, True),
        ({"attributes.flag": {"in": [1]}}, False),
        ({"attributes.flag": {"in": [True]}}, True),
        ({"action": {"ne": "transfer"}}, True),
        ({"action": {"ne": "register"}}, False),
        ({"attributes.fine_amount": {"gt": 199}}, True),
        ({"attributes.fine_amount": {"gt": 200}}, False),
        ({"attributes.fine_amount": {"gte": 200}}, True),
        ({"attributes.fine_amount": {"gte": 200.5}}, False),
        ({"attributes.fine_amount": {"lt": 200.5}}, True),
        ({"attributes.fine_amount": {"lt": 200}}, False),
        ({"attributes.fine_amount": {"lte": 200}}, True),
        ({"attributes.fine_amount": {"lte": 199}}, False),
        ({"object_ref": {"gte": "湘A"}}, True),
        ({"action": {"lt": "a"}}, False),
        ({"action": "register", "operator.kind": "police"}, True),
        ({"action": "register", "operator.kind": "staff"}, False),
    ],
)
def test_each_operator(written: dict[str, Any], expected: bool) -> None:
    assert holds(written) is expected


@pytest.mark.parametrize("path", ["attributes.missing", "operator.responsible_officer", "business_unit.id"])
def test_an_absent_field_matches_only_ne_and_not_in(path: str) -> None:
    event = make_event(business_unit=None)
    assert not holds({path: "x"}, event)
    assert not holds({path: {"in": ["x"]}}, event)
    assert not holds({path: {"gt": 0}}, event)
    assert not holds({path: {"gte": ""}}, event)
    assert not holds({path: {"lt": "zzz"}}, event)
    assert not holds({path: {"lte": 10}}, event)
    assert holds({path: {"ne": "x"}}, event)
    assert holds({path: {"not_in": ["x"]}}, event)


def test_a_missing_envelope_part_is_absent_too() -> None:
    event = make_event()
    del event["business_unit"], event["attributes"], event["agent_id"]
    assert not holds({"business_unit.kind": "company"}, event)
    assert not holds({"attributes.x": 1}, event)
    assert not holds({"agent_id": "AG-88"}, event)
    assert holds({"agent_id": {"ne": "AG-88"}}, event)


@pytest.mark.parametrize(
    "written",
    [
        {"attributes.fine_amount": "200"},
        {"attributes.fine_amount": {"gt": "100"}},
        {"attributes.vehicle_type": {"gt": 1}},
        {"attributes.vehicle_type": {"lte": 1e9}},
        {"attributes.flag": {"gte": 0}},
        {"attributes.fine_amount": {"in": ["200"]}},
    ],
)
def test_text_and_numbers_never_compare(written: dict[str, Any]) -> None:
    assert not holds(written)


def test_nested_or_list_values_match_nothing_but_negations() -> None:
    event = make_event(attributes={"tags": ["a", "b"], "meta": {"k": 1}})
    for path in ("attributes.tags", "attributes.meta"):
        assert not holds({path: "a"}, event)
        assert not holds({path: {"in": ["a"]}}, event)
        assert not holds({path: {"gt": 0}}, event)
        assert holds({path: {"ne": "a"}}, event)
        assert holds({path: {"not_in": ["a"]}}, event)


def test_a_malformed_envelope_does_not_raise() -> None:
    assert not holds({"attributes.x": 1}, make_event(attributes="text"))
    assert not holds({"operator.id": "P1"}, make_event(operator=["P1"]))


def test_enum_values_in_events_compare_as_text() -> None:
    assert holds({"domain": "vehicle_registration"}, make_event(domain=Domain.VEHICLE_REGISTRATION))


@pytest.mark.parametrize(
    ("written", "fragment"),
    [
        ({"operator.name": "x"}, "unknown field path 'operator.name'"),
        ({"occurred_at": {"gt": "2026"}}, "unknown field path 'occurred_at'"),
        ({"attributes.": 1}, "unknown field path 'attributes.'"),
        ({"attributes": 1}, "unknown field path 'attributes'"),
        ({"action": {"like": "reg%"}}, "exactly one of in, not_in, ne, gt, gte, lt, lte (got like)"),
        ({"action": {"in": ["a"], "ne": "b"}}, "exactly one of"),
        ({"action": {}}, "exactly one of"),
        ({"action": {"in": "register"}}, "action.in: in needs a list"),
        ({"action": {"not_in": "register"}}, "not_in needs a list"),
        ({"action": ["register", "transfer"]}, "write {in: [...]}"),
        ({"attributes.x": {"gt": True}}, "gt needs a number or text"),
        ({"attributes.x": {"lt": [1]}}, "must be text, a number or true/false"),
        ({"attributes.x": None}, "null matches nothing"),
        ({"attributes.x": {"in": [1, None]}}, "attributes.x.in[1]: null"),
        ({"attributes.x": float("inf")}, "finite"),
        ({"attributes.x": {"a": 1}}, "exactly one of"),
        ({"domain": "parking"}, "'parking' is not one of vehicle_registration"),
        ({"operator.kind": {"in": ["police", "polic"]}}, "'polic' is not one of police, auxiliary, staff"),
        ({"business_unit.kind": {"ne": "school"}}, "'school' is not one of"),
    ],
)
def test_bad_filters_are_refused_with_the_path_named(written: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        Filter.parse(written)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ValueError, match="operator.name") as caught:
        Filter.parse({"operator.name": "x", "action": {"in": "y"}})
    assert "action.in" in str(caught.value)


def test_a_filter_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(ValueError, match="maps field paths"):
        Filter.parse(["action"])  # type: ignore[arg-type]


def test_filters_print_back_as_written() -> None:
    written = {"action": "register", "attributes.vehicle_type": {"in": ["car"]}, "attributes.points": {"gte": 3}}
    assert Filter.parse(written).to_mapping() == written
    assert Filter.parse(written) == Filter.parse(dict(written))


def test_field_value_reads_paths() -> None:
    event = make_event()
    assert field_value("operator.id", event) == "P1001"
    assert field_value("attributes.fine_amount", event) == 200
    assert field_value("attributes.nothing", event) is None
    assert field_value("business_unit.kind", make_event(business_unit=None)) is None
    assert getter("operator.id") is getter("operator.id")
    with pytest.raises(ValueError, match="unknown field path"):
        field_value("operator", event)


def test_check_path_accepts_any_attribute_name() -> None:
    assert check_path("attributes.车型") == "attributes.车型"
    assert check_path("attributes.a.b") == "attributes.a.b"


# Property: the compiled filter agrees with a plain reading of the contract.

PATHS = ("action", "agent_id", "operator.id", "operator.responsible_officer", "business_unit.id", "attributes.a")
SCALARS = st.one_of(
    st.sampled_from(["x", "y", "1", ""]),
    st.integers(-2, 2),
    st.sampled_from([0.0, 1.0, 1.5, -0.5]),
    st.booleans(),
)
EVENT_VALUES = st.one_of(SCALARS, st.none(), st.just(["x"]), st.just({"x": 1}))
ORDER = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


def reference_kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    return None


def reference_equal(actual: Any, expected: Any) -> bool:
    kind = reference_kind(actual)
    return kind is not None and kind == reference_kind(expected) and actual == expected


def reference_get(path: str, event: Mapping[str, Any]) -> Any:
    head, _, rest = path.partition(".")
    value = event.get(head)
    if not rest:
        return value
    return value.get(rest) if isinstance(value, dict) else None


def reference_holds(path: str, written: Any, event: Mapping[str, Any]) -> bool:
    actual = reference_get(path, event)
    if not isinstance(written, dict):
        return reference_equal(actual, written)
    ((op, expected),) = written.items()
    if op == "ne":
        return not reference_equal(actual, expected)
    if op == "in":
        return any(reference_equal(actual, e) for e in expected)
    if op == "not_in":
        return not any(reference_equal(actual, e) for e in expected)
    kind = reference_kind(actual)
    compare: Callable[[Any, Any], bool] = ORDER[op]
    return kind in ("number", "text") and kind == reference_kind(expected) and compare(actual, expected)


def reference_matches(written: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    return all(reference_holds(path, value, event) for path, value in written.items())


@st.composite
def conditions(draw: st.DrawFn) -> Any:
    op = draw(st.sampled_from(["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte"]))
    if op in ("in", "not_in"):
        return {op: draw(st.lists(SCALARS, max_size=4))}
    if op in ORDER:
        value = draw(SCALARS.filter(lambda v: not isinstance(v, bool)))
        return {op: value}
    value = draw(SCALARS)
    return value if op == "eq" else {op: value}


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    def maybe(value: Any) -> Any:
        return value if draw(st.booleans()) else None

    return {
        "action": draw(EVENT_VALUES),
        "agent_id": draw(EVENT_VALUES),
        "operator": {"id": draw(EVENT_VALUES), "responsible_officer": draw(EVENT_VALUES)},
        "business_unit": maybe({"id": draw(EVENT_VALUES)}),
        "attributes": draw(st.one_of(st.just({}), st.builds(lambda v: {"a": v}, EVENT_VALUES))),
    }


@settings(max_examples=300, deadline=None)
@given(written=st.dictionaries(st.sampled_from(PATHS), conditions(), max_size=3), event=events())
def test_matches_agrees_with_a_plain_reading_of_the_contract(written: dict[str, Any], event: dict[str, Any]) -> None:
    assert matches(Filter.parse(written), event) is reference_matches(written, event)
