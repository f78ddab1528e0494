"""No 500 for anything a client can send: every route of the app, walked from `app.routes`, is sent
ids beyond 64 bits, lone surrogates in every text of its body, NUL in every text parameter, and
refuses each with a 422 problem naming the field.

The bodies are built from the app's own OpenAPI document, so a new route or field is walked too.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from app.pagination import encode_cursor
from tests.factories import bearer, make_event

HUGE = 2**64 + 1  # one past what any 64-bit column holds
LONE = "\udbfc"  # a high surrogate with no low one after it: not a Unicode character
Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    spec: dict[str, Any]


def operations(app: FastAPI) -> Iterator[Operation]:
    """Every operation of every API route of the app, with its entry in the OpenAPI document (the console's
    HTML pages and the docs pages are left out of the document, and tested in tests/console)."""
    document = app.openapi()
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or route.path is None:
            continue
        if not route.original_route.include_in_schema:
            continue
        for method in sorted(route.methods or ()):
            yield Operation(method, route.path, document["paths"][route.path][method.lower()])


class Samples:
    """A value for each schema of the document: every property present, the first choice of each union."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.schemas: dict[str, Any] = document["components"]["schemas"]

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.schemas[schema["$ref"].rsplit("/", 1)[-1]]
        return schema

    def value(self, schema: dict[str, Any]) -> Any:
        schema = self.resolve(schema)
        for union in ("oneOf", "anyOf"):
            if union in schema:
                options = [s for s in schema[union] if self.resolve(s).get("type") != "null"]
                return self.value(options[0])
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return schema["enum"][0]
        kind = schema.get("type")
        if kind == "string":
            return "2026-11-21T09:30:00+08:00" if schema.get("format") == "date-time" else "X1"
        if kind == "integer":
            return schema.get("minimum", 1)
        if kind == "number":
            return schema.get("minimum", 1)
        if kind == "boolean":
            return True
        if kind == "array":
            return [self.value(schema.get("items", {"type": "string"}))]
        if kind == "object" or "properties" in schema:
            return {name: self.value(sub) for name, sub in schema.get("properties", {}).items()}
        return "X1"

    def parameter(self, parameter: dict[str, Any]) -> Any:
        return self.value(parameter["schema"])


