"""The world of the jurisdiction tests: a unit tree, and alerts and tripped breakers inside and outside DD1.

ZD 支队
├── DD1 一大队          ← the scoped inspector's unit
│   └── DD1-ZD1 一中队   ← OP-IN works here: events, a tripped t-count alert, its open breaker
└── DD2 二大队           ← OP-OUT works here: the same, outside DD1
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from app.config import Settings
from app.db import Database
from app.webhooks.models import WebhookDelivery
from tests.conftest import KeyMaker
from tests.workflow.support import (
    OPERATOR_RULE,
    app_client,
    police,
    post_event,
    put_unit,
    registration,
    write_rules,
)

TREE = [("ZD", None), ("DD1", "ZD"), ("DD1-ZD1", "DD1"), ("DD2", "ZD")]

# The kinds of key the matrix tries: (role, the unit the key is scoped to).
KEY_KINDS: dict[str, tuple[str, str | None]] = {
    "source": ("source", None),
    "inspector": ("inspector", None),
    "dd1-inspector": ("inspector", "DD1"),
    "admin": ("admin", None),
}


@pytest.fixture
def jclient(settings: Settings, db: Database, tmp_path: Path) -> Iterator[TestClient]:
    """An app whose only rule is t-count: 3 registrations by one operator in an hour warn, 4 trip."""
    with app_client(settings, write_rules(tmp_path / "rules", OPERATOR_RULE)) as test_client:
        yield test_client


def trip_operator(client: TestClient, key: str, operator_id: str, unit: str) -> dict[str, int]:
    """Four registrations by one operator at 09:00: its first event, its alert (tripped) and its breaker."""
    results = [post_event(client, key, registration(minute, police(operator_id, unit))) for minute in range(4)]
    (alert_id,) = results[-1]["alerts"]
    (breaker,) = results[-1]["breakers"]
    return {"event": results[0]["id"], "alert": alert_id, "breaker": breaker["id"]}


@pytest.fixture
def world(jclient: TestClient, source_key: str, admin_key: str, make_key: KeyMaker, db: Database) -> dict[str, int]:
    """The ids of the objects inside DD1 (`*_in`) and outside it (`*_out`), and of one scan run. The exemptions
    (requested, for OP-IN and OP-OUT) are filed by an inspector none of the matrix's keys is named after."""
    for unit_id, parent in TREE:
        put_unit(jclient, admin_key, unit_id, parent)
    inside = trip_operator(jclient, source_key, "OP-IN", "DD1-ZD1")
    outside = trip_operator(jclient, source_key, "OP-OUT", "DD2")
    filer = make_key("inspector", "filer")
    exemptions = {}
    for name, operator_id in (("exemption_in", "OP-IN"), ("exemption_out", "OP-OUT")):
        body = {
            "rule_id": None,
            "domains": ["vehicle_registration"],
            "subject_type": "operator",
            "subject_id": operator_id,
            "from": "2026-11-21T00:00:00+08:00",
            "to": "2026-11-22T00:00:00+08:00",
            "reason": "报备",
        }
        filed = jclient.post("/v1/exemptions", json=body, headers={"Authorization": f"Bearer {filer}"})
        assert filed.status_code == 201, filed.text
        exemptions[name] = filed.json()["id"]
    scan = jclient.post("/v1/scans", json={}, headers={"Authorization": f"Bearer {admin_key}"})
    assert scan.status_code == 201, scan.text
    admin = {"Authorization": f"Bearer {admin_key}"}
    hook = {"url": "http://127.0.0.1:9/hook", "events": ["breaker.opened"]}
    webhook = jclient.post("/v1/webhooks", json=hook, headers=admin)
    assert webhook.status_code == 201, webhook.text
    ping = jclient.post(f"/v1/webhooks/{webhook.json()['id']}/test", headers=admin)
    assert ping.status_code == 202, ping.text
    with db.session(write=True) as session:  # a failed delivery, which may be redelivered
        session.execute(update(WebhookDelivery).values(status="failed"))
    return {
        "webhook": webhook.json()["id"],
        "delivery": ping.json()["id"],
        **{f"{name}_in": value for name, value in inside.items()},
        **{f"{name}_out": value for name, value in outside.items()},
        "scan": scan.json()["id"],
        **exemptions,
    }
