"""POST /v1/events, POST /v1/events/batch, GET /v1/events, GET /v1/events/{id} through the ASGI app."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.db import Database
from app.events.models import Event
from app.units.models import Unit
from tests.factories import auxiliary, bearer, make_event


def stored_count(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(Event)) or 0


def error_locs(response: Any) -> list[list[Any]]:
    return [error["loc"] for error in response.json()["errors"]]


# --- POST /v1/events ---------------------------------------------------------------------------


def test_new_event_is_stored_and_answered_201(client: TestClient, source_key: str, db: Database) -> None:
    response = client.post("/v1/events", json=make_event(), headers=bearer(source_key))
    assert response.status_code == 201
    body = response.json()
    assert body["duplicate"] is False
    assert body["alerts"] == []
    assert body["blocked"] is False
    assert body["breakers"] == []
    assert isinstance(body["id"], int)
    assert stored_count(db) == 1


def test_event_without_key_is_401_problem(client: TestClient, db: Database) -> None:
    response = client.post("/v1/events", json=make_event())
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["status"] == 401
    assert stored_count(db) == 0


def test_event_with_unknown_key_is_401(client: TestClient, db: Database) -> None:
    response = client.post("/v1/events", json=make_event(), headers=bearer("sv_not-a-real-key"))
    assert response.status_code == 401


def test_inspector_cannot_post_events(client: TestClient, inspector_key: str, db: Database) -> None:
    response = client.post("/v1/events", json=make_event(), headers=bearer(inspector_key))
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")
    assert stored_count(db) == 0


def test_admin_may_post_events_under_its_own_name(client: TestClient, admin_key: str, inspector_key: str) -> None:
    response = client.post("/v1/events", json=make_event(), headers=bearer(admin_key))
    assert response.status_code == 201
    event = client.get(f"/v1/events/{response.json()['id']}", headers=bearer(inspector_key)).json()
    assert event["source"] == "admin"


def test_same_event_again_is_a_duplicate_with_the_same_id(client: TestClient, source_key: str, db: Database) -> None:
    event = make_event()
    first = client.post("/v1/events", json=event, headers=bearer(source_key))
    again = client.post("/v1/events", json=event, headers=bearer(source_key))
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["id"] == first.json()["id"]
    assert stored_count(db) == 1


def test_same_instant_in_another_offset_is_the_same_content(client: TestClient, source_key: str) -> None:
    event = make_event(occurred_at="2026-11-21T09:30:00+08:00")
    client.post("/v1/events", json=event, headers=bearer(source_key))
    again = client.post("/v1/events", json={**event, "occurred_at": "2026-11-21T01:30:00Z"}, headers=bearer(source_key))
    assert again.status_code == 200


def test_null_and_absent_optional_fields_are_the_same_content(client: TestClient, source_key: str) -> None:
    event = make_event()
    del event["agent_id"]
    client.post("/v1/events", json=event, headers=bearer(source_key))
    again = client.post("/v1/events", json={**event, "agent_id": None}, headers=bearer(source_key))
    assert again.status_code == 200


def test_same_id_with_other_content_is_409_and_keeps_the_first(
    client: TestClient, source_key: str, inspector_key: str, db: Database
) -> None:
    event = make_event()
    first = client.post("/v1/events", json=event, headers=bearer(source_key)).json()
    response = client.post("/v1/events", json={**event, "action": "transfer"}, headers=bearer(source_key))
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"][0]["loc"] == ["body", "source_event_id"]
    assert stored_count(db) == 1
    kept = client.get(f"/v1/events/{first['id']}", headers=bearer(inspector_key)).json()
    assert kept["action"] == "register"


def test_source_event_ids_are_unique_per_source_not_globally(client: TestClient, make_key: Any, db: Database) -> None:
    event = make_event()
    one = client.post("/v1/events", json=event, headers=bearer(make_key("source", "vr-system")))
    other = client.post("/v1/events", json=event, headers=bearer(make_key("source", "vr-backup")))
    assert (one.status_code, other.status_code) == (201, 201)
    assert stored_count(db) == 2


def test_chinese_text_round_trips_unchanged(client: TestClient, source_key: str, inspector_key: str) -> None:
    event = make_event(
        object_ref="湘J·A12345（新能源）", attributes={"vehicle_type": "car", "备注": "中介代办，车主未到场"}
    )
    event["operator"] = {**event["operator"], "unit": "常德-直属一大队"}
    created = client.post("/v1/events", json=event, headers=bearer(source_key)).json()
    stored = client.get(f"/v1/events/{created['id']}", headers=bearer(inspector_key)).json()
    assert stored["object_ref"] == "湘J·A12345（新能源）"
    assert stored["attributes"]["备注"] == "中介代办，车主未到场"
    assert stored["operator"]["unit"] == "常德-直属一大队"


def test_unknown_attributes_are_kept(client: TestClient, source_key: str, inspector_key: str) -> None:
    attributes = {"vehicle_type": "trailer", "axles": 3, "flatbed": True, "notes": ["a", {"b": None}]}
    created = client.post("/v1/events", json=make_event(attributes=attributes), headers=bearer(source_key)).json()
    stored = client.get(f"/v1/events/{created['id']}", headers=bearer(inspector_key)).json()
    assert stored["attributes"] == attributes


def test_times_are_returned_in_utc(client: TestClient, source_key: str, inspector_key: str) -> None:
    created = client.post(
        "/v1/events", json=make_event(occurred_at="2026-11-21T09:30:00+08:00"), headers=bearer(source_key)
    ).json()
    stored = client.get(f"/v1/events/{created['id']}", headers=bearer(inspector_key)).json()
    assert stored["occurred_at"] in ("2026-11-21T01:30:00Z", "2026-11-21T01:30:00+00:00")


def test_an_unknown_unit_is_registered_on_the_fly(client: TestClient, source_key: str, db: Database) -> None:
    event = make_event()
    event["operator"] = {**event["operator"], "unit": "NEW-WINDOW-9"}
    assert client.post("/v1/events", json=event, headers=bearer(source_key)).status_code == 201
    with db.session() as session:
        unit = session.get(Unit, "NEW-WINDOW-9")
    assert unit is not None
    assert unit.parent_id is None
    assert unit.registered_by == "event"


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"occurred_at": "2026-11-21T09:30:00"}, ["body", "occurred_at"]),
        ({"occurred_at": 1763688600}, ["body", "occurred_at"]),
        ({"occurred_at": "yesterday"}, ["body", "occurred_at"]),
        ({"domain": "parking"}, ["body", "domain"]),
        ({"action": "steal"}, ["body", "action"]),
        ({"unexpected": 1}, ["body", "unexpected"]),
        ({"source_event_id": ""}, ["body", "source_event_id"]),
        ({"operator": {"id": "P1", "kind": "police"}}, ["body", "operator", "unit"]),
        ({"operator": {"id": "P1", "kind": "chief", "unit": "U"}}, ["body", "operator", "kind"]),
        ({"operator": {"id": "P1", "kind": "police", "unit": "U", "rank": 3}}, ["body", "operator", "rank"]),
        ({"operator": {"id": "A1", "kind": "auxiliary", "unit": "U"}}, ["body", "operator", "responsible_officer"]),
        (
            {"operator": {"id": "P1", "kind": "police", "unit": "U", "responsible_officer": "P2"}},
            ["body", "operator", "responsible_officer"],
        ),
        ({"business_unit": {"id": "X", "kind": "bank"}}, ["body", "business_unit", "kind"]),
        ({"attributes": {}}, ["body", "attributes", "vehicle_type"]),
        ({"attributes": {"vehicle_type": "spaceship"}}, ["body", "attributes", "vehicle_type"]),
        ({"attributes": {"vehicle_type": "car", "v": 2**60}}, ["body", "attributes", "v"]),
        ({"object_ref": "湘J\u0000"}, ["body", "object_ref"]),
        ({"attributes": {"vehicle_type": "car", "note": "a\u0000b"}}, ["body", "attributes", "note"]),
    ],
)
def test_bad_event_is_422_naming_the_field(
    client: TestClient, source_key: str, db: Database, change: dict[str, Any], loc: list[Any]
) -> None:
    response = client.post("/v1/events", json=make_event(**change), headers=bearer(source_key))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert loc in error_locs(response)
    assert stored_count(db) == 0


@pytest.mark.parametrize(
    ("domain", "action", "attributes", "bad"),
    [
        ("driver_testing", "exam", {"subject": 5, "result": "pass", "score": 90}, "subject"),
        ("driver_testing", "exam", {"subject": 2, "result": "maybe", "score": 90}, "result"),
        ("driver_testing", "exam", {"subject": 2, "result": "pass", "score": 101}, "score"),
        ("driver_testing", "exam", {"subject": 2, "result": "pass", "score": True}, "score"),
        ("vehicle_inspection", "inspection", {"result": "pass", "duration_seconds": -1, "vehicle_type": "car"},
         "duration_seconds"),
        ("vehicle_inspection", "inspection", {"result": "pass", "duration_seconds": 60}, "vehicle_type"),
        ("accident_handling", "case_closed", {}, "closure"),
        ("accident_handling", "case_closed", {"closure": "forgotten"}, "closure"),
        ("violation_handling", "penalty_issued", {"fine_amount": 200}, "points"),
        ("violation_handling", "record_deleted", {"fine_amount": -5, "points": 0}, "fine_amount"),
        ("violation_handling", "record_modified", {"fine_amount": 50, "points": 1.5}, "points"),
    ],
)  # fmt: skip
def test_domain_attributes_are_checked(
    client: TestClient, source_key: str, domain: str, action: str, attributes: dict[str, Any], bad: str
) -> None:
    event = make_event(domain=domain, action=action, attributes=attributes)
    response = client.post("/v1/events", json=event, headers=bearer(source_key))
    assert response.status_code == 422
    assert ["body", "attributes", bad] in error_locs(response)


@pytest.mark.parametrize(
    ("domain", "action", "attributes"),
    [
        ("driver_testing", "exam", {"subject": 3, "result": "fail", "score": 72.5}),
        ("vehicle_inspection", "inspection", {"result": "pass", "duration_seconds": 95, "vehicle_type": "trailer"}),
        ("accident_handling", "case_opened", {}),
        ("accident_handling", "case_closed", {"closure": "no_liability"}),
        ("violation_handling", "penalty_issued", {"fine_amount": 200, "points": 3}),
        ("violation_handling", "record_deleted", {"fine_amount": 0, "points": 0, "reason": "重复录入"}),
        ("vehicle_registration", "deregister", {"vehicle_type": "motorcycle"}),
    ],
)
def test_every_domain_accepts_its_actions(
    client: TestClient, source_key: str, domain: str, action: str, attributes: dict[str, Any]
) -> None:
    event = make_event(domain=domain, action=action, attributes=attributes)
    assert client.post("/v1/events", json=event, headers=bearer(source_key)).status_code == 201


def test_staff_may_name_a_responsible_officer(client: TestClient, source_key: str) -> None:
    staff = {"id": "S3001", "kind": "staff", "unit": "ZS1-CW", "responsible_officer": "P1001"}
    assert client.post("/v1/events", json=make_event(operator=staff), headers=bearer(source_key)).status_code == 201


def test_malformed_json_is_422_not_500(client: TestClient, source_key: str) -> None:
    headers = {**bearer(source_key), "content-type": "application/json"}
    response = client.post("/v1/events", content=b'{"source_event_id": ', headers=headers)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")


def test_non_finite_numbers_are_refused(client: TestClient, source_key: str, db: Database) -> None:
    headers = {**bearer(source_key), "content-type": "application/json"}
    body = make_event()
    raw = (
        b'{"source_event_id": "NAN-1", "domain": "vehicle_registration", "action": "register",'
        b' "occurred_at": "2026-11-21T09:30:00+08:00", "operator": {"id": "P1", "kind": "police", "unit": "U"},'
        b' "attributes": {"vehicle_type": "car", "weight": NaN}}'
    )
    assert body  # the factory is not used for this raw body
    response = client.post("/v1/events", content=raw, headers=headers)
    assert response.status_code == 422
    assert ["body", "attributes", "weight"] in error_locs(response)
    assert stored_count(db) == 0


def test_body_over_one_mebibyte_is_413(client: TestClient, source_key: str, db: Database) -> None:
    event = make_event(attributes={"vehicle_type": "car", "padding": "x" * (1024 * 1024)})
    response = client.post("/v1/events", json=event, headers=bearer(source_key))
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")
    assert stored_count(db) == 0


def test_streamed_body_over_the_limit_is_413_without_content_length(
    client: TestClient, source_key: str, db: Database
) -> None:
    def chunks() -> Any:
        yield b'{"source_event_id": "BIG", "attributes": {"padding": "'
        for _ in range(70):
            yield b"x" * 16384
        yield b'"}}'

    headers = {**bearer(source_key), "content-type": "application/json"}
    response = client.post("/v1/events", content=chunks(), headers=headers)
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert stored_count(db) == 0


# --- POST /v1/events/batch ---------------------------------------------------------------------


def test_batch_stores_every_event_and_answers_in_order(client: TestClient, source_key: str, db: Database) -> None:
    events = [make_event() for _ in range(5)]
    response = client.post("/v1/events/batch", json={"events": events}, headers=bearer(source_key))
    assert response.status_code == 200
    items = response.json()["items"]
    assert len(items) == 5
    assert all(item["duplicate"] is False for item in items)
    assert len({item["id"] for item in items}) == 5
    assert stored_count(db) == 5


def test_an_empty_batch_is_stored_as_nothing(client: TestClient, source_key: str, db: Database) -> None:
    response = client.post("/v1/events/batch", json={"events": []}, headers=bearer(source_key))
    assert response.status_code == 200, response.text
    assert response.json() == {"items": []}
    assert stored_count(db) == 0


def test_batch_with_one_bad_item_stores_nothing_and_names_the_index(
    client: TestClient, source_key: str, db: Database
) -> None:
    events = [make_event() for _ in range(4)]
    events[2] = make_event(occurred_at="2026-11-21T09:30:00")
    events[3] = make_event(attributes={"vehicle_type": "rocket"})
    response = client.post("/v1/events/batch", json={"events": events}, headers=bearer(source_key))
    assert response.status_code == 422
    locs = error_locs(response)
    assert ["body", "events", 2, "occurred_at"] in locs
    assert stored_count(db) == 0
    # Domain rules name the index too, and still store nothing.
    events[2] = make_event()
    response = client.post("/v1/events/batch", json={"events": events}, headers=bearer(source_key))
    assert response.status_code == 422
    assert error_locs(response) == [["body", "events", 3, "attributes", "vehicle_type"]]
    assert stored_count(db) == 0


def test_batch_answers_stored_events_as_duplicates(client: TestClient, source_key: str, db: Database) -> None:
    old = make_event()
    first = client.post("/v1/events", json=old, headers=bearer(source_key)).json()
    response = client.post("/v1/events/batch", json={"events": [make_event(), old]}, headers=bearer(source_key))
    assert response.status_code == 200
    items = response.json()["items"]
    assert [item["duplicate"] for item in items] == [False, True]
    assert items[1]["id"] == first["id"]
    assert stored_count(db) == 2


def test_batch_conflicting_with_a_stored_event_is_409_and_stores_nothing(
    client: TestClient, source_key: str, db: Database
) -> None:
    old = make_event()
    client.post("/v1/events", json=old, headers=bearer(source_key))
    events = [make_event(), make_event(), {**old, "object_ref": "湘J99999"}]
    response = client.post("/v1/events/batch", json={"events": events}, headers=bearer(source_key))
    assert response.status_code == 409
    assert response.json()["errors"][0]["loc"] == ["body", "events", 2, "source_event_id"]
    assert stored_count(db) == 1


def test_batch_repeating_an_event_answers_the_repeat_as_duplicate(client: TestClient, source_key: str) -> None:
    event = make_event()
    response = client.post("/v1/events/batch", json={"events": [event, event]}, headers=bearer(source_key))
    items = response.json()["items"]
    assert [item["duplicate"] for item in items] == [False, True]
    assert items[0]["id"] == items[1]["id"]


def test_batch_repeating_an_id_with_other_content_is_409(client: TestClient, source_key: str, db: Database) -> None:
    event = make_event()
    events = [event, {**event, "action": "transfer"}]
    response = client.post("/v1/events/batch", json={"events": events}, headers=bearer(source_key))
    assert response.status_code == 409
    assert response.json()["errors"][0]["loc"] == ["body", "events", 1, "source_event_id"]
    assert stored_count(db) == 0


def test_batch_over_1000_events_is_413(client: TestClient, source_key: str, db: Database) -> None:
    event = {"source_event_id": "x"}  # the count is refused before any item is read
    response = client.post("/v1/events/batch", json={"events": [event] * 1001}, headers=bearer(source_key))
    assert response.status_code == 413
    assert stored_count(db) == 0


def test_batch_of_exactly_1000_events_is_accepted(client: TestClient, source_key: str, db: Database) -> None:
    events = [make_event() for _ in range(1000)]
    response = client.post("/v1/events/batch", json={"events": events}, headers=bearer(source_key))
    assert response.status_code == 200
    assert stored_count(db) == 1000


def test_batch_needs_a_source_key(client: TestClient, inspector_key: str) -> None:
    body = {"events": [make_event()]}
    assert client.post("/v1/events/batch", json=body).status_code == 401
    assert client.post("/v1/events/batch", json=body, headers=bearer(inspector_key)).status_code == 403


@pytest.mark.parametrize("body", [{}, {"events": "many"}, {"events": [1]}, {"events": [], "extra": True}])
def test_batch_with_a_bad_envelope_is_422(client: TestClient, source_key: str, body: dict[str, Any]) -> None:
    response = client.post("/v1/events/batch", json=body, headers=bearer(source_key))
    assert response.status_code == 422
    assert response.json()["errors"]


# --- GET /v1/events ----------------------------------------------------------------------------


def post_all(client: TestClient, key: str, events: list[dict[str, Any]]) -> list[int]:
    response = client.post("/v1/events/batch", json={"events": events}, headers=bearer(key))
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_list_pages_newest_first_without_gaps_or_repeats(
    client: TestClient, source_key: str, inspector_key: str
) -> None:
    events = [make_event(occurred_at=f"2026-11-21T{h:02d}:00:00+08:00") for h in range(10) for _ in range(3)]
    ids = post_all(client, source_key, events)
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/events", params=params, headers=bearer(inspector_key)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(set(seen))
    times = [client.get(f"/v1/events/{i}", headers=bearer(inspector_key)).json()["occurred_at"] for i in seen[:8]]
    assert times == sorted(times, reverse=True)


def test_list_filters_by_each_field(client: TestClient, source_key: str, inspector_key: str) -> None:
    aux = auxiliary()
    post_all(
        client,
        source_key,
        [
            make_event(occurred_at="2026-11-20T10:00:00+08:00"),
            make_event(operator=aux, agent_id="AG-1", business_unit={"id": "IS-01", "kind": "inspection_station"}),
            make_event(
                domain="accident_handling", action="case_closed", attributes={"closure": "mediated"}, agent_id=None
            ),
        ],
    )
    headers = bearer(inspector_key)

    def count(**params: Any) -> int:
        response = client.get("/v1/events", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return len(response.json()["items"])

    assert count() == 3
    assert count(domain="accident_handling") == 1
    assert count(operator="A2001") == 1
    assert count(business_unit="IS-01") == 1
    assert count(agent="AG-1") == 1
    assert count(agent="AG-88") == 1
    assert count(source="vr-system") == 3
    assert count(**{"from": "2026-11-21T00:00:00+08:00"}) == 2
    assert count(**{"to": "2026-11-21T00:00:00+08:00"}) == 1
    assert count(**{"from": "2026-11-20T10:00:00+08:00", "to": "2026-11-20T10:00:01+08:00"}) == 1


def test_an_unescaped_plus_in_a_query_time_is_read_as_the_offset(
    client: TestClient, source_key: str, inspector_key: str
) -> None:
    post_all(client, source_key, [make_event(occurred_at="2026-11-20T10:00:00+08:00")])
    response = client.get("/v1/events?from=2026-11-20T10:00:00+08:00", headers=bearer(inspector_key))
    assert response.status_code == 200
    assert len(response.json()["items"]) == 1


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"limit": 501}, ["query", "limit"]),
        ({"limit": 0}, ["query", "limit"]),
        ({"cursor": "garbage"}, ["query", "cursor"]),
        ({"from": "2026-11-21T00:00:00"}, ["query", "from"]),
        ({"from": "2026-11-22T00:00:00Z", "to": "2026-11-21T00:00:00Z"}, ["query", "to"]),
        ({"domain": "parking"}, ["query", "domain"]),
    ],
)
def test_list_with_bad_parameters_is_422(
    client: TestClient, inspector_key: str, params: dict[str, Any], loc: list[Any]
) -> None:
    response = client.get("/v1/events", params=params, headers=bearer(inspector_key))
    assert response.status_code == 422
    assert loc in error_locs(response)


def test_a_cursor_from_another_list_is_refused(client: TestClient, admin_key: str, inspector_key: str) -> None:
    for unit in ("A", "B", "C"):
        client.put(f"/v1/units/{unit}", json={"label_zh": unit, "label_en": unit}, headers=bearer(admin_key))
    cursor = client.get("/v1/units", params={"limit": 1}, headers=bearer(inspector_key)).json()["next_cursor"]
    response = client.get("/v1/events", params={"cursor": cursor}, headers=bearer(inspector_key))
    assert response.status_code == 422


def test_list_and_detail_need_an_inspector_key(client: TestClient, source_key: str) -> None:
    (event_id,) = post_all(client, source_key, [make_event()])
    assert client.get("/v1/events").status_code == 401
    assert client.get("/v1/events", headers=bearer(source_key)).status_code == 403
    assert client.get(f"/v1/events/{event_id}").status_code == 401
    assert client.get(f"/v1/events/{event_id}", headers=bearer(source_key)).status_code == 403


def test_detail_of_a_missing_event_is_404(client: TestClient, inspector_key: str) -> None:
    response = client.get("/v1/events/999999", headers=bearer(inspector_key))
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


def test_detail_with_a_non_numeric_id_is_422(client: TestClient, inspector_key: str) -> None:
    response = client.get("/v1/events/abc", headers=bearer(inspector_key))
    assert response.status_code == 422
    assert ["path", "event_id"] in error_locs(response)


def test_scoped_inspector_sees_only_events_of_their_units(
    client: TestClient, admin_key: str, source_key: str, make_key: Any
) -> None:
    admin = bearer(admin_key)
    client.put("/v1/units/ZD", json={"label_zh": "支队", "label_en": "Detachment"}, headers=admin)
    client.put("/v1/units/DD1", json={"parent": "ZD", "label_zh": "一大队", "label_en": "Brigade 1"}, headers=admin)
    client.put("/v1/units/DD1-ZD1", json={"parent": "DD1", "label_zh": "一中队", "label_en": "Squad 1"}, headers=admin)
    client.put("/v1/units/DD2", json={"parent": "ZD", "label_zh": "二大队", "label_en": "Brigade 2"}, headers=admin)

    def by(unit: str) -> dict[str, Any]:
        return make_event(operator={"id": "P1", "kind": "police", "unit": unit})

    inside, below, outside = post_all(client, source_key, [by("DD1"), by("DD1-ZD1"), by("DD2")])
    scoped = bearer(make_key("inspector", "dd1-inspector", unit="DD1"))
    listed = {item["id"] for item in client.get("/v1/events", headers=scoped).json()["items"]}
    assert listed == {inside, below}
    assert client.get(f"/v1/events/{below}", headers=scoped).status_code == 200
    assert client.get(f"/v1/events/{outside}", headers=scoped).status_code == 404


def test_an_empty_batch_stores_nothing_and_answers_no_items(client: TestClient, source_key: str, db: Database) -> None:
    response = client.post("/v1/events/batch", json={"events": []}, headers=bearer(source_key))
    assert response.status_code == 200
    assert response.json() == {"items": []}