def leaves(value: Any, loc: Loc = ()) -> Iterator[tuple[Loc, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, (*loc, index))
    else:
        yield loc, value


def objects(value: Any, loc: Loc = ()) -> Iterator[Loc]:
    if isinstance(value, dict):
        yield loc
        for key, item in value.items():
            yield from objects(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from objects(item, (*loc, index))


def replaced(value: Any, loc: Loc, new: Any) -> Any:
    if not loc:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[loc[0]] = replaced(value[loc[0]], loc[1:], new)  # type: ignore[index]
    return copy


def with_key(value: Any, loc: Loc, key: str) -> Any:
    if not loc:
        return {**value, key: 1}
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[loc[0]] = with_key(value[loc[0]], loc[1:], key)  # type: ignore[index]
    return copy


class Walker:
    def __init__(self, client: TestClient, key: str) -> None:
        self.client = client
        self.headers = bearer(key)
        self.samples = Samples(client.app.openapi())  # type: ignore[attr-defined]
        self.failures: list[str] = []

    def params(self, operation: Operation, where: str) -> list[dict[str, Any]]:
        return [p for p in operation.spec.get("parameters", []) if p["in"] == where]

    def url(self, operation: Operation, **overrides: Any) -> str:
        path = operation.path
        for parameter in self.params(operation, "path"):
            value = overrides.get(parameter["name"], self.samples.parameter(parameter))
            path = path.replace("{" + parameter["name"] + "}", str(value))
        return path

    def body(self, operation: Operation) -> tuple[str | None, Any]:
        """The body's media type and a sample of it (None, None: the operation takes no body)."""
        request_body = operation.spec.get("requestBody")
        if request_body is None:
            return None, None
        media, content = next(iter(request_body["content"].items()))
        return media, self.samples.value(content["schema"])

    def send(
        self, operation: Operation, *, url: str | None = None, body: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        media, sample = self.body(operation)
        payload = sample if body is None else body
        content = None
        headers = dict(self.headers)
        if media is not None:
            headers["Content-Type"] = media
            # json.dumps escapes a lone surrogate as \\udbfc, as a careless client's JSON library would.
            content = json.dumps(payload).encode() if media == "application/json" else str(payload).encode()
        return self.client.request(
            operation.method, url or self.url(operation), headers=headers, content=content, params=params
        )

    def expect_422(self, operation: Operation, what: str, response: Any, loc: Loc | None) -> None:
        label = f"{operation.method} {operation.path} with {what}"
        if response.status_code != 422:
            self.failures.append(f"{label}: {response.status_code} {response.text[:300]}")
            return
        if not response.headers["content-type"].startswith("application/problem+json"):
            self.failures.append(f"{label}: not a problem: {response.headers['content-type']}")
            return
        if loc is not None:
            locs = [tuple(error["loc"]) for error in response.json().get("errors", [])]
            if loc not in locs:
                self.failures.append(f"{label}: the errors name {locs}, not {list(loc)}")

    def check(self) -> None:
        assert not self.failures, "\n".join(self.failures)


@pytest.fixture
def walker(client: TestClient, admin_key: str) -> Walker:
    return Walker(client, admin_key)


def test_the_walk_reaches_every_route_with_a_parameter_or_a_body(walker: Walker) -> None:
    walked = {
        (op.method, op.path)
        for op in operations(walker.client.app)  # type: ignore[arg-type]
        if op.spec.get("parameters") or op.spec.get("requestBody")
    }
    assert {("GET", "/v1/events/{event_id}"), ("POST", "/v1/breakers/{breaker_id}/reset")} <= walked
    assert {("POST", "/v1/events"), ("POST", "/v1/events/batch"), ("POST", "/v1/rules/validate")} <= walked
    assert len(walked) >= 22


def test_an_integer_beyond_64_bits_in_any_path_is_a_422_naming_it(walker: Walker) -> None:
    walked = 0
    for operation in operations(walker.client.app):  # type: ignore[arg-type]
        for parameter in walker.params(operation, "path"):
            schema = walker.samples.resolve(parameter["schema"])
            if schema.get("type") != "integer":
                continue
            for value in (HUGE, 2**63, schema["maximum"] + 1, 0, -1):
                response = walker.send(operation, url=walker.url(operation, **{parameter["name"]: value}))
                walker.expect_422(operation, f"{parameter['name']}={value}", response, ("path", parameter["name"]))
            walked += 1
    walker.check()
    assert walked == 15  # events, alerts (2), breakers (2), scans, exemptions (3), webhooks (5 + delivery id)


def test_the_largest_id_a_path_declares_is_simply_not_found(walker: Walker) -> None:
    """On PostgreSQL too, where the database refuses to compare an INTEGER column with a larger number."""
    for operation in operations(walker.client.app):  # type: ignore[arg-type]
        largest = {
            p["name"]: schema["maximum"]
            for p in walker.params(operation, "path")
            if (schema := walker.samples.resolve(p["schema"])).get("type") == "integer"
        }
        if not largest:
            continue
        response = walker.send(operation, url=walker.url(operation, **largest))
        if response.status_code != 404:
            walker.failures.append(f"{operation.method} {operation.path}: {response.status_code} {response.text[:300]}")
    walker.check()


def test_a_lone_surrogate_in_any_text_of_any_body_is_a_422_naming_the_field(walker: Walker) -> None:
    walked = 0
    for operation in operations(walker.client.app):  # type: ignore[arg-type]
        media, sample = walker.body(operation)
        if media != "application/json":
            continue
        for loc, value in leaves(sample):
            if isinstance(value, str):
                response = walker.send(operation, body=replaced(sample, loc, LONE))
                walker.expect_422(operation, f"a lone surrogate at {list(loc)}", response, ("body", *loc))
                walked += 1
    walker.check()
    assert walked >= 30


def test_a_lone_surrogate_in_any_key_of_any_body_is_a_422(walker: Walker) -> None:
    for operation in operations(walker.client.app):  # type: ignore[arg-type]
        media, sample = walker.body(operation)
        if media != "application/json":
            continue
        for loc in objects(sample):
            response = walker.send(operation, body=with_key(sample, loc, LONE + "k"))
            walker.expect_422(operation, f"a lone surrogate in a key at {list(loc)}", response, None)
    walker.check()


def test_an_integer_beyond_64_bits_in_any_body_is_a_422_naming_the_field(walker: Walker) -> None:
    for operation in operations(walker.client.app):  # type: ignore[arg-type]
        media, sample = walker.body(operation)
        if media != "application/json":
            continue
        for loc, value in leaves(sample):
            if isinstance(value, int | str) and not isinstance(value, bool):
                response = walker.send(operation, body=replaced(sample, loc, HUGE))
                walker.expect_422(operation, f"{HUGE} at {list(loc)}", response, ("body", *loc))
    walker.check()


def test_a_body_that_is_not_utf8_is_refused_without_a_500(walker: Walker) -> None:
    for operation in operations(walker.client.app):  # type: ignore[arg-type]
        media, _ = walker.body(operation)
        if media is None:
            continue
        response = walker.client.request(
            operation.method,
            walker.url(operation),
            headers={**walker.headers, "Content-Type": media},
            content=b'{"reason": "\xed\xa0\x80\xff"}',
        )
        expected = 400 if media == "application/json" else 422
        if response.status_code != expected or "problem+json" not in response.headers["content-type"]:
            walker.failures.append(f"{operation.method} {operation.path}: {response.status_code} {response.text[:200]}")
    walker.check()


def test_an_integer_beyond_64_bits_or_a_nul_in_any_query_parameter_is_a_422_naming_it(walker: Walker) -> None:
    walked = 0
    for operation in operations(walker.client.app):  # type: ignore[arg-type]
        for parameter in walker.params(operation, "query"):
            name = parameter["name"]
            bad: list[Any] = ["a\x00b"]
            if walker.samples.resolve(parameter["schema"]).get("type") == "integer":
                bad.append(HUGE)
            for value in bad:
                response = walker.send(operation, params={name: value})
                walker.expect_422(operation, f"?{name}={value!r}", response, ("query", name))
                walked += 1
    walker.check()
    assert walked >= 40


@pytest.mark.parametrize(
    ("path", "kind", "key"),
    [
        ("/v1/events", "events", ["2026-11-21T09:30:00+00:00", HUGE]),
        ("/v1/events", "events", ["2026-11-21T09:30:00", 1]),  # no offset
        ("/v1/events", "events", ["2026-11-21T09:30:00+00:00", "1"]),
        ("/v1/alerts", "alerts", ["2026-11-21T09:30:00+00:00", HUGE]),
        ("/v1/alerts", "alerts", ["2026-11-21T09:30:00", 1]),
        ("/v1/alerts", "alerts", [LONE, 1]),
        ("/v1/breakers", "breakers", [HUGE]),
        ("/v1/breakers", "breakers", [2**31]),  # past PostgreSQL's INTEGER
        ("/v1/alerts", "alerts", ["2026-11-21T09:30:00+00:00", 2**31]),
        ("/v1/breakers", "breakers", [-HUGE]),
        ("/v1/scans", "scans", [HUGE]),
        ("/v1/audit", "audit", [HUGE]),
        ("/v1/audit", "audit", [1.5]),
        ("/v1/units", "units", [LONE]),
    ],
)
def test_a_forged_cursor_is_a_422_naming_it(
    client: TestClient, admin_key: str, path: str, kind: str, key: list[Any]
) -> None:
    cursor = encode_cursor(kind, key) if LONE not in key else _surrogate_cursor(kind, key)
    response = client.get(path, params={"cursor": cursor}, headers=bearer(admin_key))
    assert response.status_code == 422, response.text
    assert ["query", "cursor"] in [error["loc"] for error in response.json()["errors"]]


def _surrogate_cursor(kind: str, key: list[Any]) -> str:
    raw = json.dumps([kind, *key]).encode()  # ASCII: the surrogate stays a \\udbfc escape
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("period", ["9999-Q4", "0000", "1999-12", "2100", "２０２６", "2026-13", "2026-Q5", "26"])
def test_a_period_outside_the_pattern_or_the_years_is_a_422_naming_it(
    client: TestClient, inspector_key: str, period: str
) -> None:
    response = client.get("/v1/reports/summary", params={"period": period}, headers=bearer(inspector_key))
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["query", "period"]


def test_a_rule_document_nested_too_deeply_is_a_422(client: TestClient, admin_key: str) -> None:
    response = client.post(
        "/v1/rules/validate",
        headers={**bearer(admin_key), "Content-Type": "application/yaml"},
        content=b"[" * 20000,
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["body"]


def test_a_problem_echoing_a_lone_surrogate_is_valid_utf8(client: TestClient, source_key: str) -> None:
    body = json.dumps(make_event(attributes={"vehicle_type": "car", LONE: 1})).encode()
    response = client.post(
        "/v1/events", headers={**bearer(source_key), "Content-Type": "application/json"}, content=body
    )
    assert response.status_code == 422
    response.content.decode("utf-8")  # strict: raises on anything UTF-8 cannot hold
    assert ["body", "attributes", "\ufffd"] in [error["loc"] for error in response.json()["errors"]]
