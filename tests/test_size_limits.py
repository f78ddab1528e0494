"""Size limits of request bodies, at the boundary: exactly at a limit is accepted, one past it is a 422
problem naming the field, and nothing of a refused request is stored. The OpenAPI document states each
limit it can express."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.db import Database
from app.events.models import Event
from app.jsonutil import MAX_BYTES, MAX_DEPTH, MAX_ITEMS, MAX_KEYS, MAX_TEXT, dumps
from app.units.models import Unit
from tests.factories import bearer, make_event


def count(db: Database, model: type[Event] | type[Unit]) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def post(client: TestClient, key: str, attributes: dict[str, Any]) -> Any:
    return client.post("/v1/events", json=make_event(attributes=attributes), headers=bearer(key))


def refused_at(response: Any, loc: Sequence[str | int]) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert list(loc) in [error["loc"] for error in response.json()["errors"]], response.json()["errors"]


def nested(levels: int) -> Any:
    """A value that, as an attribute, makes the attributes `levels` levels deep (attributes: level 1)."""
    value: Any = 1
    for _ in range(levels - 1):
        value = [value]
    return value


def with_size(size: int) -> dict[str, Any]:
    """Attributes whose JSON text is exactly `size` bytes, with no string over MAX_TEXT."""
    attributes: dict[str, Any] = {"vehicle_type": "car"}
    n = 0
    while len(dumps(attributes).encode()) < size:
        key = f"p{n}"
        attributes[key] = ""
        room = size - len(dumps(attributes).encode())
        attributes[key] = "x" * min(MAX_TEXT, max(room, 0))
        n += 1
    assert len(dumps(attributes).encode()) == size
    return attributes


def keys(n: int) -> dict[str, Any]:
    return {"vehicle_type": "car", **{f"a{i}": i for i in range(n - 1)}}


@pytest.mark.parametrize(
    ("at", "over", "loc"),
    [
        ({"note": "文" * MAX_TEXT}, {"note": "文" * (MAX_TEXT + 1)}, ["note"]),
        ({"deep": {"note": "x" * MAX_TEXT}}, {"deep": {"note": "x" * (MAX_TEXT + 1)}}, ["deep", "note"]),
        ({"k" * MAX_TEXT: 1}, {"k" * (MAX_TEXT + 1): 1}, ["k" * 32 + "…"]),
        (keys(MAX_KEYS), keys(MAX_KEYS + 1), []),
        ({"deep": nested(MAX_DEPTH)}, {"deep": nested(MAX_DEPTH + 1)}, ["deep"] + [0] * (MAX_DEPTH - 1)),
        ({"list": [0] * MAX_ITEMS}, {"list": [0] * (MAX_ITEMS + 1)}, ["list"]),
        (with_size(MAX_BYTES), with_size(MAX_BYTES + 1), []),
    ],
    ids=["string", "nested-string", "key", "keys", "depth", "array", "bytes"],
)
def test_attributes_at_a_limit_are_stored_and_one_past_it_is_a_422_naming_the_field(
    client: TestClient, source_key: str, db: Database, at: dict[str, Any], over: dict[str, Any], loc: list[str | int]
) -> None:
    assert post(client, source_key, {"vehicle_type": "car", **at}).status_code == 201
    refused_at(post(client, source_key, {"vehicle_type": "car", **over}), ["body", "attributes", *loc])
    assert count(db, Event) == 1


def test_a_batch_with_one_oversized_item_stores_nothing_and_names_the_item(
    client: TestClient, source_key: str, db: Database
) -> None:
    events = [make_event(), make_event(attributes={"vehicle_type": "car", "note": "x" * (MAX_TEXT + 1)})]
    response = client.post("/v1/events/batch", json={"events": events}, headers=bearer(source_key))
    refused_at(response, ["body", "events", 1, "attributes", "note"])
    assert count(db, Event) == 0


@pytest.mark.parametrize(("field", "limit"), [("source_event_id", 128), ("object_ref", 128), ("agent_id", 64)])
def test_event_fields_at_their_length_are_stored_and_one_past_is_named(
    client: TestClient, source_key: str, db: Database, field: str, limit: int
) -> None:
    ok = client.post("/v1/events", json=make_event(**{field: "A" * limit}), headers=bearer(source_key))
    assert ok.status_code == 201, ok.text
    over = client.post("/v1/events", json=make_event(**{field: "B" * (limit + 1)}), headers=bearer(source_key))
    refused_at(over, ["body", field])
    assert count(db, Event) == 1


def test_unit_labels_at_their_length_are_stored_and_one_past_is_named(
    client: TestClient, admin_key: str, db: Database
) -> None:
    body = {"parent": None, "label_zh": "支" * 200, "label_en": "x" * 200}
    assert client.put("/v1/units/LONG", json=body, headers=bearer(admin_key)).status_code == 201
    over = client.put("/v1/units/LONGER", json={**body, "label_en": "x" * 201}, headers=bearer(admin_key))
    refused_at(over, ["body", "label_en"])
    assert count(db, Unit) == 1


def test_a_reset_reason_at_its_length_passes_validation_and_one_past_is_named(
    client: TestClient, inspector_key: str
) -> None:
    at = client.post("/v1/breakers/1/reset", json={"reason": "r" * 2000}, headers=bearer(inspector_key))
    assert at.status_code == 404  # validated; there is no breaker 1
    over = client.post("/v1/breakers/1/reset", json={"reason": "r" * 2001}, headers=bearer(inspector_key))
    refused_at(over, ["body", "reason"])


@pytest.mark.parametrize(
    ("extra", "over", "loc"),
    [
        ({"summary": "s" * 4000}, {"summary": "s" * 4001}, ["body", "summary"]),
        (
            {"interviewees": [f"P{i}" for i in range(100)]},
            {"interviewees": [f"P{i}" for i in range(101)]},
            ["body", "interviewees"],
        ),
    ],
)
def test_transition_fields_at_their_limit_pass_validation_and_one_past_is_named(
    client: TestClient, inspector_key: str, extra: dict[str, Any], over: dict[str, Any], loc: list[str]
) -> None:
    body = {"to": "interview", "reason": "约谈", "level": "unit", "held_at": "2026-12-01T10:00:00+08:00"}
    at = client.post("/v1/alerts/1/transitions", json={**body, **extra}, headers=bearer(inspector_key))
    assert at.status_code == 404  # validated; there is no alert 1
    refused = client.post("/v1/alerts/1/transitions", json={**body, **over}, headers=bearer(inspector_key))
    refused_at(refused, loc)


def request_schemas(document: dict[str, Any]) -> list[dict[str, Any]]:
    schemas = document["components"]["schemas"]
    found = []
    for item in document["paths"].values():
        for operation in item.values():
            content = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if content:
                found.append(content["schema"])
    seen: set[str] = set()
    out: list[dict[str, Any]] = []

    def walk(schema: dict[str, Any]) -> None:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            if name not in seen:
                seen.add(name)
                walk(schemas[name])
            return
        out.append(schema)
        for key in ("oneOf", "anyOf", "allOf"):
            for sub in schema.get(key, []):
                walk(sub)
        for sub in schema.get("properties", {}).values():
            walk(sub)
        if isinstance(schema.get("items"), dict):
            walk(schema["items"])

    for schema in found:
        walk(schema)
    return out


def test_the_openapi_document_states_every_size_limit_of_request_bodies(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    schemas = request_schemas(document)
    strings = [s for s in schemas if s.get("type") == "string" and "enum" not in s and "const" not in s]
    assert strings
    for schema in strings:
        if schema.get("format") == "date-time":
            continue
        assert 1 <= schema.get("maxLength", MAX_TEXT + 1) <= MAX_TEXT, schema
    arrays = [s for s in schemas if s.get("type") == "array"]
    assert arrays
    for schema in arrays:
        assert 1 <= schema.get("maxItems", MAX_ITEMS + 1) <= MAX_ITEMS, schema
    objects = [s for s in schemas if s.get("type") == "object" and s.get("additionalProperties", True) is not False]
    assert objects
    for schema in objects:
        assert schema.get("maxProperties") == MAX_KEYS, schema
