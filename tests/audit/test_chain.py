"""Hash chaining and the canonical content of stored events, without a database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.audit.chain import GENESIS, as_sent, entry_hash, event_content, event_hash, utc_text
from app.events.schemas import EventIn
from app.events.service import canonical_content
from app.jsonutil import canonical_hash
from tests.factories import make_event

AT = datetime(2026, 11, 21, 1, 30, tzinfo=UTC)
ENTRY: dict[str, Any] = {
    "entry_id": 7,
    "seq": 3,
    "at": AT,
    "actor": "inspector-wang",
    "action": "alert.moved",
    "object_type": "alert",
    "object_id": "42",
    "unit": "ZS1-CW",
    "data": {"from": "warning", "to": "supervision", "reason": "多次违规"},
    "prev_hash": "a" * 64,
}


def test_an_entry_hash_is_sha256_hex_and_repeatable() -> None:
    digest = entry_hash(**ENTRY)
    assert len(digest) == 64
    assert int(digest, 16) >= 0
    assert entry_hash(**ENTRY) == digest


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("entry_id", 8),
        ("seq", 4),
        ("at", AT + timedelta(microseconds=1)),
        ("actor", "inspector-li"),
        ("action", "alert.cleared"),
        ("object_type", "breaker"),
        ("object_id", "43"),
        ("unit", None),
        ("data", {"from": "warning", "to": "interview", "reason": "多次违规"}),
        ("prev_hash", GENESIS),
    ],
)
def test_every_field_of_an_entry_changes_its_hash(name: str, value: Any) -> None:
    assert entry_hash(**{**ENTRY, name: value}) != entry_hash(**ENTRY)


def test_the_time_is_hashed_as_the_instant_whatever_its_offset() -> None:
    shanghai = AT.astimezone(timezone(timedelta(hours=8)))
    assert entry_hash(**{**ENTRY, "at": shanghai}) == entry_hash(**ENTRY)
    assert utc_text(shanghai) == "2026-11-21T01:30:00Z"


def test_numbers_read_back_from_jsonb_are_as_sent() -> None:
    # PostgreSQL writes the float 1e21 back as the integer 1000000000000000000000.
    assert as_sent({"a": [10**21, 2**53 - 1, True, 1.5]}) == {"a": [1e21, 2**53 - 1, True, 1.5]}
    assert canonical_hash(as_sent({"x": 10**21})) == canonical_hash({"x": 1e21})


def stored_row(source: str, event: EventIn, attributes: Any) -> dict[str, Any]:
    """The columns app.events.service stores for `event`, with the attributes as read back."""
    return {
        "source": source,
        "source_event_id": event.source_event_id,
        "domain": event.domain.value,
        "action": event.action,
        "occurred_at": event.occurred_at.astimezone(UTC),
        "operator_id": event.operator.id,
        "operator_kind": event.operator.kind.value,
        "operator_unit": event.operator.unit,
        "responsible_officer": event.operator.responsible_officer,
        "business_unit_id": event.business_unit.id if event.business_unit else None,
        "business_unit_kind": event.business_unit.kind.value if event.business_unit else None,
        "agent_id": event.agent_id,
        "object_ref": event.object_ref,
        "attributes": attributes,
    }


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(st.characters(codec="utf-8", exclude_characters="\x00")), children)
    ),
    max_leaves=12,
)


def jsonb_round_trip(value: Any) -> Any:
    """What PostgreSQL's jsonb gives back: numbers as exact decimals, so integral floats come back as ints."""
    if isinstance(value, dict):
        return {key: jsonb_round_trip(item) for key, item in value.items()}
    if isinstance(value, list):
        return [jsonb_round_trip(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@settings(max_examples=300, deadline=None)
@given(
    attributes=st.dictionaries(st.text(max_size=6).filter(lambda k: "\x00" not in k), json_values, max_size=5),
    operator=st.sampled_from(
        [
            {"id": "P1", "kind": "police", "unit": "ZS1"},
            {"id": "A1", "kind": "auxiliary", "unit": "ZS1", "responsible_officer": "P1"},
            {"id": "S1", "kind": "staff", "unit": "窗口-3"},
            {"id": "S2", "kind": "staff", "unit": "窗口-3", "responsible_officer": "P9"},
        ]
    ),
    optional=st.fixed_dictionaries(
        {},
        optional={
            "business_unit": st.just({"id": "IS-07", "kind": "inspection_station"}),
            "agent_id": st.just("AG-88"),
            "object_ref": st.just("湘J12345"),
        },
    ),
    occurred_at=st.datetimes(
        min_value=datetime(2001, 1, 1),
        max_value=datetime(2099, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-3, minutes=-30))]),
    ),
)
def test_the_content_rebuilt_from_stored_columns_hashes_as_posted(
    attributes: dict[str, Any], operator: dict[str, Any], optional: dict[str, Any], occurred_at: datetime
) -> None:
    body = make_event(operator=operator, attributes=attributes, occurred_at=occurred_at.isoformat(), **optional)
    for name in ("business_unit", "agent_id", "object_ref"):
        if name not in optional:
            body.pop(name)
    event = EventIn.model_validate(body)
    posted = canonical_hash(canonical_content("vr-system", event))
    assert canonical_content("vr-system", event) == event_content(stored_row("vr-system", event, attributes))
    # As SQLite gives the attributes back (JSON text) and as PostgreSQL does (jsonb).
    for read_back in (json.loads(json.dumps(attributes)), jsonb_round_trip(attributes)):
        assert event_hash(stored_row("vr-system", event, read_back)) == posted


def test_a_changed_column_changes_the_rebuilt_hash() -> None:
    event = EventIn.model_validate(make_event())
    row = stored_row("vr-system", event, event.attributes)
    original = event_hash(row)
    for name, value in (
        ("operator_id", "P1002"),
        ("responsible_officer", "P1"),
        ("agent_id", None),
        ("attributes", {}),
    ):
        assert event_hash({**row, name: value}) != original, name


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"reason": "多次违规", "n": 3, "ok": True, "none": None},
        {"value": 0.75, "hits": 4},
        {"big": 2**53 + 2},
        {"nested": {"b": [1, 2.5], "a": "x"}},
        {"键": "non-ASCII key", "\U0001f600": 1, "\ue000": 2},
    ],
)
def test_the_quick_encoding_of_flat_data_hashes_as_rfc_8785(data: dict[str, Any]) -> None:
    body = {**ENTRY, "data": data}
    expected = canonical_hash(
        {
            "id": body["entry_id"],
            "seq": body["seq"],
            "at": utc_text(body["at"]),
            "actor": body["actor"],
            "action": body["action"],
            "object_type": body["object_type"],
            "object_id": body["object_id"],
            "unit": body["unit"],
            "data": as_sent(data),
            "prev_hash": body["prev_hash"],
        }
    )
    assert entry_hash(**body) == expected
