from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.db import Database
from app.webhooks.delivery import Deliverer
from tests.alerts.test_router import COUNT_RULE, MORE_RULES, write_rules
from tests.factories import bearer
from tests.webhooks.receiver import Receiver

ALL_EVENTS = [
    "alert.raised",
    "alert.updated",
    "alert.cleared",
    "alert.transitioned",
    "alert.overdue",
    "breaker.opened",
    "breaker.reset",
    "breaker.closed",
    "exemption.requested",
    "exemption.decided",
    "exemption.revoked",
]


@pytest.fixture
def wsettings(settings: Settings, tmp_path: Path) -> Settings:
    """The app's settings: test rules, no delivery thread (tests drive a Deliverer), fast retries."""
    return settings.model_copy(
        update={
            "rules_dir": write_rules(tmp_path / "rules", COUNT_RULE + MORE_RULES),
            "webhook_delivery": False,
            "webhook_backoff_base": 0.05,
            "webhook_backoff_cap": 0.2,
            "webhook_timeout": 2.0,
            "webhook_cache_ttl": 5.0,
        }
    )


@pytest.fixture
def wclient(wsettings: Settings, db: Database) -> Iterator[TestClient]:
    from app.main import create_app

    with TestClient(create_app(wsettings)) as test_client:
        yield test_client


@pytest.fixture
def deliverer(wsettings: Settings, db: Database) -> Iterator[Deliverer]:
    worker = Deliverer(db, wsettings)
    yield worker
    worker.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


def subscribe(client: TestClient, key: str, url: str, events: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    response = client.post(
        "/v1/webhooks", json={"url": url, "events": events or ALL_EVENTS, **extra}, headers=bearer(key)
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def deliveries(client: TestClient, key: str, webhook_id: int, **params: Any) -> list[dict[str, Any]]:
    response = client.get(f"/v1/webhooks/{webhook_id}/deliveries", params={"limit": 500, **params}, headers=bearer(key))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items
