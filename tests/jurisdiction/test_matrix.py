"""Who may call what, and what a key scoped to an org unit sees: every endpoint × every kind of key.

A new endpoint is one row of ENDPOINTS; `test_every_v1_route_is_in_the_matrix` fails until it has one.
Contract (Conventions): source posts events and checks breakers; inspectors read and act; admins do
everything. A key scoped to DD1 sees DD1 and the units below it; anything outside answers 404, never 403.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Match, Route

from app.config import Settings
from app.main import create_app
from tests.conftest import KeyMaker
from tests.factories import bearer, make_event
from tests.jurisdiction.conftest import KEY_KINDS
from tests.workflow.support import OPERATOR_RULE, is_problem, police

SOURCE = frozenset({"source"})  # admins are admitted everywhere, so they are never listed
CHECK = frozenset({"source", "inspector"})
FILE = CHECK  # exemptions (报备): a source files and reads its own; inspectors file on a business's behalf
INSPECT = frozenset({"inspector"})
ADMIN: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Listing:
    """What a list answer shows (`labels` of its body) for an unscoped key, and for the DD1 key."""

    labels: Callable[[Any], set[str]]
    everything: frozenset[str]
    inside_dd1: frozenset[str]


@dataclass(frozen=True)
class Effect:
    """An action's mark, read back by an admin from the object the action's path names (the path without its
    last segment): `field` is `before`, and `after` once the action succeeded."""

    field: str
    before: Any
    after: Any


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # may name the world's objects: {alert_in}, {breaker_out}, …
    roles: frozenset[str]
    ok: int = 200
    json: Any = None
    yaml: str | None = None
    outside: bool = False  # names an object outside DD1: the DD1 key gets 404
    listing: Listing | None = None
    effect: Effect | None = None
    own_only: bool = False  # names an object a source key did not file: a source key gets 404

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


def units_of_operators(body: Any) -> set[str]:
    return {item["operator"]["unit"] for item in body["items"]}


def item_field(name: str) -> Callable[[Any], set[str]]:
    return lambda body: {item[name] for item in body["items"]}


EVENT_UNITS = Listing(units_of_operators, frozenset({"DD1-ZD1", "DD2"}), frozenset({"DD1-ZD1"}))
ALERT_UNITS = Listing(item_field("unit"), frozenset({"DD1-ZD1", "DD2"}), frozenset({"DD1-ZD1"}))
UNITS = Listing(item_field("id"), frozenset({"ZD", "DD1", "DD1-ZD1", "DD2"}), frozenset({"DD1", "DD1-ZD1"}))
REPORT_GROUPS = Listing(item_field("group"), frozenset({"DD1-ZD1", "DD2"}), frozenset({"DD1-ZD1"}))
SUBJECTS = Listing(item_field("subject_id"), frozenset({"OP-IN", "OP-OUT"}), frozenset({"OP-IN"}))

EVENT = make_event(operator=police("OP-NEW", "DD1-ZD1"))
NEW_UNIT = {"parent": "ZD", "label_zh": "三大队", "label_en": "DD3"}
DAY = {"from": "2026-11-21T00:00:00+08:00", "to": "2026-11-22T00:00:00+08:00"}
DISMISS = {"to": "dismissed", "reason": "误报"}
RESET = {"reason": "已整改"}
CHECK_OP_IN = "/v1/breakers/check?subject_type=operator&subject_id=OP-IN&domain=vehicle_registration"


DISMISSED = Effect("stage", "warning", "dismissed")
APPROVED = Effect("status", "requested", "approved")
REVOKED = Effect("status", "requested", "revoked")
FILING = {
    "rule_id": None,
    "domains": ["vehicle_registration"],
    "subject_type": "operator",
    "subject_id": "OP-IN",
    "from": "2026-11-21T00:00:00+08:00",
    "to": "2026-11-22T00:00:00+08:00",
    "reason": "驾校考试日 exam day",
}
DECISION = {"approve": True, "reason": "核实 checked"}
WEBHOOK = {"url": "http://127.0.0.1:9/other", "events": ["alert.raised"]}
ON_PROBATION = Effect("state", "open", "half_open")


# fmt: off
ENDPOINTS = [
    Endpoint("POST", "/v1/events", SOURCE, ok=201, json=EVENT),
    Endpoint("POST", "/v1/events/batch", SOURCE, json={"events": [EVENT]}),
    Endpoint("GET", "/v1/events", INSPECT, listing=EVENT_UNITS),
    Endpoint("GET", "/v1/events/{event_in}", INSPECT),
    Endpoint("GET", "/v1/events/{event_out}", INSPECT, outside=True),
    Endpoint("GET", "/v1/units", INSPECT, listing=UNITS),
    Endpoint("GET", "/v1/units/DD1-ZD1", INSPECT),
    Endpoint("GET", "/v1/units/DD2", INSPECT, outside=True),
    Endpoint("GET", "/v1/units/ZD", INSPECT, outside=True),
    Endpoint("PUT", "/v1/units/DD3", ADMIN, ok=201, json=NEW_UNIT),
    Endpoint("GET", "/v1/alerts", INSPECT, listing=ALERT_UNITS),
    Endpoint("GET", "/v1/alerts/{alert_in}", INSPECT),
    Endpoint("GET", "/v1/alerts/{alert_out}", INSPECT, outside=True),
    Endpoint("POST", "/v1/alerts/{alert_in}/transitions", INSPECT, json=DISMISS, effect=DISMISSED),
    Endpoint("POST", "/v1/alerts/{alert_out}/transitions", INSPECT, json=DISMISS, outside=True, effect=DISMISSED),
    Endpoint("GET", "/v1/breakers", INSPECT, listing=SUBJECTS),
    Endpoint("GET", "/v1/breakers/{breaker_in}", INSPECT),
    Endpoint("GET", "/v1/breakers/{breaker_out}", INSPECT, outside=True),
    Endpoint("POST", "/v1/breakers/{breaker_in}/reset", INSPECT, json=RESET, effect=ON_PROBATION),
    Endpoint("POST", "/v1/breakers/{breaker_out}/reset", INSPECT, json=RESET, outside=True, effect=ON_PROBATION),
    Endpoint("GET", CHECK_OP_IN, CHECK),
    Endpoint("POST", "/v1/exemptions", FILE, ok=201, json=FILING),
    Endpoint("GET", "/v1/exemptions", FILE),
    Endpoint("GET", "/v1/exemptions/{exemption_in}", FILE, own_only=True),
    Endpoint("GET", "/v1/exemptions/{exemption_out}", FILE, outside=True, own_only=True),
    Endpoint("POST", "/v1/exemptions/{exemption_in}/decision", INSPECT, json=DECISION, effect=APPROVED),
    Endpoint(
        "POST", "/v1/exemptions/{exemption_out}/decision", INSPECT, json=DECISION, outside=True, effect=APPROVED
    ),
    Endpoint("POST", "/v1/exemptions/{exemption_in}/revoke", INSPECT, json=RESET, effect=REVOKED),
    Endpoint("POST", "/v1/exemptions/{exemption_out}/revoke", INSPECT, json=RESET, outside=True, effect=REVOKED),
    Endpoint("GET", "/v1/rules", INSPECT),
    Endpoint("GET", "/v1/rules/t-count", INSPECT),
    Endpoint("POST", "/v1/rules/validate", ADMIN, yaml=OPERATOR_RULE),
    Endpoint("POST", "/v1/rules/reload", ADMIN),
    Endpoint("POST", "/v1/rules/t-count/backtest", INSPECT, json=DAY, listing=SUBJECTS),
    Endpoint("GET", "/v1/scans", INSPECT),
    Endpoint("GET", "/v1/scans/{scan}", INSPECT),
    Endpoint("POST", "/v1/scans", ADMIN, ok=201, json={}),
    Endpoint("GET", "/v1/reports/summary?period=2026-11", INSPECT, listing=REPORT_GROUPS),
    Endpoint("GET", "/v1/audit", INSPECT),
    Endpoint("GET", "/v1/audit/verify", INSPECT),
    Endpoint("POST", "/v1/audit/checkpoints", ADMIN, ok=201),
    Endpoint("POST", "/v1/webhooks", ADMIN, ok=201, json=WEBHOOK),
    Endpoint("GET", "/v1/webhooks", ADMIN),
    Endpoint("GET", "/v1/webhooks/{webhook}", ADMIN),
    Endpoint("DELETE", "/v1/webhooks/{webhook}", ADMIN, ok=204),
    Endpoint("POST", "/v1/webhooks/{webhook}/test", ADMIN, ok=202),
    Endpoint("GET", "/v1/webhooks/{webhook}/deliveries", ADMIN),
    Endpoint("POST", "/v1/webhooks/{webhook}/deliveries/{delivery}/redeliver", ADMIN, ok=202),
]
# fmt: on


def expected_status(endpoint: Endpoint, kind: str) -> int:
    role, unit = KEY_KINDS[kind]
    if role != "admin" and role not in endpoint.roles:
        return 403
    if endpoint.outside and unit is not None:
        return 404
    if endpoint.own_only and role == "source":
        return 404
    return endpoint.ok


def call(client: TestClient, endpoint: Endpoint, key: str, world: dict[str, int]) -> Any:
    headers = bearer(key)
    if endpoint.yaml is not None:
        headers["Content-Type"] = "application/yaml"
    return client.request(
        endpoint.method,
        endpoint.path.format(**world),
        json=endpoint.json,
        content=endpoint.yaml.encode() if endpoint.yaml is not None else None,
        headers=headers,
    )


@pytest.mark.parametrize("kind", list(KEY_KINDS))
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[endpoint.id for endpoint in ENDPOINTS])
def test_each_kind_of_key_gets_what_its_role_and_unit_allow(
    jclient: TestClient, world: dict[str, int], make_key: KeyMaker, admin_key: str, endpoint: Endpoint, kind: str
) -> None:
    role, unit = KEY_KINDS[kind]
    key = admin_key if kind == "admin" else make_key(role, f"{kind}-key", unit=unit)
    expected = expected_status(endpoint, kind)

    response = call(jclient, endpoint, key, world)

    if expected >= 400:
        assert is_problem(response, expected), (response.status_code, response.text)
    else:
        assert response.status_code == expected, response.text
    if endpoint.listing is not None and expected < 400:
        shown = endpoint.listing.labels(response.json())
        assert shown == (endpoint.listing.inside_dd1 if unit else endpoint.listing.everything)
    if endpoint.effect is not None:
        effect = endpoint.effect
        target = endpoint.path.format(**world).rsplit("/", 1)[0]
        read = jclient.get(target, headers=bearer(admin_key))
        assert read.status_code == 200, read.text
        assert read.json()[effect.field] == (effect.after if expected < 400 else effect.before)


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e.outside], ids=lambda e: e.id)
def test_outside_the_scope_is_answered_like_an_unknown_id(
    jclient: TestClient, world: dict[str, int], make_key: KeyMaker, endpoint: Endpoint
) -> None:
    """The DD1 key cannot tell an object outside its units from one that does not exist."""
    key = make_key("inspector", "dd1-key", unit="DD1")
    unknown = {name: value + 1000 for name, value in world.items()}
    twin = replace(endpoint, path=re.sub(r"^/v1/units/[^/?]+", "/v1/units/NO-SUCH", endpoint.path))
    outside = call(jclient, endpoint, key, world)
    missing = call(jclient, twin, key, unknown)
    assert (outside.status_code, missing.status_code) == (404, 404)
    assert outside.json()["title"] == missing.json()["title"]
    assert set(outside.json()) == set(missing.json())


def test_check_names_no_breaker_a_scoped_key_may_not_see(
    jclient: TestClient, world: dict[str, int], make_key: KeyMaker
) -> None:
    key = make_key("inspector", "dd1-key", unit="DD1")
    params = {"subject_type": "operator", "subject_id": "OP-OUT", "domain": "vehicle_registration"}
    response = jclient.get("/v1/breakers/check", params=params, headers=bearer(key))
    assert response.status_code in (200, 404), response.text
    named = response.json().get("breakers", []) if response.status_code == 200 else []
    for breaker in named:
        assert jclient.get(f"/v1/breakers/{breaker['id']}", headers=bearer(key)).status_code == 200
        assert jclient.get(f"/v1/alerts/{breaker['alert_id']}", headers=bearer(key)).status_code == 200


def test_every_v1_route_is_in_the_matrix(settings: Settings) -> None:
    """A route without a row here has had nobody check who may call it."""
    app = create_app(settings)
    # FastAPI keeps included routers as such: their routes are reached through the route contexts.
    routes = [c.route for c in iter_route_contexts(app.routes) if isinstance(c.route, Route)]
    routes = [route for route in routes if route.path.startswith("/v1")]
    assert len(routes) > 25  # the enumeration itself works
    covered: set[tuple[str, str]] = set()
    for endpoint in ENDPOINTS:
        scope = {"type": "http", "method": endpoint.method, "path": urlsplit(endpoint.path).path}
        for route in routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                covered.add((endpoint.method, route.path))
                break
    every = {(method, route.path) for route in routes for method in route.methods or () if method != "HEAD"}
    assert every - covered == set()
