"""A server killed with SIGKILL right after committing a change still delivers it after a restart (the outbox
row committed with the change; `supervision serve` delivers)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx2 as httpx
import pytest
from sqlalchemy import select

from app.db import Database
from app.webhooks.models import WebhookDelivery
from tests.alerts.test_router import COUNT_RULE, police, registration, write_rules
from tests.conftest import KeyMaker, start_server, stop_server
from tests.factories import bearer
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.e2e


def test_a_change_committed_just_before_a_kill_is_delivered_after_restart(
    migrated: str, db: Database, make_key: KeyMaker, tmp_path: Path
) -> None:
    admin, source = make_key("admin", "admin"), make_key("source", "vr-system")
    env = {
        "SUPERVISION_RULES_DIR": str(write_rules(tmp_path / "rules", COUNT_RULE)),
        "SUPERVISION_WEBHOOK_TIMEOUT": "1",
        "SUPERVISION_WEBHOOK_BACKOFF_BASE": "0.2",
        "SUPERVISION_WEBHOOK_BACKOFF_CAP": "0.5",
        "SUPERVISION_WEBHOOK_POLL_INTERVAL": "0.2",
    }
    receiver = Receiver()  # not started: the receiver is down while the first server runs
    first = start_server(migrated, tmp_path / "first.log", env=env, new_session=True)
    try:
        created = httpx.post(
            f"{first.base_url}/v1/webhooks",
            json={"url": receiver.url, "events": ["alert.raised"]},
            headers=bearer(admin),
        )
        assert created.status_code == 201, created.text
        webhook = created.json()
        for minute in range(3):
            response = httpx.post(
                f"{first.base_url}/v1/events", json=registration(minute, police("OP1")), headers=bearer(source)
            )
            assert response.status_code == 201, response.text
    finally:
        os.killpg(first.process.pid, signal.SIGKILL)  # right after the commit that raised the alert
        first.process.wait()
    with db.session() as session:
        (pending,) = session.scalars(select(WebhookDelivery)).all()
        assert (pending.type, pending.status) == ("alert.raised", "pending")

    receiver.start()
    second = start_server(migrated, tmp_path / "second.log", env=env)
    try:
        receiver.wait_for(1, timeout=40)
        (payload,) = receiver.verified(webhook["secret"])
        assert (payload["id"], payload["type"], payload["sequence"]) == (pending.id, "alert.raised", 1)
        assert payload["data"]["subject_id"] == "OP1"
        deadline = time.monotonic() + 10
        while True:
            with db.session() as session:
                if session.scalars(select(WebhookDelivery.status)).all() == ["delivered"]:
                    break
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        stop_server(second)
        receiver.stop()
