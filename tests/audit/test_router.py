"""GET /v1/audit, GET /v1/audit/verify and POST /v1/audit/checkpoints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from app.audit import service
from app.audit.models import AuditEntry
from app.db import Database
from app.events.models import Event
from app.pagination import encode_cursor
from tests.audit.helpers import entries, record_some, tampering
from tests.conftest import KeyMaker
from tests.factories import bearer, make_event

ENTRY_FIELDS = {
    "id",
    "seq",
    "at",
    "actor",
    "action",
    "object_type",
    "object_id",
    "unit",
    "data",
    "prev_hash",
    "hash",
}
ENDPOINTS = [("GET", "/v1/audit"), ("GET", "/v1/audit/verify"), ("POST", "/v1/audit/checkpoints")]


def is_problem(response: Any, status: int) -> bool:
    body = response.json()
    return bool(
        response.status_code == status
        and response.headers["content-type"].startswith("application/problem+json")
        and body["status"] == status
        and {"type", "title", "detail"} <= body.keys()
    )


def listed(client: TestClient, key: str, **params: Any) -> dict[str, Any]:
    response = client.get("/v1/audit", params=params, headers=bearer(key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def mine(items: list[dict[str, Any]], ids: list[int]) -> list[dict[str, Any]]:
    """The entries among `items` that the test recorded (keys created by fixtures may add others)."""
    return [item for item in items if item["id"] in ids]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_no_key_is_401(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path)
    assert is_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_a_source_key_is_403(client: TestClient, source_key: str, method: str, path: str) -> None:
    assert is_problem(client.request(method, path, headers=bearer(source_key)), 403)


def test_an_inspector_may_not_take_a_checkpoint(client: TestClient, inspector_key: str) -> None:
    assert is_problem(client.post("/v1/audit/checkpoints", headers=bearer(inspector_key)), 403)


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"limit": 0}, ["query", "limit"]),
        ({"limit": 501}, ["query", "limit"]),
        ({"limit": "many"}, ["query", "limit"]),
        ({"cursor": "garbled"}, ["query", "cursor"]),
        ({"cursor": "WyJldmVudHMiLDFd"}, ["query", "cursor"]),  # another list's cursor
        ({"from": "2026-11-21T09:30:00"}, ["query", "from"]),  # no offset
        ({"from": "yesterday"}, ["query", "from"]),
        ({"to": "2026-11-21T09:30:00+08:00", "from": "2026-11-22T09:30:00+08:00"}, ["query", "to"]),
        ({"action": "x" * 65}, ["query", "action"]),
        ({"object_id": "a\x00b"}, ["query", "object_id"]),
    ],
)
def test_bad_list_parameters_are_422_naming_them(
    client: TestClient, inspector_key: str, params: dict[str, Any], loc: list[str]
) -> None:
    response = client.get("/v1/audit", params=params, headers=bearer(inspector_key))
    assert is_problem(response, 422)
    assert loc in [error["loc"] for error in response.json()["errors"]]


def test_a_cursor_with_a_non_integer_key_is_422(client: TestClient, inspector_key: str) -> None:
    for key in ("12", 1.5, True, None):
        response = client.get(
            "/v1/audit", params={"cursor": encode_cursor("audit", [key])}, headers=bearer(inspector_key)
        )
        assert is_problem(response, 422), key


def test_the_trail_lists_sealed_entries_newest_first(db: Database, client: TestClient, inspector_key: str) -> None:
    ids = record_some(db, 3, seal=False)  # listing seals them first
    body = listed(client, inspector_key)
    items = mine(body["items"], ids)
    assert body["next_cursor"] is None
    assert [item["id"] for item in items] == ids[::-1]
    first = items[-1]
    assert set(first) == ENTRY_FIELDS
    assert first["actor"] == "admin"
    assert first["action"] == "unit.changed"
    assert first["data"] == {"parent": None, "label_zh": "第0中队", "index": 0}
    assert first["at"].endswith("Z")
    seqs = [item["seq"] for item in body["items"]]
    assert seqs == sorted(seqs, reverse=True)
    assert items[0]["prev_hash"] == items[1]["hash"]


def test_the_trail_pages_with_a_cursor(db: Database, client: TestClient, admin_key: str) -> None:
    ids = record_some(db, 7)
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, "object_type": "unit"}
        if cursor:
            params["cursor"] = cursor
        body = listed(client, admin_key, **params)
        assert len(body["items"]) <= 3
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]


def test_the_trail_filters(db: Database, client: TestClient, inspector_key: str) -> None:
    units = record_some(db, 2)
    (key,) = record_some(db, 1, actor="管理员", action="key.revoked", object_type="key", object_id="7")
    assert [item["id"] for item in listed(client, inspector_key, action="key.revoked")["items"]] == [key]
    assert [item["id"] for item in listed(client, inspector_key, actor="管理员")["items"]] == [key]
    assert [item["id"] for item in listed(client, inspector_key, object_type="unit")["items"]] == units[::-1]
    assert [item["id"] for item in listed(client, inspector_key, object_type="unit", object_id="U1")["items"]] == [
        units[1]
    ]
    now = datetime.now(UTC)
    after = listed(client, inspector_key, **{"from": (now + timedelta(minutes=1)).isoformat()})
    assert after["items"] == []
    window = {"from": (now - timedelta(minutes=5)).isoformat(), "to": (now + timedelta(minutes=5)).isoformat()}
    assert {key, *units} <= {item["id"] for item in listed(client, inspector_key, **window)["items"]}


def test_a_unit_scoped_inspector_sees_only_the_entries_of_its_units(
    db: Database, client: TestClient, make_key: KeyMaker, admin_key: str
) -> None:
    for unit, parent in (("ZD", None), ("DD1", "ZD"), ("DD2", "ZD")):
        response = client.put(
            f"/v1/units/{unit}", json={"parent": parent, "label_zh": unit, "label_en": unit}, headers=bearer(admin_key)
        )
        assert response.status_code in (200, 201), response.text
    inside = record_some(db, 2, unit="DD1")
    outside = record_some(db, 1, unit="DD2") + record_some(db, 1)
    scoped = make_key("inspector", "inspector-dd1", unit="DD1")
    items = listed(client, scoped)["items"]
    ids = [item["id"] for item in items]
    # The recorded entries of DD1, and the creation of DD1 itself (PUT /v1/units is audited), newest first.
    assert [i for i in ids if i in inside] == inside[::-1]
    assert {item["unit"] for item in items} == {"DD1"}
    assert not set(outside) & set(ids)


def test_verify_answers_ok_with_the_entries_checked(db: Database, client: TestClient, inspector_key: str) -> None:
    record_some(db, 4)
    record_some(db, 2, seal=False)
    response = client.get("/v1/audit/verify", headers=bearer(inspector_key))
    assert response.status_code == 200, response.text
    body = response.json()
    total = len(entries(db))
    assert body["ok"] is True
    assert body["checked"] == total
    assert body["first_mismatch"] is None
    assert body["head_seq"] == total
    assert len(body["head_hash"]) == 64


def test_verify_names_the_first_changed_entry(db: Database, client: TestClient, admin_key: str) -> None:
    ids = record_some(db, 5)
    with tampering(db) as session:
        session.execute(update(AuditEntry).where(AuditEntry.id == ids[2]).values(data={"index": 99}))
    body = client.get("/v1/audit/verify", headers=bearer(admin_key)).json()
    assert body["ok"] is False
    assert body["first_mismatch"] == ids[2]
    assert str(ids[2]) in body["reason"]
    assert body["checked"] >= 3


def test_a_unit_scoped_inspector_is_told_only_where_the_chain_breaks(
    db: Database, client: TestClient, make_key: KeyMaker, admin_key: str
) -> None:
    response = client.put(
        "/v1/units/DD1", json={"parent": None, "label_zh": "一大队", "label_en": "DD1"}, headers=bearer(admin_key)
    )
    assert response.status_code in (200, 201), response.text
    ids = record_some(db, 3)
    with tampering(db) as session:
        session.execute(update(AuditEntry).where(AuditEntry.id == ids[1]).values(object_id="U9"))
    body = client.get("/v1/audit/verify", headers=bearer(make_key("inspector", "inspector-dd1", unit="DD1"))).json()
    assert (body["ok"], body["first_mismatch"], body["reason"], body["changed_events"]) == (False, ids[1], None, [])


def test_an_admin_takes_a_checkpoint_and_verify_catches_a_later_edit(
    db: Database, client: TestClient, source_key: str, admin_key: str, inspector_key: str
) -> None:
    posted = [client.post("/v1/events", json=make_event(), headers=bearer(source_key)) for _ in range(3)]
    assert all(response.status_code == 201 for response in posted)
    response = client.post("/v1/audit/checkpoints", headers=bearer(admin_key))
    assert response.status_code == 201, response.text
    entry = response.json()
    assert set(entry) == ENTRY_FIELDS
    assert entry["action"] == "checkpoint"
    assert entry["actor"] == "admin"
    assert entry["data"]["events"] == 3
    assert entry["data"]["last_event_id"] == posted[-1].json()["id"]
    assert entry["id"] in [item["id"] for item in listed(client, inspector_key, action="checkpoint")["items"]]
    assert client.get("/v1/audit/verify", headers=bearer(inspector_key)).json()["ok"] is True

    with db.session(write=True) as session:
        session.execute(update(Event).where(Event.id == posted[1].json()["id"]).values(agent_id="AG-00"))
    body = client.get("/v1/audit/verify", headers=bearer(inspector_key)).json()
    assert body["ok"] is False
    assert body["first_mismatch"] == entry["id"]
    assert body["changed_events"] == [posted[1].json()["id"]]


def test_the_answers_are_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"get"} <= paths["/v1/audit"].keys()
    assert {"get"} <= paths["/v1/audit/verify"].keys()
    assert {"post"} <= paths["/v1/audit/checkpoints"].keys()


def test_chinese_text_round_trips(db: Database, client: TestClient, inspector_key: str) -> None:
    with db.session(write=True) as session:
        entry_id = service.record(
            session,
            actor="督察-王",
            action="alert.moved",
            object_type="alert",
            object_id="预警-1",
            data={"reason": "警示约谈", "level": "unit"},
        )
    (item,) = listed(client, inspector_key, object_id="预警-1")["items"]
    assert item["id"] == entry_id
    assert (item["actor"], item["data"]["reason"]) == ("督察-王", "警示约谈")
