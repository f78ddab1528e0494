"""Every change of state leaves an audit entry, in the transaction of the change, and the chain verifies."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.db import Database
from tests.alerts.test_router import COUNT_RULE, app_client, police, raise_alert, registration, write_rules
from tests.factories import bearer


@pytest.fixture
def rclient(settings: Settings, db: Database, tmp_path: Path) -> Iterator[TestClient]:
    with app_client(settings, write_rules(tmp_path / "rules", COUNT_RULE)) as test_client:
        yield test_client


def actions(client: TestClient, key: str) -> Counter[str]:
    found: Counter[str] = Counter()
    cursor = None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        response = client.get("/v1/audit", params=params, headers=bearer(key))
        assert response.status_code == 200, response.text
        body = response.json()
        found.update(item["action"] for item in body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return found


def test_a_day_of_changes_is_all_in_the_chain(
    rclient: TestClient, source_key: str, inspector_key: str, admin_key: str
) -> None:
    before = actions(rclient, admin_key)  # the keys the fixtures created
    assert before["key.created"] == 3
    rclient.put("/v1/units/U1", json={"parent": None, "label_zh": "一", "label_en": "one"}, headers=bearer(admin_key))
    alert_id = raise_alert(rclient, source_key, police("OP1", "U1"))  # raised (warn_at 3)
    rclient.post("/v1/events", json=registration(30, police("OP1", "U1")), headers=bearer(source_key))  # trips
    (breaker,) = rclient.get("/v1/breakers", headers=bearer(inspector_key)).json()["items"]
    reset = rclient.post(f"/v1/breakers/{breaker['id']}/reset", json={"reason": "整改"}, headers=bearer(inspector_key))
    assert reset.status_code == 200
    moved = rclient.post(
        f"/v1/alerts/{alert_id}/transitions", json={"to": "dismissed", "reason": "误报"}, headers=bearer(inspector_key)
    )
    assert moved.status_code == 200
    assert rclient.post("/v1/rules/reload", headers=bearer(admin_key)).status_code == 200

    found = actions(rclient, admin_key) - before
    assert found["unit.changed"] == 1
    assert found["alert.raised"] == 1
    assert found["alert.updated"] == 1
    assert found["breaker.tripped"] == 1
    assert found["breaker.reset"] == 1
    assert found["alert.moved"] == 1
    assert found["rules.reloaded"] == 1
    verdict = rclient.get("/v1/audit/verify", headers=bearer(inspector_key)).json()
    assert verdict["ok"] is True
    assert verdict["first_mismatch"] is None
    assert verdict["checked"] == sum(actions(rclient, admin_key).values())


def test_a_refused_change_leaves_no_entry(rclient: TestClient, admin_key: str) -> None:
    before = actions(rclient, admin_key)
    bad = rclient.put(
        "/v1/units/U2", json={"parent": "NOPE", "label_zh": "二", "label_en": "two"}, headers=bearer(admin_key)
    )
    assert bad.status_code == 422
    assert actions(rclient, admin_key) == before
