"""Deliveries to a real receiver on a loopback port: signed per Standard Webhooks, every event type, in
sequence order per webhook after an outage, nothing for a rolled-back change or an exempted alert, unit
subtrees, retries given up as `failed`, one sender per delivery, and ingest unaffected by a slow receiver."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select, update

from app.breakers.models import Breaker
from app.config import Settings
from app.db import Database
from app.exemptions import service as exemptions
from app.rules.spec import RuleSet
from app.webhooks.delivery import Deliverer, backoff
from app.webhooks.models import WebhookDelivery
from tests.alerts.test_router import build_units, police, post, post_all, registration, transfer
from tests.exemptions.test_router import decide, file, revoke
from tests.factories import bearer
from tests.webhooks.conftest import ALL_EVENTS, deliveries, subscribe
from tests.webhooks.receiver import Receiver


def in_seconds(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def types_of(payloads: list[dict[str, Any]]) -> list[str]:
    return [p["type"] for p in payloads]


def count_deliveries(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(WebhookDelivery)) or 0


def test_a_delivery_is_signed_per_standard_webhooks(
    wclient: TestClient, admin_key: str, receiver: Receiver, deliverer: Deliverer
) -> None:
    webhook = subscribe(wclient, admin_key, receiver.url)
    wclient.post(f"/v1/webhooks/{webhook['id']}/test", headers=bearer(admin_key))
    deliverer.drain()
    (payload,) = receiver.verified(webhook["secret"])  # standardwebhooks.Webhook(secret).verify(body, headers)
    (got,) = receiver.received
    assert set(payload) == {"id", "type", "timestamp", "sequence", "data"}
    assert str(payload["id"]) == got.headers["webhook-id"]
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 60
    assert got.headers["webhook-signature"].startswith("v1,")
    assert (payload["type"], payload["sequence"]) == ("test", 1)
    tampered = got.body.replace(b'"test"', b'"tost"')
    from standardwebhooks import Webhook, WebhookVerificationError

    with pytest.raises(WebhookVerificationError):
        Webhook(webhook["secret"]).verify(tampered, got.headers)


def test_every_event_type_is_delivered_with_the_object_as_get_shows_it(
    wclient: TestClient,
    admin_key: str,
    source_key: str,
    inspector_key: str,
    receiver: Receiver,
    deliverer: Deliverer,
    db: Database,
) -> None:
    webhook = subscribe(wclient, admin_key, receiver.url)
    operator = police("OP1", "U1")
    # t-count: 3 registrations warn (alert.raised), the 4th trips (alert.updated, breaker.opened).
    results = post_all(wclient, source_key, [registration(minute, operator) for minute in range(4)])
    (alert_id,) = results[-1]["alerts"]
    deliverer.drain()
    alert_now = wclient.get(f"/v1/alerts/{alert_id}", headers=bearer(inspector_key)).json()
    last_alert = [p for p in receiver.verified(webhook["secret"]) if p["type"].startswith("alert.")][-1]
    assert last_alert["data"] == alert_now  # the object as GET /v1/alerts/{id} shows it

    (breaker,) = wclient.get("/v1/breakers", headers=bearer(inspector_key)).json()["items"]
    reset = wclient.post(
        f"/v1/breakers/{breaker['id']}/reset", json={"reason": "整改完毕"}, headers=bearer(inspector_key)
    )
    assert reset.status_code == 200, reset.text
    with db.session(write=True) as session:  # probation passes
        session.execute(update(Breaker).values(probation_until=datetime.now(UTC) - timedelta(seconds=1)))
    moved = wclient.post(
        f"/v1/alerts/{alert_id}/transitions",
        json={"to": "supervision", "reason": "提级督办", "assignee_unit": "U1", "due_at": in_seconds(1)},
        headers=bearer(inspector_key),
    )
    assert moved.status_code == 200, moved.text
    time.sleep(1.2)  # the supervision becomes overdue
    deliverer.drain()  # housekeeping: breaker.closed, alert.overdue

    # t-ratio: two trucks raise, three cars clear.
    post_all(wclient, source_key, [transfer(0, police("OP7"), "truck"), transfer(1, police("OP7"), "truck")])
    post_all(wclient, source_key, [transfer(minute, police("OP7"), "car") for minute in (2, 3, 4)])
    filed = file(wclient, source_key, subject_id="OP9")
    assert decide(wclient, inspector_key, filed["id"], approve=True).status_code == 200
    assert revoke(wclient, inspector_key, filed["id"]).status_code == 200
    deliverer.drain()

    payloads = receiver.verified(webhook["secret"])
    assert set(types_of(payloads)) == set(ALL_EVENTS)
    assert [p["sequence"] for p in payloads] == list(range(1, len(payloads) + 1))
    breaker_now = wclient.get(f"/v1/breakers/{breaker['id']}", headers=bearer(inspector_key)).json()
    (closed,) = [p for p in payloads if p["type"] == "breaker.closed"]
    assert closed["data"] == breaker_now
    assert breaker_now["state"] == "closed"
    exemption_now = wclient.get(f"/v1/exemptions/{filed['id']}", headers=bearer(inspector_key)).json()
    assert [p for p in payloads if p["type"] == "exemption.revoked"][0]["data"] == exemption_now


def test_an_exempted_alert_sends_nothing(
    wclient: TestClient,
    admin_key: str,
    source_key: str,
    inspector_key: str,
    receiver: Receiver,
    deliverer: Deliverer,
) -> None:
    filed = file(wclient, source_key)  # t-count, OP1, 09:00-10:00
    assert decide(wclient, inspector_key, filed["id"]).status_code == 200
    webhook = subscribe(wclient, admin_key, receiver.url)
    post_all(wclient, source_key, [registration(minute, police("OP1")) for minute in range(4)])
    deliverer.drain()
    assert receiver.received == []
    assert deliveries(wclient, admin_key, webhook["id"]) == []


def test_a_webhook_with_a_unit_hears_only_of_its_subtree(
    wclient: TestClient,
    admin_key: str,
    source_key: str,
    inspector_key: str,
    receiver: Receiver,
    deliverer: Deliverer,
) -> None:
    build_units(wclient, admin_key)  # ZD > DD1 > U1, ZD > U2, OTHER > U3
    webhook = subscribe(wclient, admin_key, receiver.url, ["alert.raised", "exemption.requested"], unit="DD1")
    post_all(wclient, source_key, [registration(minute, police("OP1", "U1")) for minute in range(3)])
    post_all(wclient, source_key, [registration(minute, police("OP3", "U3")) for minute in range(3)])
    file(wclient, source_key, subject_id="OP1")  # OP1 has events in U1
    file(wclient, source_key, subject_id="OP3")  # OP3's are in U3
    deliverer.drain()
    payloads = receiver.verified(webhook["secret"])
    assert [(p["type"], p["data"]["subject_id"]) for p in payloads] == [
        ("alert.raised", "OP1"),
        ("exemption.requested", "OP1"),
    ]


def test_a_receiver_down_for_a_while_then_up_gets_everything_in_order_once(
    wclient: TestClient,
    admin_key: str,
    source_key: str,
    receiver: Receiver,
    deliverer: Deliverer,
) -> None:
    other = Receiver().start()
    try:
        first = subscribe(wclient, admin_key, receiver.url)
        second = subscribe(wclient, admin_key, other.url, ["alert.raised", "alert.updated"])
        pairs = [(first, receiver), (second, other)]
        receiver.stop()  # down: connection refused
        other.status = 503  # up, but failing
        for hour in range(9, 13):
            post_all(wclient, source_key, [registration(minute, police("OP1"), hour) for minute in range(5)])
            deliverer.run_once()  # attempts meet receivers that are down
        expected = {w["id"]: len(deliveries(wclient, admin_key, w["id"])) for w, _ in pairs}
        assert expected[first["id"]] > expected[second["id"]] > 0
        assert receiver.received == []
        receiver.start()  # up again, on the same port
        other.status = 200
        deadline = time.monotonic() + 30
        while any(deliveries(wclient, admin_key, w["id"], status="pending") for w, _ in pairs):
            assert time.monotonic() < deadline, "not everything arrived"
            deliverer.drain()
            time.sleep(0.05)
        for webhook, got in pairs:
            unique: dict[int, dict[str, Any]] = {}
            for payload in got.verified(webhook["secret"]):  # the 503 answers were received too: dedupe on id
                unique.setdefault(payload["id"], payload)
            sequences = [p["sequence"] for p in unique.values()]
            assert sequences == list(range(1, expected[webhook["id"]] + 1))  # in order, none missing, once each
    finally:
        other.stop()


def test_a_rolled_back_change_delivers_nothing(
    wclient: TestClient, admin_key: str, receiver: Receiver, deliverer: Deliverer, db: Database
) -> None:
    subscribe(wclient, admin_key, receiver.url)
    rules: RuleSet = wclient.app.state.rules.current(db)  # type: ignore[attr-defined]

    def request(subject: str) -> None:
        with db.session(write=True) as session:
            exemptions.request(
                session,
                rules,
                rule_id="t-count",
                domains=None,
                subject_type="operator",
                subject_id=subject,
                starts_at=datetime(2026, 11, 21, 1, tzinfo=UTC),
                ends_at=datetime(2026, 11, 21, 2, tzinfo=UTC),
                reason="报备",
                reference=None,
                actor="vr-system",
                now=datetime.now(UTC),
            )
            if subject == "ROLLED-BACK":
                raise RuntimeError("the transaction fails after the change")

    with pytest.raises(RuntimeError):
        request("ROLLED-BACK")
    assert count_deliveries(db) == 0
    request("COMMITTED")
    deliverer.drain()
    assert [p["data"]["subject_id"] for p in (r.json for r in receiver.received)] == ["COMMITTED"]


def test_a_failing_delivery_is_failed_after_the_retry_period_and_the_next_one_goes(
    wclient: TestClient, admin_key: str, wsettings: Settings, db: Database, receiver: Receiver
) -> None:
    receiver.status = 500
    webhook = subscribe(wclient, admin_key, receiver.url)
    for _ in range(2):
        wclient.post(f"/v1/webhooks/{webhook['id']}/test", headers=bearer(admin_key))
    worker = Deliverer(db, wsettings.model_copy(update={"webhook_retry_for": 0.5}))
    try:
        worker.run_once()
        assert len(receiver.received) == 1  # the second waits behind the first (head-of-line)
        deadline = time.monotonic() + 10
        while not deliveries(wclient, admin_key, webhook["id"], status="failed"):
            assert time.monotonic() < deadline
            worker.run_once()
            time.sleep(0.05)
        (failed,) = deliveries(wclient, admin_key, webhook["id"], status="failed")
        assert (failed["sequence"], failed["last_status_code"]) == (1, 500)
        assert failed["attempts"] >= 2
        receiver.status = 204
        while not deliveries(wclient, admin_key, webhook["id"], status="delivered"):
            assert time.monotonic() < deadline + 10
            worker.drain()
            time.sleep(0.05)
        (delivered,) = deliveries(wclient, admin_key, webhook["id"], status="delivered")
        assert delivered["sequence"] == 2
    finally:
        worker.stop()


def test_a_redirect_is_not_followed(
    wclient: TestClient, admin_key: str, receiver: Receiver, deliverer: Deliverer
) -> None:
    receiver.status = 307
    webhook = subscribe(wclient, admin_key, receiver.url)
    wclient.post(f"/v1/webhooks/{webhook['id']}/test", headers=bearer(admin_key))
    deliverer.run_once()
    (pending,) = deliveries(wclient, admin_key, webhook["id"], status="pending")
    assert (pending["last_status_code"], pending["last_error"]) == (307, "redirects are not followed")


def test_backoff_starts_within_the_base_and_doubles_up_to_the_cap() -> None:
    for attempts, ceiling in [(1, 5), (2, 10), (3, 20), (8, 600), (30, 600)]:
        waits = [backoff(attempts, 5, 600) for _ in range(50)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(set(waits)) > 1  # jitter


def test_two_workers_send_each_delivery_once(
    wclient: TestClient, admin_key: str, source_key: str, wsettings: Settings, db: Database, receiver: Receiver
) -> None:
    webhooks = [subscribe(wclient, admin_key, f"{receiver.url}?n={n}") for n in range(3)]
    for hour in range(9, 12):
        post_all(wclient, source_key, [registration(minute, police("OP1"), hour) for minute in range(4)])
    total = sum(len(deliveries(wclient, admin_key, w["id"])) for w in webhooks)
    workers = [Deliverer(db, wsettings) for _ in range(2)]
    try:
        threads = [threading.Thread(target=w.drain) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ids = [r.headers["webhook-id"] for r in receiver.received]
        assert len(ids) == len(set(ids)) == total
    finally:
        for worker in workers:
            worker.stop()


def test_a_slow_receiver_does_not_slow_ingestion(
    wclient: TestClient, admin_key: str, source_key: str, wsettings: Settings, db: Database, receiver: Receiver
) -> None:
    def ingest_seconds(hour: int) -> float:
        started = time.perf_counter()
        for minute in range(12):
            post(wclient, source_key, registration(minute, police("OP1"), hour))
        return time.perf_counter() - started

    baseline = ingest_seconds(9)
    receiver.delay = 3.0  # slower than the 2 s timeout
    for _ in range(3):
        subscribe(wclient, admin_key, receiver.url)
    worker = Deliverer(db, wsettings)
    worker.start()  # the delivery thread, as `supervision serve` runs it
    try:
        with_slow_receiver = ingest_seconds(10)
        time.sleep(0.5)
        assert len(receiver.received) >= 1  # the worker was busy with the receiver meanwhile
    finally:
        worker.stop(timeout=10)
    assert with_slow_receiver < max(3 * baseline, 2.0), (baseline, with_slow_receiver)


def test_with_no_webhook_ingest_reads_no_webhook_table_once_the_list_is_cached(
    wclient: TestClient, source_key: str, db: Database
) -> None:
    engine = wclient.app.state.db.engine  # type: ignore[attr-defined]
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    post_all(wclient, source_key, [registration(minute, police("OP1"), 9) for minute in range(3)])  # cached now
    event.listen(engine, "before_cursor_execute", seen)
    try:
        post_all(wclient, source_key, [registration(minute, police("OP2"), 9) for minute in range(4)])  # raise, trip
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert statements
    assert [s for s in statements if "webhook" in s] == []
    assert count_deliveries(db) == 0


def test_deleting_a_webhook_fails_its_pending_deliveries(
    wclient: TestClient, admin_key: str, receiver: Receiver, deliverer: Deliverer
) -> None:
    webhook = subscribe(wclient, admin_key, receiver.url)
    wclient.post(f"/v1/webhooks/{webhook['id']}/test", headers=bearer(admin_key))
    assert wclient.delete(f"/v1/webhooks/{webhook['id']}", headers=bearer(admin_key)).status_code == 204
    deliverer.drain()
    assert receiver.received == []


def test_a_receiver_slower_than_the_timeout_is_a_failed_attempt(
    wclient: TestClient, admin_key: str, receiver: Receiver, deliverer: Deliverer
) -> None:
    receiver.delay = 2.5  # the timeout is 2 s in these tests
    webhook = subscribe(wclient, admin_key, receiver.url)
    wclient.post(f"/v1/webhooks/{webhook['id']}/test", headers=bearer(admin_key))
    started = time.monotonic()
    deliverer.run_once()
    assert time.monotonic() - started < 2.4
    (pending,) = deliveries(wclient, admin_key, webhook["id"], status="pending")
    assert (pending["attempts"], pending["last_status_code"]) == (1, None)
    assert pending["last_error"] == "no answer within 2 s"
