"""The webhook API (admin): authentication, roles, validation, the secret shown once, hosts allowed, the audit
chain, deliveries listed and redelivered."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.db import Database
from app.main import create_app
from app.webhooks.delivery import Deliverer
from tests.alerts.test_router import error_locs, is_problem
from tests.conftest import KeyMaker
from tests.factories import bearer
from tests.webhooks.conftest import ALL_EVENTS, deliveries, subscribe
from tests.webhooks.receiver import Receiver

URL = "http://127.0.0.1:9/hook"


def endpoints(webhook_id: int = 1, delivery_id: int = 1) -> list[tuple[str, str, Any]]:
    return [
        ("post", "/v1/webhooks", {"url": URL, "events": ["alert.raised"]}),
        ("get", "/v1/webhooks", None),
        ("get", f"/v1/webhooks/{webhook_id}", None),
        ("delete", f"/v1/webhooks/{webhook_id}", None),
        ("post", f"/v1/webhooks/{webhook_id}/test", None),
        ("get", f"/v1/webhooks/{webhook_id}/deliveries", None),
        ("post", f"/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", None),
    ]


def test_every_endpoint_needs_a_key(wclient: TestClient) -> None:
    for method, path, body in endpoints():
        assert is_problem(wclient.request(method, path, json=body), 401), (method, path)
        response = wclient.request(method, path, json=body, headers={"Authorization": "Bearer nope"})
        assert is_problem(response, 401), (method, path)


@pytest.mark.parametrize("role", ["source", "inspector"])
def test_only_an_admin_may_use_webhooks(wclient: TestClient, admin_key: str, make_key: KeyMaker, role: str) -> None:
    webhook = subscribe(wclient, admin_key, URL)
    key = make_key(role, f"{role}-x")
    for method, path, body in endpoints(webhook["id"]):
        assert is_problem(wclient.request(method, path, json=body, headers=bearer(key)), 403), (method, path)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"url": "ftp://example.com/x", "events": ["alert.raised"]}, ["body", "url"]),
        ({"url": "not a url", "events": ["alert.raised"]}, ["body", "url"]),
        ({"url": "http://user:pw@example.com/", "events": ["alert.raised"]}, ["body", "url"]),
        ({"url": URL, "events": []}, ["body", "events"]),
        ({"url": URL, "events": ["alert.exploded"]}, ["body", "events", 0]),
        ({"url": URL, "events": ["alert.raised", "alert.raised"]}, ["body", "events"]),
        ({"url": URL, "events": ["test"]}, ["body", "events", 0]),
        ({"url": URL, "events": ["alert.raised"], "unit": "U" * 65}, ["body", "unit"]),
        ({"url": URL, "events": ["alert.raised"], "surplus": 1}, ["body", "surplus"]),
        ({"events": ["alert.raised"]}, ["body", "url"]),
    ],
)
def test_a_bad_body_is_422_naming_the_field(
    wclient: TestClient, admin_key: str, body: dict[str, Any], loc: list[Any]
) -> None:
    response = wclient.post("/v1/webhooks", json=body, headers=bearer(admin_key))
    assert is_problem(response, 422), response.text
    assert loc in error_locs(response)


def test_bad_paths_and_queries_are_422(wclient: TestClient, admin_key: str) -> None:
    webhook = subscribe(wclient, admin_key, URL)
    for method, path in [
        ("get", "/v1/webhooks/abc"),
        ("get", f"/v1/webhooks/{webhook['id']}/deliveries?status=lost"),
        ("get", f"/v1/webhooks/{webhook['id']}/deliveries?limit=0"),
        ("post", f"/v1/webhooks/{webhook['id']}/deliveries/0/redeliver"),
    ]:
        assert is_problem(wclient.request(method, path, headers=bearer(admin_key)), 422), path


def test_create_shows_the_secret_once_then_never(wclient: TestClient, admin_key: str) -> None:
    created = subscribe(wclient, admin_key, URL, ["breaker.opened"], unit="ZD", description="交管业务系统")
    assert created["secret"].startswith("whsec_")
    assert {k: created[k] for k in ("url", "events", "unit", "description", "created_by")} == {
        "url": URL,
        "events": ["breaker.opened"],
        "unit": "ZD",
        "description": "交管业务系统",
        "created_by": "admin",
    }
    one = wclient.get(f"/v1/webhooks/{created['id']}", headers=bearer(admin_key))
    assert one.status_code == 200
    assert "secret" not in one.json()
    listed = wclient.get("/v1/webhooks", headers=bearer(admin_key)).json()
    assert [w["id"] for w in listed["items"]] == [created["id"]]
    assert created["secret"] not in str(listed)


def test_list_pages_newest_first(wclient: TestClient, admin_key: str) -> None:
    ids = [subscribe(wclient, admin_key, f"{URL}/{i}")["id"] for i in range(5)]
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = wclient.get("/v1/webhooks", params=params, headers=bearer(admin_key)).json()
        seen += [w["id"] for w in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)


def test_delete_stops_the_webhook_and_is_404_after(wclient: TestClient, admin_key: str) -> None:
    webhook = subscribe(wclient, admin_key, URL)
    response = wclient.delete(f"/v1/webhooks/{webhook['id']}", headers=bearer(admin_key))
    assert response.status_code == 204
    assert is_problem(wclient.get(f"/v1/webhooks/{webhook['id']}", headers=bearer(admin_key)), 404)
    assert is_problem(wclient.delete(f"/v1/webhooks/{webhook['id']}", headers=bearer(admin_key)), 404)
    assert wclient.get("/v1/webhooks", headers=bearer(admin_key)).json()["items"] == []


def test_an_unknown_webhook_is_404_everywhere(wclient: TestClient, admin_key: str) -> None:
    for method, path, body in endpoints(webhook_id=999)[2:]:
        assert is_problem(wclient.request(method, path, json=body, headers=bearer(admin_key)), 404), path


def test_creating_and_deleting_are_in_the_audit_chain_without_the_secret(wclient: TestClient, admin_key: str) -> None:
    webhook = subscribe(wclient, admin_key, URL, ["alert.raised"])
    wclient.delete(f"/v1/webhooks/{webhook['id']}", headers=bearer(admin_key))
    entries = wclient.get("/v1/audit", params={"object_type": "webhook"}, headers=bearer(admin_key)).json()["items"]
    assert sorted(e["action"] for e in entries) == ["webhook.created", "webhook.deleted"]
    assert webhook["secret"] not in str(entries)
    assert wclient.get("/v1/audit/verify", headers=bearer(admin_key)).json()["ok"] is True


@pytest.mark.parametrize(
    ("hosts", "url", "allowed"),
    [
        ("hooks.example.com", "https://hooks.example.com/x", True),
        ("hooks.example.com", "https://HOOKS.example.com./x", True),
        ("hooks.example.com", "https://evil.example.com/x", False),
        ("10.0.0.0/8, hooks.example.com", "http://10.2.3.4:8080/x", True),
        ("10.0.0.0/8", "http://11.2.3.4/x", False),
        ("10.0.0.0/8", "http://ten.example/x", False),
        ("fd00::/8", "http://[fd00::1]/x", True),
    ],
)
def test_webhook_hosts_limit_where_webhooks_point(
    settings: Settings, db: Database, admin_key: str, hosts: str, url: str, allowed: bool
) -> None:
    app = create_app(settings.model_copy(update={"webhook_hosts": hosts, "webhook_delivery": False}))
    with TestClient(app) as client:
        response = client.post("/v1/webhooks", json={"url": url, "events": ALL_EVENTS}, headers=bearer(admin_key))
    if allowed:
        assert response.status_code == 201, response.text
    else:
        assert is_problem(response, 422)
        assert error_locs(response) == [["body", "url"]]


def test_an_invalid_webhook_hosts_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="neither a host name nor a CIDR"):
        Settings(webhook_hosts="ok.example, not a host")


def test_a_test_ping_is_listed_delivered_and_redelivered(
    wclient: TestClient, admin_key: str, receiver: Receiver, deliverer: Deliverer
) -> None:
    webhook = subscribe(wclient, admin_key, receiver.url)
    response = wclient.post(f"/v1/webhooks/{webhook['id']}/test", headers=bearer(admin_key))
    assert response.status_code == 202, response.text
    ping = response.json()
    assert (ping["type"], ping["status"], ping["attempts"]) == ("test", "pending", 0)
    assert [d["id"] for d in deliveries(wclient, admin_key, webhook["id"], status="pending")] == [ping["id"]]

    assert deliverer.drain() == 1
    (done,) = deliveries(wclient, admin_key, webhook["id"], status="delivered")
    assert (done["id"], done["attempts"], done["last_status_code"], done["sequence"]) == (ping["id"], 1, 200, 1)
    assert deliveries(wclient, admin_key, webhook["id"], status="pending") == []
    path = f"/v1/webhooks/{webhook['id']}/deliveries/{ping['id']}/redeliver"
    again = wclient.post(path, headers=bearer(admin_key))
    assert again.status_code == 202, again.text
    assert is_problem(wclient.post(path, headers=bearer(admin_key)), 409)  # pending already
    deliverer.drain()
    first, second = receiver.verified(webhook["secret"])
    assert first == second  # same id, same sequence, same body: receivers dedupe on id
    assert receiver.received[0].headers["webhook-id"] == receiver.received[1].headers["webhook-id"] == str(ping["id"])
    assert is_problem(
        wclient.post(f"/v1/webhooks/{webhook['id']}/deliveries/999/redeliver", headers=bearer(admin_key)), 404
    )


def test_a_failing_receiver_shows_attempts_status_code_and_error(
    wclient: TestClient, admin_key: str, receiver: Receiver, deliverer: Deliverer
) -> None:
    receiver.status = 500
    webhook = subscribe(wclient, admin_key, receiver.url)
    wclient.post(f"/v1/webhooks/{webhook['id']}/test", headers=bearer(admin_key))
    deliverer.run_once()
    (pending,) = deliveries(wclient, admin_key, webhook["id"], status="pending")
    assert (pending["attempts"], pending["last_status_code"], pending["last_error"]) == (1, 500, "HTTP 500")
    assert pending["next_attempt_at"] is not None
